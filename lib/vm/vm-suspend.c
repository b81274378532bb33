/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Suspend and resume over firecracker's API: see vm-suspend.h. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fc-api.h"
#include "safe-fs.h"
#include "suspend.h"
#include "util.h"
#include "vm-suspend.h"

#define API_STEP_TIMEOUT (5 * USEC_PER_SEC)

static int open_jail_root(const Plan *plan, int *ret_base, int *ret_jail, char **ret_reason) {
        _cleanup_close_ int base = -EBADF, jail = -EBADF;
        _cleanup_free_ char *rel = NULL, *error = NULL;
        int r;

        r = safe_root_open(plan->chroot_base, 0, 0, &base, &error);
        if (r < 0)
                return error_setf(ret_reason, r, "the chroot base cannot be used: %s", strna(error));
        if (asprintf(&rel, "%s/%s/root", plan->exec_name, plan->id) < 0)
                return -ENOMEM;
        r = safe_open_dir_at(base, rel, &jail);
        if (r < 0)
                return error_setf(ret_reason, r, "the jail %s/%s cannot be opened: %m", plan->chroot_base, rel);
        *ret_base = TAKE_FD(base);
        *ret_jail = TAKE_FD(jail);
        return 0;
}

/* One request on a connection of its own (fc_api_request() reads only the
 * status line). */
static int api(int base_fd, const Plan *plan, const char *method, const char *path, const char *body, usec_t timeout,
               char **ret_reason) {
        _cleanup_close_ int sock = -EBADF;
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/%s/root%s", plan->exec_name, plan->id, plan->api_socket) < 0)
                return -ENOMEM;
        r = fc_api_connect(base_fd, rel, &sock);
        if (r < 0)
                return error_setf(ret_reason, r, "cannot connect to the API socket: %m");
        r = fc_api_request(sock, method, path, body, timeout);
        if (r == -ETIMEDOUT)
                return error_setf(ret_reason, r, "%s %s did not finish within %llus", method, path,
                                  (unsigned long long) (timeout / USEC_PER_SEC));
        if (r < 0)
                return error_setf(ret_reason, r, "%s %s failed: %m", method, path);
        if (r != 204)
                return error_setf(ret_reason, -EPROTO, "%s %s was answered with HTTP status %d (firecracker's "
                                  "message is in the unit's log)", method, path, r);
        return 0;
}

static usec_t left(usec_t deadline) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        return deadline > now ? deadline - now : 1;
}

int vm_suspend(const Plan *plan, usec_t deadline, uint64_t *ret_bytes, char **ret_reason) {
        _cleanup_close_ int base = -EBADF, jail = -EBADF, state = -EBADF;
        _cleanup_free_ char *error = NULL;
        SuspendRecord rec;
        uint64_t bytes = (uint64_t) plan->memory_mib << 20;
        int r;

        if (plan->memory_mib == 0 || !plan->config_digest)
                return error_setf(ret_reason, -EINVAL, "the launch plan predates suspend support");
        r = open_jail_root(plan, &base, &jail, ret_reason);
        if (r < 0)
                return r;
        r = safe_root_open(plan->state_dir, 0, 0, &state, &error);
        if (r < 0)
                return error_setf(ret_reason, r, "the state dir cannot be used: %s", strna(error));
        /* What the snapshot is only valid with, while the guest still runs. */
        r = suspend_identity(jail, plan->exec_file, plan->config_digest, &rec, ret_reason);
        if (r < 0)
                return r;
        r = suspend_prepare(state, jail, plan->uid, plan->gid, ret_reason);
        if (r < 0) {
                suspend_abandon(state, jail);
                return r;
        }

        r = api(base, plan, "PATCH", "/vm", "{\"state\":\"Paused\"}", MIN(left(deadline), API_STEP_TIMEOUT),
                ret_reason);
        if (r >= 0)
                r = api(base, plan, "PUT", "/snapshot/create",
                        "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"" JAIL_SUSPEND_VMSTATE
                        "\",\"mem_file_path\":\"" JAIL_SUSPEND_MEMORY "\"}",
                        left(deadline), ret_reason);
        if (r >= 0)
                r = suspend_commit(state, &rec, bytes, ret_reason);
        if (r < 0) {
                /* The guest goes on (and is then stopped gracefully). */
                (void) api(base, plan, "PATCH", "/vm", "{\"state\":\"Resumed\"}", API_STEP_TIMEOUT, NULL);
                suspend_abandon(state, jail);
                return r;
        }
        /* The jail's names go with the jail; the snapshot is the state dir's. */
        (void) safe_rm_rf_at(jail, JAIL_SUSPEND_DIR, 0, NULL, NULL);
        if (ret_bytes)
                *ret_bytes = bytes;
        return 0;
}

int vm_resume_prepare(const Plan *plan, int state_vm_fd, int jail_root_fd, char **ret_reason, char **ret_aside) {
        SuspendRecord saved, now;
        const char *why;
        int r;

        /* A suspend that was interrupted left no valid snapshot. */
        (void) safe_rm_rf_at(state_vm_fd, SUSPEND_NEW_DIR, 0, NULL, NULL);
        /* A resume that began but did not finish: never loaded again. */
        if (faccessat(state_vm_fd, SUSPEND_RESUMING_DIR, F_OK, AT_SYMLINK_NOFOLLOW) >= 0) {
                (void) suspend_move_aside(state_vm_fd, SUSPEND_RESUMING_DIR, ret_aside);
                return error_setf(ret_reason, -ESTALE, "an earlier resume of this snapshot began and did not finish "
                                  "(a snapshot is never resumed twice)");
        }
        r = suspend_read_record(state_vm_fd, &saved, ret_reason);
        if (r == -ENOENT)
                return 0;
        if (r >= 0) {
                why = suspend_files_problem(state_vm_fd, &saved);
                if (why)
                        r = error_setf(ret_reason, -EBADMSG, "%s", why);
        }
        if (r >= 0) {
                r = suspend_identity(jail_root_fd, plan->exec_file, plan->config_digest ?: "", &now, ret_reason);
                if (r >= 0 && (why = suspend_record_mismatch(&saved, &now)))
                        r = error_setf(ret_reason, -ESTALE, "%s since the snapshot was taken", why);
        }
        if (r >= 0 && saved.memory_bytes != (uint64_t) plan->memory_mib << 20)
                r = error_setf(ret_reason, -ESTALE, "the VM's memory size changed");
        if (r >= 0)
                r = suspend_link_into_jail(state_vm_fd, jail_root_fd, ret_reason);
        if (r < 0) {
                (void) safe_rm_rf_at(jail_root_fd, JAIL_SUSPEND_DIR, 0, NULL, NULL);
                (void) suspend_move_aside(state_vm_fd, SUSPEND_DIR, ret_aside);
                return r;
        }
        return 1;
}

int vm_resume_load(const Plan *plan, int sock, usec_t deadline, char **ret_reason, char **ret_aside) {
        _cleanup_close_ int base = -EBADF, jail = -EBADF, state = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = open_jail_root(plan, &base, &jail, ret_reason);
        if (r < 0)
                return r;
        r = safe_root_open(plan->state_dir, 0, 0, &state, &error);
        if (r < 0)
                return error_setf(ret_reason, r, "the state dir cannot be used: %s", strna(error));
        /* From here on this snapshot is never loaded again, whatever happens. */
        if (renameat2(state, SUSPEND_DIR, state, SUSPEND_RESUMING_DIR, RENAME_NOREPLACE) < 0)
                return error_setf(ret_reason, -errno, "cannot claim the snapshot (%s/%s): %m", plan->state_dir,
                                  SUSPEND_DIR);
        (void) fsync(state);

        r = fc_api_request(sock, "PUT", "/snapshot/load",
                           "{\"snapshot_path\":\"" JAIL_SUSPEND_VMSTATE "\",\"mem_backend\":{\"backend_type\":"
                           "\"File\",\"backend_path\":\"" JAIL_SUSPEND_MEMORY "\"},\"resume_vm\":false}",
                           left(deadline));
        if (r != 204) {
                if (r < 0)
                        (void) error_setf(ret_reason, r, "PUT /snapshot/load failed: %m");
                else
                        (void) error_setf(ret_reason, -EPROTO, "PUT /snapshot/load was answered with HTTP status %d "
                                          "(firecracker's message is in the unit's log)", r);
                (void) suspend_move_aside(state, SUSPEND_RESUMING_DIR, ret_aside);
                return r < 0 ? r : -EPROTO;
        }
        /* Loaded and paused: the files go before the guest runs on. The
         * VMM keeps its mapping of the memory file; the inode lives on
         * until it exits. */
        (void) safe_rm_rf_at(jail, JAIL_SUSPEND_DIR, 0, NULL, NULL);
        r = suspend_remove(state, SUSPEND_RESUMING_DIR);
        if (r < 0)
                return error_setf(ret_reason, r, "cannot remove the used snapshot %s/%s: %m", plan->state_dir,
                                  SUSPEND_RESUMING_DIR);
        return api(base, plan, "PATCH", "/vm", "{\"state\":\"Resumed\"}", left(deadline), ret_reason);
}
