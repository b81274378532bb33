/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>

#include "parse-util.h"

static bool all_digits(const char *s, size_t n) {
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < '0' || s[i] > '9')
                        return false;
        return true;
}

static int parse_digits(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (!all_digits(s, n))
                return -EINVAL;
        if (n > 1 && s[0] == '0')
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                unsigned d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -ERANGE;
                v = v * 10 + d;
        }
        *ret = v;
        return 0;
}

int parse_u64(const char *s, uint64_t *ret) {
        return parse_digits(s, strlen(s), ret);
}

int parse_u32(const char *s, uint32_t *ret) {
        uint64_t v;
        int r = parse_u64(s, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct { char suffix; unsigned shift; } units[] = {
                { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 },
        };
        size_t n = strlen(s);
        unsigned shift = 0;
        uint64_t v;
        int r;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (s[n - 1] == units[i].suffix) {
                        shift = units[i].shift;
                        n--;
                        break;
                }
        r = parse_digits(s, n, &v);
        if (r < 0)
                return r;
        if (shift > 0 && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

int parse_boolean(const char *s) {
        static const char *const yes[] = { "yes", "true", "on", "1" };
        static const char *const no[] = { "no", "false", "off", "0" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (streq(s, yes[i]))
                        return 1;
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (streq(s, no[i]))
                        return 0;
        return -EINVAL;
}

int parse_timespan(const char *s, usec_t *ret) {
        static const struct { const char *suffix; usec_t usec; } units[] = {
                { "ms", USEC_PER_MSEC },      { "sec", USEC_PER_SEC },
                { "s", USEC_PER_SEC },        { "min", 60 * USEC_PER_SEC },
                { "m", 60 * USEC_PER_SEC },   { "h", 3600 * USEC_PER_SEC },
        };
        size_t n = strlen(s), digits = 0;
        usec_t mult = USEC_PER_SEC;
        uint64_t v;
        int r;

        while (digits < n && s[digits] >= '0' && s[digits] <= '9')
                digits++;
        if (digits < n) {
                bool found = false;
                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (streq(s + digits, units[i].suffix)) {
                                mult = units[i].usec;
                                found = true;
                                break;
                        }
                if (!found)
                        return -EINVAL;
        }
        r = parse_digits(s, digits, &v);
        if (r < 0)
                return r;
        if (v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

int parse_percent(const char *s, uint32_t *ret) {
        size_t n = strlen(s);
        uint64_t v;
        int r;

        if (n < 2 || s[n - 1] != '%')
                return -EINVAL;
        r = parse_digits(s, n - 1, &v);
        if (r < 0)
                return r;
        if (v > UINT32_MAX)
                return -ERANGE;
        *ret = (uint32_t) v;
        return 0;
}

int parse_cpu_list(const char *s) {
        long last = -1;
        const char *p = s;

        if (!*p)
                return -EINVAL;
        for (;;) {
                const char *comma = strchrnul(p, ','), *dash;
                uint64_t a, b;
                int r;

                dash = memchr(p, '-', (size_t) (comma - p));
                if (dash) {
                        r = parse_digits(p, (size_t) (dash - p), &a);
                        if (r >= 0)
                                r = parse_digits(dash + 1, (size_t) (comma - dash - 1), &b);
                } else {
                        r = parse_digits(p, (size_t) (comma - p), &a);
                        b = a;
                }
                if (r < 0)
                        return -EINVAL;
                if (a > b || (long) a <= last)
                        return -EINVAL;
                if (b >= 8192)
                        return -ERANGE;
                last = (long) b;
                if (!*comma)
                        return 0;
                p = comma + 1;
        }
}

int parse_uid_range(const char *s, uid_t *ret_min, uid_t *ret_max) {
        const char *dash = strchr(s, '-');
        uint64_t a, b;

        if (!dash)
                return -EINVAL;
        if (parse_digits(s, (size_t) (dash - s), &a) < 0 || parse_digits(dash + 1, strlen(dash + 1), &b) < 0)
                return -EINVAL;
        /* 0 is root; (uid_t) -1 and -2 are "invalid" and "nobody"-ish sentinels. */
        if (a == 0 || b >= UINT32_MAX - 1 || a > b)
                return -ERANGE;
        *ret_min = (uid_t) a;
        *ret_max = (uid_t) b;
        return 0;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int parse_mac(const char *s, uint8_t ret[6]) {
        uint8_t m[6];

        if (strlen(s) != 17)
                return -EINVAL;
        for (unsigned i = 0; i < 6; i++) {
                int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                if (i < 5 && s[3 * i + 2] != ':')
                        return -EINVAL;
                m[i] = (uint8_t) (hi << 4 | lo);
        }
        if (m[0] & 1)
                return -ERANGE; /* multicast */
        if (!(m[0] | m[1] | m[2] | m[3] | m[4] | m[5]))
                return -ERANGE;
        memcpy(ret, m, 6);
        return 0;
}

int parse_ipv4(const char *s, uint32_t *ret) {
        uint32_t a = 0;
        const char *p = s;

        for (unsigned i = 0; i < 4; i++) {
                const char *end = p;
                uint64_t v;
                while (*end >= '0' && *end <= '9')
                        end++;
                if (parse_digits(p, (size_t) (end - p), &v) < 0 || v > 255)
                        return -EINVAL;
                a = a << 8 | (uint32_t) v;
                if (i < 3) {
                        if (*end != '.')
                                return -EINVAL;
                        p = end + 1;
                } else if (*end)
                        return -EINVAL;
        }
        *ret = a;
        return 0;
}

int parse_ipv4_prefix(const char *s, uint32_t *ret_addr, unsigned *ret_prefixlen) {
        const char *slash = strchr(s, '/');
        char buf[16];
        uint64_t pl = 32;
        uint32_t a;

        if (slash) {
                if ((size_t) (slash - s) >= sizeof buf)
                        return -EINVAL;
                memcpy(buf, s, (size_t) (slash - s));
                buf[slash - s] = '\0';
                if (parse_digits(slash + 1, strlen(slash + 1), &pl) < 0 || pl < 1 || pl > 32)
                        return -EINVAL;
        } else {
                if (strlen(s) >= sizeof buf)
                        return -EINVAL;
                strcpy(buf, s);
        }
        if (parse_ipv4(buf, &a) < 0)
                return -EINVAL;
        *ret_addr = a;
        *ret_prefixlen = (unsigned) pl;
        return 0;
}

bool ifname_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 15)
                return false;
        if (streq(s, ".") || streq(s, ".."))
                return false;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c <= ' ' || c >= 0x7f || c == '/' || c == ':' || c == '%')
                        return false;
        }
        return true;
}

PathProblem path_check_normalized(const char *p) {
        size_t n;

        if (isempty(p))
                return PATH_EMPTY;
        if (p[0] != '/')
                return PATH_RELATIVE;
        n = strlen(p);
        if (n >= PATH_MAX)
                return PATH_TOO_LONG;
        if (n == 1)
                return PATH_ROOT;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) p[i] < ' ' || p[i] == 0x7f)
                        return PATH_BAD_CHAR;
        if (p[n - 1] == '/')
                return PATH_TRAILING_SLASH;
        for (const char *c = p; *c;) {
                const char *next = strchrnul(c + 1, '/');
                size_t len = (size_t) (next - c - 1);
                /* c points at the '/' before the component */
                if (len == 0)
                        return PATH_DOUBLE_SLASH;
                if (len == 1 && c[1] == '.')
                        return PATH_DOT;
                if (len == 2 && c[1] == '.' && c[2] == '.')
                        return PATH_DOTDOT;
                if (len > NAME_MAX)
                        return PATH_TOO_LONG;
                c = next;
        }
        return PATH_OK;
}

const char *path_problem_to_string(PathProblem p) {
        switch (p) {
        case PATH_OK:
                return "ok";
        case PATH_EMPTY:
                return "is empty (an absolute path is required)";
        case PATH_RELATIVE:
                return "is not an absolute path";
        case PATH_DOTDOT:
                return "contains a \"..\" component (use the plain absolute path)";
        case PATH_DOT:
                return "contains a \".\" component (use the normalized path)";
        case PATH_DOUBLE_SLASH:
                return "contains \"//\" (use the normalized path)";
        case PATH_TRAILING_SLASH:
                return "ends with \"/\" (name the file itself)";
        case PATH_TOO_LONG:
                return "is too long";
        case PATH_BAD_CHAR:
                return "contains a control character";
        case PATH_ROOT:
                return "is \"/\" itself";
        }
        return "is invalid";
}

char *format_size(uint64_t bytes, char *buf, size_t len) {
        static const char suffixes[] = "KMGT";
        int unit = -1;

        while (unit < 3 && bytes >= 1024 && bytes % 1024 == 0) {
                bytes /= 1024;
                unit++;
        }
        if (unit < 0)
                snprintf(buf, len, "%" PRIu64, bytes);
        else
                snprintf(buf, len, "%" PRIu64 "%c", bytes, suffixes[unit]);
        return buf;
}

size_t utf8_char_length(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s;
        size_t len;
        uint32_t cp;

        if (n == 0)
                return 0;
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
        if (len > n)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (p[i] & 0x3f);
        }
        /* overlong forms, surrogates, beyond Unicode */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        return len;
}

char *cescape(const char *s) {
        size_t n = strlen(s);
        char *r = malloc(4 * n + 1), *o = r;

        if (!r)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '\\' || *p == '"') {
                        *o++ = '\\';
                        *o++ = (char) *p;
                } else if (*p < ' ' || *p >= 0x7f) {
                        o += sprintf(o, "\\x%02x", *p);
                } else
                        *o++ = (char) *p;
        }
        *o = '\0';
        return r;
}

char *utf8_escape_for_log(const char *s) {
        char *r = malloc(strlen(s) * 4 + 1), *t = r;

        if (!r)
                return NULL;
        for (const char *p = s; *p;) {
                unsigned char c = (unsigned char) *p;
                size_t l = utf8_char_length(p, SIZE_MAX);

                if (l == 0 || c < ' ' || c == 0x7f) {
                        t += sprintf(t, "\\x%02x", c);
                        p++;
                        continue;
                }
                memcpy(t, p, l);
                t += l;
                p += l;
        }
        *t = '\0';
        return r;
}
