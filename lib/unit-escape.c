/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "unit-escape.h"

/* As systemd's utf8_is_valid(): overlong forms, surrogates and code points
 * beyond U+10FFFF are invalid. s is NUL-terminated, so a truncated sequence
 * stops at the NUL, which is not a continuation byte. */
size_t utf8_char_length(const char *s) {
        const unsigned char *p = (const unsigned char *) s;
        size_t len;
        uint32_t cp;

        if (p[0] < 0x80)
                return 1;
        if ((p[0] & 0xe0) == 0xc0)
                len = 2, cp = p[0] & 0x1f;
        else if ((p[0] & 0xf0) == 0xe0)
                len = 3, cp = p[0] & 0x0f;
        else if ((p[0] & 0xf8) == 0xf0)
                len = 4, cp = p[0] & 0x07;
        else
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return len;
}

bool unit_text_valid(const char *s, bool allow_tab) {
        for (const unsigned char *p = (const unsigned char *) s; *p;) {
                size_t l;

                if ((*p < ' ' && !(allow_tab && *p == '\t')) || *p == 0x7f)
                        return false;
                l = utf8_char_length((const char *) p);
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
