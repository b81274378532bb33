/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Filesystem operations for root in directories an attacker may control.
 *
 * After a VM has run once, its jail (<chroot_base>/<exec>/<id>/root) is
 * owned by the VM's uid: everything below it may have been planted by a
 * compromised firecracker — symlinks, hardlinks to host files, FIFOs,
 * 10000-deep directory chains — and may change while we look at it. So:
 *
 *  - A trusted root is opened once, from an absolute path, by
 *    safe_root_open(): every component from "/" down must be a root-owned
 *    directory no one else can write, and none may be a symlink.
 *  - Everything below a root fd takes (rootfd, relative path) and resolves
 *    the path with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 *    RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV) where the kernel has it, or
 *    with an equivalent component walk (O_PATH | O_NOFOLLOW per component,
 *    mount id compared per component) where it does not. Both refuse a
 *    symlink in any component, leaf included (-ELOOP), and a mount point
 *    anywhere below the root (-EXDEV). Paths must be relative_path_valid()
 *    (no "..", ".", "//"), else -EINVAL.
 *  - Objects are created exclusively (EEXIST is an error unless a flag says
 *    which existing object is acceptable), then verified through an fd and
 *    chowned/chmodded through that fd: never by a path, never an object we
 *    did not just create or verify (type, owner, nlink == 1).
 *  - Nothing here opens a FIFO, socket or device node except as O_PATH;
 *    files are opened for I/O only after an O_PATH open showed their type.
 *  - Removal (safe_rm_rf_at) is fd-relative, depth-first, unlinks symlinks
 *    without following them, never crosses a mount point, uses a bounded
 *    number of fds whatever the depth, and stops after a bounded number of
 *    entries. What it refused is listed in a SafeRmReport.
 *
 * Like the rest of lib/, nothing here logs: functions return 0 or a
 * positive value on success, -errno on failure, and write ret_* only on
 * success. Errors with a fixed meaning across the module:
 *   -ELOOP    a symlink where a path component or the object was expected
 *   -EXDEV    a mount point (or, for safe_link_at, another filesystem)
 *   -EEXIST   the object to create exists (and is not the one wanted)
 *   -EMLINK   a non-directory with more than one link where we modify it
 *   -EPERM    an object not owned by the expected uid
 *   -ENOTDIR / -EISDIR / -ENOTBLK / -EBADFD   wrong file type
 *   -ESTALE   the object changed between our create and our verify (race)
 *
 * Every fd returned has O_CLOEXEC. Callers need CAP_CHOWN, CAP_FOWNER,
 * CAP_MKNOD, CAP_DAC_OVERRIDE (root). A seccomp filter installed by a tool
 * must let openat2 through or fail it with ENOSYS (not EPERM-kill): the
 * fallback is chosen on ENOSYS/EPERM at the first call and cached. */

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "macro.h"
#include "safe-path.h"

#ifndef UID_INVALID
#define UID_INVALID ((uid_t) -1)
#define GID_INVALID ((gid_t) -1)
#endif

/* ---- implementation choice -------------------------------------------- */

/* true when openat2() with RESOLVE_* is available and not disabled. Probed
 * once (at the first call) and cached. */
bool safe_fs_openat2_available(void);
/* Test hook: force the fallbacks (component walk instead of openat2, named
 * temporary files instead of O_TMPFILE, /proc/self/fd instead of
 * AT_EMPTY_PATH). Also set by MICROVM_SAFE_FS_FALLBACK=1 in the
 * environment; forcing the fallback never weakens a check. */
void safe_fs_force_fallback(bool force);

/* ---- trusted roots ---------------------------------------------------- */

typedef enum SafeRootFlags {
        SAFE_ROOT_CREATE = 1 << 0,      /* mkdir missing components, root:root, create_mode */
        SAFE_ROOT_REGULAR = 1 << 1,     /* the last component is a regular file (a binary, a config) */
} SafeRootFlags;

/* Opens an absolute, normalized path that root may trust, walking from "/"
 * with O_PATH|O_NOFOLLOW: every component (and "/" itself) must be a
 * directory owned by uid 0 and not group- or world-writable (see
 * trusted_inode_check(): sticky /tmp-like directories do not pass), and
 * none may be a symlink. Mount points on the way are fine (/var may be a
 * separate filesystem). With SAFE_ROOT_CREATE, missing components are
 * created as root:root with exactly create_mode (umask does not apply),
 * e.g. 0755 for a chroot base, 0700 for a state dir.
 *
 * Returns an O_RDONLY|O_DIRECTORY fd (O_RDONLY for SAFE_ROOT_REGULAR) in
 * *ret_fd. On failure, *ret_error (if not NULL) gets a message naming the
 * offending component and what is wrong with it, e.g.
 *   /srv/jailer: "/srv" is group-writable (mode 0775, owner 0:0); ...
 * Errors: -EINVAL path not absolute/normalized, -ELOOP symlink, -ENOTDIR,
 * -EPERM untrusted owner or mode, -ENOENT missing (without CREATE). */
int safe_root_open(const char *path, SafeRootFlags flags, mode_t create_mode, int *ret_fd, char **ret_error);

/* ---- opening below a root --------------------------------------------- */

/* Opens rootfd/path without following any symlink and without leaving
 * rootfd's mount. type is the required file type (S_IFREG, S_IFDIR,
 * S_IFSOCK, S_IFBLK, ...; 0 = any, allowed only with O_PATH). The object is
 * first opened O_PATH and its type checked; only then is it reopened with
 * flags, so a FIFO or device planted where a file was expected is never
 * opened for I/O. For write access (O_WRONLY/O_RDWR/O_TRUNC/O_APPEND) a
 * non-directory must have exactly one link (-EMLINK otherwise). O_CREAT and
 * O_TMPFILE are refused (-EINVAL): use the creating functions below.
 * O_NOFOLLOW, O_CLOEXEC and O_NOCTTY are always added. */
int safe_open_at(int rootfd, const char *path, int flags, mode_t type, int *ret_fd);
static inline int safe_open_dir_at(int rootfd, const char *path, int *ret_fd) {
        return safe_open_at(rootfd, path, O_RDONLY | O_DIRECTORY, S_IFDIR, ret_fd);
}

/* Opens the directory that contains the last component of path (a new fd,
 * rootfd itself dup'ed for a single-component path) and points *ret_name at
 * that component inside path. */
int safe_open_parent_at(int rootfd, const char *path, int *ret_dirfd, const char **ret_name);

/* Reads a regular file of at most max_size bytes (-EFBIG if larger);
 * NUL-terminates the buffer. */
int safe_read_file_at(int rootfd, const char *path, size_t max_size, char **ret_data, size_t *ret_size);

/* The same in a tree that only root can write (below a root that
 * safe_root_open() opened, every directory root's and not writable by
 * others, as <run_dir> and <state_dir>): opened for reading at once, since
 * nothing but root can have put a FIFO or a device there; a file not owned
 * by root is -EPERM. Never for the jails, where VM uids write. */
int safe_read_root_file_at(int rootfd, const char *path, size_t max_size, char **ret_data, size_t *ret_size);

/* ---- creating below a root -------------------------------------------- */

typedef enum SafeMkdirFlags {
        /* An existing directory is fine if it is owned by uid:gid and not
         * writable by group/others beyond what mode allows; it is not
         * chmodded. Anything else there is -EEXIST (-ELOOP for a symlink,
         * -EPERM for another owner). */
        SAFE_MKDIR_EXIST_OK = 1 << 0,
        /* Create missing parents too (as uid:gid, mode). Existing parents
         * are only required to be directories on the root's mount. */
        SAFE_MKDIR_PARENTS = 1 << 1,
} SafeMkdirFlags;

/* Creates directory rootfd/path, then chowns it to uid:gid and sets exactly
 * mode through its fd. Returns 1 if created, 0 if it existed (EXIST_OK);
 * ret_fd (optional) gets an O_RDONLY|O_DIRECTORY fd. */
int safe_mkdir_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, SafeMkdirFlags flags,
                  int *ret_fd);

/* Creates a new, empty regular file (O_CREAT|O_EXCL|O_NOFOLLOW), owned by
 * uid:gid with exactly mode. ret_fd (optional) gets an O_RDWR fd. */
int safe_create_file_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, int *ret_fd);

typedef enum SafeWriteFlags {
        /* Atomically replace whatever non-directory is there (a symlink or
         * a hardlink is replaced as a name, its target is never written).
         * Without it, an existing name is -EEXIST. */
        SAFE_WRITE_REPLACE = 1 << 0,
        SAFE_WRITE_SYNC = 1 << 1,       /* fsync before publishing */
} SafeWriteFlags;

/* Writes a new file with the given contents, owner and mode. The content is
 * written to an anonymous O_TMPFILE (or a ".#name.XXXX" temporary) and only
 * then linked/renamed into place: nobody ever sees a partial file, and a
 * SIGKILL leaves no half-written file under the name. */
int safe_write_file_at(int rootfd, const char *path, const void *data, size_t size, mode_t mode, uid_t uid,
                       gid_t gid, SafeWriteFlags flags);

/* Creates a FIFO (e.g. a serial console input), owned by uid:gid, mode. */
int safe_mkfifo_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid);

/* Hardlinks the regular file open at src_fd (any fd, O_PATH included) to
 * rootfd/path; the name must not exist. The source is neither chowned nor
 * chmodded (templates belong to the administrator). -EXDEV when the two are
 * on different filesystems or mounts: the caller may copy instead. */
int safe_link_at(int src_fd, int rootfd, const char *path);

typedef enum SafeCopyMethod {
        SAFE_COPY_REFLINK,      /* FICLONE: shared extents, copy-on-write */
        SAFE_COPY_SPARSE,       /* SEEK_DATA/SEEK_HOLE + copy_file_range: holes kept */
        SAFE_COPY_FULL,         /* every byte (the source has or reports no holes) */
        _SAFE_COPY_METHOD_MAX,
} SafeCopyMethod;
const char *safe_copy_method_to_string(SafeCopyMethod m) _const_;

typedef enum SafeCopyFlags {
        SAFE_COPY_NO_REFLINK = 1 << 0,  /* never share extents with the source */
        SAFE_COPY_SYNC = 1 << 1,        /* fsync before publishing */
} SafeCopyFlags;

/* Copies the regular file open at src_fd (O_PATH is fine: it is reopened
 * read-only) to a new file rootfd/path owned by uid:gid with mode: a
 * reflink when the filesystem can, else a sparse copy. Built in an
 * anonymous temporary file and linked into place at the end (exclusive:
 * -EEXIST if the name exists), so an interrupted copy never leaves a
 * truncated file under the name. -ENOSPC is returned as is, with nothing
 * left behind. ret_method and ret_fd (O_RDWR) are optional. */
int safe_copy_file_at(int src_fd, int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid,
                      SafeCopyFlags flags, SafeCopyMethod *ret_method, int *ret_fd);

/* Creates a device node of the same type (block/char) and st_rdev as the
 * device open at dev_fd (we fstat it: there is deliberately no API that
 * takes a major:minor), owned by uid:gid with mode. An existing node is
 * accepted (returns 0) only if it is exactly that node: same type, rdev,
 * owner, mode, one link; anything else is -EEXIST. Returns 1 if created.
 * -ENODEV if dev_fd is not a device. */
int safe_mknod_at(int rootfd, const char *path, int dev_fd, mode_t mode, uid_t uid, gid_t gid);

/* ---- ownership and mode of verified objects ---------------------------- */

/* Checks the object open at fd: type (0 = any but a symlink), owner uid
 * (UID_INVALID/-1 = any), and for non-directories nlink == 1. */
int safe_fd_verify(int fd, mode_t type, uid_t uid);
/* chown/chmod through the fd (fchownat(AT_EMPTY_PATH); fchmod, or
 * /proc/self/fd/N for O_PATH fds). Both refuse a symlink (-ELOOP) and a
 * non-directory with more than one link (-EMLINK). safe_fd_chown() also
 * refuses an object owned by anyone but root or the target uid (-EPERM);
 * safe_fd_chmod() refuses set-id bits (-EINVAL) but does not look at the
 * owner (the caller knows whose object it verified). Use them only on
 * objects this code just created or verified. */
int safe_fd_chown(int fd, uid_t uid, gid_t gid);
int safe_fd_chmod(int fd, mode_t mode);

/* ---- removal ----------------------------------------------------------- */

/* Removes the temporary files that a safe_write_file_at() or
 * safe_copy_file_at() killed between creating and publishing them left in
 * directory rootfd/path: regular files named SAFE_TEMP_PREFIX... (never
 * anything else; never below path). Named temporaries exist only where
 * O_TMPFILE does not (or with the fallback forced) and for
 * SAFE_WRITE_REPLACE; a SIGKILL in between leaves one behind, never a
 * partial file under the final name. For directories only this code
 * writes (root-owned, 0700), where no one else may be writing at the
 * time. path NULL: rootfd itself. Returns the number removed (0 also when
 * path does not exist). */
int safe_remove_temporaries_at(int rootfd, const char *path);

typedef struct SafeRmRefusal {
        char *path;             /* relative to the rootfd given to safe_rm_rf_at() */
        int error;              /* negative errno */
        const char *reason;     /* static text */
} SafeRmRefusal;

#define SAFE_RM_REFUSALS_MAX 64

typedef struct SafeRmReport {
        SafeRmRefusal *refused;         /* at most SAFE_RM_REFUSALS_MAX kept */
        size_t n_refused;
        size_t n_dropped;               /* refusals beyond SAFE_RM_REFUSALS_MAX */
        uint64_t n_removed;             /* entries unlinked or rmdir'ed */
        uint64_t n_hoisted;             /* too-deep subtrees moved up (see below) */
} SafeRmReport;

void safe_rm_report_done(SafeRmReport *r);
/* "a/b: mount point, not crossed; ..." one line per refusal, each prefixed
 * with prefix (NULL: none). Newly allocated, NULL on OOM or no refusals. */
char *safe_rm_report_format(const SafeRmReport *r, const char *prefix);

typedef struct SafeRmLimits {
        uint64_t max_entries;   /* 0: SAFE_RM_MAX_ENTRIES_DEFAULT */
        unsigned max_depth;     /* open directories at once; 0: SAFE_RM_MAX_DEPTH_DEFAULT */
} SafeRmLimits;
#define SAFE_RM_MAX_ENTRIES_DEFAULT (UINT64_C(1) << 22)
#define SAFE_RM_MAX_DEPTH_DEFAULT 128U

typedef enum SafeRmFlags {
        SAFE_RM_CONTENTS_ONLY = 1 << 0, /* keep the directory path itself */
} SafeRmFlags;

/* Removes rootfd/path and everything below it, deepest first. Symlinks,
 * FIFOs, sockets, devices are unlinked without being opened; directories
 * are opened O_DIRECTORY|O_NOFOLLOW and must be on rootfd's mount. A mount
 * point (a bind mount included) is never entered or unmounted: it is
 * listed in the report and its ancestors are left. A tree deeper than
 * limits->max_depth is not recursed into further: the too-deep subtree is
 * renamed to "<path>/.microvm-rm-N" and removed from there, so any depth is
 * removed with a bounded number of fds and no recursion. After
 * limits->max_entries entries the removal stops (-E2BIG, reported).
 *
 * report (optional, zero-initialized by the caller, appended to) collects
 * what was refused. Returns 1 if something was removed, 0 if path did not
 * exist (idempotent), or the first refusal's -errno (-EXDEV for a mount
 * point, -E2BIG for the entry limit, ...) when anything was left. */
int safe_rm_rf_at(int rootfd, const char *path, SafeRmFlags flags, const SafeRmLimits *limits,
                  SafeRmReport *report);
