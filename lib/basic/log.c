/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>

#include "log.h"

static const char *program_name = "microvm";
static int max_level = LOG_INFO;
static LogTarget target = LOG_TARGET_AUTO;
static bool generator_mode = false;
static int kmsg_fd = -EBADF;
/* The journal's native socket, for a generator: connected before a
 * seccomp filter forbids sockets, and written with writev() only. */
static int journal_fd = -EBADF;
/* The service manager's notification socket: errors become the unit's
 * StatusText (log_open_status()). */
static int status_fd = -EBADF;

void log_set_program_name(const char *name) {
        const char *slash = strrchr(name, '/');
        program_name = slash ? slash + 1 : name;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

void log_set_target(LogTarget t) {
        target = t;
}

int log_level_from_string(const char *s) {
        static const char *const names[] = {
                [LOG_EMERG] = "emerg", [LOG_ALERT] = "alert", [LOG_CRIT] = "crit",
                [LOG_ERR] = "err",     [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
                [LOG_INFO] = "info",   [LOG_DEBUG] = "debug",
        };
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(s, names[i]))
                        return (int) i;
        if (s[0] >= '0' && s[0] <= '7' && s[1] == '\0')
                return s[0] - '0';
        return -EINVAL;
}

LogTarget log_target_from_string(const char *s) {
        if (streq(s, "console") || streq(s, "console-prefixed"))
                return LOG_TARGET_CONSOLE;
        if (streq(s, "kmsg"))
                return LOG_TARGET_KMSG;
        if (streq(s, "journal") || streq(s, "journal-or-kmsg") || streq(s, "syslog") ||
            streq(s, "syslog-or-kmsg"))
                return LOG_TARGET_JOURNAL;
        if (streq(s, "null"))
                return LOG_TARGET_NULL;
        return LOG_TARGET_AUTO;
}

void log_parse_environment(bool as_generator) {
        const char *e;

        generator_mode = as_generator;
        e = getenv("SYSTEMD_LOG_LEVEL");
        if (e) {
                int l = log_level_from_string(e);
                if (l >= 0)
                        max_level = l;
        }
        e = getenv("SYSTEMD_LOG_TARGET");
        if (e)
                target = log_target_from_string(e);
}

/* stderr is connected to the journal when $JOURNAL_STREAM names its dev:ino. */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static LogTarget effective_target(void) {
        if (target != LOG_TARGET_AUTO)
                return target;
        /* The manager sets $SYSTEMD_SCOPE for generators (systemd.generator(7)). */
        if (generator_mode && getenv("SYSTEMD_SCOPE"))
                return LOG_TARGET_KMSG;
        if (stderr_is_journal())
                return LOG_TARGET_JOURNAL;
        return LOG_TARGET_CONSOLE;
}

/* Opened once: a confined process (the generator) may open nothing for
 * writing later, and a container often has no /dev/kmsg at all (nspawn):
 * then the log goes to stderr, as systemd's own programs do. */
static bool kmsg_tried = false;

static int unix_dgram_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        size_t l = strlen(path);
        int fd;

        if (l == 0 || l >= sizeof sa.sun_path)
                return -EINVAL;
        memcpy(sa.sun_path, path, l);
        if (sa.sun_path[0] == '@') /* abstract namespace */
                sa.sun_path[0] = '\0';
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

void log_open(void) {
        if (effective_target() == LOG_TARGET_KMSG && kmsg_fd < 0 && journal_fd < 0 && !kmsg_tried) {
                kmsg_tried = true;
                /* A generator run by the manager: the journal when journald
                 * runs (every daemon-reload), so that "journalctl -b" shows
                 * our errors also in a container without /dev/kmsg; at
                 * early boot the kernel log, which journald imports. */
                journal_fd = unix_dgram_connect("/run/systemd/journal/socket");
                if (journal_fd < 0)
                        kmsg_fd = open("/dev/kmsg", O_WRONLY | O_NOCTTY | O_CLOEXEC);
        }
}

void log_open_status(void) {
        const char *e = getenv("NOTIFY_SOCKET");

        if (status_fd < 0 && e && (e[0] == '/' || e[0] == '@'))
                status_fd = unix_dgram_connect(e);
}

void log_status(const char *text) {
        if (status_fd < 0)
                return;
        struct iovec iov[] = {
                { (char *) "STATUS=", 7 },
                { (char *) text, strcspn(text, "\n") },
        };
        (void) !writev(status_fd, iov, ELEMENTSOF(iov));
}

static void write_all_iov(int fd, struct iovec *iov, int n) {
        /* Best effort: logging must never fail the caller. */
        (void) !writev(fd, iov, n);
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        char buf[2048], prefix[128];
        va_list ap;
        int e = abs(error);
        LogTarget t;

        errno = e;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof buf, format, ap);
        va_end(ap);

        t = effective_target();
        if (t == LOG_TARGET_KMSG) {
                if (kmsg_fd < 0 && journal_fd < 0)
                        log_open();
                if (kmsg_fd < 0 && journal_fd < 0)
                        t = LOG_TARGET_CONSOLE;
        }
        if (level <= LOG_ERR && status_fd >= 0) {
                int n = snprintf(prefix, sizeof prefix, "STATUS=%s: ", program_name);
                struct iovec iov[] = {
                        { prefix, (size_t) n },
                        { buf, strcspn(buf, "\n") },
                };
                (void) !writev(status_fd, iov, ELEMENTSOF(iov));
        }

        switch (t) {
        case LOG_TARGET_NULL:
                break;
        case LOG_TARGET_KMSG:
                if (journal_fd >= 0) {
                        /* The native protocol; MESSAGE in the binary-safe
                         * form (length-prefixed), whatever it contains. */
                        char head[160];
                        uint64_t len = strlen(buf);
                        uint8_t le[8];
                        int n = snprintf(head, sizeof head, "PRIORITY=%d\nSYSLOG_FACILITY=%d\nSYSLOG_IDENTIFIER=%s\nMESSAGE\n",
                                         level, LOG_DAEMON >> 3, program_name);
                        for (int i = 0; i < 8; i++)
                                le[i] = (uint8_t) (len >> (8 * i));
                        struct iovec iov[] = {
                                { head, (size_t) n },
                                { le, sizeof le },
                                { buf, (size_t) len },
                                { (char *) "\n", 1 },
                        };
                        write_all_iov(journal_fd, iov, ELEMENTSOF(iov));
                        break;
                }
                {
                        /* Kernel log: "<prio>name[pid]: message" (LOG_DAEMON facility). */
                        int n = snprintf(prefix, sizeof prefix, "<%d>%s[%d]: ", LOG_DAEMON | level,
                                         program_name, (int) getpid());
                        struct iovec iov[] = {
                                { prefix, (size_t) n },
                                { buf, strlen(buf) },
                                { (char *) "\n", 1 },
                        };
                        write_all_iov(kmsg_fd, iov, ELEMENTSOF(iov));
                }
                break;
        case LOG_TARGET_JOURNAL: {
                int n = snprintf(prefix, sizeof prefix, "<%d>", level);
                struct iovec iov[] = {
                        { prefix, (size_t) n },
                        { buf, strlen(buf) },
                        { (char *) "\n", 1 },
                };
                write_all_iov(STDERR_FILENO, iov, ELEMENTSOF(iov));
                break;
        }
        default: {
                int n = snprintf(prefix, sizeof prefix, "%s: ", program_name);
                struct iovec iov[] = {
                        { prefix, (size_t) n },
                        { buf, strlen(buf) },
                        { (char *) "\n", 1 },
                };
                write_all_iov(STDERR_FILENO, iov, ELEMENTSOF(iov));
                break;
        }
        }

        (void) file;
        (void) line;
        (void) func;
        errno = e;
        return -e;
}

/* Decimal formatting without stdio, for log_signal_safe(). */
static size_t format_uint_signal_safe(unsigned long v, char *buf) {
        char tmp[24];
        size_t n = 0, i = 0;

        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n > 0)
                buf[i++] = tmp[--n];
        return i;
}

void log_signal_safe(int level, const char *message) {
        char prefix[160];
        size_t n = 0, l;
        LogTarget t;
        int fd = STDERR_FILENO;

        if (level > max_level)
                return;
        /* effective_target() only reads the environment and fstat()s. */
        t = effective_target();
        if (t == LOG_TARGET_NULL)
                return;
        if (t == LOG_TARGET_KMSG) {
                if (kmsg_fd < 0)
                        t = LOG_TARGET_CONSOLE; /* opening it now is not signal-safe */
                else
                        fd = kmsg_fd;
        }
        if (t == LOG_TARGET_KMSG || t == LOG_TARGET_JOURNAL) {
                prefix[n++] = '<';
                n += format_uint_signal_safe((unsigned long) (t == LOG_TARGET_KMSG ? (LOG_DAEMON | level) : level),
                                             prefix + n);
                prefix[n++] = '>';
        }
        if (t != LOG_TARGET_JOURNAL) {
                l = strnlen(program_name, 64);
                memcpy(prefix + n, program_name, l);
                n += l;
                if (t == LOG_TARGET_KMSG) {
                        prefix[n++] = '[';
                        n += format_uint_signal_safe((unsigned long) getpid(), prefix + n);
                        prefix[n++] = ']';
                }
                prefix[n++] = ':';
                prefix[n++] = ' ';
        }

        struct iovec iov[] = {
                { prefix, n },
                { (char *) message, strlen(message) },
                { (char *) "\n", 1 },
        };
        write_all_iov(fd, iov, ELEMENTSOF(iov));
}
