/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "unit-name.h"

static bool char_is_plain(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ':' ||
               c == '_' || c == '.';
}

char *unit_name_escape(const char *s) {
        static const char hex[] = "0123456789abcdef";
        char *r = malloc(strlen(s) * 4 + 1), *t = r;

        if (!r)
                return NULL;
        for (const char *f = s; *f; f++) {
                unsigned char c = (unsigned char) *f;
                if (c == '/')
                        *t++ = '-';
                else if ((f == s && c == '.') || !char_is_plain((char) c)) {
                        *t++ = '\\';
                        *t++ = 'x';
                        *t++ = hex[c >> 4];
                        *t++ = hex[c & 15];
                } else
                        *t++ = (char) c;
        }
        *t = '\0';
        return r;
}

char *unit_name_for_netdev(const char *ifname) {
        _cleanup_free_ char *e = unit_name_escape(ifname);
        char *r;

        if (!e || asprintf(&r, "sys-subsystem-net-devices-%s.device", e) < 0)
                return NULL;
        return r;
}
