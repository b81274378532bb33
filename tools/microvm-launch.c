/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-launch ID — ExecStart= of microvm@ID.service.
 *
 * Reads the launch plan microvm-stage wrote, steps out of the unit's own
 * cgroup into a leaf below it, puts the serial-input FIFO on stdin and
 * execs the jailer with an empty environment. The jailer then execs
 * firecracker in place: the unit's main PID becomes the VMM, and its
 * stdout, inherited from us, is the guest's serial console in the journal.
 * Nothing else: this is the last code of ours before the VMM runs. */

#include <assert.h>
#include <fcntl.h>

#include "binary.h"
#include "cgroup.h"
#include "jailer-argv.h"
#include "log.h"
#include "names.h"
#include "plan.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "test-hook.h"
#include "tool.h"
#include "vm-first-run.h"
#include "vm-teardown.h"

/* microvm@.service runs microvm-stage as ExecStartPre=-, so that a refusal
 * reaches the main process (us), whose exit status RestartPreventExitStatus=
 * sees (on systemd 252 it never looks at ExecStartPre='s): 78 when the
 * configuration can never start as it is, 1 otherwise (retried as the
 * restart policy says). microvm-stage already said why, also in the unit's
 * StatusText: only a notice here, which leaves that text alone. */
static int refuse_unstaged(const char *id) {
        if (tool_start_refusal_is_final(id)) {
                log_notice("Not starting %s: its configuration cannot start (microvm-stage said why); not retried "
                           "until it is fixed.", id);
                return TOOL_EXIT_CONFIG;
        }
        log_notice("Not starting %s: microvm-stage failed (see above).", id);
        return EXIT_FAILURE;
}

static int read_plan(const HostConfig *host, const char *id, int *ret_run_fd, Plan **ret) {
        _cleanup_close_ int run_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        _cleanup_plan_ Plan *plan = NULL;
        int r;

        r = safe_root_open(host->run_dir, 0, 0, &run_fd, &error);
        if (r < 0 && r != -ENOENT)
                return log_error_errno(r, "Cannot use the run directory: %s", strna(error));
        if (r < 0 || !tool_stage_completed(run_fd, id))
                return -ESTALE;
        r = vm_plan_read_at(run_fd, id, &plan, &error);
        if (r < 0) {
                if (r == -ENOENT)
                        return log_error_errno(r, "No launch plan %s/%s/" RUN_PLAN_FILE ": microvm-stage has not "
                                               "run for %s (start the VM with systemctl start microvm@%s).",
                                               host->run_dir, id, id, id);
                if (r == -ENOMEM)
                        return log_oom();
                if (error)
                        return log_error_errno(r, "Launch plan %s/%s/" RUN_PLAN_FILE " is invalid: %s",
                                               host->run_dir, id, error);
                return log_error_errno(r, "Failed to read the launch plan %s/%s/" RUN_PLAN_FILE ": %m",
                                       host->run_dir, id);
        }
        if (!streq(plan->id, id))
                return log_error_errno(EINVAL, "Launch plan %s/%s/" RUN_PLAN_FILE " is for VM %s, not %s.",
                                       host->run_dir, id, plan->id, id);
        *ret_run_fd = TAKE_FD(run_fd);
        *ret = TAKE_PTR(plan);
        return 0;
}

/* Moves us into <unit cgroup>/<id> and returns the jailer's --parent-cgroup.
 *
 * Without --cgroup values the jailer only joins <parent> if it exists, so
 * the parent is the leaf itself and firecracker stays in it. With values,
 * the jailer creates <parent>/<id>, enables the controllers in every
 * ancestor's cgroup.subtree_control down to <parent> and moves itself in;
 * the kernel refuses (EBUSY) to enable a domain controller in a cgroup
 * that holds a process, so <parent> must be the unit cgroup, which we have
 * just left empty. Either way firecracker ends up in <unit cgroup>/<id>. */
static int enter_leaf(const Plan *plan, char **ret_parent) {
        _cleanup_free_ char *mount = NULL, *self = NULL, *parent = NULL;
        _cleanup_close_ int unit_fd = -EBADF, leaf_fd = -EBADF;
        int r;

        r = cgroup2_find_mount(&mount);
        if (r < 0)
                return log_error_errno(r, "No cgroup2 file system is mounted (the jailer needs cgroup v2): %m");
        r = cgroup_pid_path(0, &self);
        if (r < 0)
                return log_error_errno(r, "Failed to find our own cgroup v2 path: %m");
        if (streq(self, "/"))
                return log_error_errno(EINVAL, "Running in the root cgroup: microvm-launch must run as "
                                       "ExecStart= of microvm@%s.service (Delegate=yes).", plan->id);
        r = cgroup_open(mount, self, &unit_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to open our cgroup %s%s: %m", mount, self);
        r = cgroup_open_child(unit_fd, plan->id, true, &leaf_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to create the cgroup %s%s/%s (is Delegate=yes set?): %m",
                                       mount, self, plan->id);
        r = cgroup_enter(leaf_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to move into the cgroup %s%s/%s: %m", mount, self, plan->id);

        if (plan->cgroup && plan->cgroup[0])
                r = asprintf(&parent, "%s", self + 1);
        else
                r = asprintf(&parent, "%s/%s", self + 1, plan->id);
        if (r < 0)
                return log_oom();
        log_debug("Moved into %s%s/%s; jailer --parent-cgroup %s", mount, self, plan->id, parent);
        *ret_parent = TAKE_PTR(parent);
        return 0;
}

static int console_to_stdin(int run_fd, const char *id) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/" RUN_CONSOLE_FIFO, id) < 0)
                return log_oom();
        /* Read-write: the FIFO then always has a writer, so firecracker never
         * sees end-of-file, and the open does not block waiting for one. */
        r = safe_open_at(run_fd, rel, O_RDWR, S_IFIFO, &fd);
        if (r < 0)
                return log_error_errno(r, "Failed to open the serial input FIFO %s: %m", rel);
        if (dup2(fd, STDIN_FILENO) < 0)
                return log_error_errno(errno, "Failed to put the serial input FIFO on stdin: %m");
        return 0;
}

static int first_run_launching(const HostConfig *host, const char *id) {
        _cleanup_close_ int state_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = safe_root_open(host->state_dir, 0, 0, &state_fd, &error);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Cannot use the state directory: %s", strna(error));
        r = vm_first_run_launching(state_fd, id);
        if (r < 0)
                return log_error_errno(r, "Failed to mark %s/%s as launched (%s/%s): %m", host->state_dir, id,
                                       STATE_UNLAUNCHED_FILE, STATE_LAUNCHING_FILE);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *parent = NULL, *error = NULL;
        _cleanup_strv_free_ char **jargv = NULL;
        _cleanup_close_ int run_fd = -EBADF, jailer_fd = -EBADF;
        /* The filter stays on across exec, for the jailer and firecracker:
         * deny only what neither of them ever needs. The jailer mounts,
         * pivots, mknods and chroots, so those must stay allowed. */
        static const char *const deny[] = {
                "ptrace", "process_vm_readv", "process_vm_writev", "init_module", "finit_module",
                "delete_module", "kexec_load", "kexec_file_load", "bpf", "keyctl", "add_key",
                "request_key", "reboot", "swapon", "swapoff", NULL,
        };
        char *const envp[] = { NULL };
        const char *id;
        int r;

        r = tool_begin(argc, argv, "microvm-launch",
                       "Exec the jailer (and so firecracker) for a staged VM, in a leaf of the unit's cgroup.", &id);
        if (r == -EBADR || r == -EINVAL)
                return TOOL_EXIT_CONFIG; /* not a valid VM id, or not run as the unit does */
        if (r != 0)
                return tool_exit(r);
        test_hook("launch-tool-begin");

        log_open_status(); /* errors become the unit's StatusText */
        r = tool_load_host_config(&host);
        if (r < 0)
                return TOOL_EXIT_CONFIG;
        test_hook("launch-tool-load-host-config");
        r = read_plan(host, id, &run_fd, &plan);
        if (r == -ESTALE)
                return refuse_unstaged(id);
        if (r < 0)
                return tool_exit(r);
        test_hook("launch-read-plan");
        assert(plan); /* read_plan() succeeded; the compiler cannot see through its log calls */

        /* The jailer runs as root: check it again, right before exec'ing the
         * very file we checked (through its fd). */
        r = trusted_binary_open(plan->jailer, false, NULL, &jailer_fd, &error);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Refusing to run the jailer: %s", strna(error)));
        test_hook("launch-trusted-binary-open");

        r = enter_leaf(plan, &parent);
        if (r < 0)
                return tool_exit(r);
        test_hook("launch-enter-leaf");
        r = jailer_argv(plan, parent, &jargv, &error);
        if (r < 0)
                return tool_exit(r == -ENOMEM ? log_oom() : log_error_errno(r, "Bad launch plan: %s", strna(error)));
        test_hook("launch-jailer-argv");
        r = console_to_stdin(run_fd, id);
        if (r < 0)
                return tool_exit(r);
        test_hook("launch-console-to-stdin");

        r = seccomp_install_denylist(deny, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));
        test_hook("launch-seccomp-install-denylist");

        /* Last: from here on a process of the VM's uid may run, and a failed
         * first start keeps its uid (lib/vm/vm-first-run.h). */
        r = first_run_launching(host, id);
        if (r < 0)
                return tool_exit(r);
        test_hook("launch-first-run-launching");

        log_debug("Executing %s for VM %s as uid %u.", plan->jailer, id, (unsigned) plan->uid);
        /* The jailer closes every fd >= 3 and clears its environment itself;
         * we give it an empty one to begin with. */
        fexecve(jailer_fd, jargv, envp);
        return tool_exit(log_error_errno(errno, "Failed to execute the jailer %s: %m", plan->jailer));
}
