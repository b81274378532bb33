/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-cleanup ID — ExecStopPost=+ of microvm@ID.service, as root.
 *
 * Runs after every start attempt (failed, killed or stopped) and removes
 * everything the start created: kills what is left in the unit's
 * sub-cgroups (cgroup.kill), removes them, deletes the taps and
 * device-mapper devices, removes the jail and the run dir, and for an
 * ephemeral VM its disk state. It works from the launch plan the stage
 * wrote, so an edited or deleted config does not strand anything; without a
 * plan (a stage that died early, nothing staged) it derives the names from
 * the configs. It runs every step even when one fails, exits non-zero
 * naming every object it could not remove, and is a no-op success for a VM
 * that was never staged. The VM's persistent state (<state_dir>/<id>/) is
 * kept. */

#include "binary.h"
#include "cgroup.h"
#include "config-files.h"
#include "log.h"
#include "names.h"
#include "seccomp-util.h"
#include "test-hook.h"
#include "tool.h"
#include "uid-alloc.h"
#include "vm-first-run.h"
#include "vm-machine.h"
#include "vm-unit.h"
#include "vm-teardown.h"

/* A start that failed before any process of the VM's uid ran (launch or
 * the jailer failed; lib/vm/vm-first-run.h): the uid and the state made for
 * it go, as when such a start is stopped during microvm-stage. */
static int give_back_uid(const HostConfig *host, const char *id) {
        _cleanup_close_ int state_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = safe_root_open(host->state_dir, 0, 0, &state_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the state directory: %s", strna(error));
        return tool_give_back_uid(state_fd, host, id, UID_INVALID);
}

int main(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_vm_config_ VmConfig *vm = NULL;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL, *canonical = NULL;
        TeardownReport rep = {};
        const char *id, *exec_name = NULL;
        bool inside = false, ephemeral, never_ran = false;
        const char *child = NULL;
        int r;

        tool_invalid_id_is_not_an_error();
        r = tool_begin(argc, argv, "microvm-cleanup",
                       "Remove everything a VM's start created (idempotent; keeps the VM's persistent state).", &id);
        if (r == -EBADR) {
                /* microvm-stage refuses such an id before it creates anything. */
                log_notice("Nothing to clean up: nothing is ever created for an invalid VM id.");
                return EXIT_SUCCESS;
        }
        if (r != 0)
                return tool_exit(r);
        test_hook("cleanup-tool-begin");

        r = tool_load_host_config(&host);
        if (r < 0)
                return tool_exit(r);
        test_hook("cleanup-tool-load-host-config");

        r = vm_plan_read(host, id, &plan, &error);
        if (r < 0 && r != -ENOENT)
                log_warning("Ignoring the launch plan of %s: %s", id, error ?: strerror(-r));
        test_hook("cleanup-vm-plan-read");
        if (!plan) {
                /* No plan: the names come from the current configs. */
                Problems p = {};
                (void) vm_config_load(host, id, &vm, &p);
                problems_done(&p);
                canonical = realpath(host->firecracker, NULL);
                exec_name = canonical ? exec_name_from_path(canonical) : NULL;
        }
        ephemeral = plan ? plan->ephemeral : vm && vm->ephemeral;

        r = vm_unit_cgroup(id, &cg, &inside, &child);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to find the cgroup of microvm@%s.service: %m", id));
        test_hook("cleanup-vm-unit-cgroup");
        if (!inside) {
                /* Run by hand: never pull a running VM's jail from under it. */
                const char *how = NULL;
                r = vm_unit_refuse_if_running(id, cg, &how);
                if (r == -EBUSY)
                        return tool_exit(log_error_errno(r, "microvm@%s.service is running (per %s): stop it with "
                                                         "\"systemctl stop microvm@%s\"; cleanup runs then.",
                                                         id, how, id));
                if (r < 0)
                        return tool_exit(log_error_errno(r, "Cannot tell whether microvm@%s.service runs; not "
                                                         "touching it: %m", id));
                log_notice("Not running inside microvm@%s.service: leaving processes and cgroups alone "
                           "(microvm-reclaim also removes those of a VM whose unit is not running).", id);
        }

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));
        test_hook("cleanup-seccomp-install-denylist");

        /* Before the jail goes: did a process of the VM's uid ever run? */
        r = vm_first_run_settle_at(host->state_dir, plan ? plan->chroot_base : host->chroot_base,
                                   plan ? plan->exec_name : exec_name, id, &never_ran);
        if (r < 0) {
                log_warning_errno(r, "Cannot tell whether %s ever ran; keeping its uid: %m", id);
                never_ran = false;
        }
        test_hook("cleanup-first-run-settle");
        if (inside) {
                /* Before machined sees the unit go inactive (it keeps the
                 * machine of a unit that restarts, with a dead leader). */
                _cleanup_free_ char *why = NULL;
                r = vm_machine_unregister(host->run_dir, id, &why);
                if (r < 0)
                        log_warning("VM %s: cannot unregister it from systemd-machined: %s", id,
                                    why ?: strerror(-r));
        }

        TeardownTarget t = {
                .id = id,
                .host = host,
                .plan = plan,
                .exec_name = exec_name,
                .unit_cgroup = inside ? cg : NULL,
                .keep_child = child,
                .remove_state = ephemeral,
                .storage_deferred = true,
        };
        r = vm_teardown(&t, &rep);
        test_hook("cleanup-vm-teardown");
        tool_log_teardown_report(&rep, id);
        teardown_report_done(&rep);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Cleanup of %s left objects behind (listed above).", id));
        if (never_ran) {
                r = give_back_uid(host, id);
                if (r < 0)
                        return tool_exit(r);
                test_hook("cleanup-give-back-uid");
        }
        log_debug("Cleaned up %s.", id);
        return EXIT_SUCCESS;
}
