/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdlib.h>

#include "fc-metrics.h"
#include "parse-util.h"
#include "util.h"

void fc_metrics_done(FcMetrics *m) {
        for (size_t i = 0; i < m->n; i++)
                free(m->items[i].key);
        free(m->items);
        *m = (FcMetrics) {};
}

void fc_metrics_sum_done(FcMetricsSum *s) {
        fc_metrics_done(&s->totals);
        *s = (FcMetricsSum) {};
}

static int push(FcMetrics *m, const char *key, uint64_t value) {
        char *k;

        if (m->n >= FC_METRICS_KEYS_MAX)
                return -E2BIG;
        if (greedy_realloc((void **) &m->items, &m->allocated, m->n + 1, sizeof *m->items) < 0)
                return -ENOMEM;
        k = strdup(key);
        if (!k)
                return -ENOMEM;
        m->items[m->n++] = (FcMetric) { .key = k, .value = value };
        return 0;
}

/* ---- a bounded JSON reader: objects of objects of unsigned integers ---- */

typedef struct Reader {
        const char *p, *end;
        FcMetrics *out;
        bool wanted_only;       /* only fc_metric_wanted() keys, the rest skipped unread */
} Reader;

static void skip_ws(Reader *r) {
        while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n'))
                r->p++;
}

static bool eat(Reader *r, char c) {
        skip_ws(r);
        if (r->p < r->end && *r->p == c) {
                r->p++;
                return true;
        }
        return false;
}

/* A string into buf (escapes kept undecoded: no counter name has any, and a
 * key with one simply matches nothing). */
static int read_string(Reader *r, char *buf, size_t size) {
        size_t n = 0;

        if (!eat(r, '"'))
                return -EBADMSG;
        for (;;) {
                if (r->p >= r->end)
                        return -EBADMSG;
                char c = *r->p++;
                if (c == '"')
                        break;
                if ((unsigned char) c < 0x20)
                        return -EBADMSG;
                if (c == '\\') {
                        if (r->p >= r->end)
                                return -EBADMSG;
                        if (buf && n + 1 < size)
                                buf[n++] = c;
                        c = *r->p++;
                }
                if (buf) {
                        if (n + 1 >= size)
                                return -E2BIG;
                        buf[n++] = c;
                }
        }
        if (buf)
                buf[n] = '\0';
        return 0;
}

static int skip_value(Reader *r, unsigned depth);

/* A number: the value when it is an unsigned integer that fits, else
 * *ret_ok = false (skipped). */
static int read_number(Reader *r, uint64_t *ret, bool *ret_ok) {
        const char *s = r->p;
        bool integer = true, neg = false;
        uint64_t v = 0;

        if (r->p < r->end && *r->p == '-') {
                neg = true;
                r->p++;
        }
        if (r->p >= r->end || *r->p < '0' || *r->p > '9')
                return -EBADMSG;
        while (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
                unsigned d = (unsigned) (*r->p - '0');
                if (v > (UINT64_MAX - d) / 10)
                        integer = false;
                else
                        v = v * 10 + d;
                r->p++;
        }
        while (r->p < r->end && strchr(".eE+-0123456789", *r->p)) {
                integer = false;
                r->p++;
        }
        if (r->p == s)
                return -EBADMSG;
        *ret = v;
        *ret_ok = integer && !neg;
        return 0;
}

static int read_literal(Reader *r) {
        static const char *const lits[] = { "true", "false", "null" };
        for (size_t i = 0; i < ELEMENTSOF(lits); i++) {
                size_t n = strlen(lits[i]);
                if ((size_t) (r->end - r->p) >= n && memcmp(r->p, lits[i], n) == 0) {
                        r->p += n;
                        return 0;
                }
        }
        return -EBADMSG;
}

static int skip_value(Reader *r, unsigned depth) {
        uint64_t v;
        bool ok;
        int k;

        skip_ws(r);
        if (r->p >= r->end)
                return -EBADMSG;
        /* Values not read are skipped, nested up to a bound (no counter is
         * that deep; the bound keeps the recursion small). */
        if (depth > 16)
                return -E2BIG;
        switch (*r->p) {
        case '"':
                return read_string(r, NULL, 0);
        case '{':
        case '[': {
                char close = *r->p == '{' ? '}' : ']';
                bool object = close == '}';
                r->p++;
                if (eat(r, close))
                        return 0;
                do {
                        if (object) {
                                k = read_string(r, NULL, 0);
                                if (k < 0)
                                        return k;
                                if (!eat(r, ':'))
                                        return -EBADMSG;
                        }
                        k = skip_value(r, depth + 1);
                        if (k < 0)
                                return k;
                } while (eat(r, ','));
                return eat(r, close) ? 0 : -EBADMSG;
        }
        default:
                if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9'))
                        return read_number(r, &v, &ok);
                return read_literal(r);
        }
}

static bool name_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static const char *const wanted_sections[] = { "vcpu.", "get_api_requests.", "put_api_requests.",
                                               "patch_api_requests.", "block_", "net_", NULL };

/* Whether an object at depth (1: a section of the line) can hold a
 * fc_metric_wanted() key: only a wanted section, not the aggregates one
 * level deeper. A real line has some 300 counters, most in sections no
 * figure is made of: those are skipped, not copied, sorted and dropped. */
static bool wanted_section(const char *name, unsigned depth) {
        if (depth != 1)
                return false;
        for (size_t i = 0; wanted_sections[i]; i++) {
                size_t n = strlen(wanted_sections[i]);
                /* "vcpu.": the section vcpu; "block_": any block_ID */
                bool whole = wanted_sections[i][n - 1] == '.';
                if (whole ? strncmp(name, wanted_sections[i], n - 1) == 0 && name[n - 1] == '\0'
                          : startswith(name, wanted_sections[i]) != NULL)
                        return true;
        }
        return false;
}

/* An object whose members are named prefix.NAME. */
static int read_object(Reader *r, const char *prefix, unsigned depth) {
        int k;

        if (!eat(r, '{'))
                return -EBADMSG;
        if (eat(r, '}'))
                return 0;
        do {
                char name[FC_METRICS_KEY_MAX], key[FC_METRICS_KEY_MAX];

                k = read_string(r, name, sizeof name);
                if (k < 0)
                        return k;
                if (!eat(r, ':'))
                        return -EBADMSG;
                size_t pl = strlen(prefix), nl = strlen(name);
                if (pl + !!pl + nl >= FC_METRICS_KEY_MAX)
                        return -E2BIG;
                memcpy(key, prefix, pl);
                if (pl > 0)
                        key[pl++] = '.';
                memcpy(key + pl, name, nl + 1);
                skip_ws(r);
                /* Firecracker's names (sections, fields, drive and iface
                 * ids) are [A-Za-z0-9_-]; anything else is skipped, so a
                 * key never carries a separator of the sum file or a
                 * character a label must escape. */
                bool object = r->p < r->end && *r->p == '{';
                if (!name_ok(name))
                        k = skip_value(r, depth + 1);
                else if (object && depth < FC_METRICS_DEPTH_MAX && (!r->wanted_only || wanted_section(key, depth)))
                        k = read_object(r, key, depth + 1);
                else if (r->p < r->end && *r->p >= '0' && *r->p <= '9') {
                        uint64_t v;
                        bool ok;
                        k = read_number(r, &v, &ok);
                        if (k >= 0 && ok && (!r->wanted_only || fc_metric_wanted(key)))
                                k = push(r->out, key, v);
                } else
                        k = skip_value(r, depth + 1);
                if (k < 0)
                        return k;
        } while (eat(r, ','));
        return eat(r, '}') ? 0 : -EBADMSG;
}

static int cmp_metric(const void *a, const void *b) {
        return strcmp(((const FcMetric *) a)->key, ((const FcMetric *) b)->key);
}

/* Sorts and drops duplicate keys (serde never writes one; a forged line
 * might): the last one wins, as in a JSON object read by serde. */
static void sort_unique(FcMetrics *m) {
        size_t w = 0;

        /* Stable for equal keys is not needed: duplicates are unusual and
         * any of them is as good as the others. */
        qsort(m->items, m->n, sizeof *m->items, cmp_metric);
        for (size_t i = 0; i < m->n; i++) {
                if (w > 0 && streq(m->items[w - 1].key, m->items[i].key)) {
                        free(m->items[w - 1].key);
                        m->items[w - 1] = m->items[i];
                        continue;
                }
                m->items[w++] = m->items[i];
        }
        m->n = w;
}

static int line_parse(const char *line, size_t size, bool wanted_only, FcMetrics *ret) {
        FcMetrics m = {};
        Reader r = { .p = line, .end = line + size, .out = &m, .wanted_only = wanted_only };
        int k;

        if (size > FC_METRICS_LINE_MAX)
                return -E2BIG;
        k = read_object(&r, "", 1);
        if (k >= 0) {
                skip_ws(&r);
                if (r.p != r.end)
                        k = -EBADMSG;
        }
        if (k < 0) {
                fc_metrics_done(&m);
                return k;
        }
        sort_unique(&m);
        *ret = m;
        return 0;
}

int fc_metrics_line_parse(const char *line, size_t size, FcMetrics *ret) {
        return line_parse(line, size, false, ret);
}

bool fc_metric_is_store(const char *key) {
        /* SharedStoreMetric fields of metrics.rs; everything else that is a
         * number is a SharedIncMetric (a delta). */
        static const char *const store_sections[] = { "api_server.", "latencies_us.", "seccomp.", "vmm.", NULL };
        const char *dot = strrchr(key, '.');

        if (streq(key, "utc_timestamp_ms"))
                return true;
        for (size_t i = 0; store_sections[i]; i++)
                if (startswith(key, store_sections[i]))
                        return true;
        if (startswith(key, "signals.") && !streq(key, "signals.sigpipe"))
                return true;
        return dot && (streq(dot, ".min_us") || streq(dot, ".max_us"));
}

static FcMetric *find(const FcMetrics *m, const char *key) {
        FcMetric k = { .key = (char *) key };
        return m->n ? bsearch(&k, m->items, m->n, sizeof *m->items, cmp_metric) : NULL;
}

bool fc_metrics_get(const FcMetrics *m, const char *key, uint64_t *ret) {
        FcMetric *f = find(m, key);
        if (!f)
                return false;
        *ret = f->value;
        return true;
}

int fc_metrics_accumulate(FcMetrics *sum, const FcMetrics *line) {
        FcMetrics extra = {};
        int r;

        /* Known keys are updated in place (sum stays sorted for find());
         * new ones are collected, then appended and sorted in once. */
        for (size_t i = 0; i < line->n; i++) {
                const FcMetric *l = &line->items[i];
                FcMetric *s = find(sum, l->key);

                if (!s) {
                        if (sum->n + extra.n >= FC_METRICS_KEYS_MAX)
                                r = -E2BIG;
                        else
                                r = push(&extra, l->key, l->value);
                        if (r < 0) {
                                fc_metrics_done(&extra);
                                return r;
                        }
                } else if (fc_metric_is_store(l->key))
                        s->value = l->value;
                else
                        s->value = l->value > UINT64_MAX - s->value ? UINT64_MAX : s->value + l->value;
        }
        if (extra.n == 0)
                return 0;
        if (greedy_realloc((void **) &sum->items, &sum->allocated, sum->n + extra.n, sizeof *sum->items) < 0) {
                fc_metrics_done(&extra);
                return -ENOMEM;
        }
        memcpy(sum->items + sum->n, extra.items, extra.n * sizeof *extra.items);
        sum->n += extra.n;
        free(extra.items);
        qsort(sum->items, sum->n, sizeof *sum->items, cmp_metric);
        return 0;
}

bool fc_metric_wanted(const char *key) {
        const char *dot;

        for (size_t i = 0; wanted_sections[i]; i++)
                if (startswith(key, wanted_sections[i]))
                        /* Not the latency aggregates one level deeper. */
                        return (dot = strchr(key, '.')) && !strchr(dot + 1, '.');
        return false;
}

size_t fc_metrics_sum_feed(FcMetricsSum *s, const char *buf, size_t size) {
        size_t done = 0;

        for (;;) {
                while (done < size && buf[done] == '\0')
                        done++;
                const char *nl = memchr(buf + done, '\n', size - done);
                if (!nl)
                        break;
                size_t len = (size_t) (nl - (buf + done));
                FcMetrics line = {};

                if (line_parse(buf + done, len, true, &line) >= 0 && fc_metrics_accumulate(&s->totals, &line) >= 0)
                        s->lines++;
                else
                        s->bad_lines++;
                fc_metrics_done(&line);
                done += len + 1;
        }
        /* Zeros with no line after them yet are consumed too; a partial
         * line stays for next time. */
        s->offset += done;
        return done;
}

char *fc_metrics_sum_serialize(const FcMetricsSum *s) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);

        if (!f)
                return NULL;
        fprintf(f, "microvm-fc-metrics 1\ndev %" PRIu64 "\nino %" PRIu64 "\noffset %" PRIu64 "\nlines %" PRIu64
                   "\nbad_lines %" PRIu64 "\n",
                s->dev, s->ino, s->offset, s->lines, s->bad_lines);
        for (size_t i = 0; i < s->totals.n; i++)
                fprintf(f, "%s %" PRIu64 "\n", s->totals.items[i].key, s->totals.items[i].value);
        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}

int fc_metrics_sum_parse(const char *text, size_t size, FcMetricsSum *ret) {
        _cleanup_free_ char *copy = strndup(text, size);
        FcMetricsSum s = {};
        uint64_t *header[] = { &s.dev, &s.ino, &s.offset, &s.lines, &s.bad_lines };
        static const char *const names[] = { "dev", "ino", "offset", "lines", "bad_lines" };
        char *save = NULL, *l;
        size_t n = 0;
        int r = 0;

        if (!copy)
                return -ENOMEM;
        if (strlen(copy) != size)
                return -EBADMSG;
        l = strtok_r(copy, "\n", &save);
        if (!l || !streq(l, "microvm-fc-metrics 1"))
                return -EBADMSG;
        while ((l = strtok_r(NULL, "\n", &save))) {
                char *sp = strchr(l, ' ');
                uint64_t v;

                if (!sp || sp == l || sp - l >= FC_METRICS_KEY_MAX) {
                        r = -EBADMSG;
                        break;
                }
                *sp = '\0';
                if (parse_u64(sp + 1, &v) < 0) {
                        r = -EBADMSG;
                        break;
                }
                if (n < ELEMENTSOF(names)) {
                        if (!streq(l, names[n])) {
                                r = -EBADMSG;
                                break;
                        }
                        *header[n++] = v;
                        continue;
                }
                if (s.totals.n > 0 && strcmp(s.totals.items[s.totals.n - 1].key, l) >= 0) {
                        r = -EBADMSG;   /* sorted and unique, as written */
                        break;
                }
                r = push(&s.totals, l, v);
                if (r < 0)
                        break;
        }
        if (r >= 0 && n < ELEMENTSOF(names))
                r = -EBADMSG;
        if (r < 0) {
                fc_metrics_sum_done(&s);
                return r;
        }
        *ret = s;
        return 0;
}
