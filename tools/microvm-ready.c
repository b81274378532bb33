/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-ready ID — ExecStartPost= of microvm@ID.service.
 *
 * With Type=exec the unit is "active" as soon as microvm-launch was
 * exec'd, long before the VMM runs: "systemctl start" would return 0 for a
 * VM that is already dying. This tool makes a successful start mean that
 * the VMM is up and the guest is running: it waits (inotify on the jail's
 * socket directory, no polling) for firecracker's API socket, asks GET /
 * and wants the instance state "Running". If the main process ($MAINPID:
 * microvm-launch, then the jailer, then firecracker, all one process) exits
 * first, the start fails; systemd then shows the VMM's exit status and its
 * last console lines (the unit's journal) in "systemctl status". No daemon:
 * it exits as soon as it knows.
 *
 * Resume (issue 16): when microvm-stage found a valid snapshot (the plan
 * says RESUME), firecracker starts without a config and answers "Not
 * started"; this tool then loads the snapshot (vm_resume_load(): claimed
 * first so it is never loaded twice, loaded paused, its files deleted, then
 * resumed), and the start succeeds only once the guest runs again. A failed
 * load moves the snapshot aside; firecracker exits (a failed restore is
 * fatal to it), the start fails, and the restart policy boots the VM. */

#include <poll.h>
#include <sys/inotify.h>
#include <sys/syscall.h>
#include <time.h>

#include "fc-api.h"
#include "log.h"
#include "names.h"
#include "plan.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "suspend.h"
#include "tool.h"
#include "vm-machine.h"
#include "vm-suspend.h"
#include "vm-teardown.h"

/* Firecracker started from a config file answers once the guest is built
 * and running (well under a second); a VMM that has not answered by then
 * is wedged. */
#define READY_TIMEOUT (30 * USEC_PER_SEC)


/* 1: the main process has exited. */
static int main_exited(int pidfd) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        return poll(&p, 1, 0) > 0;
}

static int vmm_exited(const char *id, pid_t pid) {
        return log_error_errno(ECHILD, "The VMM of %s (pid %d) exited during start, before its API answered; its "
                               "exit status and last console lines follow in the unit's log.", id, (int) pid);
}

/* One attempt: connect, GET /, want "Running". 1 when running, 0 when the
 * socket is not there yet, 2 when it is bound but not yet listening (the
 * moment between bind(2) and listen(2)), 3 when a resume's firecracker
 * waits for its snapshot (it was loaded, logged, and it is to be asked
 * again), <0 (logged) when the start failed. */
static int ask(const Plan *plan, int base_fd, const char *rel, int pidfd, pid_t pid, usec_t deadline) {
        _cleanup_close_ int sock = -EBADF;
        _cleanup_free_ char *body = NULL, *state = NULL;
        usec_t now = now_usec(CLOCK_MONOTONIC);
        int r, status;

        r = fc_api_connect(base_fd, rel, &sock);
        if (r == -ENOENT)
                return 0;
        if (r == -ECONNREFUSED || r == -EAGAIN)
                return 2;
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the API socket %s/%s: %m", plan->chroot_base, rel);
        r = fc_api_get(sock, "/", deadline > now ? deadline - now : 1, &status, &body);
        if (r == -ECONNRESET || (r < 0 && main_exited(pidfd)))
                return vmm_exited(plan->id, pid);
        if (r == -ETIMEDOUT)
                return log_error_errno(r, "The VMM of %s (pid %d) did not answer on its API socket within %llus; "
                                       "it is wedged.", plan->id, (int) pid,
                                       (unsigned long long) (READY_TIMEOUT / USEC_PER_SEC));
        if (r < 0)
                return log_error_errno(r, "Asking the VMM of %s for its state failed: %m", plan->id);
        if (status != 200 || fc_instance_state_parse(body, &state) < 0)
                return log_error_errno(EPROTO, "The VMM of %s answered GET / with HTTP status %d and no instance "
                                       "state.", plan->id, status);
        if (plan->resume && streq(state, "Not started")) {
                _cleanup_free_ char *reason = NULL, *aside = NULL;
                usec_t t0 = now_usec(CLOCK_MONOTONIC);
                r = vm_resume_load(plan, sock, deadline, &reason, &aside);
                if (r < 0)
                        return log_error_errno(r, "VM %s: resuming from its snapshot failed, the snapshot is kept as "
                                               "%s/%s and the VM will boot instead (restart policy): %s", plan->id,
                                               plan->state_dir, aside ?: SUSPEND_RESUMING_DIR, strna(reason));
                log_info("VM %s: resumed from its snapshot in %.1f ms; the snapshot's files are removed.", plan->id,
                         (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_MSEC);
                return 3;
        }
        if (!streq(state, "Running"))
                return log_error_errno(EPROTO, "The VMM of %s is up, but its instance state is \"%s\", not "
                                       "\"Running\".", plan->id, state);
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_plan_ Plan *plan = NULL;
        _cleanup_free_ char *error = NULL, *rel = NULL, *dir_rel = NULL, *watch = NULL;
        _cleanup_close_ int run_fd = -EBADF, base_fd = -EBADF, dir_fd = -EBADF, ino = -EBADF, pidfd = -EBADF;
        usec_t start, deadline;
        const char *id;
        pid_t pid = 0;
        int r;

        r = tool_begin(argc, argv, "microvm-ready",
                       "Wait until a VM's firecracker answers on its API socket with the instance state Running.",
                       &id);
        if (r != 0)
                return tool_exit(r);
        start = now_usec(CLOCK_MONOTONIC);
        deadline = start + READY_TIMEOUT;
        log_open_status(); /* errors become the unit's StatusText */

        r = tool_load_host_config(&host);
        if (r < 0)
                return tool_exit(r);
        r = safe_root_open(host->run_dir, 0, 0, &run_fd, &error);
        if (r < 0 || !tool_stage_completed(run_fd, id)) {
                /* microvm-stage failed and microvm-launch refused (both said why). */
                log_notice("VM %s was not staged; not waiting for it.", id);
                return EXIT_FAILURE;
        }
        r = vm_plan_read_at(run_fd, id, &plan, &error);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Cannot use the launch plan of %s: %s", id,
                                                 error ?: strerror(-r)));
        r = tool_open_main_pid(&pidfd, &pid);
        if (r < 0)
                return tool_exit(log_error_errno(r, "The VMM of %s exited during start (no main process left); "
                                                 "its exit status and last console lines are in the unit's log.",
                                                 id));

        r = safe_root_open(plan->chroot_base, 0, 0, &base_fd, &error);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Cannot use the chroot base: %s", strna(error)));
        if (asprintf(&rel, "%s/%s/root%s", plan->exec_name, plan->id, plan->api_socket) < 0)
                return tool_exit(log_oom());
        dir_rel = strdup(rel);
        if (!dir_rel)
                return tool_exit(log_oom());
        *strrchr(dir_rel, '/') = '\0';

        /* The socket's directory lies in the jail, which the VM's uid owns:
         * opened without following any symlink, then watched through that
         * very fd. Set up before the first look, so that no bind is missed. */
        r = safe_open_at(base_fd, dir_rel, O_PATH | O_DIRECTORY, S_IFDIR, &dir_fd);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Cannot open %s/%s: %m", plan->chroot_base, dir_rel));
        ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino < 0)
                return tool_exit(log_error_errno(errno, "Failed to create an inotify instance: %m"));
        if (asprintf(&watch, "/proc/self/fd/%d", dir_fd) < 0)
                return tool_exit(log_oom());
        if (inotify_add_watch(ino, watch, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR) < 0)
                return tool_exit(log_error_errno(errno, "Failed to watch %s/%s: %m", plan->chroot_base, dir_rel));

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        for (;;) {
                struct pollfd p[2] = { { .fd = ino, .events = POLLIN }, { .fd = pidfd, .events = POLLIN } };
                usec_t now;
                char buf[4096];

                r = ask(plan, base_fd, rel, pidfd, pid, deadline);
                if (r < 0)
                        return EXIT_FAILURE;
                if (r == 1)
                        break;
                if (r == 3)
                        continue;
                now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return tool_exit(log_error_errno(ETIMEDOUT, "The VMM of %s (pid %d) did not bind its API "
                                                         "socket within %llus.", id, (int) pid,
                                                         (unsigned long long) (READY_TIMEOUT / USEC_PER_SEC)));
                /* No event announces listen(2) after the bind: look again soon. */
                r = poll(p, 2, r == 2 ? 5 : (int) ((deadline - now) / USEC_PER_MSEC + 1));
                if (r < 0 && errno != EINTR)
                        return tool_exit(log_error_errno(errno, "Failed to wait for the API socket: %m"));
                if (p[1].revents)
                        return tool_exit(vmm_exited(id, pid));
                while (read(ino, buf, sizeof buf) > 0)
                        ;
        }

        log_debug("VM %s: the VMM answers, instance state Running, %.1f ms after ExecStartPost= began.", id,
                  (double) (now_usec(CLOCK_MONOTONIC) - start) / USEC_PER_MSEC);

        /* "machinectl list/status/terminate" for the running VM. Never a
         * reason to fail the start: it runs as it would without machined. */
        _cleanup_free_ char *why = NULL;
        r = vm_machine_register(plan, run_fd, pid, &why);
        if (r < 0)
                log_notice("VM %s is not registered with systemd-machined: %s", id, why ?: strerror(-r));
        else if (r == 0)
                log_debug("VM %s is not registered with systemd-machined: %s", id, why ?: "no libsystemd");
        return EXIT_SUCCESS;
}
