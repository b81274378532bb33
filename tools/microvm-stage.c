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
#include "vm-first-run.h"
#include "vm-lock.h"
#include "vm-suspend.h"
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
static int check_binaries(Stage *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = step(stage_check_binaries(s->host, &s->exec_file, &error), &error);
        if (r < 0)
                return r;
        s->exec_name = exec_name_from_path(s->exec_file);
        if (!exec_name_ok_for_old_jailers(s->exec_name))
                log_warning("The firecracker binary %s has the file name \"%s\", without \"firecracker\": "
                            "jailers " JAILER_EXEC_NAME_RULE_VERSIONS " refuse it, v1.13.0 and later accept it.",
                            s->exec_file, s->exec_name);
        return 0;
}

static int open_roots(Stage *s) {
        _cleanup_free_ char *error = NULL;
        return step(stage_open_roots(s->host, s->exec_name, &s->state_fd, &s->run_fd, &s->exec_fd, &error), &error);
}

static int reset(Stage *s) {
        _cleanup_free_ char *error = NULL, *warning = NULL;
        _cleanup_strv_free_ char **left = NULL;
        bool removed = false;
        int r;

        r = stage_reset(s->host, s->vm, s->id, s->exec_name, &removed, &left, &warning, &error);
        if (warning)
                log_warning("%s", warning);
        for (char **m = left; m && *m; m++)
                log_error("Left over from an earlier run: %s", *m);
        if (r >= 0 && removed)
                log_info("Removed what an earlier run of %s left behind.", s->id);
        return step(r, &error);
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

/* A snapshot of a suspended run (issue 16): resumed when valid for the
 * jail just built, else moved aside with one line saying why (lib). */
static int resume_prepare(Stage *s) {
        _cleanup_free_ char *note = NULL, *error = NULL;
        StageTarget t = stage_target(s);
        int r = stage_resume(&t, s->plan, &note, &error);

        if (note)
                log_full(r > 0 ? LOG_INFO : LOG_WARNING, "%s", note);
        return step(r, &error);
}

/* Logs what the files step noted (which copies it made, and how). */
static void log_notes(char **notes, int level) {
        for (char **n = notes; n && *n; n++)
                log_full(level, "%s", *n);
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

        StageTarget t = stage_target(s);
        _cleanup_strv_free_ char **notes = NULL;
        r = stage_jail_files(&t, &notes, &error);
        log_notes(notes, LOG_INFO);
        if (r < 0)
                return step(r, &error);
        test_hook("stage-jail-files");

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
 * processes (we run in the unit's cgroup). A start of a VM that never ran
 * (its first uid, lib/vm/vm-first-run.h) also gives that uid back, with the
 * state directory: nothing in it can belong to a VM that never ran, and the
 * uid would otherwise stay reserved by a VM that may never start (issue 12,
 * uid bookkeeping). */
static int undo(Stage *s, bool fresh_uid) {
        _cleanup_plan_ Plan *on_disk = NULL;
        TeardownReport rep = {};
        int r;

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
        tool_log_teardown_report(&rep, s->id);
        teardown_report_done(&rep);
        if (r < 0 || !fresh_uid)
                return r;
        s->vm_state_fd = safe_close(s->vm_state_fd);
        return tool_give_back_uid(s->state_fd, s->host, s->id, s->uid.uid);
}

static int run(Stage *s, bool *ret_fresh_uid) {
        _cleanup_free_ char *error = NULL;
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
        r = vm_stage_lock(s->lock_fd, s->id);
        if (r == -EBUSY)
                return log_error_errno(r, "Another microvm-stage of %s is running (started by hand?): not staging "
                                       "it twice at once.", s->id);
        if (r < 0)
                return log_error_errno(r, "Failed to lock %s/.lock for %s: %m", s->host->run_dir, s->id);
        test_hook("stage-vm-stage-lock");
        if (stop_requested())
                return STAGE_STOPPED;
        /* Before the reset removes an earlier run's jail: whether that run's
         * jailer got as far as firecracker (lib/vm/vm-first-run.h). */
        r = vm_first_run_settle(s->state_fd, s->exec_fd, s->id, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to update the first-run marker in %s: %m", s->paths.state_dir);
        test_hook("stage-first-run-settle");
        r = reset(s);
        if (r < 0)
                return r;
        test_hook("stage-reset");
        if (stop_requested())
                return STAGE_STOPPED;

        /* The uid needs NSS lookups: before the seccomp filter. */
        r = uid_allocate_for_vm(s->state_fd, s->host, s->vm, &s->uid, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to allocate a uid for %s: %s", s->id, error ?: strerror(-r));
        if (s->uid.created)
                log_info("VM %s runs as uid and gid %u.", s->id, (unsigned) s->uid.uid);
        test_hook("stage-uid-allocated");
        /* Its first uid, or one no process ever ran as (a failed first start
         * whose cleanup could not give it back). */
        r = vm_first_run_settle(s->state_fd, s->exec_fd, s->id, ret_fresh_uid);
        if (r < 0)
                return log_error_errno(r, "Failed to read the first-run marker in %s: %m", s->paths.state_dir);
        test_hook("stage-first-run-read");
        r = step(stage_console_gid(s->host, &s->console_gid, &error), &error);
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
        r = step(stage_save_start_record(&t, getenv("MICROVM_CONFIG_COPY"), s->config_copy, s->config_copy_size,
                                         &error), &error);
        if (r < 0)
                return r;
        test_hook("stage-save-start-record");
        r = stage_jail(s);
        if (r < 0)
                return r;
        test_hook("stage-jail");
        r = resume_prepare(s);
        if (r < 0)
                return r;
        test_hook("stage-resume-prepare");
        if (stop_requested())
                return STAGE_STOPPED;
        t = stage_target(s);
        if ((r = step(stage_taps(&t, s->net.taps, &error), &error)) < 0 ||
            (r = step(stage_console_fifo(&t, &error), &error)) < 0)
                return r;
        test_hook("stage-taps-and-console");

        /* Last: the proof that this start was staged completely, which
         * microvm-launch checks (ExecStartPre=- runs it after a failure). */
        r = step(stage_mark_staged(&t, getenv("INVOCATION_ID"), &error), &error);
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
