/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "macro.h"
#include "names.h"
#include "safe-fs.h"
#include "util.h"
#include "vm-first-run.h"

/* "<id>/<name>"; ids are short, so this fits. */
static void marker_path(const char *id, const char *name, char buf[static VM_ID_MAX + 32]) {
        snprintf(buf, VM_ID_MAX + 32, "%s/%s", id, name);
}

static int marker_exists(int dfd, const char *name) {
        if (faccessat(dfd, name, F_OK, AT_SYMLINK_NOFOLLOW) >= 0)
                return 1;
        return errno == ENOENT ? 0 : -errno;
}

int vm_first_run_launching(int state_fd, const char *id) {
        _cleanup_close_ int dfd = -EBADF;
        int r;

        if (!vm_id_valid(id))
                return -EINVAL;
        r = safe_open_dir_at(state_fd, id, &dfd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (renameat(dfd, STATE_UNLAUNCHED_FILE, dfd, STATE_LAUNCHING_FILE) < 0)
                return errno == ENOENT ? 0 : -errno;
        /* Durable before the jailer runs: after a host crash the marker must
         * not come back as "unlaunched" for a VM that ran. */
        if (fsync(dfd) < 0)
                return -errno;
        return 1;
}

/* 1: <exec>/<id>/root exists and is owned by 0:0 (the jailer never chowned
 * it), 0: not (missing, or chowned), -errno: cannot tell. */
static int jail_root_untouched(int exec_fd, const char *id) {
        char path[VM_ID_MAX + 32];
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        if (exec_fd < 0)
                return 0;
        marker_path(id, "root", path);
        r = safe_open_at(exec_fd, path, O_PATH, S_IFDIR, &fd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        return st.st_uid == 0 && st.st_gid == 0;
}

int vm_first_run_settle(int state_fd, int exec_fd, const char *id, bool *ret_never_ran) {
        _cleanup_close_ int dfd = -EBADF;
        int r, k, settled = 0;

        if (!vm_id_valid(id))
                return -EINVAL;
        if (ret_never_ran)
                *ret_never_ran = false;
        r = safe_open_dir_at(state_fd, id, &dfd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;

        r = marker_exists(dfd, STATE_LAUNCHING_FILE);
        if (r < 0)
                return r;
        if (r > 0) {
                k = jail_root_untouched(exec_fd, id);
                if (k > 0) {
                        /* The jailer stopped before step 6: nothing ran as the uid. */
                        if (renameat(dfd, STATE_LAUNCHING_FILE, dfd, STATE_UNLAUNCHED_FILE) < 0)
                                return -errno;
                        settled = 1;
                } else if (unlinkat(dfd, STATE_LAUNCHING_FILE, 0) < 0 && errno != ENOENT)
                        /* Cannot tell, or it may have run: the uid stays. */
                        return -errno;
                if (fsync(dfd) < 0)
                        return -errno;
        }

        r = marker_exists(dfd, STATE_UNLAUNCHED_FILE);
        if (r < 0)
                return r;
        if (ret_never_ran)
                *ret_never_ran = r > 0;
        return settled;
}

int vm_first_run_settle_at(const char *state_dir, const char *chroot_base, const char *exec_name, const char *id,
                           bool *ret_never_ran) {
        _cleanup_close_ int state_fd = -EBADF, base_fd = -EBADF, exec_fd = -EBADF;
        int r;

        if (ret_never_ran)
                *ret_never_ran = false;
        r = safe_root_open(state_dir, 0, 0, &state_fd, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (exec_name && chroot_base && safe_root_open(chroot_base, 0, 0, &base_fd, NULL) >= 0)
                (void) safe_open_dir_at(base_fd, exec_name, &exec_fd); /* missing: the uid is kept */
        return vm_first_run_settle(state_fd, exec_fd, id, ret_never_ran);
}
