/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Strict parsers for configuration values. All are pure: they look only at
 * the string. They return 0 on success and -EINVAL (or -ERANGE for a
 * well-formed number out of range) otherwise; ret_* is written on success. */

#include <sys/types.h>

#include "macro.h"

/* Decimal only: no sign, no leading zeros ("0" itself is fine), no spaces,
 * no octal or hex surprises (iniparser_getint would read "010" as 8). */
int parse_u64(const char *s, uint64_t *ret);
int parse_u32(const char *s, uint32_t *ret);
/* "512M", "4G", "1024" (bytes); binary suffixes K M G T. */
int parse_size(const char *s, uint64_t *ret);
/* yes/no, true/false, on/off, 1/0. Returns 1, 0 or -EINVAL. */
int parse_boolean(const char *s);
/* "30s", "500ms", "2min", "1h", or a plain number of seconds. */
int parse_timespan(const char *s, usec_t *ret);
/* "200%" → 200. */
int parse_percent(const char *s, uint32_t *ret);
/* "0-3,5,8-11": ascending, non-overlapping, each cpu < 8192. */
int parse_cpu_list(const char *s);
/* "1000000-1065535": from <= to, both within 1..4294967294. */
int parse_uid_range(const char *s, uid_t *ret_min, uid_t *ret_max);
/* "52:54:00:12:34:56"; must be unicast and not all-zero. */
int parse_mac(const char *s, uint8_t ret[6]);
/* "10.0.0.2" / "10.0.0.2/24" (host order). */
int parse_ipv4(const char *s, uint32_t *ret);
int parse_ipv4_prefix(const char *s, uint32_t *ret_addr, unsigned *ret_prefixlen);

/* Interface name as the kernel accepts it (dev_valid_name): 1-15 bytes,
 * not "." or "..", no '/', ':' or whitespace. We also refuse non-ASCII. */
bool ifname_valid(const char *s);

typedef enum PathProblem {
        PATH_OK,
        PATH_EMPTY,
        PATH_RELATIVE,
        PATH_DOTDOT,
        PATH_DOT,
        PATH_DOUBLE_SLASH,
        PATH_TRAILING_SLASH,
        PATH_TOO_LONG,
        PATH_BAD_CHAR,
        PATH_ROOT,
} PathProblem;
/* An absolute, normalized path: no "." or ".." component, no "//", no
 * trailing '/', not "/" itself, printable ASCII/UTF-8 without controls. */
PathProblem path_check_normalized(const char *p);
const char *path_problem_to_string(PathProblem p);

/* Formats bytes as the largest exact binary unit ("1G", "1536M", "100"). */
char *format_size(uint64_t bytes, char *buf, size_t len);

/* Length of the valid UTF-8 sequence at s (looking at most at n bytes), or
 * 0 if it is invalid: as systemd's utf8_is_valid(), overlong forms,
 * surrogates and code points beyond U+10FFFF are invalid. For a
 * NUL-terminated string n may be SIZE_MAX: a truncated sequence stops at
 * the NUL, which is not a continuation byte. */
size_t utf8_char_length(const char *s, size_t n);

/* Copies s with C-style escaping of non-printable bytes, for messages. */
char *cescape(const char *s);

/* For a log line: control characters and bytes that are not UTF-8 as \xNN,
 * everything else (non-ASCII names included) as it is, so that a file name
 * cannot start a new, forged line in the kernel log. Newly allocated. */
char *utf8_escape_for_log(const char *s);
