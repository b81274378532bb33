/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "doubles-util.h"

void sb_append_n(StrBuf *sb, const char *s, size_t n) {
        if (sb->len + n + 1 > sb->cap) {
                size_t cap = MAX(sb->cap * 2, sb->len + n + 1);
                cap = MAX(cap, (size_t) 64);
                char *p = realloc(sb->s, cap);
                if (!p)
                        abort();
                sb->s = p;
                sb->cap = cap;
        }
        memcpy(sb->s + sb->len, s, n);
        sb->len += n;
        sb->s[sb->len] = 0;
}

void sb_append(StrBuf *sb, const char *s) {
        sb_append_n(sb, s, strlen(s));
}

void sb_vappendf(StrBuf *sb, const char *fmt, va_list ap) {
        va_list aq;
        va_copy(aq, ap);
        int n = vsnprintf(NULL, 0, fmt, aq);
        va_end(aq);
        if (n < 0)
                abort();
        /* Reserve, then format in place. */
        sb_append_n(sb, "", 0);
        if (sb->len + (size_t) n + 1 > sb->cap) {
                size_t cap = sb->len + (size_t) n + 1;
                char *p = realloc(sb->s, cap);
                if (!p)
                        abort();
                sb->s = p;
                sb->cap = cap;
        }
        vsnprintf(sb->s + sb->len, (size_t) n + 1, fmt, ap);
        sb->len += (size_t) n;
}

void sb_appendf(StrBuf *sb, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        sb_vappendf(sb, fmt, ap);
        va_end(ap);
}

const char *sb_str(const StrBuf *sb) {
        return sb->s ?: "";
}

void sb_reset(StrBuf *sb) {
        sb->len = 0;
        if (sb->s)
                sb->s[0] = 0;
}

void sb_free(StrBuf *sb) {
        free(sb->s);
        *sb = (StrBuf) {};
}

size_t utf8_decode(const char *s, size_t len, uint32_t *ret_cp) {
        const unsigned char *u = (const unsigned char *) s;
        uint32_t cp;
        size_t n;

        if (len == 0)
                return 0;
        if (u[0] < 0x80) {
                *ret_cp = u[0];
                return 1;
        }
        if ((u[0] & 0xe0) == 0xc0) {
                cp = u[0] & 0x1f;
                n = 2;
        } else if ((u[0] & 0xf0) == 0xe0) {
                cp = u[0] & 0x0f;
                n = 3;
        } else if ((u[0] & 0xf8) == 0xf0) {
                cp = u[0] & 0x07;
                n = 4;
        } else
                return 0;
        if (n > len)
                return 0;
        for (size_t i = 1; i < n; i++) {
                if ((u[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (u[i] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
        if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                return 0;
        *ret_cp = cp;
        return n;
}

bool utf8_valid(const char *s, size_t len) {
        while (len > 0) {
                uint32_t cp;
                size_t n = utf8_decode(s, len, &cp);
                if (n == 0)
                        return false;
                s += n;
                len -= n;
        }
        return true;
}

static void append_escaped_char(StrBuf *sb, uint32_t c, char quote) {
        switch (c) {
        case '\\':
                sb_append(sb, "\\\\");
                return;
        case '\n':
                sb_append(sb, "\\n");
                return;
        case '\r':
                sb_append(sb, "\\r");
                return;
        case '\t':
                sb_append(sb, "\\t");
                return;
        case 0:
                sb_append(sb, "\\0");
                return;
        }
        if (c == (uint32_t) quote) {
                sb_appendf(sb, "\\%c", quote);
                return;
        }
        /* Rust escapes non-printable characters as \u{hex}; for ASCII that is
         * the control range. Non-ASCII is printed as is (a simplification:
         * Rust also escapes a few non-printable Unicode ranges). */
        if (c < 0x20 || c == 0x7f) {
                sb_appendf(sb, "\\u{%x}", c);
                return;
        }
        char buf[4];
        size_t n;
        if (c < 0x80) {
                buf[0] = (char) c;
                n = 1;
        } else if (c < 0x800) {
                buf[0] = (char) (0xc0 | (c >> 6));
                buf[1] = (char) (0x80 | (c & 0x3f));
                n = 2;
        } else if (c < 0x10000) {
                buf[0] = (char) (0xe0 | (c >> 12));
                buf[1] = (char) (0x80 | ((c >> 6) & 0x3f));
                buf[2] = (char) (0x80 | (c & 0x3f));
                n = 3;
        } else {
                buf[0] = (char) (0xf0 | (c >> 18));
                buf[1] = (char) (0x80 | ((c >> 12) & 0x3f));
                buf[2] = (char) (0x80 | ((c >> 6) & 0x3f));
                buf[3] = (char) (0x80 | (c & 0x3f));
                n = 4;
        }
        sb_append_n(sb, buf, n);
}

void sb_append_rust_str_debug(StrBuf *sb, const char *s) {
        size_t len = strlen(s);

        sb_append(sb, "\"");
        while (len > 0) {
                uint32_t cp;
                size_t n = utf8_decode(s, len, &cp);
                if (n == 0) {
                        /* Not UTF-8: Rust would never have a str like this;
                         * show the byte, escaped. */
                        sb_appendf(sb, "\\x%02x", (unsigned) (unsigned char) *s);
                        n = 1;
                } else
                        append_escaped_char(sb, cp, '"');
                s += n;
                len -= n;
        }
        sb_append(sb, "\"");
}

void sb_append_rust_char_debug(StrBuf *sb, uint32_t c) {
        sb_append(sb, "'");
        append_escaped_char(sb, c, '\'');
        sb_append(sb, "'");
}

const char *rust_error_kind(int err) {
        /* Mirrors std::sys::pal::unix::decode_error_kind(). */
        switch (err) {
        case E2BIG:
                return "ArgumentListTooLong";
        case EADDRINUSE:
                return "AddrInUse";
        case EADDRNOTAVAIL:
                return "AddrNotAvailable";
        case EBUSY:
                return "ResourceBusy";
        case ECONNABORTED:
                return "ConnectionAborted";
        case ECONNREFUSED:
                return "ConnectionRefused";
        case ECONNRESET:
                return "ConnectionReset";
        case EDEADLK:
                return "Deadlock";
        case EDQUOT:
                return "QuotaExceeded";
        case EEXIST:
                return "AlreadyExists";
        case EFBIG:
                return "FileTooLarge";
        case EHOSTUNREACH:
                return "HostUnreachable";
        case EINTR:
                return "Interrupted";
        case EINVAL:
                return "InvalidInput";
        case EISDIR:
                return "IsADirectory";
        case ELOOP:
                return "FilesystemLoop";
        case ENOENT:
                return "NotFound";
        case ENOMEM:
                return "OutOfMemory";
        case ENOSPC:
                return "StorageFull";
        case ENOSYS:
                return "Unsupported";
        case EMLINK:
                return "TooManyLinks";
        case ENAMETOOLONG:
                return "InvalidFilename";
        case ENETDOWN:
                return "NetworkDown";
        case ENETUNREACH:
                return "NetworkUnreachable";
        case ENOTCONN:
                return "NotConnected";
        case ENOTDIR:
                return "NotADirectory";
        case ENOTEMPTY:
                return "DirectoryNotEmpty";
        case EPIPE:
                return "BrokenPipe";
        case EROFS:
                return "ReadOnlyFilesystem";
        case ESPIPE:
                return "NotSeekable";
        case ESTALE:
                return "StaleNetworkFileHandle";
        case ETIMEDOUT:
                return "TimedOut";
        case ETXTBSY:
                return "ExecutableFileBusy";
        case EXDEV:
                return "CrossesDevices";
        case EINPROGRESS:
                return "InProgress";
        case EACCES:
        case EPERM:
                return "PermissionDenied";
        case EAGAIN:
                return "WouldBlock";
        default:
                return "Uncategorized";
        }
}

void sb_append_io_display(StrBuf *sb, int err) {
        sb_appendf(sb, "%s (os error %d)", strerror(err), err);
}

void sb_append_io_debug(StrBuf *sb, int err) {
        sb_appendf(sb, "Os { code: %d, kind: %s, message: ", err, rust_error_kind(err));
        sb_append_rust_str_debug(sb, strerror(err));
        sb_append(sb, " }");
}

bool rust_parse_unsigned(const char *s, uint64_t max, uint64_t *ret, const char **ret_error) {
        uint64_t v = 0;

        if (*s == 0) {
                *ret_error = "cannot parse integer from empty string";
                return false;
        }
        /* Rust accepts one leading '+' for unsigned types; a '+' alone, or a
         * '-', is an invalid digit. */
        if (*s == '+' && s[1] != 0)
                s++;
        for (; *s; s++) {
                if (*s < '0' || *s > '9') {
                        *ret_error = "invalid digit found in string";
                        return false;
                }
                unsigned d = (unsigned) (*s - '0');
                if (v > (max - d) / 10) {
                        /* Rust reports the overflow at the digit that causes
                         * it, before looking at any later character. */
                        *ret_error = "number too large to fit in target type";
                        return false;
                }
                v = v * 10 + d;
        }
        *ret = v;
        return true;
}

uint64_t clock_us(int clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}
