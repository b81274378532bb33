/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers in the style of systemd's src/basic/macro.h: scope-bound
 * cleanup, ownership hand-off, and a few array/size utilities. */

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _noreturn_ __attribute__((noreturn))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _pure_ __attribute__((pure))
#define _const_ __attribute__((const))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))
#define _fallthrough_ __attribute__((fallthrough))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define CMP(a, b) (((a) > (b)) - ((a) < (b)))
#define STRLEN(s) (sizeof(s) - 1)

/* Hand out ownership of a pointer or fd: returns the value and resets the
 * variable, so the cleanup handler of the scope no longer frees it. */
#define TAKE_PTR(p)                                    \
        ({                                             \
                __typeof__(p) *_pp_ = &(p);            \
                __typeof__(p) _p_ = *_pp_;             \
                *_pp_ = NULL;                          \
                _p_;                                   \
        })
#define TAKE_FD(fd)                                    \
        ({                                             \
                int *_fdp_ = &(fd);                    \
                int _fd_ = *_fdp_;                     \
                *_fdp_ = -EBADF;                       \
                _fd_;                                  \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}

static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        safe_close(*fd);
}

static inline void fclosep(FILE **f) {
        if (*f)
                (void) fclose(*f);
}

#define _cleanup_free_ _cleanup_(freep)
#define _cleanup_close_ _cleanup_(closep)
#define _cleanup_fclose_ _cleanup_(fclosep)

/* Free a NULL-terminated array of strings. */
void strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

static inline bool streq_ptr(const char *a, const char *b) {
        if (!a || !b)
                return a == b;
        return strcmp(a, b) == 0;
}
#define streq(a, b) (strcmp((a), (b)) == 0)
#define isempty(s) (!(s) || !*(s))

static inline const char *strempty(const char *s) {
        return s ?: "";
}

static inline const char *strna(const char *s) {
        return s ?: "n/a";
}

/* Returns a pointer just after the prefix, or NULL. */
static inline const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);
        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

const char *endswith(const char *s, const char *suffix);

/* errno as a negative return value, never 0 (some libcalls forget errno). */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}

/* Returns -errno for a failed call returning -1, else r. */
#define RET_NERRNO(expr)                               \
        ({                                             \
                __typeof__(expr) _r_ = (expr);         \
                _r_ < 0 ? negative_errno() : _r_;      \
        })

#define ERRNO_IS_NOT_SUPPORTED(r) \
        (abs(r) == EOPNOTSUPP || abs(r) == ENOTTY || abs(r) == ENOSYS || abs(r) == EAFNOSUPPORT || abs(r) == EINVAL)

#define USEC_PER_SEC ((uint64_t) 1000000ULL)
#define USEC_PER_MSEC ((uint64_t) 1000ULL)
#define NSEC_PER_USEC ((uint64_t) 1000ULL)
typedef uint64_t usec_t;
usec_t now_usec(int clock);
