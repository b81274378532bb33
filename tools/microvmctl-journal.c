/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The journal, for microvmctl logs, the console lines of status and the
 * reason of a failed start: every line a VM's guest prints on its serial
 * console is an entry of its unit's stdout (SYSLOG_IDENTIFIER=microvm-launch,
 * the program systemd ran, PRIORITY=6) carrying MICROVM_ID=<id>
 * (LogExtraFields= in microvm@.service); our tools' own messages carry
 * the same MICROVM_ID with their own identifier and priority. */

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>

#include "log.h"
#include "microvmctl.h"
#include "names.h"
#include "unit-watch.h"

#define CONSOLE_IDENTIFIER "microvm-launch"

static int open_journal(sd_journal **ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = sd_lib_load(&error);
        if (r < 0)
                return log_error_errno(r, "Cannot read the journal: %s", error);
        r = sym_sd_journal_open(ret, SD_JOURNAL_LOCAL_ONLY);
        if (r < 0)
                return log_error_errno(r, "Cannot open the journal: %m");
        return 0;
}

static int add_match(sd_journal *j, const char *field, const char *value) {
        _cleanup_free_ char *m = NULL;

        if (asprintf(&m, "%s=%s", field, value) < 0)
                return -ENOMEM;
        return sym_sd_journal_add_match(j, m, 0);
}

/* A field's value, or NULL. Points into the journal's buffer. */
static const char *field(sd_journal *j, const char *name, size_t *ret_len) {
        const void *data;
        size_t len, n = strlen(name);

        if (sym_sd_journal_get_data(j, name, &data, &len) < 0 || len <= n || ((const char *) data)[n] != '=')
                return NULL;
        *ret_len = len - n - 1;
        return (const char *) data + n + 1;
}

static bool is_console_entry(sd_journal *j) {
        size_t n_id = 0, n_prio = 0;
        const char *id = field(j, "SYSLOG_IDENTIFIER", &n_id), *prio = field(j, "PRIORITY", &n_prio);

        return id && n_id == strlen(CONSOLE_IDENTIFIER) && memcmp(id, CONSOLE_IDENTIFIER, n_id) == 0 &&
               (!prio || (n_prio == 1 && prio[0] == '6'));
}

/* The console line as is; a tool's message as "IDENTIFIER: MESSAGE". */
static void print_entry(sd_journal *j, const char *prefix, FILE *f) {
        size_t n_msg = 0, n_id = 0;
        const char *msg = field(j, "MESSAGE", &n_msg), *id;

        if (!msg)
                return;
        fputs(prefix, f);
        if (!is_console_entry(j) && (id = field(j, "SYSLOG_IDENTIFIER", &n_id)))
                fprintf(f, "%.*s: ", (int) n_id, id);
        fwrite(msg, 1, n_msg, f);
        fputc('\n', f);
}

static int journal_run(const char *id, int n, uint64_t since, bool follow, const char *prefix, FILE *f, int input_fd,
                       ConsoleInputFunc input, UnitWatch *watch);

int journal_show(const char *id, int n, uint64_t since, bool follow, const char *prefix, FILE *f) {
        return journal_run(id, n, since, follow, prefix, f, -EBADF, NULL, NULL);
}

int journal_follow_with_input(const char *id, int n, int input_fd, ConsoleInputFunc input) {
        return journal_run(id, n, 0, true, "", stdout, input_fd, input, NULL);
}

/* watch: also end (0) once the VM's unit has stopped, after what the
 * journal holds by then. */
static int journal_run(const char *id, int n, uint64_t since, bool follow, const char *prefix, FILE *f, int input_fd,
                       ConsoleInputFunc input, UnitWatch *watch) {
        _cleanup_(sd_lib_journal_closep) sd_journal *j = NULL;
        _cleanup_close_ int sfd = -EBADF;
        sigset_t mask;
        int r;

        r = open_journal(&j);
        if (r < 0)
                return r;
        r = add_match(j, "MICROVM_ID", id);
        if (r < 0)
                return log_error_errno(r, "Cannot match the journal on MICROVM_ID=%s: %m", id);

        bool on_entry = false;
        if (since > 0)
                r = sym_sd_journal_seek_realtime_usec(j, since);
        else if (n > 0) {
                r = sym_sd_journal_seek_tail(j);
                if (r >= 0)
                        r = sym_sd_journal_previous_skip(j, (uint64_t) n);
                /* on the n-th last entry (or the first of fewer): print it first */
                on_entry = r > 0;
        } else if (n == 0) {
                /* on the last entry, if any: only what comes after it */
                r = sym_sd_journal_seek_tail(j);
                if (r >= 0)
                        r = sym_sd_journal_previous(j);
        } else
                r = sym_sd_journal_seek_head(j);
        if (r < 0)
                return log_error_errno(r, "Cannot seek in the journal: %m");
        if (on_entry)
                print_entry(j, prefix, f);

        if (follow) {
                /* Ctrl-C (and SIGTERM) end the follow loop cleanly, exit 0. */
                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                        return log_error_errno(errno, "Cannot block SIGINT: %m");
                sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
                if (sfd < 0)
                        return log_error_errno(errno, "Cannot create a signalfd: %m");
        }

        for (bool last = false;;) {
                for (;;) {
                        r = sym_sd_journal_next(j);
                        if (r < 0)
                                return log_error_errno(r, "Cannot read the journal: %m");
                        if (r == 0)
                                break;
                        print_entry(j, prefix, f);
                }
                if (fflush(f) != 0)
                        return log_error_errno(errno, "Cannot write: %m");
                if (!follow || last)
                        return 0;

                int fd = sym_sd_journal_get_fd(j);
                if (fd < 0)
                        return log_error_errno(fd, "Cannot follow the journal: %m");
                struct pollfd p[4] = {
                        { .fd = fd, .events = (short) sym_sd_journal_get_events(j) },
                        { .fd = sfd, .events = POLLIN },
                        { .fd = input ? STDIN_FILENO : -1, .events = POLLIN },
                        { .fd = -1 },
                };
                uint64_t timeout = UINT64_MAX;
                int ms = -1, bus_ms = -1;
                if (sym_sd_journal_get_timeout(j, &timeout) >= 0 && timeout != UINT64_MAX) {
                        uint64_t nowu = now_usec(CLOCK_MONOTONIC);
                        ms = timeout > nowu ? (int) MIN((timeout - nowu + 999) / 1000, (uint64_t) INT32_MAX) : 0;
                }
                if (watch) {
                        p[3].fd = unit_watch_poll_fd(watch, &p[3].events, &bus_ms);
                        if (p[3].fd < 0)
                                return log_error_errno(p[3].fd, "Cannot watch the unit of VM %s: %m", id);
                        if (bus_ms >= 0 && (ms < 0 || bus_ms < ms))
                                ms = bus_ms;
                }
                if (poll(p, 4, ms) < 0 && errno != EINTR)
                        return log_error_errno(errno, "Cannot wait for the journal: %m");
                if (p[1].revents & POLLIN)
                        return 0;
                if (watch) {
                        _cleanup_free_ char *error = NULL;
                        r = unit_watch_process(watch, &error);
                        if (r < 0)
                                return log_error_errno(r, "Cannot watch the unit of VM %s: %s", id,
                                                       error ?: strerror(-r));
                        /* Once more through the journal, then done. */
                        last = watch->stopped;
                }
                if (input && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
                        bool detach = false;
                        r = input(input_fd, &detach);
                        if (r == -EPIPE)
                                return log_error_errno(r, "VM %s stopped: nobody reads its console any more.", id);
                        if (r < 0)
                                return log_error_errno(r, "Cannot write to the console of VM %s: %m", id);
                        if (detach)
                                return 0;
                }
                r = sym_sd_journal_process(j);
                if (r < 0)
                        return log_error_errno(r, "Cannot follow the journal: %m");
        }
}

int journal_last_lines(const char *id, unsigned n, uint64_t since, char ***ret) {
        _cleanup_(sd_lib_journal_closep) sd_journal *j = NULL;
        _cleanup_free_ char *error = NULL;
        char **lines = NULL;
        size_t k = 0;
        int r;

        if (sd_lib_load(&error) < 0 || sym_sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0)
                return -EIO;
        if (add_match(j, "MICROVM_ID", id) < 0 || add_match(j, "SYSLOG_IDENTIFIER", CONSOLE_IDENTIFIER) < 0 ||
            add_match(j, "PRIORITY", "6") < 0)
                return -ENOMEM;
        lines = calloc(n + 1, sizeof *lines);
        if (!lines)
                return -ENOMEM;
        r = sym_sd_journal_seek_tail(j);
        /* newest first, then reversed */
        while (r >= 0 && k < n && sym_sd_journal_previous(j) > 0) {
                size_t len;
                uint64_t t;
                if (since && sym_sd_journal_get_realtime_usec(j, &t) >= 0 && t < since)
                        break;
                const char *msg = field(j, "MESSAGE", &len);
                if (!msg)
                        continue;
                lines[k] = strndup(msg, len);
                if (!lines[k]) {
                        strv_free(lines);
                        return -ENOMEM;
                }
                k++;
        }
        for (size_t a = 0, b = k ? k - 1 : 0; a < b; a++, b--) {
                char *tmp = lines[a];
                lines[a] = lines[b];
                lines[b] = tmp;
        }
        *ret = lines;
        return 0;
}

static int last_error_lookup(sd_journal *j, uint64_t since, char **ret);

/* Journald may not have stored the tool's last words yet when the job
 * ends: look again as new entries arrive, for up to this long. */
#define LAST_ERROR_WAIT_USEC (2 * USEC_PER_SEC)

int journal_last_error(const char *unit, uint64_t since, char **ret) {
        _cleanup_(sd_lib_journal_closep) sd_journal *j = NULL;
        _cleanup_free_ char *error = NULL;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + LAST_ERROR_WAIT_USEC;
        int r;

        if (sd_lib_load(&error) < 0 || sym_sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY) < 0)
                return -EIO;
        if (add_match(j, "_SYSTEMD_UNIT", unit) < 0)
                return -ENOMEM;
        for (const char *p = "0123"; *p; p++) {
                char v[2] = { *p, 0 };
                if (add_match(j, "PRIORITY", v) < 0)
                        return -ENOMEM;
        }
        for (;;) {
                r = last_error_lookup(j, since, ret);
                if (r != -ENOENT)
                        return r;
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ENOENT;
                r = sym_sd_journal_wait(j, deadline - now);
                if (r < 0)
                        return r;
        }
}

static int last_error_lookup(sd_journal *j, uint64_t since, char **ret) {
        int r = sym_sd_journal_seek_tail(j);
        while (r >= 0 && sym_sd_journal_previous(j) > 0) {
                uint64_t t;
                size_t n_msg, n_id;
                const char *msg, *id;

                if (since && sym_sd_journal_get_realtime_usec(j, &t) >= 0 && t < since)
                        break;
                id = field(j, "SYSLOG_IDENTIFIER", &n_id);
                msg = field(j, "MESSAGE", &n_msg);
                if (!id || !msg || n_id < 8 || memcmp(id, "microvm-", 8) != 0)
                        continue;
                if (asprintf(ret, "%.*s (%.*s)", (int) n_msg, msg, (int) n_id, id) < 0)
                        return -ENOMEM;
                return 0;
        }
        return -ENOENT;
}

int verb_logs(int argc, char **argv) {
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_(unit_watch_done) UnitWatch watch = {};
        _cleanup_free_ char *unit = NULL, *error = NULL;
        int r = ctl_check_id(argv[0]);
        if (r < 0)
                return r;
        if (arg_until_stop) {
                /* Watching before the journal is read: a stop in between
                 * is not missed. */
                r = ctl_bus_open(&bus);
                if (r < 0)
                        return r;
                if (asprintf(&unit, UNIT_PREFIX "%s.service", argv[0]) < 0)
                        return log_oom();
                r = unit_watch_begin(&watch, bus, unit, &error);
                if (r < 0)
                        return log_error_errno(r, "Cannot watch %s: %s", unit, error ?: strerror(-r));
        }
        /* -n N: the last N lines (0: none, only new ones with -f);
         * --since: every line since then; neither: the last 10. */
        return journal_run(argv[0], arg_lines_set ? (int) arg_lines : arg_since ? -1 : 10, arg_since,
                           arg_follow || arg_until_stop, "", stdout, -EBADF, NULL, arg_until_stop ? &watch : NULL);
}
