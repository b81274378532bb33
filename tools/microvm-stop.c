/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-stop ID — ExecStop= of microvm@ID.service.
 *
 * Firecracker has no SIGTERM handler (it dies at once, and the guest with
 * it, mid-write), so a graceful stop asks the guest: SendCtrlAltDel over
 * the API socket, then wait for the main process ($MAINPID) to exit. A
 * guest reacts by rebooting, which (with reboot=k) ends firecracker with
 * status 0. If the socket is gone, the VM is not running, or the guest does
 * not react in time, we return and let systemd's SIGTERM/SIGKILL of the
 * whole cgroup finish the job. Stopping never fails because of us: we
 * always exit 0, after saying what happened.
 *
 * Suspend (on_host_shutdown = suspend, issue 16): when the manager is
 * shutting down the host (SystemState "stopping": a poweroff, reboot or
 * halt job is queued) or "microvmctl suspend" asked for it, the guest is
 * paused and snapshotted into <state_dir>/<id>/suspend/ instead
 * (vm_suspend()); firecracker is then ended by systemd's SIGTERM, and the
 * next start resumes the guest. A suspend that fails or takes longer than
 * the plan's suspend timeout falls back to the graceful stop, with one
 * journal line saying why. */

#include <poll.h>
#include <sys/syscall.h>
#include <time.h>

#include "fc-api.h"
#include "log.h"
#include "manager.h"
#include "names.h"
#include "parse-util.h"
#include "plan.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "test-hook.h"
#include "suspend.h"
#include "tool.h"
#include "vm-suspend.h"
#include "vm-teardown.h"

#define API_TIMEOUT (2 * USEC_PER_SEC)


static int ask_guest(const Plan *plan, usec_t timeout) {
        _cleanup_close_ int base_fd = -EBADF, sock = -EBADF;
        _cleanup_free_ char *rel = NULL, *error = NULL;
        int r, status;

        r = safe_root_open(plan->chroot_base, 0, 0, &base_fd, &error);
        if (r < 0)
                return log_warning_errno(r, "Cannot use the chroot base: %s", strna(error));
        if (asprintf(&rel, "%s/%s/root%s", plan->exec_name, plan->id, plan->api_socket) < 0)
                return log_oom();
        r = fc_api_connect(base_fd, rel, &sock);
        if (r < 0)
                return log_notice_errno(r, "Cannot connect to the API socket %s/%s: %m", plan->chroot_base, rel);
        status = fc_api_request(sock, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", timeout);
        if (status < 0)
                return log_notice_errno(status, "SendCtrlAltDel over the API socket failed: %m");
        if (status != 204)
                return log_notice_errno(EPROTO, "SendCtrlAltDel was answered with HTTP status %d.", status);
        return 0;
}

/* The manager's SystemState is "stopping" from the moment a job for
 * shutdown.target is queued (poweroff, reboot, halt, kexec). Without a bus
 * the answer is "no": a plain stop is always the safe choice. */
static bool host_shutting_down(void) {
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *state = NULL;

        if (sd_lib_load(NULL) < 0 || manager_open(NULL, &bus, NULL) < 0 ||
            manager_get_string(bus, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "SystemState",
                               &state) < 0)
                return false;
        return streq(state, "stopping");
}

/* "microvmctl suspend ID" leaves <run_dir>/<id>/suspend-request. */
static bool suspend_requested(const Plan *plan) {
        _cleanup_close_ int run_fd = -EBADF;

        if (safe_root_open(plan->run_dir, 0, 0, &run_fd, NULL) < 0)
                return false;
        return faccessat(run_fd, RUN_SUSPEND_REQUEST, F_OK, AT_SYMLINK_NOFOLLOW) >= 0;
}

/* 1: suspended; 0: not wanted; <0: wanted and failed (said why). */
static int try_suspend(const Plan *plan) {
        _cleanup_free_ char *reason = NULL;
        bool requested = suspend_requested(plan);
        usec_t start, budget;
        uint64_t bytes = 0;
        char size[32];
        int r;

        if (!requested && !(plan->suspend && host_shutting_down()))
                return 0;
        test_hook("stop-suspend-begin");
        if (plan->suspend_blocker)
                return log_notice_errno(EOPNOTSUPP, "VM %s: not suspending: %s; stopping it instead.", plan->id,
                                        plan->suspend_blocker);
        /* For a suspend VM, the generator's TimeoutStopSec= holds the
         * suspend time plus the whole stop_timeout, for the graceful stop
         * if this fails. Any other VM (microvmctl suspend) has only its
         * stop_timeout: half of it for the snapshot, half for the stop. */
        budget = plan->suspend ? plan->suspend_timeout : plan->stop_timeout / 2;
        if (!plan->suspend && plan->suspend_timeout > budget)
                log_notice("VM %s: on_host_shutdown is not suspend: %llus of its stop_timeout for the snapshot "
                           "(it may need %llus).", plan->id, (unsigned long long) (budget / USEC_PER_SEC),
                           (unsigned long long) (plan->suspend_timeout / USEC_PER_SEC));
        start = now_usec(CLOCK_MONOTONIC);
        r = vm_suspend(plan, start + budget, &bytes, &reason);
        if (r < 0)
                return log_warning_errno(r, "VM %s: suspend failed, stopping it gracefully instead: %s", plan->id,
                                         strna(reason));
        log_info("VM %s: suspended to %s/" SUSPEND_DIR "/ (%s of memory) in %.1fs%s; its next start resumes it.",
                 plan->id, plan->state_dir, format_size(bytes, size, sizeof size),
                 (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_SEC,
                 requested ? " as asked" : " for the host's shutdown");
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_close_ int pidfd = -EBADF;
        usec_t wait, margin, start;
        const char *id;
        pid_t pid = 0;
        int r;

        r = tool_begin(argc, argv, "microvm-stop",
                       "Ask a VM's guest to shut down (Ctrl-Alt-Del) and wait for it, within the stop timeout.", &id);
        if (r != 0)
                return tool_exit(r);
        test_hook("stop-tool-begin");

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                log_warning_errno(r, "Failed to install the seccomp filter, continuing without: %m");
        test_hook("stop-seccomp-install-denylist");

        if (tool_load_host_config(&host) < 0)
                return EXIT_SUCCESS;
        r = vm_plan_read(host, id, &plan, &error);
        if (r < 0 && error)
                log_warning("Cannot use the launch plan of %s: %s", id, error);
        if (r < 0) {
                log_info("VM %s is not staged; nothing to stop gracefully.", id);
                return EXIT_SUCCESS;
        }
        test_hook("stop-vm-plan-read");
        r = tool_open_main_pid(&pidfd, &pid);
        if (r < 0) {
                log_info("VM %s has no running main process; nothing to stop gracefully.", id);
                return EXIT_SUCCESS;
        }
        test_hook("stop-open-main-pid");

        r = try_suspend(plan);
        if (r > 0)
                /* The VMM stays paused until systemd's SIGTERM ends it. */
                return EXIT_SUCCESS;

        /* After a suspend that timed out, firecracker may still be busy
         * writing the snapshot it was asked for: it takes the keys once it
         * is done, within half the stop timeout. */
        if (ask_guest(plan, r < 0 ? MAX(plan->stop_timeout / 2, API_TIMEOUT) : API_TIMEOUT) < 0) {
                log_notice("VM %s: leaving the stop to systemd (SIGTERM, then SIGKILL of the cgroup).", id);
                return EXIT_SUCCESS;
        }
        log_info("VM %s: sent Ctrl-Alt-Del to the guest, waiting for it to shut down.", id);
        test_hook("stop-cad-sent");

        /* systemd kills ExecStop= itself at TimeoutStopSec= (our stop_timeout):
         * return a little before that, so that it is us who report. */
        margin = MIN(plan->stop_timeout / 10, 2 * USEC_PER_SEC);
        wait = plan->stop_timeout - margin;
        start = now_usec(CLOCK_MONOTONIC);
        for (;;) {
                usec_t elapsed = now_usec(CLOCK_MONOTONIC) - start;
                struct pollfd p = { .fd = pidfd, .events = POLLIN };

                if (elapsed >= wait) {
                        log_notice("VM %s: the guest did not shut down within %llus; systemd will kill it.", id,
                                   (unsigned long long) (wait / USEC_PER_SEC));
                        break;
                }
                r = poll(&p, 1, (int) ((wait - elapsed) / USEC_PER_MSEC + 1));
                if (r < 0 && errno != EINTR) {
                        log_warning_errno(errno, "Failed to wait for process %d: %m", (int) pid);
                        break;
                }
                if (r > 0) {
                        log_info("VM %s: the guest shut down after %.1fs.", id,
                                 (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_SEC);
                        break;
                }
        }
        return EXIT_SUCCESS;
}
