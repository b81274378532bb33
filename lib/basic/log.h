/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Logging for the tools' main() functions (library code does not log).
 * Honours SYSTEMD_LOG_LEVEL and SYSTEMD_LOG_TARGET like systemd's own
 * binaries. Targets: "console" (stderr), "kmsg", "journal" (stderr with
 * <N> priority prefixes, the format the journal's stdout stream parses),
 * "null", and "auto": kmsg for a generator run by the manager, the journal
 * format when stderr is connected to the journal, plain stderr otherwise. */

#include <syslog.h>

#include "macro.h"

typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_CONSOLE,
        LOG_TARGET_KMSG,
        LOG_TARGET_JOURNAL,
        LOG_TARGET_NULL,
} LogTarget;

void log_set_program_name(const char *name);
void log_set_max_level(int level);
int log_get_max_level(void);
void log_set_target(LogTarget target);
/* Reads SYSTEMD_LOG_LEVEL / SYSTEMD_LOG_TARGET. as_generator selects kmsg
 * for the "auto" target when the service manager runs us. */
void log_parse_environment(bool as_generator);
int log_level_from_string(const char *s);
LogTarget log_target_from_string(const char *s);
/* Opens the log target now (for a generator run by the manager: the
 * journal's native socket, else /dev/kmsg), so that a later seccomp filter
 * needs neither open() nor socket(). */
void log_open(void);
/* For a tool run by a unit with NotifyAccess=all (the start's tools, not
 * stop and cleanup, whose errors would hide the cause): connects to
 * $NOTIFY_SOCKET, after which every error logged also becomes the unit's
 * StatusText ("systemctl status" shows it), and log_status() sets it. */
void log_open_status(void);
void log_status(const char *text);

/* Returns -abs(error) when error != 0, else 0 (so it can be returned).
 * errno is set to abs(error) for %m. */
int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...)                                              \
        ({                                                                             \
                int _l_ = (level), _e_ = (error);                                      \
                (_l_ <= log_get_max_level())                                           \
                        ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__) \
                        : -abs(_e_);                                                   \
        })
#define log_full(level, ...) (void) log_full_errno((level), 0, __VA_ARGS__)

/* Async-signal-safe: writes a preformatted message to the current target
 * with the usual prefix, without formatting, allocation or locks (for
 * signal handlers, e.g. the SIGSYS handler of a seccomp trap). */
void log_signal_safe(int level, const char *message);

#define log_debug(...) log_full(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, __VA_ARGS__)
#define log_error(...) log_full(LOG_ERR, __VA_ARGS__)

#define log_debug_errno(e, ...) log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...) log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_notice_errno(e, ...) log_full_errno(LOG_NOTICE, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)

#define log_oom() log_error_errno(ENOMEM, "Out of memory.")
