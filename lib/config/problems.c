/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>

#include "parse-util.h"
#include "problems.h"

static char *strdup_or_null(const char *s, bool *oom) {
        char *r;
        if (!s)
                return NULL;
        r = strdup(s);
        if (!r)
                *oom = true;
        return r;
}

void problems_add(Problems *p, const char *file, unsigned line, const char *section, const char *key,
                  const char *value, const char *rule_format, ...) {
        Problem *n, *it;
        va_list ap;
        int r;

        if (p->n >= PROBLEMS_MAX)
                return;
        if (p->n >= p->n_allocated) {
                /* Doubling: a file full of garbage adds up to PROBLEMS_MAX
                 * problems, and one realloc per problem made that quadratic. */
                size_t m = MIN(MAX(p->n_allocated * 2, (size_t) 8), (size_t) PROBLEMS_MAX);
                n = realloc(p->items, m * sizeof(Problem));
                if (!n) {
                        p->oom = true;
                        return;
                }
                p->items = n;
                p->n_allocated = m;
        }
        it = &p->items[p->n];
        *it = (Problem) { .line = line };
        it->file = strdup_or_null(file ?: "", &p->oom);
        it->section = strdup_or_null(section, &p->oom);
        it->key = strdup_or_null(key, &p->oom);
        it->value = strdup_or_null(value, &p->oom);
        va_start(ap, rule_format);
        r = vasprintf(&it->rule, rule_format, ap);
        va_end(ap);
        if (r < 0) {
                it->rule = NULL;
                p->oom = true;
        }
        p->n++;
}

void problems_done(Problems *p) {
        for (size_t i = 0; i < p->n; i++) {
                free(p->items[i].file);
                free(p->items[i].section);
                free(p->items[i].key);
                free(p->items[i].value);
                free(p->items[i].rule);
        }
        free(p->items);
        *p = (Problems) {};
}

char *problem_format(const Problem *p) {
        _cleanup_free_ char *where = NULL, *escaped = NULL;
        char *r = NULL;
        int k;

        if (p->section && p->key)
                k = asprintf(&where, " [%s] %s", p->section, p->key);
        else if (p->section)
                k = asprintf(&where, " [%s]", p->section);
        else
                k = asprintf(&where, "%s", "");
        if (k < 0)
                return NULL;

        if (p->value) {
                escaped = cescape(p->value);
                if (!escaped)
                        return NULL;
        }

        if (p->line > 0 && !p->key)
                k = asprintf(&r, "%s:%u:%s%s%s%s%s %s", p->file, p->line, where, *where ? ":" : "",
                             escaped ? " \"" : "", escaped ?: "", escaped ? "\"" : "", strna(p->rule));
        else
                k = asprintf(&r, "%s:%s%s%s%s%s %s", p->file, where, *where ? ":" : "",
                             escaped ? " \"" : "", escaped ?: "", escaped ? "\"" : "", strna(p->rule));
        return k < 0 ? NULL : r;
}

void problems_print(const Problems *p, FILE *f) {
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *m = problem_format(&p->items[i]);
                fprintf(f, "%s\n", m ?: "(out of memory)");
        }
        if (p->oom)
                fprintf(f, "(out of memory while collecting problems)\n");
}
