/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-reclaim [--dry-run] [ID...] — run by microvm-reclaim.service at
 * boot (before microvms.target) and on demand.
 *
 * Finds what VMs left behind whose unit is not running — jails under the
 * chroot base, run dirs, cgroups below microvm.slice — and tears each VM
 * down with the same code as microvm-cleanup. Whether a unit runs is asked
 * of systemd over the bus, or, without a bus, read from its cgroup's
 * population. Never touches a running VM (the check and the teardown
 * happen under a lock that microvm-stage holds while it stages), and never
 * anything that is not ours (only names that are valid VM ids, in our
 * directories, in microvm.slice). */

#include <dirent.h>
#include <getopt.h>

#include "cgroup.h"
#include "config-files.h"
#include "log.h"
#include "names.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "dm.h"
#include "storage.h"
#include "test-hook.h"
#include "tool.h"
#include "vm-unit.h"
#include "vm-teardown.h"

static bool arg_dry_run = false;

typedef struct Candidate {
        char id[VM_ID_MAX + 1];
        bool jail, run_dir, cgroup, storage;
} Candidate;

typedef struct Candidates {
        Candidate *items;
        size_t n;
} Candidates;

static const Candidate *find_candidate(const Candidates *c, const char *id) {
        for (size_t i = 0; i < c->n; i++)
                if (streq(c->items[i].id, id))
                        return &c->items[i];
        return NULL;
}

static Candidate *candidate(Candidates *c, const char *id) {
        Candidate *n;

        if (!vm_id_valid(id))
                return NULL; /* not a name we could have made */
        for (size_t i = 0; i < c->n; i++)
                if (streq(c->items[i].id, id))
                        return &c->items[i];
        n = realloc(c->items, (c->n + 1) * sizeof *n);
        if (!n)
                return NULL;
        c->items = n;
        n = &c->items[c->n++];
        *n = (Candidate) {};
        strcpy(n->id, id);
        return n;
}

/* Calls f for every subdirectory name of dir (no symlinks, no dot files).
 * A missing dir is nothing to reclaim. One we cannot trust (a symlink, or
 * writable by others, on the way) is an error naming the component: we
 * never look below it, and a boot-time sweep that silently found nothing
 * would hide what is left there. A symlink among the entries is not ours
 * (only root can put one there): left alone, and said so. */
static int for_each_subdir(const char *dir, int (*f)(const char *name, void *userdata), void *userdata) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        struct dirent *de;
        int r, ret = 0;
        DIR *d;

        r = safe_root_open(dir, 0, 0, &fd, &error);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Not looking for leftovers in %s: %s", dir, error ?: strerror(-r));
        d = fdopendir(fd);
        if (!d)
                return log_error_errno(errno, "Failed to read %s: %m", dir);
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
                        log_warning("%s/%s is a symlink: not ours, left alone.", dir, de->d_name);
                if (type != DT_DIR)
                        continue;
                r = f(de->d_name, userdata);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (errno != 0 && ret == 0)
                ret = log_error_errno(errno, "Failed to read %s: %m", dir);
        closedir(d);
        return ret;
}

static int add_run_dir(const char *name, void *userdata) {
        Candidate *c = candidate(userdata, name);
        if (c)
                c->run_dir = true;
        return 0;
}

typedef struct ExecScan {
        Candidates *c;
        const char *base;
} ExecScan;

static int add_jail(const char *name, void *userdata) {
        Candidate *c = candidate(userdata, name);
        if (c)
                c->jail = true;
        return 0;
}

static int scan_exec_dir(const char *exec, void *userdata) {
        ExecScan *s = userdata;
        _cleanup_free_ char *dir = NULL;

        if (asprintf(&dir, "%s/%s", s->base, exec) < 0)
                return log_oom();
        return for_each_subdir(dir, add_jail, s->c);
}

static void add_cgroup(const char *name, void *userdata) {
        const char *rest = startswith(name, UNIT_PREFIX);
        char id[VM_ID_MAX + 1];
        const char *suffix;
        Candidate *c;

        if (!rest)
                return;
        suffix = endswith(rest, ".service");
        if (!suffix || (size_t) (suffix - rest) > VM_ID_MAX)
                return;
        memcpy(id, rest, (size_t) (suffix - rest));
        id[suffix - rest] = '\0';
        c = candidate(userdata, id);
        if (c)
                c->cgroup = true;
}

static void scan_cgroups(Candidates *c) {
        _cleanup_free_ char *mount = NULL, *slice = NULL;
        struct dirent *de;
        DIR *d;

        if (cgroup2_find_mount(&mount) < 0 || asprintf(&slice, "%s/microvm.slice", mount) < 0)
                return;
        d = opendir(slice);
        if (!d)
                return;
        while ((de = readdir(d)))
                if (de->d_type == DT_DIR)
                        add_cgroup(de->d_name, c);
        closedir(d);
}

/* VMs that own dm devices (UUID MICROVM-<id>-<drive>) or block claims. */
static void scan_storage(const HostConfig *host, Candidates *c) {
        _cleanup_strv_free_ char **ids = NULL, **names = NULL;

        if (storage_list_vm_ids(host, &ids, &names) < 0)
                return;
        for (char **id = ids; id && *id; id++) {
                Candidate *cand = candidate(c, *id);
                if (cand)
                        cand->storage = true;
        }
}

/* The run dir, for the lock: created when missing, since a stage that
 * starts now would create it and take the lock there; without our lock
 * held first, it could build (and launch) while we tear down. Only when
 * there is something to reclaim: a run that finds nothing creates
 * nothing. */
static int open_run_dir(const HostConfig *host, int *run_fd) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (*run_fd >= 0)
                return 0;
        r = safe_root_open(host->run_dir, SAFE_ROOT_CREATE, 0700, run_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the run directory for the reclaim lock: %s",
                                       error ?: strerror(-r));
        return 0;
}

static int reclaim_one(sd_bus *bus, const HostConfig *host, int *run_fd, const Candidate *c) {
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL;
        TeardownReport rep = {};
        UnitRunning running;
        const char *how;
        int r;

        if (!c->jail && !c->run_dir && !c->cgroup && !c->storage) {
                log_debug("%s: nothing of it found.", c->id);
                return 0;
        }
        if (!arg_dry_run) {
                r = open_run_dir(host, run_fd);
                if (r < 0)
                        return r;
                r = vm_reclaim_lock(*run_fd, true, &lock_fd);
                if (r < 0)
                        return log_error_errno(r, "%s: failed to take the reclaim lock: %m", c->id);
        }
        if (asprintf(&cg, "/microvm.slice/" UNIT_PREFIX "%s.service", c->id) < 0)
                return log_oom();
        r = vm_unit_running(bus, c->id, cg, &running, &how);
        if (r < 0)
                return log_error_errno(r, "%s: cannot tell whether microvm@%s.service runs; leaving it alone: %m",
                                       c->id, c->id);
        if (running == UNIT_RUNNING) {
                log_debug("%s: microvm@%s.service is running (asked %s); leaving it alone.", c->id, c->id, how);
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
                return log_error_errno(r, "%s: cannot read the cgroup of microvm@%s.service; leaving it alone: %m",
                                       c->id, c->id);
        if (r > 0) {
                log_info("%s: microvm@%s.service is starting (a process in its cgroup %s); leaving it alone.",
                         c->id, c->id, cg);
                return 0;
        }
        test_hook("reclaim-vm-unit-start-begun");

        r = vm_plan_read(host, c->id, &plan, &error);
        if (r < 0 && r != -ENOENT)
                log_warning("%s: ignoring its launch plan: %s", c->id, error ?: strerror(-r));
        test_hook("reclaim-vm-plan-read");

        if (arg_dry_run) {
                const char *what[5];
                size_t n = 0;

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
                printf("%s: would remove its ", c->id);
                for (size_t i = 0; i < n; i++)
                        printf("%s%s", i == 0 ? "" : i + 1 == n ? " and " : ", ", what[i]);
                printf(" (unit not running, per %s)\n", how);
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
        r = vm_teardown(&t, &rep);
        test_hook("reclaim-vm-teardown");
        for (char **m = rep.failed; m && *m; m++)
                log_error("%s: not removed: %s", c->id, *m);
        if (r >= 0)
                log_info("Reclaimed what VM %s left behind%s%s%s%s.", c->id, rep.jail_removed ? ": jail" : "",
                         rep.run_dir_removed ? ", run directory" : "",
                         rep.n_cgroups_removed ? ", cgroups" : "", c->storage ? ", storage" : "");
        teardown_report_done(&rep);
        return r;
}

static void help(void) {
        printf("Usage: microvm-reclaim [--dry-run] [ID...]\n\n"
               "Remove what VMs whose unit is not running left behind: jails, run\n"
               "directories, cgroups, taps. Without IDs, every VM that left anything.\n\n"
               "  -h --help     Show this help\n"
               "     --version  Show the version\n"
               "  -n --dry-run  Only list what would be removed\n\n"
               "Run by microvm-reclaim.service at boot; see microvm@.service(8).\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "dry-run", no_argument, NULL, 'n' },
                {}
        };
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(unit_bus_closep) sd_bus *bus = NULL;
        _cleanup_free_ char *bus_error = NULL;
        _cleanup_close_ int run_fd = -EBADF;
        Candidates cands = {}, found = {};
        int c, r, ret = 0;

        log_set_program_name("microvm-reclaim");
        log_parse_environment(false);
        while ((c = getopt_long(argc, argv, "hn", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'V':
                        printf("microvm-reclaim %s\n", PROJECT_VERSION);
                        return EXIT_SUCCESS;
                case 'n':
                        arg_dry_run = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        r = tool_load_host_config(&host);
        if (r < 0)
                return tool_exit(r);

        {
                ExecScan s = { .c = &found, .base = host->chroot_base };
                /* A directory we could not look into fails the run (after
                 * reclaiming what we found elsewhere). */
                ret = for_each_subdir(host->chroot_base, scan_exec_dir, &s);
                r = for_each_subdir(host->run_dir, add_run_dir, &found);
                if (r < 0 && ret == 0)
                        ret = r;
                scan_cgroups(&found);
                scan_storage(host, &found);
        }
        if (optind < argc) {
                /* Only these VMs, with what was found of them. */
                for (int i = optind; i < argc; i++) {
                        const Candidate *f;
                        Candidate *cand = candidate(&cands, argv[i]);

                        if (!cand)
                                return tool_exit(log_error_errno(EINVAL, "\"%s\" is not a valid VM id.", argv[i]));
                        f = find_candidate(&found, argv[i]);
                        if (f)
                                *cand = *f;
                }
                free(found.items);
        } else
                cands = found;

        r = unit_bus_open(&bus, &bus_error);
        if (r < 0) {
                log_notice("No system bus (%s): judging VMs by their cgroups.", strna(bus_error));
                bus = NULL;
        }
        r = safe_root_open(host->run_dir, 0, 0, &run_fd, NULL);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "Cannot open the run directory %s: %m", host->run_dir);

        /* After the bus is connected: no more new sockets or exec. */
        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        for (size_t i = 0; i < cands.n; i++) {
                r = reclaim_one(bus, host, &run_fd, &cands.items[i]);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        /* Loops of ours nothing is built on any more (their dm devices went
         * above, or a crash left them): after every VM's teardown. */
        if (!arg_dry_run) {
                StorageReport srep = {};
                r = storage_reclaim_loops(&srep);
                for (char **m = srep.failed; m && *m; m++)
                        log_error("Not removed: %s", *m);
                if (r > 0)
                        log_info("Detached %d loop device(s) of ours that nothing used.", r);
                if (r < 0 && ret == 0)
                        ret = r;
                storage_report_done(&srep);

                /* udev cookies (semaphores) of dm operations whose process
                 * was killed before it could remove them. */
                r = dm_udev_cookies_reclaim(60 * USEC_PER_SEC);
                if (r > 0)
                        log_info("Removed %d abandoned device-mapper udev cookie(s).", r);
        }
        if (cands.n == 0)
                log_debug("Nothing to reclaim.");
        free(cands.items);
        return tool_exit(ret);
}
