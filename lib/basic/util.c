/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <sys/random.h>
#include <fcntl.h>
#include <time.h>

#include "util.h"

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

size_t strv_length(char *const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

int strv_push(char ***l, const char *s) {
        size_t n = strv_length(*l);
        char **nl;
        char *c = strdup(s);

        if (!c)
                return -ENOMEM;
        nl = realloc(*l, (n + 2) * sizeof(char *));
        if (!nl) {
                free(c);
                return -ENOMEM;
        }
        nl[n] = c;
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

int strv_push_errorf(char ***l, int error, const char *format, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;

        errno = abs(error);
        va_start(ap, format);
        if (vasprintf(&m, format, ap) < 0)
                m = NULL;
        va_end(ap);
        if (m)
                (void) strv_push(l, m);
        return -abs(error);
}

int error_setf(char **ret_error, int error, const char *format, ...) {
        va_list ap;

        if (ret_error) {
                char *m = NULL;

                errno = abs(error);
                va_start(ap, format);
                if (vasprintf(&m, format, ap) < 0)
                        m = NULL;
                va_end(ap);
                free(*ret_error);
                *ret_error = m;
        }
        return -abs(error);
}

int read_full_fd(int fd, size_t max_size, char **ret_data, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t done = 0, alloc = 0;

        for (;;) {
                ssize_t k;

                if (alloc - done < 2) { /* room for one more byte and the NUL */
                        /* Grow in steps, but never beyond one byte more
                         * than allowed (to notice a file that is too big). */
                        size_t na = MIN(alloc ? alloc * 2 : 4096, max_size + 2);
                        char *nb;

                        if (na <= alloc)
                                return -EFBIG;
                        nb = realloc(buf, na);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        alloc = na;
                }
                k = read(fd, buf + done, alloc - done - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                done += (size_t) k;
                if (done > max_size)
                        return -EFBIG;
        }
        if (!buf) {
                buf = malloc(1);
                if (!buf)
                        return -ENOMEM;
        }
        buf[done] = '\0';
        *ret_data = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = done;
        return 0;
}

int read_small_file_at(int dir_fd, const char *name, int flags, char *buf, size_t size) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | flags);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return (int) n;
}

int read_one_line_file(const char *path, char *buf, size_t size) {
        int n = read_small_file_at(AT_FDCWD, path, 0, buf, size);

        if (n < 0)
                return n;
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = '\0';
        return 0;
}

int greedy_realloc(void **p, size_t *allocated, size_t need, size_t elem_size) {
        size_t na;
        void *np;

        if (need <= *allocated)
                return 0;
        na = MAX(need, *allocated ? *allocated * 2 : 64);
        np = reallocarray(*p, na, elem_size);
        if (!np)
                return -ENOMEM;
        *p = np;
        *allocated = na;
        return 0;
}

size_t dir_count_entries(const char *path, char *first, size_t first_size) {
        _cleanup_(closedirp) DIR *d = opendir(path);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.') {
                        if (n == 0 && first && (size_t) snprintf(first, first_size, "%s", de->d_name) >= first_size)
                                first[0] = '\0';
                        n++;
                }
        return n;
}

void sleep_usec(usec_t u) {
        struct timespec ts = { .tv_sec = (time_t) (u / USEC_PER_SEC), .tv_nsec = (long) (u % USEC_PER_SEC) * 1000 };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

uint64_t random_u64(void) {
        uint64_t v;

        if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t) sizeof v)
                return v;
        return now_usec(CLOCK_MONOTONIC) * UINT64_C(6364136223846793005) + (uint64_t) getpid();
}

int loop_write(int fd, const void *data, size_t size) {
        const uint8_t *p = data;

        while (size > 0) {
                ssize_t k = write(fd, p, size);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                size -= (size_t) k;
        }
        return 0;
}
