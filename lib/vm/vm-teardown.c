/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <stdarg.h>
#include <sys/file.h>

#include "cgroup.h"
#include "names.h"
#include "safe-fs.h"
#include "storage.h"
#include "suspend.h"
#include "tap.h"
#include "uid-alloc.h"
#include "util.h"
#include "test-hook.h"
#include "vm-metrics.h"
#include "vm-teardown.h"

#define CGROUP_DRAIN_TIMEOUT (10 * USEC_PER_SEC)

void teardown_report_done(TeardownReport *r) {
        strv_free(r->failed);
        strv_free(r->deferred);
        strv_free(r->foreign);
        *r = (TeardownReport) {};
}

int vm_plan_read_at(int run_fd, const char *id, Plan **ret, char **ret_error) {
        _cleanup_free_ char *text = NULL, *rel = NULL;
        size_t size;
        int r;

        if (asprintf(&rel, "%s/" RUN_PLAN_FILE, id) < 0)
                return -ENOMEM;
        r = safe_read_root_file_at(run_fd, rel, PLAN_SIZE_MAX, &text, &size);
        if (r < 0)
                return r;
        return plan_parse(text, size, ret, ret_error);
}

int vm_plan_read(const HostConfig *host, const char *id, Plan **ret, char **ret_error) {
        _cleanup_close_ int run_fd = -EBADF;
        int r;

        r = safe_root_open(host->run_dir, 0, 0, &run_fd, ret_error);
        if (r < 0)
                return r;
        return vm_plan_read_at(run_fd, id, ret, ret_error);
}

int vm_unit_cgroup(const char *id, char **ret, bool *ret_inside, const char **ret_child) {
        _cleanup_free_ char *self = NULL, *unit = NULL;
        const char *child = NULL;
        char *slash;
        int r;

        unit = unit_name_for(id);
        if (!unit)
                return -ENOMEM;
        r = cgroup_pid_path(0, &self);
        if (r < 0)
                return r;

        slash = strrchr(self, '/');
        if (slash && streq(slash + 1, CGROUP_CONTROL_LEAF)) {
                /* .../microvm@<id>.service/.control */
                *slash = '\0';
                slash = strrchr(self, '/');
                child = CGROUP_CONTROL_LEAF;
        }
        if (slash && streq(slash + 1, unit)) {
                *ret = TAKE_PTR(self);
                if (ret_inside)
                        *ret_inside = true;
                if (ret_child)
                        *ret_child = child;
                return 0;
        }
        if (asprintf(ret, "/" UNIT_SLICE "/%s", unit) < 0)
                return -ENOMEM;
        if (ret_inside)
                *ret_inside = false;
        if (ret_child)
                *ret_child = NULL;
        return 0;
}

static void teardown_processes(const TeardownTarget *t, TeardownReport *r, int *first) {
        _cleanup_free_ char *mount = NULL;
        _cleanup_close_ int unit_fd = -EBADF;
        CgroupTeardown ct = {};
        int k;

        k = cgroup2_find_mount(&mount);
        if (k < 0) {
                if (*first == 0)
                        *first = strv_push_errorf(&r->failed, k, "cgroups of %s: no cgroup2 mount (%m)", t->id);
                return;
        }
        k = cgroup_open(mount, t->unit_cgroup, &unit_fd);
        if (k == -ENOENT)
                return; /* nothing ever ran, or systemd already removed it */
        if (k < 0) {
                if (*first == 0)
                        *first = strv_push_errorf(&r->failed, k, "cgroup %s%s: %m", mount, t->unit_cgroup);
                return;
        }
        k = cgroup_teardown_children(unit_fd, t->keep_child, CGROUP_DRAIN_TIMEOUT, &ct);
        r->n_cgroups_killed += ct.killed;
        r->n_cgroups_removed += ct.removed;
        if (k < 0) {
                int e = strv_push_errorf(&r->failed, ct.error ?: k, "cgroup %s%s%s: could not be removed (%m)", mount, t->unit_cgroup,
                             strna(ct.failed));
                if (*first == 0)
                        *first = e;
        }
        cgroup_teardown_done(&ct);
}

static void teardown_taps(const TeardownTarget *t, TeardownReport *r, int *first) {
        if (!t->plan)
                return;
        for (char **tap = t->plan->tap; tap && *tap; tap++) {
                int k = tap_delete(*tap, t->plan->uid);
                if (k == -EPERM) {
                        /* Not ours (stage refuses to adopt such an
                         * interface, so it never was): nothing of the VM
                         * is left there, and it stays as it is. */
                        _cleanup_free_ char *m = NULL;
                        if (asprintf(&m, "tap %s: left alone, it is not a tap of uid %u (someone else's interface)",
                                     *tap, (unsigned) t->plan->uid) < 0 || strv_push(&r->foreign, m) < 0)
                                k = -ENOMEM;
                        else
                                k = 0;
                }
                if (k == -ENOMEM)
                        k = strv_push_errorf(&r->failed, k, "tap %s: %m", *tap);
                else if (k < 0)
                        k = strv_push_errorf(&r->failed, k, "tap %s: could not be removed (%m)", *tap);
                if (k < 0 && *first == 0)
                        *first = k;
        }
}

/* Removes <root>/<rel> with safe-fs, reporting refusals: one entry per
 * object left behind, each with its full path, so that every log line
 * names something the administrator can act on (a mount to unmount, ...). */
static int remove_tree(const char *root, const char *rel, const char *what, TeardownReport *r) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *error = NULL, *lines = NULL;
        SafeRmReport rep = {};
        int k;

        k = safe_root_open(root, 0, 0, &fd, &error);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return strv_push_errorf(&r->failed, k, "%s %s/%s: not removed, %s", what, root, rel, strna(error));
        k = safe_rm_rf_at(fd, rel, 0, NULL, &rep);
        if (k < 0) {
                lines = safe_rm_report_format(&rep, root);
                if (!lines)
                        (void) strv_push_errorf(&r->failed, k, "%s %s/%s: not completely removed (%m)", what, root, rel);
                for (char *line = lines, *next; line && *line; line = next) {
                        next = strchrnul(line, '\n');
                        if (*next)
                                *next++ = '\0';
                        (void) strv_push_errorf(&r->failed, k, "%s %s/%s: not completely removed: %s", what, root, rel, line);
                }
                k = -abs(k);
        }
        safe_rm_report_done(&rep);
        return k;
}

static void teardown_jail(const TeardownTarget *t, TeardownReport *r, int *first) {
        const char *base = t->plan ? t->plan->chroot_base : t->host->chroot_base;
        const char *exec = t->plan ? t->plan->exec_name : t->exec_name;
        int k;

        if (exec) {
                _cleanup_free_ char *exec_dir = NULL;
                if (asprintf(&exec_dir, "%s/%s", base, exec) < 0)
                        return;
                k = remove_tree(exec_dir, t->id, "jail", r);
                if (k > 0)
                        r->jail_removed = true;
                if (k < 0 && *first == 0)
                        *first = k;
                return;
        }

        /* No plan and no exec name: look for <base>/<any>/<id>. */
        _cleanup_close_ int base_fd = -EBADF;
        DIR *d;
        struct dirent *de;

        if (safe_root_open(base, 0, 0, &base_fd, NULL) < 0)
                return;
        d = fdopendir(TAKE_FD(base_fd));
        if (!d)
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *exec_dir = NULL;
                if (de->d_name[0] == '.' || de->d_type != DT_DIR)
                        continue;
                if (asprintf(&exec_dir, "%s/%s", base, de->d_name) < 0)
                        break;
                k = remove_tree(exec_dir, t->id, "jail", r);
                if (k > 0)
                        r->jail_removed = true;
                if (k < 0 && *first == 0)
                        *first = k;
        }
        closedir(d);
}

static void teardown_state(const TeardownTarget *t, TeardownReport *r, int *first) {
        _cleanup_free_ char *rel = NULL;
        int k;

        /* The VM's drive copies and copy-on-write files go; the uid record
         * stays (the uid remains reserved for the VM). */
        if (t->plan)
                k = remove_tree(t->plan->state_dir, STATE_DRIVES_DIR, "disk state", r);
        else if (asprintf(&rel, "%s/" STATE_DRIVES_DIR, t->id) >= 0)
                k = remove_tree(t->host->state_dir, rel, "disk state", r);
        else
                k = -ENOMEM;
        if (k < 0 && *first == 0)
                *first = k;
}

/* A start SIGKILLed while it wrote the uid record (always through a named
 * temporary: it replaces) or copied a drive with a named temporary (no
 * O_TMPFILE on the state dir's filesystem) leaves a ".#<name>.<random>"
 * file in <state_dir>/<id>/ or its drives/: never a half-made file under
 * the final name, but litter that no later run would remove. Both
 * directories are root-owned 0700 and written only by a stage of this VM,
 * which never runs at the same time as its teardown (systemd runs
 * ExecStopPost= after ExecStartPre=, stage resets before it writes, and
 * reclaim excludes stages with the reclaim lock). */
static void teardown_temporaries(const TeardownTarget *t, TeardownReport *r, int *first) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *dir = NULL, *error = NULL;
        int k;

        if (t->plan)
                dir = strdup(t->plan->state_dir);
        else if (asprintf(&dir, "%s/%s", t->host->state_dir, t->id) < 0)
                dir = NULL;
        if (!dir) {
                if (*first == 0)
                        *first = -ENOMEM;
                return;
        }
        k = safe_root_open(dir, 0, 0, &fd, &error);
        if (k == -ENOENT)
                return;
        if (k >= 0)
                k = safe_remove_temporaries_at(fd, NULL);
        if (k >= 0)
                k = safe_remove_temporaries_at(fd, STATE_DRIVES_DIR);
        if (k < 0) {
                k = error ? strv_push_errorf(&r->failed, k, "disk state %s: not checked for temporary files, %s", dir, error)
                          : strv_push_errorf(&r->failed, k, "disk state %s: temporary files not removed (%m)", dir);
                if (*first == 0)
                        *first = k;
        }
}

/* dm devices (the plan's and any with the VM's UUID), block claims,
 * non-persistent CoW files; with remove_state also thin volumes and
 * persistent CoW files. Loops detach themselves. */
static void teardown_storage(const TeardownTarget *t, TeardownReport *r, int *first) {
        _cleanup_free_ char *state_root = NULL;
        _cleanup_close_ int state_fd = -EBADF;
        StorageReport srep = {};
        StorageTeardownFlags flags = 0;
        int k;

        /* The plan's state dir is <state_dir>/<id>: its parent is the root
         * the storage records live under (even if the host config changed). */
        if (t->plan) {
                const char *slash = strrchr(t->plan->state_dir, '/');
                if (slash && slash != t->plan->state_dir)
                        state_root = strndup(t->plan->state_dir, (size_t) (slash - t->plan->state_dir));
        }
        if (!state_root)
                state_root = strdup(t->host->state_dir);
        if (!state_root)
                return;
        k = safe_root_open(state_root, 0, 0, &state_fd, NULL);
        if (k < 0)
                state_fd = -EBADF; /* dm devices and claims still go */

        if (t->storage_deferred)
                flags |= STORAGE_TEARDOWN_DEFERRED;
        if (t->remove_state)
                flags |= STORAGE_TEARDOWN_REMOVE_STATE;
        k = storage_teardown_vm(t->host, state_fd, t->id, t->plan ? t->plan->dm : NULL, flags, &srep);
        for (char **m = srep.failed; m && *m; m++)
                (void) strv_push(&r->failed, *m);
        for (char **m = srep.deferred; m && *m; m++)
                (void) strv_push(&r->deferred, *m);
        if (k < 0 && *first == 0)
                *first = k;
        storage_report_done(&srep);
}

/* An ephemeral VM's disks stay while a suspend snapshot refers to them
 * (suspend.h): they go with the stop after it was resumed, or at the start
 * after it was found invalid or discarded. */
static bool state_held_by_snapshot(const TeardownTarget *t) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (t->plan)
                path = strdup(t->plan->state_dir);
        else if (asprintf(&path, "%s/%s", t->host->state_dir, t->id) < 0)
                path = NULL;
        return path && safe_root_open(path, 0, 0, &fd, NULL) >= 0 && suspend_exists(fd);
}

int vm_teardown(const TeardownTarget *t_in, TeardownReport *report) {
        TeardownTarget copy = *t_in;
        const TeardownTarget *t = &copy;
        int first = 0, k;

        *report = (TeardownReport) {};
        if (!vm_id_valid(t->id))
                return -EINVAL;
        if (copy.remove_state && state_held_by_snapshot(t)) {
                copy.remove_state = false;
                report->state_kept_for_snapshot = true;
        }

        /* Processes first: nothing may hold the jail's files, the taps or
         * the block devices while we remove them. */
        if (t->unit_cgroup)
                teardown_processes(t, report, &first);
        test_hook("teardown-processes");
        teardown_taps(t, report, &first);
        test_hook("teardown-taps");
        teardown_storage(t, report, &first);
        test_hook("teardown-storage");
        teardown_jail(t, report, &first);
        test_hook("teardown-jail");
        if (t->remove_state)
                teardown_state(t, report, &first);
        teardown_temporaries(t, report, &first);
        test_hook("teardown-state");
        /* The run dir holds the launch plan, the only record of some of
         * what a start created (taps, dm devices, the exec name and chroot
         * base it used): it goes last, and only when everything else did.
         * Removed after a failed step, it would strand what is left for
         * the next cleanup or reclaim, which work from the plan. */
        if (!t->keep_run_dir) {
                if (first < 0)
                        (void) strv_push_errorf(&report->failed, first, "run directory %s/%s: kept, its launch plan names what is left",
                                    t->host->run_dir, t->id);
                else {
                        /* A scrape writes the VM's running metrics sums in
                         * the run dir under this lock (vm-metrics.h): with
                         * it held, none adds a file while the tree goes,
                         * and a later one finds the directory gone. */
                        _cleanup_close_ _unused_ int lock_fd = vm_metrics_lock_run_dir(t->host->run_dir, t->id);
                        k = remove_tree(t->host->run_dir, t->id, "run directory", report);
                        if (k > 0)
                                report->run_dir_removed = true;
                        if (k < 0)
                                first = k;
                }
        }
        return first;
}

int vm_reclaim_lock(int run_fd, bool exclusive, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        for (unsigned attempt = 0;; attempt++) {
                r = safe_open_at(run_fd, ".lock", O_RDWR, S_IFREG, &fd);
                if (r != -ENOENT)
                        break;
                r = safe_create_file_at(run_fd, ".lock", 0600, 0, 0, &fd);
                if (r != -EEXIST || attempt > 3)
                        break;
        }
        if (r < 0)
                return r;
        r = safe_fd_verify(fd, S_IFREG, 0);
        if (r < 0)
                return r;
        while (flock(fd, exclusive ? LOCK_EX : LOCK_SH) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}
