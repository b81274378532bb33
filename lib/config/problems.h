/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A list of configuration problems. Validation collects every problem it
 * finds instead of stopping at the first, so an operator fixes a file in
 * one round. Each problem names the file, the section, the key, the bad
 * value and the rule; problem_format() renders it as
 *   web1.conf: [drive.root] size: "4X" is not a size (use e.g. 512M, 4G)
 * or, for problems tied to a line rather than a key,
 *   web1.conf:7: ... */

#include "macro.h"

typedef struct Problem {
        char *file;
        unsigned line;          /* 0: not tied to a line */
        char *section;          /* NULL: file-level */
        char *key;              /* NULL: section-level */
        char *value;            /* NULL: no value to show (e.g. missing key) */
        char *rule;
} Problem;

typedef struct Problems {
        Problem *items;
        size_t n;
        size_t n_allocated;     /* items has room for this many */
        bool oom;               /* a problem could not be recorded */
} Problems;

#define PROBLEMS_MAX 256        /* more than this from one file is noise */

void problems_add(Problems *p, const char *file, unsigned line, const char *section, const char *key,
                  const char *value, const char *rule_format, ...) _printf_(7, 8);
void problems_done(Problems *p);
static inline bool problems_any(const Problems *p) {
        return p->n > 0 || p->oom;
}
/* Newly allocated message, NULL on OOM. */
char *problem_format(const Problem *p);
/* Writes each problem on one line to f. */
void problems_print(const Problems *p, FILE *f);
