/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl suspend|resume|discard-snapshot (issue 16).
 *
 * suspend ID: leaves <run_dir>/<id>/suspend-request (root-only, removed
 * with the run dir) and stops the unit: microvm-stop then suspends the VM
 * as at a host shutdown, whatever its on_host_shutdown says, and the next
 * start resumes it. resume ID: starts a VM that has a snapshot, and says
 * whether it was resumed or (its snapshot invalid) booted. discard-snapshot
 * ID: removes a stopped VM's snapshot, and those kept aside, so that the
 * next start boots. */

#include <dirent.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "manager.h"
#include "microvmctl.h"
#include "names.h"
#include "parse-util.h"
#include "safe-fs.h"
#include "suspend.h"

static int open_vm_state(const HostConfig *host, const char *id, int *ret_fd) {
        _cleanup_close_ int state_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = safe_root_open(host->state_dir, 0, 0, &state_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the state dir: %s", strna(error));
        r = safe_open_dir_at(state_fd, id, ret_fd);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Cannot open %s/%s: %m", host->state_dir, id);
        return r;
}

/* 1 with a snapshot, 0 without. */
static int has_snapshot(const HostConfig *host, const char *id, SuspendRecord *ret) {
        _cleanup_close_ int fd = -EBADF;
        int r = open_vm_state(host, id, &fd);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = suspend_read_record(fd, ret, NULL);
        return r >= 0 ? 1 : 0;
}

static int unit_state(sd_bus *bus, const char *unit, char **ret_active) {
        _cleanup_free_ char *path = NULL;
        int r = manager_unit_path(bus, unit, true, &path, NULL);
        if (r < 0)
                return log_error_errno(r, "Cannot load %s: %m", unit);
        r = manager_get_string(bus, path, "org.freedesktop.systemd1.Unit", "ActiveState", ret_active);
        if (r < 0)
                return log_error_errno(r, "Cannot read the state of %s: %m", unit);
        return 0;
}

static int job(sd_bus *bus, const char *method, const char *id, const char *unit) {
        _cleanup_free_ char *result = NULL, *error = NULL;
        int r = manager_unit_job(bus, method, unit, &result, &error);
        if (r < 0)
                return log_error_errno(r, "VM %s: %s failed: %s", id, method, error ?: strerror(-r));
        if (!streq(result, "done"))
                return log_error_errno(EIO, "VM %s: the %s job ended \"%s\" (see microvmctl status %s, microvmctl "
                                       "logs %s).", id, method, result, id, id);
        return 0;
}

static int prepare(int argc, char **argv, HostConfig **ret_host, sd_bus **ret_bus) {
        int r;

        r = ctl_check_ids(argc, argv);
        if (r < 0)
                return r;
        if (geteuid() != 0)
                return log_error_errno(EPERM, "Suspend and resume work on the VMs' root-only state: run as root.");
        r = ctl_load_host(ret_host);
        if (r < 0)
                return r;
        return ctl_bus_open(ret_bus);
}

static bool suspend_dir_kept_aside(const HostConfig *host, const char *id);

int verb_suspend(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        r = prepare(argc, argv, &host, &bus);
        if (r < 0)
                return r;
        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *unit = NULL, *active = NULL, *rel = NULL;
                _cleanup_close_ int run_fd = -EBADF;
                SuspendRecord rec;
                char size[32];
                const char *id = argv[i];

                if (asprintf(&unit, UNIT_PREFIX "%s.service", id) < 0 || asprintf(&rel, "%s/" RUN_SUSPEND_REQUEST, id) < 0)
                        return log_oom();
                r = unit_state(bus, unit, &active);
                if (r >= 0 && !streq(active, "active"))
                        r = log_error_errno(ENOTRECOVERABLE, "VM %s is %s, not running: nothing to suspend.", id, active);
                if (r >= 0 && (r = safe_root_open(host->run_dir, 0, 0, &run_fd, NULL)) < 0)
                        log_error_errno(r, "Cannot open %s: %m", host->run_dir);
                /* Read by microvm-stop; goes with the run dir at cleanup. */
                if (r >= 0 && (r = safe_write_file_at(run_fd, rel, "", 0, 0600, 0, 0, SAFE_WRITE_REPLACE)) < 0)
                        log_error_errno(r, "Cannot ask for a suspend in %s/%s: %m", host->run_dir, rel);
                if (r >= 0)
                        r = job(bus, "StopUnit", id, unit);
                if (r >= 0 && has_snapshot(host, id, &rec) <= 0)
                        r = log_error_errno(EIO, "VM %s was stopped but not suspended: see \"microvmctl logs %s\" for "
                                            "why.", id, id);
                if (r >= 0)
                        printf("VM %s suspended: %s in %s/%s/" SUSPEND_DIR "/; \"microvmctl resume %s\" or its next "
                               "start resumes it.\n", id, format_bytes_short(rec.memory_bytes + rec.vmstate_bytes, size), host->state_dir, id, id);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

int verb_resume(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        r = prepare(argc, argv, &host, &bus);
        if (r < 0)
                return r;
        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *unit = NULL;
                SuspendRecord rec;
                const char *id = argv[i];

                if (asprintf(&unit, UNIT_PREFIX "%s.service", id) < 0)
                        return log_oom();
                r = has_snapshot(host, id, &rec);
                if (r == 0)
                        r = log_error_errno(ENOENT, "VM %s has no snapshot to resume (\"microvmctl start %s\" boots it).",
                                            id, id);
                if (r >= 0)
                        r = job(bus, "StartUnit", id, unit);
                if (r >= 0) {
                        if (has_snapshot(host, id, &rec) == 0 && !suspend_dir_kept_aside(host, id))
                                printf("VM %s resumed.\n", id);
                        else
                                r = log_error_errno(ESTALE, "VM %s was booted, not resumed: its snapshot was not valid "
                                                    "any more and is kept aside (see \"microvmctl logs %s\").", id, id);
                }
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

/* Whether a snapshot was moved aside during the last start (a
 * suspend.invalid-* newer than a minute). */
static bool suspend_dir_kept_aside(const HostConfig *host, const char *id) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (open_vm_state(host, id, &fd) < 0 || !(d = fdopendir(fd)))
                return false;
        TAKE_FD(fd);
        while ((de = readdir(d))) {
                const char *t = startswith(de->d_name, SUSPEND_INVALID_PREFIX);
                if (t && strtoull(t, NULL, 10) + 60 * USEC_PER_SEC > now)
                        return true;
        }
        return false;
}

int verb_discard_snapshot(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        r = prepare(argc, argv, &host, &bus);
        if (r < 0)
                return r;
        for (int i = 0; i < argc; i++) {
                _cleanup_free_ char *unit = NULL, *active = NULL;
                _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
                _cleanup_(closedirp) DIR *d = NULL;
                _cleanup_strv_free_ char **names = NULL;
                struct dirent *de;
                const char *id = argv[i];

                if (asprintf(&unit, UNIT_PREFIX "%s.service", id) < 0)
                        return log_oom();
                r = unit_state(bus, unit, &active);
                /* A start in progress may be resuming it right now. */
                if (r >= 0 && !streq(active, "inactive") && !streq(active, "failed"))
                        r = log_error_errno(EBUSY, "VM %s is %s: stop it first.", id, active);
                if (r >= 0)
                        r = open_vm_state(host, id, &fd);
                if (r == -ENOENT)
                        r = 0;
                if (r >= 0 && fd >= 0) {
                        dfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                        d = dfd >= 0 ? fdopendir(dfd) : NULL;
                        if (d)
                                TAKE_FD(dfd);
                        while (d && (de = readdir(d)))
                                if ((streq(de->d_name, SUSPEND_DIR) || streq(de->d_name, SUSPEND_NEW_DIR) ||
                                     streq(de->d_name, SUSPEND_RESUMING_DIR) ||
                                     startswith(de->d_name, SUSPEND_INVALID_PREFIX)) &&
                                    strv_push(&names, de->d_name) < 0)
                                        return log_oom();
                }
                for (char **n = names; r >= 0 && n && *n; n++) {
                        r = suspend_remove(fd, *n);
                        if (r < 0)
                                log_error_errno(r, "Cannot remove %s/%s/%s: %m", host->state_dir, id, *n);
                        else
                                printf("VM %s: removed %s/%s/%s\n", id, host->state_dir, id, *n);
                }
                if (r >= 0 && !names)
                        printf("VM %s has no snapshot.\n", id);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}
