/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <unistd.h>

#include "log.h"
#include "mount-sandbox.h"
#include "util.h"

#define SANDBOX_PATHS_MAX 16

/* path is dir or below it (both absolute, without a trailing slash). */
static bool path_inside(const char *path, const char *dir) {
        size_t n = strlen(dir);

        if (streq(dir, "/"))
                return true;
        return strncmp(path, dir, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int fail(char **ret_error, int r, const char *what, const char *path) {
        if (ret_error && asprintf(ret_error, "%s%s%s: %s", what, path ? " " : "", strempty(path), strerror(-r)) < 0)
                *ret_error = NULL;
        return r;
}

/* An empty read-only tmpfs, detached, to put on top of hidden directories. */
static int empty_tmpfs(int *ret_fd) {
        _cleanup_close_ int fs_fd = fsopen("tmpfs", FSOPEN_CLOEXEC);

        if (fs_fd < 0)
                return -errno;
        if (fsconfig(fs_fd, FSCONFIG_SET_STRING, "mode", "0555", 0) < 0 ||
            fsconfig(fs_fd, FSCONFIG_SET_STRING, "size", "4k", 0) < 0 ||
            fsconfig(fs_fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return -errno;
        int fd = fsmount(fs_fd, FSMOUNT_CLOEXEC,
                         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int mount_sandbox_read_only(const char *const *writable, const char *const *hidden, char **ret_error) {
        int clone_fd[SANDBOX_PATHS_MAX];
        const char *clone_path[SANDBOX_PATHS_MAX];
        size_t n = 0;
        _cleanup_close_ int empty_fd = -EBADF;
        int r = 0;

        if (ret_error)
                *ret_error = NULL;
        if (unshare(CLONE_NEWNS) < 0)
                return fail(ret_error, -errno, "unshare(CLONE_NEWNS)", NULL);
        /* Nothing of ours propagates to the host; the host's still arrive. */
        if (mount(NULL, "/", NULL, MS_REC | MS_SLAVE, NULL) < 0)
                return fail(ret_error, -errno, "making the mounts slaves of the host's", NULL);

        /* The writable trees as they are now (their mounts keep their own
         * flags), shortest path first: one inside another is put on top of
         * the outer one's clone. */
        for (size_t i = 0; writable && writable[i]; i++) {
                if (n == SANDBOX_PATHS_MAX || writable[i][0] != '/') {
                        r = fail(ret_error, -EINVAL, "too many or relative writable paths at", writable[i]);
                        goto finish;
                }
                int fd = open_tree(AT_FDCWD, writable[i], OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
                if (fd < 0 && errno == ENOENT)
                        continue;
                if (fd < 0) {
                        r = fail(ret_error, -errno, "cloning the mount of", writable[i]);
                        goto finish;
                }
                size_t k = n++;
                for (; k > 0 && strlen(clone_path[k - 1]) > strlen(writable[i]); k--) {
                        clone_fd[k] = clone_fd[k - 1];
                        clone_path[k] = clone_path[k - 1];
                }
                clone_fd[k] = fd;
                clone_path[k] = writable[i];
        }

        struct mount_attr ro = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID };
        if (mount_setattr(AT_FDCWD, "/", AT_RECURSIVE, &ro, sizeof ro) < 0) {
                r = fail(ret_error, -errno, "making every mount read-only", NULL);
                goto finish;
        }

        for (size_t i = 0; hidden && hidden[i]; i++) {
                bool holds_writable = false;
                for (size_t k = 0; k < n; k++)
                        holds_writable = holds_writable || path_inside(clone_path[k], hidden[i]);
                if (holds_writable)
                        continue;
                if (empty_fd < 0 && (r = empty_tmpfs(&empty_fd)) < 0) {
                        r = fail(ret_error, r, "making an empty tmpfs to hide", hidden[i]);
                        goto finish;
                }
                /* A mount can be attached once: each hidden path gets its
                 * own clone of the empty one. */
                _cleanup_close_ int fd = open_tree(empty_fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
                if (fd < 0) {
                        r = fail(ret_error, -errno, "cloning the empty tmpfs for", hidden[i]);
                        goto finish;
                }
                if (move_mount(fd, "", AT_FDCWD, hidden[i], MOVE_MOUNT_F_EMPTY_PATH) < 0 && errno != ENOENT) {
                        r = fail(ret_error, -errno, "hiding", hidden[i]);
                        goto finish;
                }
        }

        for (size_t k = 0; k < n; k++)
                if (move_mount(clone_fd[k], "", AT_FDCWD, clone_path[k], MOVE_MOUNT_F_EMPTY_PATH) < 0) {
                        r = fail(ret_error, -errno, "putting back the writable", clone_path[k]);
                        goto finish;
                }
finish:
        for (size_t k = 0; k < n; k++)
                safe_close(clone_fd[k]);
        return r;
}
