/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <time.h>

#include "macro.h"

void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}

const char *endswith(const char *s, const char *suffix) {
        size_t sl = strlen(s), xl = strlen(suffix);

        if (xl > sl)
                return NULL;
        return strcmp(s + sl - xl, suffix) == 0 ? s + sl - xl : NULL;
}

usec_t now_usec(int clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / NSEC_PER_USEC;
}
