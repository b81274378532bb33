/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by the library modules: string lists, error
 * messages for ret_error parameters, reading small files, sleeping. */

#include <dirent.h>

#include "macro.h"

/* NULL-terminated lists of strings. */
size_t strv_length(char *const *l);
/* Appends a copy of s. */
int strv_push(char ***l, const char *s);
/* Appends a formatted message; errno is set to abs(error) first, so %m
 * names it. Returns -abs(error), for "return strv_push_errorf(...)". An
 * allocation failure only loses the message. */
int strv_push_errorf(char ***l, int error, const char *format, ...) _printf_(3, 4);

/* For functions with a "char **ret_error" parameter (optional): replaces
 * *ret_error with the formatted message (errno is set to abs(error) first,
 * for %m) and returns -abs(error). */
int error_setf(char **ret_error, int error, const char *format, ...) _printf_(3, 4);

/* Reads all of fd (from its current offset) into a NUL-terminated buffer:
 * -EFBIG when there is more than max_size. */
int read_full_fd(int fd, size_t max_size, char **ret_data, size_t *ret_size);
/* Reads a small file (a sysfs, procfs or cgroupfs value) into buf, NUL-
 * terminated, with one read(); what does not fit in size - 1 bytes is cut.
 * flags are added to O_RDONLY|O_CLOEXEC|O_NOCTTY (e.g. O_NOFOLLOW).
 * Returns the length. */
int read_small_file_at(int dir_fd, const char *name, int flags, char *buf, size_t size);
/* The same for a path, without the trailing newline; 0 on success. */
int read_one_line_file(const char *path, char *buf, size_t size);

/* Makes room for need elements of elem_size in the array *p of *allocated
 * elements, at least doubling it (64 at first). -ENOMEM leaves *p as it
 * was. */
int greedy_realloc(void **p, size_t *allocated, size_t need, size_t elem_size);

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

/* Number of entries of a directory, dot files not counted (0 if it cannot
 * be read); the name of the first one into first (optional, "" if it does
 * not fit). For sysfs lists such as /sys/block/<dev>/holders. */
size_t dir_count_entries(const char *path, char *first, size_t first_size);

/* Sleeps for u microseconds (EINTR is resumed). */
void sleep_usec(usec_t u);
/* 64 random bits for jitter (not for secrets). */
uint64_t random_u64(void);

/* Writes all of data to fd, retrying on EINTR and short writes: 0 or -errno. */
int loop_write(int fd, const void *data, size_t size);
