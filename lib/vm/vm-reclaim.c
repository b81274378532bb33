/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <sys/stat.h>

#include "cgroup.h"
#include "dm.h"
#include "names.h"
#include "safe-fs.h"
#include "storage.h"
#include "test-hook.h"
#include "util.h"
#include "vm-reclaim.h"

ReclaimCandidate *reclaim_candidate(ReclaimScan *s, const char *id) {
        ReclaimCandidate *n;

        if (!vm_id_valid(id))
                return NULL; /* not a name we could have made */
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->items[i].id, id))
                        return &s->items[i];
        n = realloc(s->items, (s->n + 1) * sizeof *n);
        if (!n)
                return NULL;
        s->items = n;
        n = &s->items[s->n++];
        *n = (ReclaimCandidate) {};
        strcpy(n->id, id);
        return n;
}

void reclaim_scan_done(ReclaimScan *s) {
        free(s->items);
        strv_free(s->warnings);
        strv_free(s->errors);
        *s = (ReclaimScan) {};
}

/* Calls f for every subdirectory name of dir (no symlinks, no dot files).
 * A missing dir is nothing to reclaim. One we cannot trust (a symlink, or
 * writable by others, on the way) is an error naming the component: we
 * never look below it, and a boot-time sweep that silently found nothing
 * would hide what is left there. A symlink among the entries is not ours
 * (only root can put one there): left alone, and said so. */
static int for_each_subdir(ReclaimScan *s, const char *dir, int (*f)(ReclaimScan *s, const char *name, void *userdata),
                           void *userdata) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        struct dirent *de;
        int r, ret = 0;
        DIR *d;

        r = safe_root_open(dir, 0, 0, &fd, &error);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return strv_push_errorf(&s->errors, r, "Not looking for leftovers in %s: %s", dir,
                                        error ?: strerror(-r));
        d = fdopendir(fd);
        if (!d)
                return strv_push_errorf(&s->errors, errno, "Failed to read %s: %s", dir, strerror(errno));
        TAKE_FD(fd);
        while ((errno = 0, de = readdir(d))) {
                unsigned char type = de->d_type;
                struct stat st;

                if (de->d_name[0] == '.')
                        continue;
                /* Some filesystems leave d_type unset. */
                if (type == DT_UNKNOWN && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISLNK(st.st_mode) ? DT_LNK : DT_REG;
                if (type == DT_LNK)
                        (void) strv_push_errorf(&s->warnings, 0, "%s/%s is a symlink: not ours, left alone.", dir,
                                                de->d_name);
                if (type != DT_DIR)
                        continue;
                r = f(s, de->d_name, userdata);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (errno != 0 && ret == 0)
                ret = strv_push_errorf(&s->errors, errno, "Failed to read %s: %s", dir, strerror(errno));
        closedir(d);
        return ret;
}

static int add_run_dir(ReclaimScan *s, const char *name, void *userdata) {
        ReclaimCandidate *c = reclaim_candidate(s, name);
        if (c)
                c->run_dir = true;
        return 0;
}

static int add_jail(ReclaimScan *s, const char *name, void *userdata) {
        ReclaimCandidate *c = reclaim_candidate(s, name);
        if (c)
                c->jail = true;
        return 0;
}

static int scan_exec_dir(ReclaimScan *s, const char *exec, void *userdata) {
        const char *base = userdata;
        _cleanup_free_ char *dir = NULL;

        if (asprintf(&dir, "%s/%s", base, exec) < 0)
                return -ENOMEM;
        return for_each_subdir(s, dir, add_jail, NULL);
}

static void add_cgroup(ReclaimScan *s, const char *name) {
        const char *rest = startswith(name, UNIT_PREFIX);
        char id[VM_ID_MAX + 1];
        const char *suffix;
        ReclaimCandidate *c;

        if (!rest)
                return;
        suffix = endswith(rest, ".service");
        if (!suffix || (size_t) (suffix - rest) > VM_ID_MAX)
                return;
        memcpy(id, rest, (size_t) (suffix - rest));
        id[suffix - rest] = '\0';
        c = reclaim_candidate(s, id);
        if (c)
                c->cgroup = true;
}

static void scan_cgroups(ReclaimScan *s) {
        _cleanup_free_ char *mount = NULL, *slice = NULL;
        struct dirent *de;
        DIR *d;

        if (cgroup2_find_mount(&mount) < 0 || asprintf(&slice, "%s/" UNIT_SLICE, mount) < 0)
                return;
        d = opendir(slice);
        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_type == DT_DIR)
                        add_cgroup(s, de->d_name);
        closedir(d);
}

/* VMs that own dm devices (UUID MICROVM-<id>-<drive>) or block claims. */
static void scan_storage(const HostConfig *host, ReclaimScan *s) {
        _cleanup_strv_free_ char **ids = NULL, **names = NULL;

        if (storage_list_vm_ids(host, &ids, &names) < 0)
                return;
        for (char **id = ids; id && *id; id++) {
                ReclaimCandidate *c = reclaim_candidate(s, *id);
                if (c)
                        c->storage = true;
        }
}

int reclaim_scan(const HostConfig *host, ReclaimScan *s) {
        int r, ret;

        /* A directory we could not look into fails the run (after
         * reclaiming what we found elsewhere). */
        ret = for_each_subdir(s, host->chroot_base, scan_exec_dir, host->chroot_base);
        r = for_each_subdir(s, host->run_dir, add_run_dir, NULL);
        if (r < 0 && ret == 0)
                ret = r;
        scan_cgroups(s);
        scan_storage(host, s);
        return ret;
}

void reclaim_result_done(ReclaimResult *r) {
        free(r->plan_error);
        free(r->what);
        teardown_report_done(&r->report);
        *r = (ReclaimResult) {};
}

int reclaim_vm(sd_bus *bus, const HostConfig *host, int run_fd, const ReclaimCandidate *c, bool dry_run,
               ReclaimResult *res, char **ret_error) {
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL;
        UnitRunning running;
        int r;

        *res = (ReclaimResult) {};
        if (run_fd >= 0 && !dry_run) {
                r = vm_reclaim_lock(run_fd, true, &lock_fd);
                if (r < 0)
                        return error_setf(ret_error, r, "%s: failed to take the reclaim lock: %s", c->id, strerror(-r));
        }
        if (asprintf(&cg, "/" UNIT_SLICE "/" UNIT_PREFIX "%s.service", c->id) < 0)
                return -ENOMEM;
        r = vm_unit_running(bus, c->id, cg, &running, &res->how);
        if (r < 0)
                return error_setf(ret_error, r, "%s: cannot tell whether microvm@%s.service runs; leaving it alone: %s",
                                  c->id, c->id, strerror(-r));
        if (running == UNIT_RUNNING) {
                res->running = true;
                return 0;
        }

        /* A start may begin right now, after that answer: systemd creates
         * the unit cgroup and spawns microvm-stage into it, which then
         * waits for the lock we hold. What makes that safe is what the
         * teardown below never touches: the unit cgroup itself, its
         * ".control" child and the processes in them (a start's first
         * process goes there), nor does it remove those cgroups (systemd
         * attaches the process after creating the cgroup). Everything it
         * does remove a start only creates after microvm-stage got this
         * lock: the sub-cgroups microvm-launch and the jailer make, the
         * jail, the taps, the run dir. So no start is killed or broken,
         * whenever it begins. A start seen to have begun is left alone
         * altogether: its stage rebuilds from scratch anyway. */
        test_hook("reclaim-decided");
        r = vm_unit_start_begun(cg);
        if (r < 0)
                return error_setf(ret_error, r, "%s: cannot read the cgroup of microvm@%s.service; leaving it alone: %s",
                                  c->id, c->id, strerror(-r));
        if (r > 0) {
                res->starting = true;
                return 0;
        }
        test_hook("reclaim-vm-unit-start-begun");

        r = vm_plan_read(host, c->id, &plan, &error);
        if (r < 0 && r != -ENOENT)
                res->plan_error = error ? TAKE_PTR(error) : strdup(strerror(-r));
        test_hook("reclaim-vm-plan-read");

        if (dry_run) {
                const char *what[5];
                size_t n = 0, len = 0;

                if (c->jail)
                        what[n++] = "jail";
                if (c->run_dir)
                        what[n++] = "run directory";
                if (c->cgroup)
                        what[n++] = "cgroup";
                if (plan && plan->tap)
                        what[n++] = "taps";
                if (c->storage)
                        what[n++] = "device-mapper devices";
                for (size_t i = 0; i < n; i++)
                        len += strlen(what[i]) + 5;
                res->what = calloc(len + 1, 1);
                if (!res->what)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        strcat(res->what, i == 0 ? "" : i + 1 == n ? " and " : ", ");
                        strcat(res->what, what[i]);
                }
                return 0;
        }

        TeardownTarget t = {
                .id = c->id,
                .host = host,
                .plan = plan,
                .unit_cgroup = c->cgroup ? cg : NULL,
                .keep_child = CGROUP_CONTROL_LEAF, /* systemd's, like the unit cgroup itself */
                .remove_state = plan && plan->ephemeral,
        };
        return vm_teardown(&t, &res->report);
}

int reclaim_host_leftovers(int *ret_loops, int *ret_cookies, char ***ret_failed) {
        StorageReport srep = {};
        int r;

        /* Loops of ours nothing is built on any more (their dm devices went
         * with the VMs' teardown, or a crash left them). */
        r = storage_reclaim_loops(&srep);
        *ret_failed = TAKE_PTR(srep.failed);
        storage_report_done(&srep);
        *ret_loops = MAX(r, 0);
        /* udev cookies (semaphores) of dm operations whose process was
         * killed before it could remove them. */
        *ret_cookies = MAX(dm_udev_cookies_reclaim(60 * USEC_PER_SEC), 0);
        return MIN(r, 0);
}
