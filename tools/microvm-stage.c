/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-stage ID — ExecStartPre=+ of microvm@ID.service, as root.
 *
 * Builds everything the jailer does not build itself, and nothing it does:
 *   <chroot_base>/<exec>/<id>/root/   the jail (root:root 0700 until the
 *                                      jailer chowns it to the VM's uid)
 *       vmlinux, initrd               hardlinks of the admin's files (or
 *                                      VM-owned copies, see stage_boot_file)
 *       drive-<name>                  one per drive
 *       vm-config.json                firecracker's --config-file
 *       run/                          where firecracker binds its sockets
 *   <state_dir>/<id>/uid              the VM's uid (lib/jail/uid-alloc)
 *   <state_dir>/<id>/drives/<name>    VM-owned copies of writable file drives
 *   <run_dir>/<id>/plan, console.in   the launch plan, the serial input FIFO
 *   taps                              one per NIC, owned by the VM's uid
 * and never /dev/kvm, /dev/net/tun, /dev/urandom or the jailer's pid file
 * (the jailer fails on an existing one).
 *
 * It first tears down whatever an earlier run left (the same code as
 * microvm-cleanup), so a start after a crash, a SIGKILL or a failed start
 * works. The plan is written before anything is created: whatever a
 * SIGKILL interrupts, the plan names it for the next cleanup. */

#include <grp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include "config-files.h"
#include "binary.h"
#include "cgroup.h"
#include "config-files.h"
#include "generator-core.h"
#include "log.h"
#include "names.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "stage.h"
#include "stage-plan.h"
#include "test-hook.h"
#include "tool.h"
#include "uid-alloc.h"
#include "vm-unit.h"
#include "vm-teardown.h"

typedef struct Stage {
        const char *id;
        HostConfig *host;
        VmConfig *vm;
        char *config_copy;      /* the generator's copy of the config, as read */
        size_t config_copy_size;
        char *exec_file;        /* canonical firecracker path */
        const char *exec_name;
        VmPaths paths;
        int state_fd;           /* <state_dir> */
        int vm_state_fd;        /* <state_dir>/<id> */
        int run_fd;             /* <run_dir> */
        int exec_fd;            /* <chroot_base>/<exec> */
        int jail_fd;            /* <chroot_base>/<exec>/<id>/root */
        int lock_fd;            /* shared reclaim lock, held for the whole stage */
        UidAllocation uid;
        gid_t console_gid;      /* console_group, (gid_t) -1: none */
        StageNetwork net;
        Plan *plan;
} Stage;

static void stage_done(Stage *s) {
        host_config_free(s->host);
        vm_config_free(s->vm);
        free(s->config_copy);
        free(s->exec_file);
        vm_paths_done(&s->paths);
        safe_close(s->state_fd);
        safe_close(s->vm_state_fd);
        safe_close(s->run_fd);
        safe_close(s->exec_fd);
        safe_close(s->jail_fd);
        safe_close(s->lock_fd);
        stage_network_done(&s->net);
        plan_free(s->plan);
}

/* What this start uses, kept in <run_dir>/<id>/ until cleanup removes the
 * directory: the generated drop-in and the config copy beside it. A
 * daemon-reload that cannot generate the VM's units any more (its config
 * became invalid or was removed, the host config does not parse) emits
 * these instead, so the running VM keeps its limits (microvm-generator(8)).
 * Written after the plan, i.e. after the run directory is ours. */
static int save_start_record(Stage *s) {
        const char *copy = getenv("MICROVM_CONFIG_COPY");
        _cleanup_free_ char *dir = NULL, *dropin_path = NULL, *dropin = NULL, *rel = NULL;
        size_t size;
        int r;

        if (!s->config_copy || isempty(copy))
                return 0;
        dir = strdup(copy);
        if (!dir)
                return log_oom();
        if (strrchr(dir, '/'))
                *strrchr(dir, '/') = '\0';
        if (asprintf(&dropin_path, "%s/" GENERATOR_DROPIN, dir) < 0)
                return log_oom();
        r = config_read_file(dropin_path, &dropin, &size);
        if (r < 0)
                return log_error_errno(r, "Failed to read the drop-in microvm@%s.service was generated with, %s: %s",
                                       s->id, dropin_path, config_read_strerror(r));
        if (asprintf(&rel, "%s/" RUN_STARTED_DROPIN, s->id) < 0)
                return log_oom();
        r = safe_write_file_at(s->run_fd, rel, dropin, size, 0600, 0, 0, SAFE_WRITE_REPLACE);
        if (r >= 0) {
                free(rel);
                if (asprintf(&rel, "%s/" RUN_STARTED_CONFIG, s->id) < 0)
                        return log_oom();
                r = safe_write_file_at(s->run_fd, rel, s->config_copy, s->config_copy_size, 0600, 0, 0,
                                       SAFE_WRITE_REPLACE);
        }
        if (r < 0)
                return log_error_errno(r, "Failed to write %s/%s: %m", s->host->run_dir, rel);
        return 0;
}

static int mark_staged(Stage *s) {
        const char *inv = getenv("INVOCATION_ID");
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/" RUN_STAGED_FILE, s->id) < 0)
                return log_oom();
        r = safe_write_file_at(s->run_fd, rel, strempty(inv), strlen(strempty(inv)), 0600, 0, 0, SAFE_WRITE_REPLACE);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s/%s: %m", s->host->run_dir, rel);
        return 0;
}

static int check_binaries(Stage *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = trusted_binary_open(s->host->jailer, false, NULL, NULL, &error);
        if (r < 0)
                return log_error_errno(r, "Refusing to use the jailer: %s", strna(error));
        free(error);
        error = NULL;
        r = trusted_binary_open(s->host->firecracker, true, &s->exec_file, NULL, &error);
        if (r < 0)
                return log_error_errno(r, "Refusing to use firecracker: %s", strna(error));
        s->exec_name = exec_name_from_path(s->exec_file);
        if (!filename_valid(s->exec_name))
                return log_error_errno(EINVAL, "The firecracker binary's file name \"%s\" cannot name a jail "
                                       "directory.", s->exec_name);
        if (!exec_name_ok_for_old_jailers(s->exec_name))
                log_warning("The firecracker binary %s has the file name \"%s\", without \"firecracker\": "
                            "jailers " JAILER_EXEC_NAME_RULE_VERSIONS " refuse it, v1.13.0 and later accept it.",
                            s->exec_file, s->exec_name);
        return 0;
}

static int open_roots(Stage *s) {
        _cleanup_free_ char *error = NULL, *exec_dir = NULL;
        int r;

        r = safe_root_open(s->host->state_dir, SAFE_ROOT_CREATE, 0700, &s->state_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the state directory: %s", strna(error));
        free(error);
        error = NULL;
        /* 0711 as tmpfiles.d makes it: names not listable, a console_group
         * member may pass to its VM's console FIFO. */
        r = safe_root_open(s->host->run_dir, SAFE_ROOT_CREATE, 0711, &s->run_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the run directory: %s", strna(error));
        free(error);
        error = NULL;
        if (asprintf(&exec_dir, "%s/%s", s->host->chroot_base, s->exec_name) < 0)
                return log_oom();
        /* 0711: others may traverse to their own jail, not list the VMs. */
        r = safe_root_open(exec_dir, SAFE_ROOT_CREATE, 0711, &s->exec_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the chroot base: %s", strna(error));
        return 0;
}

static int reset(Stage *s) {
        _cleanup_plan_ Plan *old = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL;
        TeardownReport rep = {};
        bool inside = false;
        const char *child = NULL;
        int r;

        r = vm_plan_read(s->host, s->id, &old, &error);
        if (r < 0 && r != -ENOENT)
                log_warning("Ignoring the old launch plan of %s: %s", s->id, error ?: strerror(-r));
        r = vm_unit_cgroup(s->id, &cg, &inside, &child);
        if (r < 0)
                return log_error_errno(r, "Failed to find the cgroup of microvm@%s.service: %m", s->id);
        if (!inside) {
                /* Run by hand: never rebuild a running VM's jail under it. */
                const char *how = NULL;
                r = vm_unit_refuse_if_running(s->id, cg, &how);
                if (r == -EBUSY)
                        return log_error_errno(r, "microvm@%s.service is running (per %s): use \"systemctl "
                                               "restart microvm@%s\" instead.", s->id, how, s->id);
                if (r < 0)
                        return log_error_errno(r, "Cannot tell whether microvm@%s.service runs; not touching it: "
                                               "%m", s->id);
        }

        TeardownTarget t = {
                .id = s->id,
                .host = s->host,
                .plan = old,
                .exec_name = s->exec_name,
                /* Only from inside our unit: never kill a running VM's
                 * processes because someone ran microvm-stage by hand. */
                .unit_cgroup = inside ? cg : NULL,
                .keep_child = child,
                /* An ephemeral VM begins every start from the template
                 * images, so the current config decides too, not only the
                 * old plan: after a host crash there is no plan (run_dir is
                 * a tmpfs), no stop removed the disk state, and the start
                 * would otherwise reuse the crashed run's thin volumes,
                 * persistent CoW files and drive copies (and leave the old
                 * thin volume in the pool). */
                .remove_state = (old && old->ephemeral) || s->vm->ephemeral,
        };
        r = vm_teardown(&t, &rep);
        for (char **m = rep.failed; m && *m; m++)
                log_error("Left over from an earlier run: %s", *m);
        if (r < 0)
                log_error_errno(r, "Cannot start %s over what an earlier run left behind (see above).", s->id);
        else if (rep.jail_removed || rep.n_cgroups_removed > 0)
                log_info("Removed what an earlier run of %s left behind.", s->id);
        teardown_report_done(&rep);
        return r;
}

static int plan_start(Stage *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = stage_network_plan(s->vm, s->id, &s->net, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "%s", error);
        StagePlanInput in = {
                .host = s->host,
                .vm = s->vm,
                .paths = &s->paths,
                .id = s->id,
                .exec_file = s->exec_file,
                .exec_name = s->exec_name,
                .uid = s->uid.uid,
                .gid = s->uid.gid,
                .taps = s->net.taps,
        };
        if (stage_plan_build(&in, &s->plan) < 0)
                return log_oom();
        return 0;
}

/* The host's console_group: an NSS lookup, so before the seccomp filter. */
static int console_group_lookup(Stage *s) {
        struct group grp, *result = NULL;
        char buf[4096];
        int r;

        s->console_gid = (gid_t) -1;
        if (!s->host->console_group)
                return 0;
        r = getgrnam_r(s->host->console_group, &grp, buf, sizeof buf, &result);
        if (r != 0)
                return log_error_errno(r, "Failed to look up console_group %s of %s: %m", s->host->console_group,
                                       host_config_path());
        if (!result)
                return log_error_errno(ENOENT, "console_group %s of %s does not exist: create it (groupadd) or remove the key.",
                                       s->host->console_group, host_config_path());
        s->console_gid = result->gr_gid;
        return 0;
}

static StageTarget stage_target(const Stage *s) {
        return (StageTarget) {
                .id = s->id,
                .host = s->host,
                .vm = s->vm,
                .state_fd = s->state_fd,
                .run_fd = s->run_fd,
                .jail_fd = s->jail_fd,
                .vm_state_fd = s->vm_state_fd,
                .state_dir = s->paths.state_dir,
                .jail_root = s->paths.jail_root,
                .uid = s->uid.uid,
                .gid = s->uid.gid,
                .previous_uid = s->uid.previous,
                .console_gid = s->console_gid,
        };
}

/* Logs a step's error; -ENOMEM comes without a message. */
static int step(int r, char **error) {
        _cleanup_free_ char *e = *error;

        *error = NULL;
        if (r == -ENOMEM && !e)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "%s", e ?: strerror(-r));
        return r;
}

/* Before anything is built: the jailer's cgroup controllers must already
 * be enabled by systemd down to the unit (see stage.h). */
static int check_cgroup_controllers(Stage *s) {
        _cleanup_free_ char *mount = NULL, *cg = NULL, *error = NULL;
        bool inside = false;
        int r;

        if (!s->plan->cgroup || !s->plan->cgroup[0])
                return 0;
        r = cgroup2_find_mount(&mount);
        if (r < 0)
                return log_error_errno(r, "No cgroup2 file system is mounted (the jailer needs cgroup v2): %m");
        r = vm_unit_cgroup(s->id, &cg, &inside, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to find the cgroup of microvm@%s.service: %m", s->id);
        return step(stage_check_cgroup_controllers(s->vm, s->plan, mount, inside ? cg : NULL, &error), &error);
}

static int stage_readonly(Stage *s, const char *path, const char *what, const char *name) {
        StageTarget t = stage_target(s);
        _cleanup_free_ char *error = NULL;
        SafeCopyMethod method;
        int r;

        r = step(stage_readonly_file(&t, path, what, name, &method, &error), &error);
        if (r > 0)
                log_debug("Copied the %s %s into the jail (%s).", what, path, safe_copy_method_to_string(method));
        return r;
}

static int stage_drives(Stage *s) {
        StageTarget t = stage_target(s);
        _cleanup_free_ char *error = NULL;
        SafeCopyMethod method;

        for (size_t i = 0; i < s->vm->n_drives; i++) {
                const DriveConfig *d = &s->vm->drives[i];
                char name[64];
                int r;

                snprintf(name, sizeof name, JAIL_DRIVE_PREFIX "%s", d->name);
                if (d->mode != DRIVE_MODE_FILE)
                        r = step(stage_block_drive(&t, d, name, &error), &error);
                else if (d->read_only)
                        r = stage_readonly(s, d->path, "read-only drive image", name);
                else {
                        r = step(stage_file_drive(&t, d, name, &method, &error), &error);
                        if (r > 0)
                                log_info("Drive %s: made the VM's own copy of %s (%s).", d->name, d->path,
                                         safe_copy_method_to_string(method));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int stage_jail(Stage *s) {
        _cleanup_free_ char *root = NULL, *error = NULL;
        int r;

        r = safe_mkdir_at(s->exec_fd, s->id, 0711, 0, 0, 0, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", s->paths.jail_dir);
        test_hook("stage-jail-dir");
        if (asprintf(&root, "%s/root", s->id) < 0)
                return log_oom();
        /* root:root 0700; the jailer chowns it to the VM's uid. */
        r = safe_mkdir_at(s->exec_fd, root, 0700, 0, 0, 0, &s->jail_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", s->paths.jail_root);
        test_hook("stage-jail-root");

        r = stage_readonly(s, s->vm->kernel, "kernel", JAIL_KERNEL);
        if (r >= 0 && s->vm->initrd)
                r = stage_readonly(s, s->vm->initrd, "initrd", JAIL_INITRD);
        if (r >= 0)
                r = stage_drives(s);
        if (r < 0)
                return r;
        test_hook("stage-jail-files");

        StageTarget t = stage_target(s);
        return step(stage_jail_run_dir_and_config(&t, &s->net, &error), &error);
}

/* A stop (SIGTERM from systemd; SIGINT by hand) is taken between steps:
 * the signals are blocked for the whole run, so a step is never cut in
 * half, and looked for once a step is done. */
static bool stop_requested(void) {
        sigset_t pending;

        return sigpending(&pending) >= 0 && (sigismember(&pending, SIGTERM) > 0 || sigismember(&pending, SIGINT) > 0);
}

#define STAGE_STOPPED 1

/* After a stop or a failure: tears down what this start built, per its plan
 * (or, before it made one, per the plan on disk), without touching
 * processes (we run in the unit's cgroup). A start that allocated the VM's
 * very first uid and never got to run it also gives that uid back, with the
 * state directory it created: nothing in it can belong to a VM that never
 * ran, and the uid would otherwise stay reserved by a VM that may never
 * start (issue 12, uid bookkeeping). */
static int undo(Stage *s, bool fresh_uid) {
        _cleanup_plan_ Plan *on_disk = NULL;
        SafeRmReport srep = {};
        TeardownReport rep = {};
        int r, k;

        if (!s->plan && vm_plan_read(s->host, s->id, &on_disk, NULL) < 0)
                on_disk = NULL;
        TeardownTarget t = {
                .id = s->id,
                .host = s->host,
                .plan = s->plan ?: on_disk,
                .exec_name = s->exec_name,
                .remove_state = s->vm->ephemeral,
        };
        r = vm_teardown(&t, &rep);
        for (char **m = rep.failed; m && *m; m++)
                log_error("Not removed: %s", *m);
        teardown_report_done(&rep);
        if (r < 0 || !fresh_uid)
                return r;

        s->vm_state_fd = safe_close(s->vm_state_fd);
        k = vm_state_remove(s->state_fd, s->id, &srep);
        if (k < 0) {
                _cleanup_free_ char *what = safe_rm_report_format(&srep, s->host->state_dir);
                log_error_errno(k, "Cannot give back uid %u of %s with its new state directory %s: %s", (unsigned) s->uid.uid,
                                s->id, s->paths.state_dir, what ?: strerror(-k));
        } else
                log_info("Gave back uid %u: %s never ran.", (unsigned) s->uid.uid, s->id);
        safe_rm_report_done(&srep);
        return k < 0 ? k : 0;
}

static int run(Stage *s, bool *ret_fresh_uid) {
        _cleanup_free_ char *error = NULL;
        bool had_state;
        int r;

        /* Inputs: configs, binaries, directories. */
        r = tool_load_host_config(&s->host);
        if (r < 0)
                return r;
        test_hook("stage-tool-load-host-config");
        r = tool_load_vm_config_for_unit(s->host, s->id, &s->vm, &s->config_copy, &s->config_copy_size);
        if (r < 0)
                return r;
        test_hook("stage-tool-load-vm-config");
        if ((r = check_binaries(s)) < 0 ||
            (r = step(stage_check_chroot_base(s->host, &error), &error)) < 0 ||
            (r = step(stage_check_bridges(s->vm, &error), &error)) < 0)
                return r;
        test_hook("stage-check-digest");
        r = vm_paths_new(s->host, s->exec_name, s->id, &s->paths);
        if (r < 0)
                return log_oom();
        test_hook("stage-vm-paths-new");
        r = open_roots(s);
        if (r < 0)
                return r;
        test_hook("stage-open-roots");

        /* microvm-reclaim must not tear down what we are building. A stop
         * is looked for only from here on: whatever it interrupts is then
         * torn down under this lock. */
        r = vm_reclaim_lock(s->run_fd, false, &s->lock_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to take the reclaim lock in %s: %m", s->host->run_dir);
        test_hook("stage-vm-reclaim-lock");
        if (stop_requested())
                return STAGE_STOPPED;
        r = reset(s);
        if (r < 0)
                return r;
        test_hook("stage-reset");
        if (stop_requested())
                return STAGE_STOPPED;

        /* The uid needs NSS lookups: before the seccomp filter. */
        had_state = faccessat(s->state_fd, s->id, F_OK, AT_SYMLINK_NOFOLLOW) >= 0;
        r = uid_allocate_for_vm(s->state_fd, s->host, s->vm, &s->uid, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate a uid for %s: %s", s->id, error ?: strerror(-r));
        *ret_fresh_uid = s->uid.created && s->uid.previous == UID_INVALID && !had_state;
        if (s->uid.created)
                log_info("VM %s runs as uid and gid %u.", s->id, (unsigned) s->uid.uid);
        test_hook("stage-uid-allocated");
        r = console_group_lookup(s);
        if (r < 0)
                return r;
        test_hook("stage-console-group-lookup");
        r = safe_open_dir_at(s->state_fd, s->id, &s->vm_state_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to open %s: %m", s->paths.state_dir);
        test_hook("stage-safe-open-dir-at");

        r = plan_start(s);
        if (r < 0)
                return r;
        test_hook("stage-plan-start");
        r = check_cgroup_controllers(s);
        if (r < 0)
                return r;
        test_hook("stage-check-cgroup-controllers");

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return log_error_errno(r, "Failed to install the seccomp filter: %m");
        test_hook("stage-seccomp-install-denylist");
        if (stop_requested())
                return STAGE_STOPPED;

        /* From here on everything created is named by the plan. */
        StageTarget t = stage_target(s);
        r = step(stage_plan_write(&t, s->plan, &error), &error);
        if (r < 0)
                return r;
        test_hook("stage-plan-write");
        r = save_start_record(s);
        if (r < 0)
                return r;
        test_hook("stage-save-start-record");
        r = stage_jail(s);
        if (r < 0)
                return r;
        test_hook("stage-jail");
        if (stop_requested())
                return STAGE_STOPPED;
        t = stage_target(s);
        if ((r = step(stage_taps(&t, s->net.taps, &error), &error)) < 0 ||
            (r = step(stage_console_fifo(&t, &error), &error)) < 0)
                return r;
        test_hook("stage-taps-and-console");

        /* Last: the proof that this start was staged completely, which
         * microvm-launch checks (ExecStartPre=- runs it after a failure). */
        r = mark_staged(s);
        if (r < 0)
                return r;
        test_hook("stage-mark-staged");
        log_debug("Staged %s in %s as uid %u.", s->id, s->paths.jail_root, (unsigned) s->uid.uid);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(stage_done) Stage s = { .state_fd = -EBADF, .vm_state_fd = -EBADF, .run_fd = -EBADF,
                                          .exec_fd = -EBADF, .jail_fd = -EBADF, .lock_fd = -EBADF };
        bool fresh_uid = false;
        sigset_t stop;
        int r;

        r = tool_begin(argc, argv, "microvm-stage",
                       "Stage a VM's jail, drives, taps and launch plan (tearing down an earlier run's first).",
                       &s.id);
        if (r != 0)
                return tool_exit(r);

        /* The start's errors become the unit's StatusText ("systemctl
         * status"); stop and cleanup do not overwrite it. */
        log_open_status();

        /* "systemctl stop" during ExecStartPre= sends SIGTERM: a stop the
         * operator asked for, to be ended cleanly (see stop_requested()). */
        if (sigemptyset(&stop) < 0 || sigaddset(&stop, SIGTERM) < 0 || sigaddset(&stop, SIGINT) < 0 ||
            sigprocmask(SIG_BLOCK, &stop, NULL) < 0)
                return tool_exit(log_error_errno(errno, "Failed to block SIGTERM: %m"));

        r = run(&s, &fresh_uid);
        if (r == 0)
                return EXIT_SUCCESS;
        if (r == STAGE_STOPPED) {
                /* Exit status 0: systemd 252 counts a control process that
                 * exits 0 during a stop as clean, so the unit ends inactive,
                 * not failed (a control process killed by SIGTERM, or one
                 * exiting non-zero, fails it; SuccessExitStatus= applies to
                 * the main process only). Should the start go on regardless
                 * (a SIGTERM sent by hand), the plan is gone and
                 * microvm-launch refuses. */
                r = undo(&s, fresh_uid);
                if (r < 0)
                        return tool_exit(log_error_errno(r, "Stopped while staging %s; what this start built could "
                                                         "not all be removed (see above).", s.id));
                log_notice("Stopped while staging %s: removed what this start had built.", s.id);
                return EXIT_SUCCESS;
        }
        /* A failed start: microvm-cleanup (ExecStopPost=) tears down. Only
         * a VM's first uid is given back here, after the teardown (a tap
         * owned by it must not outlive it). */
        if (fresh_uid)
                (void) undo(&s, true);
        return EXIT_FAILURE;
}
