/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Small helpers shared by the jailer and firecracker test doubles (and their
 * tests): a growable string buffer, and the text of Rust's std::io::Error in
 * its Display and Debug forms, because both real programs print their errors
 * through Rust's formatting machinery and our tools and users see that text.
 *
 * Only header-only parts of lib/basic/macro.h are used: the firecracker double is
 * linked statically without libmicrovm (it runs in an empty jail). */

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* Version both doubles claim to be (the contract describes v1.16). */
#define DOUBLES_FIRECRACKER_VERSION "1.16.0"

typedef struct StrBuf {
        char *s;
        size_t len;
        size_t cap;
} StrBuf;

/* All appends abort() on allocation failure: these are test doubles, and a
 * double that silently truncates an error message would lie to the tests. */
void sb_append_n(StrBuf *sb, const char *s, size_t n);
void sb_append(StrBuf *sb, const char *s);
void sb_appendf(StrBuf *sb, const char *fmt, ...) _printf_(2, 3);
void sb_vappendf(StrBuf *sb, const char *fmt, va_list ap) _printf_(2, 0);
/* Never NULL: "" for an empty buffer. */
const char *sb_str(const StrBuf *sb);
void sb_reset(StrBuf *sb);
void sb_free(StrBuf *sb);
static inline void sb_freep(StrBuf *sb) {
        sb_free(sb);
}
#define _cleanup_sb_ _cleanup_(sb_freep)

/* Rust's `{:?}` of a str: "text" with \" \\ \n \r \t \0 and \u{..} escapes. */
void sb_append_rust_str_debug(StrBuf *sb, const char *s);
/* Rust's `{:?}` of a char: 'c' with the same escapes (plus \'). */
void sb_append_rust_char_debug(StrBuf *sb, uint32_t c);
/* std::io::Error from an errno, `{}`: "No such file or directory (os error 2)". */
void sb_append_io_display(StrBuf *sb, int err);
/* std::io::Error from an errno, `{:?}`:
 * Os { code: 2, kind: NotFound, message: "No such file or directory" } */
void sb_append_io_debug(StrBuf *sb, int err);
/* The std::io::ErrorKind name Rust's decode_error_kind() gives an errno. */
const char *rust_error_kind(int err);

/* Rust's `str::parse::<uN>()`: optional leading '+', decimal digits only,
 * no overflow. On failure *ret_error is the ParseIntError text Rust prints
 * ("invalid digit found in string", ...). */
bool rust_parse_unsigned(const char *s, uint64_t max, uint64_t *ret, const char **ret_error);

/* Decodes one UTF-8 sequence at s (len bytes left). Returns its length
 * (>= 1) and the code point, or 0 for an invalid sequence. */
size_t utf8_decode(const char *s, size_t len, uint32_t *ret_cp);
bool utf8_valid(const char *s, size_t len);

/* Microseconds of CLOCK_MONOTONIC / CLOCK_PROCESS_CPUTIME_ID, as the
 * firecracker utils::time::get_time_us() returns them. */
uint64_t clock_us(int clock);
