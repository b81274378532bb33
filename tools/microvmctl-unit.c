/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl start|stop|restart: the manager's StartUnit, StopUnit and
 * RestartUnit, one VM after another, each waited for (JobRemoved). A job
 * that does not end "done" is explained: the unit's Result and the last
 * error one of our tools logged for the unit in the journal, e.g.
 *   VM web1: drive root: /var/lib/images/web.ext4: No such file or directory (microvm-stage) */

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "log.h"
#include "manager.h"
#include "microvmctl.h"
#include "names.h"

/* When the VMM itself failed (firecracker refusing its config or its
 * arguments prints to stderr, which the unit's journal has as its own
 * lines), no tool of ours can say why better than it did: how its main
 * process ended, and this start's last lines. Nothing when it never ran
 * (a failed microvm-stage). */
static void explain_main_exit(sd_bus *bus, const char *id, const char *path, uint64_t since) {
        _cleanup_strv_free_ char **lines = NULL;
        uint64_t code = 0, status = 0;

        if (path && manager_get_u64(bus, path, "org.freedesktop.systemd1.Service", "ExecMainCode", 'i', &code) >= 0 &&
            manager_get_u64(bus, path, "org.freedesktop.systemd1.Service", "ExecMainStatus", 'i', &status) >= 0 &&
            code != 0) {
                if (code == CLD_EXITED)
                        log_error("VM %s: the VMM (the unit's main process) exited with status %d.", id, (int) status);
                else
                        log_error("VM %s: the VMM (the unit's main process) was killed by signal %d (%s).", id,
                                  (int) status, strna(sigabbrev_np((int) status)));
        }
        if (code == 0 || journal_last_lines(id, 3, since, &lines) < 0 || !lines || !*lines)
                return;
        log_error("VM %s: its last lines in the journal:", id);
        for (char **l = lines; *l; l++)
                log_error("  %s", *l);
}

static int explain_failure(sd_bus *bus, const char *id, const char *unit, const char *verb, const char *job_result,
                           uint64_t since) {
        _cleanup_free_ char *path = NULL, *result = NULL, *why = NULL;

        if (manager_unit_path(bus, unit, false, &path, NULL) >= 0)
                (void) manager_get_string(bus, path, "org.freedesktop.systemd1.Service", "Result", &result);
        if (!arg_host && journal_last_error(unit, since, &why) >= 0)
                log_error("VM %s: %s", id, why);
        /* Not when stage or launch failed: the VMM never ran then (the
         * main process that ended was microvm-launch refusing). */
        if (!arg_host && !(why && (endswith(why, "(microvm-stage)") || endswith(why, "(microvm-launch)"))))
                explain_main_exit(bus, id, path, since);
        return log_error_errno(EIO, "VM %s: %s failed: job %s, unit result %s (see microvmctl status %s, microvmctl logs %s).",
                               id, verb, job_result, result ?: "unknown", id, id);
}

static int unit_verb(int argc, char **argv, const char *method, const char *verb) {
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        r = ctl_check_ids(argc, argv);
        if (r < 0)
                return r;
        r = ctl_bus_open(&bus);
        if (r < 0)
                return r;

        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *unit = NULL, *result = NULL, *error = NULL;
                uint64_t since = now_usec(CLOCK_REALTIME);

                if (asprintf(&unit, UNIT_PREFIX "%s.service", argv[i]) < 0)
                        return log_oom();
                r = manager_unit_job(bus, method, unit, &result, &error);
                if (r < 0) {
                        log_error_errno(r, "VM %s: %s failed: %s", argv[i], verb, error ?: strerror(-r));
                        if (ret == 0)
                                ret = r;
                        continue;
                }
                if (!streq(result, "done")) {
                        r = explain_failure(bus, argv[i], unit, verb, result, since);
                        if (ret == 0)
                                ret = r;
                }
        }
        return ret;
}

int verb_start(int argc, char **argv) {
        return unit_verb(argc, argv, "StartUnit", "start");
}

int verb_stop(int argc, char **argv) {
        return unit_verb(argc, argv, "StopUnit", "stop");
}

int verb_restart(int argc, char **argv) {
        return unit_verb(argc, argv, "RestartUnit", "restart");
}
