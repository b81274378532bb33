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
 * always exit 0, after saying what happened. */

#include <poll.h>
#include <sys/syscall.h>
#include <time.h>

#include "fc-api.h"
#include "log.h"
#include "names.h"
#include "plan.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "test-hook.h"
#include "tool.h"
#include "vm-teardown.h"

#define API_TIMEOUT (2 * USEC_PER_SEC)


static int ask_guest(const Plan *plan) {
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
        status = fc_api_request(sock, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", API_TIMEOUT);
        if (status < 0)
                return log_notice_errno(status, "SendCtrlAltDel over the API socket failed: %m");
        if (status != 204)
                return log_notice_errno(EPROTO, "SendCtrlAltDel was answered with HTTP status %d.", status);
        return 0;
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

        if (ask_guest(plan) < 0) {
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
