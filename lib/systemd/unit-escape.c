/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "parse-util.h"
#include "unit-escape.h"

bool unit_text_valid(const char *s, bool allow_tab) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t l;

                if ((*p < ' ' && !(allow_tab && *p == '\t')) || *p == 0x7f)
                        return false;
                l = utf8_char_length((const char *) p, SIZE_MAX);
                if (l == 0)
                        return false;
                p += l;
        }
        return true;
}

int unit_escape_specifiers(const char *s, char **ret) {
        size_t n = 0;
        char *r, *t;

        for (const char *p = s; *p; p++)
                n += *p == '%' ? 2 : 1;
        r = malloc(n + 1);
        if (!r)
                return -ENOMEM;
        t = r;
        for (const char *p = s; *p; p++) {
                if (*p == '%')
                        *t++ = '%';
                *t++ = *p;
        }
        *t = '\0';
        *ret = r;
        return 0;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t';
}

int unit_escape_verbatim(const char *s, char **ret) {
        size_t n = strlen(s);

        if (!unit_text_valid(s, true))
                return -EINVAL;
        if (n > 0 && (is_blank(s[0]) || is_blank(s[n - 1])))
                return -EINVAL;
        /* A value cannot end in a backslash: systemd joins such a line
         * with the next one, and a verbatim value has no escape for it. */
        if (n > 0 && s[n - 1] == '\\')
                return -EINVAL;
        return unit_escape_specifiers(s, ret);
}

int unit_escape_path_word(const char *path, char **ret) {
        char *r, *t;

        if (isempty(path) || !unit_text_valid(path, false))
                return -EINVAL;
        /* Worst case: every byte becomes two ("%%" or "\x"). */
        r = malloc(strlen(path) * 2 + 1);
        if (!r)
                return -ENOMEM;
        t = r;
        for (const char *p = path; *p; p++) {
                switch (*p) {
                case '%':
                        *t++ = '%';
                        break;
                case ' ':
                case '"':
                case '\'':
                case '\\':
                        *t++ = '\\';
                        break;
                }
                *t++ = *p;
        }
        *t = '\0';
        *ret = r;
        return 0;
}
