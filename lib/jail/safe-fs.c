/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#if HAVE_OPENAT2_H
#include <linux/openat2.h>
#endif

#include "util.h"
#include "parse-util.h"
#include "safe-fs.h"

#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif

/* glibc's __O_TMPFILE includes O_DIRECTORY: this is the bit of its own. */
#define O_TMPFILE_BIT (O_TMPFILE & ~O_DIRECTORY)

#define PROC_FD_PATH_MAX (STRLEN("/proc/self/fd/") + 12)

#define IN_SET(x, ...)                                                 \
        ({                                                             \
                const int _v_[] = { __VA_ARGS__ };                     \
                const int _x_ = (x);                                   \
                bool _found_ = false;                                  \
                for (size_t _i_ = 0; _i_ < ELEMENTSOF(_v_); _i_++)     \
                        if (_v_[_i_] == _x_) {                         \
                                _found_ = true;                        \
                                break;                                 \
                        }                                              \
                _found_;                                               \
        })

/* ---- implementation choice -------------------------------------------- */

#if HAVE_SYS_OPENAT2
#if !HAVE_OPENAT2_H
struct open_how {
        uint64_t flags;
        uint64_t mode;
        uint64_t resolve;
};
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_NO_SYMLINKS 0x04
#define RESOLVE_BENEATH 0x08
#endif

/* The kernel does the walk for us, atomically: no symlink (leaf or
 * intermediate), no procfs magic link, no "..", no absolute jump out of
 * dirfd, no mount crossing. */
#define SAFE_RESOLVE (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)

static int sys_openat2(int dirfd, const char *path, int flags, mode_t mode) {
        struct open_how how = {
                .flags = (uint64_t) (unsigned) flags,
                .mode = (flags & (O_CREAT | O_TMPFILE_BIT)) ? mode : 0,
                .resolve = SAFE_RESOLVE,
        };
        return (int) syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}
#endif

static int fallback_forced = -1;        /* -1: not yet read from the environment */
static int openat2_works = -1;          /* -1: not yet probed */

void safe_fs_force_fallback(bool force) {
        fallback_forced = force;
}

static bool fallback(void) {
        if (fallback_forced < 0) {
#if ENABLE_TEST_HOOKS
                /* The tool-level attack suite runs every tool both ways. */
                const char *e = secure_getenv("MICROVM_SAFE_FS_FALLBACK");
                fallback_forced = !isempty(e) && !streq(e, "0");
#else
                fallback_forced = false;
#endif
        }
        return fallback_forced;
}

bool safe_fs_openat2_available(void) {
#if HAVE_SYS_OPENAT2
        if (fallback())
                return false;
        if (openat2_works < 0) {
                _cleanup_close_ int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                int fd;

                /* ENOSYS: kernel < 5.6; EPERM: a seccomp filter (container
                 * runtimes); E2BIG/EINVAL: flags this kernel does not know. */
                fd = root < 0 ? -1 : sys_openat2(root, ".", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
                openat2_works = fd >= 0;
                safe_close(fd);
        }
        return openat2_works > 0;
#else
        return false;
#endif
}

/* ---- small fd helpers --------------------------------------------------- */

static int fdinfo_mount_id(int fd, uint64_t *ret) {
        char p[STRLEN("/proc/self/fdinfo/") + 12], line[256];
        _cleanup_fclose_ FILE *f = NULL;

        snprintf(p, sizeof p, "/proc/self/fdinfo/%d", fd);
        f = fopen(p, "re");
        if (!f)
                return errno == ENOENT ? -EOPNOTSUPP : -errno;
        while (fgets(line, sizeof line, f)) {
                const char *v = startswith(line, "mnt_id:");
                uint64_t id;

                if (!v)
                        continue;
                v += strspn(v, " \t");
                line[strcspn(line, "\n")] = '\0';
                if (parse_u64(v, &id) < 0)
                        return -EIO;
                *ret = id;
                return 0;
        }
        return -EOPNOTSUPP;
}

/* The mount id of the object open at fd: statx(STATX_MNT_ID) (5.8+), else
 * /proc/self/fdinfo (3.15+). */
static int fd_mount_id(int fd, uint64_t *ret) {
        struct statx sx;

        if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_MNT_ID, &sx) >= 0 &&
            (sx.stx_mask & STATX_MNT_ID)) {
                *ret = sx.stx_mnt_id;
                return 0;
        }
        return fdinfo_mount_id(fd, ret);
}

static int fd_same_mount(int fd, int other_fd) {
        uint64_t a, b;
        int r;

        r = fd_mount_id(fd, &a);
        if (r < 0)
                return r;
        r = fd_mount_id(other_fd, &b);
        if (r < 0)
                return r;
        return a == b ? 0 : -EXDEV;
}

static void proc_fd_path(int fd, char buf[static PROC_FD_PATH_MAX]) {
        snprintf(buf, PROC_FD_PATH_MAX, "/proc/self/fd/%d", fd);
}

static int proc_missing_errno(int r) {
        /* A /proc/self/fd/N that does not resolve means /proc is not
         * mounted here; say so instead of a misleading ENOENT. */
        if (r == -ENOENT && access("/proc/self/fd", F_OK) < 0)
                return -ENOSYS;
        return r;
}

static bool is_open_for_path_only(int fd) {
        int fl = fcntl(fd, F_GETFL);
        return fl >= 0 && (fl & O_PATH);
}

static int type_errno(mode_t want, mode_t have) {
        if (S_ISLNK(have))
                return -ELOOP;
        if (want == S_IFDIR)
                return -ENOTDIR;
        if ((have & S_IFMT) == S_IFDIR)
                return -EISDIR;
        if (want == S_IFBLK)
                return -ENOTBLK;
        return -EBADFD;
}

static int check_type(const struct stat *st, mode_t type) {
        if (S_ISLNK(st->st_mode))
                return -ELOOP;
        if (type != 0 && (st->st_mode & S_IFMT) != type)
                return type_errno(type, st->st_mode);
        return 0;
}

static int enotdir_or_eloop(int dirfd, const char *name) {
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISLNK(st.st_mode))
                return -ELOOP;
        return -ENOTDIR;
}

/* chmod through the fd: fchmod() where the fd allows it, else the
 * /proc/self/fd magic link, which names exactly this inode (fchmod() on an
 * O_PATH fd is EBADF). Never used on symlinks (callers check). */
static int fd_chmod_raw(int fd, mode_t mode) {
        char p[PROC_FD_PATH_MAX];

        if (!is_open_for_path_only(fd))
                return RET_NERRNO(fchmod(fd, mode));
        proc_fd_path(fd, p);
        if (chmod(p, mode) < 0)
                return proc_missing_errno(-errno);
        return 0;
}

static int fd_chown_raw(int fd, uid_t uid, gid_t gid) {
        /* AT_EMPTY_PATH: the inode open at fd, O_PATH included, no lookup. */
        return RET_NERRNO(fchownat(fd, "", uid, gid, AT_EMPTY_PATH));
}

/* Reopens the object open at fd (typically O_PATH) with real flags. */
static int fd_reopen(int fd, const struct stat *st, int flags, int *ret_fd) {
        _cleanup_close_ int nfd = -EBADF;
        struct stat nst;

        flags &= ~(O_CREAT | O_EXCL | O_NOFOLLOW | O_TMPFILE_BIT | O_PATH);
        flags |= O_CLOEXEC | O_NOCTTY;
        if (S_ISDIR(st->st_mode))
                nfd = openat(fd, ".", flags | O_DIRECTORY);
        else {
                char p[PROC_FD_PATH_MAX];

                proc_fd_path(fd, p);
                nfd = open(p, flags);
                if (nfd < 0)
                        return proc_missing_errno(-errno);
        }
        if (nfd < 0)
                return -errno;
        if (fstat(nfd, &nst) < 0)
                return -errno;
        if (nst.st_dev != st->st_dev || nst.st_ino != st->st_ino)
                return -ESTALE;
        *ret_fd = TAKE_FD(nfd);
        return 0;
}

/* Links the file open at fd (an O_TMPFILE included) as dirfd/name. */
static int link_fd(int fd, int dirfd, const char *name) {
        char p[PROC_FD_PATH_MAX];

        if (!fallback()) {
                /* Needs CAP_DAC_READ_SEARCH; without it the kernel says
                 * ENOENT, and the /proc route below works instead. */
                if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) >= 0)
                        return 0;
                if (!IN_SET(errno, ENOENT, EPERM, EINVAL))
                        return -errno;
        }
        proc_fd_path(fd, p);
        if (linkat(AT_FDCWD, p, dirfd, name, AT_SYMLINK_FOLLOW) < 0)
                return proc_missing_errno(-errno);
        return 0;
}

/* ---- resolution below a root -------------------------------------------- */

static int walk_beneath(int rootfd, const char *path, int flags, mode_t mode, int *ret_fd) {
        _cleanup_close_ int cur = -EBADF;
        const char *p = path, *c;
        uint64_t root_mnt;
        size_t l;
        int r;

        r = fd_mount_id(rootfd, &root_mnt);
        if (r < 0)
                return r;

        l = path_next_component(&p, &c);
        for (;;) {
                _cleanup_close_ int fd = -EBADF;
                char name[NAME_MAX + 1];
                int dfd = cur >= 0 ? cur : rootfd;
                const char *nc;
                uint64_t mnt;
                size_t nl;

                memcpy(name, c, l);
                name[l] = '\0';
                nl = path_next_component(&p, &nc);

                /* Intermediate components: O_PATH|O_NOFOLLOW|O_DIRECTORY,
                 * which fails on a symlink instead of following it. The
                 * last one with the caller's flags plus O_NOFOLLOW. */
                if (nl == 0)
                        fd = openat(dfd, name, flags, mode);
                else
                        fd = openat(dfd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0) {
                        r = -errno;
                        return r == -ENOTDIR ? enotdir_or_eloop(dfd, name) : r;
                }

                /* The fd tells where the open landed: a mount point on the
                 * way (a bind mount in a jail) is refused like
                 * RESOLVE_NO_XDEV would. */
                r = fd_mount_id(fd, &mnt);
                if (r < 0)
                        return r;
                if (mnt != root_mnt)
                        return -EXDEV;

                if (nl == 0) {
                        *ret_fd = TAKE_FD(fd);
                        return 0;
                }
                safe_close(cur);
                cur = TAKE_FD(fd);
                c = nc;
                l = nl;
        }
}

static int resolve_raw(int rootfd, const char *path, int flags, mode_t mode, int *ret_fd) {
        flags |= O_NOFOLLOW | O_CLOEXEC;

#if HAVE_SYS_OPENAT2
        if (safe_fs_openat2_available()) {
                int fd = -1;

                /* EAGAIN: a concurrent rename or mount somewhere made the
                 * kernel unsure. EXDEV: a mount point, or the object was
                 * renamed out from below rootfd while we looked it up (the
                 * kernel's final path_is_under() check). Retry a bounded
                 * number of times: a mount point says EXDEV every time. */
                for (unsigned i = 0; i < 16; i++) {
                        fd = sys_openat2(rootfd, path, flags, mode);
                        if (fd >= 0 || (errno != EAGAIN && errno != EXDEV))
                                break;
                }
                if (fd >= 0) {
                        *ret_fd = fd;
                        return 0;
                }
                if (errno != ENOSYS)
                        return -errno;
                openat2_works = 0;
        }
#endif
        return walk_beneath(rootfd, path, flags, mode, ret_fd);
}

/* Opens rootfd/path with flags; the path must be valid, no symlink is
 * followed, no mount crossed. A symlink where a directory was needed is
 * -ELOOP in both implementations (openat2 and the O_DIRECTORY open say
 * ENOTDIR for a trailing one). */
static int resolve(int rootfd, const char *path, int flags, mode_t mode, int *ret_fd) {
        _cleanup_close_ int pfd = -EBADF;
        char parent[PATH_MAX];
        size_t off;
        int r;

        if (!relative_path_valid(path))
                return -EINVAL;
        r = resolve_raw(rootfd, path, flags, mode, ret_fd);
        if (r != -ENOTDIR)
                return r;

        off = path_last_component_offset(path);
        if (off == 0)
                return enotdir_or_eloop(rootfd, path);
        memcpy(parent, path, off - 1);
        parent[off - 1] = '\0';
        if (resolve_raw(rootfd, parent, O_PATH | O_DIRECTORY, 0, &pfd) < 0)
                return -ENOTDIR;
        return enotdir_or_eloop(pfd, path + off);
}

int safe_open_parent_at(int rootfd, const char *path, int *ret_dirfd, const char **ret_name) {
        char parent[PATH_MAX];
        size_t off;
        int fd, r;

        if (!relative_path_valid(path))
                return -EINVAL;
        off = path_last_component_offset(path);
        if (off == 0) {
                fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
                if (fd < 0)
                        return -errno;
        } else {
                memcpy(parent, path, off - 1);
                parent[off - 1] = '\0';
                r = resolve(rootfd, parent, O_PATH | O_DIRECTORY, 0, &fd);
                if (r < 0)
                        return r;
        }
        *ret_dirfd = fd;
        *ret_name = path + off;
        return 0;
}

static bool wants_write(int flags) {
        return (flags & O_ACCMODE) != O_RDONLY || (flags & (O_TRUNC | O_APPEND));
}

int safe_open_at(int rootfd, const char *path, int flags, mode_t type, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        if (flags & (O_CREAT | O_TMPFILE_BIT))
                return -EINVAL;
        if (type == 0 && !(flags & O_PATH))
                return -EINVAL;

        /* O_PATH first: it opens nothing (no FIFO blocks, no device
         * driver runs), so we see the type before any real open. */
        r = resolve(rootfd, path, O_PATH | (type == S_IFDIR ? O_DIRECTORY : 0), 0, &fd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        r = check_type(&st, type);
        if (r < 0)
                return r;
        if (flags & O_PATH) {
                *ret_fd = TAKE_FD(fd);
                return 0;
        }
        /* Writing through a second link would modify a file elsewhere. */
        if (!S_ISDIR(st.st_mode) && wants_write(flags) && st.st_nlink != 1)
                return -EMLINK;
        return fd_reopen(fd, &st, flags, ret_fd);
}

/* Reads the regular file open at fd, of at most max_size bytes; root_only:
 * only if root owns it. */
static int read_regular_fd(int fd, bool root_only, size_t max_size, char **ret_data, size_t *ret_size) {
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        r = check_type(&st, S_IFREG);
        if (r < 0)
                return r;
        if (root_only && st.st_uid != 0)
                return -EPERM;
        if ((uint64_t) st.st_size > max_size)
                return -EFBIG;
        return read_full_fd(fd, max_size, ret_data, ret_size);
}

int safe_read_file_at(int rootfd, const char *path, size_t max_size, char **ret_data, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (max_size >= SIZE_MAX / 2)
                return -EINVAL;
        r = safe_open_at(rootfd, path, O_RDONLY, S_IFREG, &fd);
        if (r < 0)
                return r;
        return read_regular_fd(fd, false, max_size, ret_data, ret_size);
}

/* Root's own trees: root alone can create anything in them, so whatever
 * sits at path was put there by root. One open for reading (O_NONBLOCK all
 * the same), then the type and owner are checked: no O_PATH open and no
 * reopen through /proc, which were most of the cost of reading 100 launch
 * plans per microvmctl list or scrape. */
int safe_read_root_file_at(int rootfd, const char *path, size_t max_size, char **ret_data, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (max_size >= SIZE_MAX / 2)
                return -EINVAL;
        r = resolve(rootfd, path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0, &fd);
        if (r < 0)
                return r;
        return read_regular_fd(fd, true, max_size, ret_data, ret_size);
}

/* ---- trusted roots ------------------------------------------------------- */

static const char *trusted_hint(TrustedProblem p) {
        switch (p) {
        case TRUSTED_NOT_ROOT_OWNED:
                return "; make it owned by root (chown root:root)";
        case TRUSTED_GROUP_WRITABLE:
        case TRUSTED_WORLD_WRITABLE:
                return "; remove the write bits for group and others (chmod go-w), or choose a path only root can write";
        default:
                return "";
        }
}

static int trusted_problem_errno(TrustedProblem p) {
        switch (p) {
        case TRUSTED_SYMLINK:
                return -ELOOP;
        case TRUSTED_NOT_DIRECTORY:
                return -ENOTDIR;
        case TRUSTED_NOT_REGULAR:
                return -EBADFD;
        default:
                return -EPERM;
        }
}

static int create_trusted_component(int dirfd, const char *name, mode_t mode, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        bool created = true;
        struct stat st;

        /* The parent passed trusted_inode_check(): only root can create
         * entries in it, so a directory appearing here between our mkdirat
         * and openat is another root process doing the same (a concurrent
         * stage), and is checked like any existing component. */
        if (mkdirat(dirfd, name, 0700) < 0) {
                if (errno != EEXIST)
                        return -errno;
                created = false;
        }
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR ? enotdir_or_eloop(dirfd, name) : -errno;
        if (created) {
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (st.st_uid != 0)
                        return -ESTALE;
                /* Exactly mode, whatever the umask. */
                if (fchown(fd, 0, 0) < 0 || fchmod(fd, mode) < 0)
                        return -errno;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int safe_root_open(const char *path, SafeRootFlags flags, mode_t create_mode, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        const char *p = path, *c;
        bool want_regular = flags & SAFE_ROOT_REGULAR;
        TrustedProblem tp;
        PathProblem pp;
        struct stat st;
        size_t l;
        int r;

        if (!path)
                return error_setf(ret_error, -EINVAL, "No path given for a trusted directory");
        pp = path_check_normalized(path);
        if (pp != PATH_OK && !(pp == PATH_ROOT && !want_regular))
                return error_setf(ret_error, -EINVAL, "%s: %s (expected an absolute, normalized path)", path,
                                 path_problem_to_string(pp));
        if (create_mode & ~0777)
                return error_setf(ret_error, -EINVAL, "%s: invalid creation mode %04o", path, (unsigned) create_mode);

        fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return error_setf(ret_error, -errno, "%s: cannot open \"/\": %s", path, strerror(errno));
        tp = trusted_inode_check(&st, false);
        if (tp != TRUSTED_OK)
                return error_setf(ret_error, trusted_problem_errno(tp), "%s: \"/\" %s (mode %04o, owner %u:%u)%s",
                                 path, trusted_problem_to_string(tp), (unsigned) (st.st_mode & 07777),
                                 (unsigned) st.st_uid, (unsigned) st.st_gid, trusted_hint(tp));

        while ((l = path_next_component(&p, &c)) > 0) {
                _cleanup_close_ int nfd = -EBADF;
                char name[NAME_MAX + 1];
                bool last = *p == '\0';
                bool reg = last && want_regular;
                int prefix = (int) (c + l - path);

                memcpy(name, c, l);
                name[l] = '\0';
                nfd = openat(fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC | (reg ? 0 : O_DIRECTORY));
                if (nfd < 0) {
                        r = -errno;
                        if (r == -ENOENT && (flags & SAFE_ROOT_CREATE) && !reg) {
                                r = create_trusted_component(fd, name, create_mode, &nfd);
                                if (r < 0)
                                        return error_setf(ret_error, r, "%s: cannot create \"%.*s\": %s", path,
                                                         prefix, path, strerror(-r));
                        } else if (r == -ENOTDIR) {
                                r = enotdir_or_eloop(fd, name);
                                tp = r == -ELOOP ? TRUSTED_SYMLINK : TRUSTED_NOT_DIRECTORY;
                                return error_setf(ret_error, r, "%s: \"%.*s\" %s", path, prefix, path,
                                                 trusted_problem_to_string(tp));
                        } else if (r == -ENOENT)
                                return error_setf(ret_error, r, "%s: \"%.*s\" does not exist", path, prefix, path);
                        else
                                return error_setf(ret_error, r, "%s: cannot open \"%.*s\": %s", path, prefix, path,
                                                 strerror(-r));
                }
                if (fstat(nfd, &st) < 0)
                        return error_setf(ret_error, -errno, "%s: cannot stat \"%.*s\": %s", path, prefix, path,
                                         strerror(errno));
                tp = trusted_inode_check(&st, reg);
                if (tp != TRUSTED_OK)
                        return error_setf(ret_error, trusted_problem_errno(tp),
                                         "%s: \"%.*s\" %s (mode %04o, owner %u:%u)%s", path, prefix, path,
                                         trusted_problem_to_string(tp), (unsigned) (st.st_mode & 07777),
                                         (unsigned) st.st_uid, (unsigned) st.st_gid, trusted_hint(tp));
                safe_close(fd);
                fd = TAKE_FD(nfd);
        }

        r = fd_reopen(fd, &st, O_RDONLY | (want_regular ? 0 : O_DIRECTORY), ret_fd);
        if (r < 0)
                return error_setf(ret_error, r, "%s: cannot open: %s", path, strerror(-r));
        return 0;
}

/* ---- creating -------------------------------------------------------------- */

static int mkdir_one(int dirfd, const char *name, mode_t mode, uid_t uid, gid_t gid, bool exist_ok, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        bool created = true;
        struct stat st;
        int r;

        /* 0700 until chowned and chmodded: never more open than wanted. */
        if (mkdirat(dirfd, name, 0700) < 0) {
                if (errno != EEXIST || !exist_ok)
                        return -errno;
                created = false;
        }
        fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return errno == ENOTDIR ? enotdir_or_eloop(dirfd, name) : -errno;
        r = fd_same_mount(fd, dirfd);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;

        if (!created) {
                if (st.st_uid != uid || st.st_gid != gid)
                        return -EPERM;
                if (st.st_mode & 0022 & ~mode)
                        return -EPERM;
                if (ret_fd)
                        *ret_fd = TAKE_FD(fd);
                return 0;
        }

        /* We created it a moment ago; if it is not ours now, someone swapped
         * it between mkdirat() and openat() (the parent may be writable by
         * the VM's uid). */
        if (st.st_uid != geteuid())
                return -ESTALE;
        r = fd_chown_raw(fd, uid, gid);
        if (r < 0)
                return r;
        if (fchmod(fd, mode) < 0)
                return -errno;
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 1;
}

int safe_mkdir_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, SafeMkdirFlags flags,
                  int *ret_fd) {
        _cleanup_close_ int cur = -EBADF;
        const char *name, *p = path, *c;
        size_t l;
        int r;

        if (!relative_path_valid(path) || (mode & ~01777))
                return -EINVAL;

        if (!(flags & SAFE_MKDIR_PARENTS)) {
                r = safe_open_parent_at(rootfd, path, &cur, &name);
                if (r < 0)
                        return r;
                return mkdir_one(cur, name, mode, uid, gid, flags & SAFE_MKDIR_EXIST_OK, ret_fd);
        }

        cur = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (cur < 0)
                return -errno;
        while ((l = path_next_component(&p, &c)) > 0) {
                _cleanup_close_ int nfd = -EBADF;
                char comp[NAME_MAX + 1];

                memcpy(comp, c, l);
                comp[l] = '\0';
                if (*p == '\0')
                        return mkdir_one(cur, comp, mode, uid, gid, flags & SAFE_MKDIR_EXIST_OK, ret_fd);

                r = resolve(cur, comp, O_PATH | O_DIRECTORY, 0, &nfd);
                if (r == -ENOENT)
                        r = mkdir_one(cur, comp, mode, uid, gid, true, &nfd);
                if (r < 0)
                        return r;
                safe_close(cur);
                cur = TAKE_FD(nfd);
        }
        return -EINVAL;
}

static int set_owner_mode_new(int fd, mode_t mode, uid_t uid, gid_t gid) {
        int r;

        /* chown first: it may clear mode bits, the chmod then sets exactly
         * mode. */
        r = fd_chown_raw(fd, uid, gid);
        if (r < 0)
                return r;
        return fd_chmod_raw(fd, mode);
}

int safe_create_file_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid, int *ret_fd) {
        _cleanup_close_ int pfd = -EBADF, fd = -EBADF;
        const char *name;
        int r;

        if (mode & ~0777)
                return -EINVAL;
        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        /* O_EXCL|O_NOFOLLOW: an existing name — file, symlink, FIFO,
         * hardlink to anything — is EEXIST, never opened. */
        fd = openat(pfd, name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;
        r = set_owner_mode_new(fd, mode, uid, gid);
        if (r < 0) {
                (void) unlinkat(pfd, name, 0);
                return r;
        }
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

/* A file that is filled first and given its name last. */
typedef struct TmpFile {
        int fd;
        int dirfd;              /* borrowed */
        bool named;
        char name[NAME_MAX + 1];
} TmpFile;

static void tmpfile_discard(TmpFile *t) {
        if (t->fd >= 0 && t->named)
                (void) unlinkat(t->dirfd, t->name, 0);
        t->fd = safe_close(t->fd);
}

static int tmpfile_open(int dirfd, const char *name, bool need_name, TmpFile *ret) {
        *ret = (TmpFile) { .fd = -EBADF, .dirfd = dirfd };

        if (!need_name && !fallback()) {
                /* Anonymous: no name an attacker could touch while we fill
                 * it, nothing left behind by a SIGKILL. */
                int fd = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
                if (fd >= 0) {
                        ret->fd = fd;
                        return 0;
                }
                if (!IN_SET(errno, EOPNOTSUPP, EISDIR, EINVAL))
                        return -errno;
        }

        for (unsigned i = 0; i < 16; i++) {
                unsigned long long rnd;
                int fd, r;

                if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd)
                        rnd = (unsigned long long) now_usec(CLOCK_MONOTONIC) ^ ((unsigned long long) getpid() << 32) ^ i;
                r = safe_temp_name(name, rnd, ret->name, sizeof ret->name);
                if (r < 0)
                        return r;
                fd = openat(dirfd, ret->name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
                if (fd >= 0) {
                        ret->fd = fd;
                        ret->named = true;
                        return 0;
                }
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

static int tmpfile_publish(TmpFile *t, const char *name, bool replace) {
        int r;

        if (!t->named) {
                /* linkat() fails with EEXIST on any existing name: O_EXCL
                 * semantics for the final name. */
                r = link_fd(t->fd, t->dirfd, name);
                return r;
        }
        if (replace) {
                /* rename() replaces the name, never writes through it. */
                if (renameat(t->dirfd, t->name, t->dirfd, name) < 0)
                        return -errno;
        } else {
                if (linkat(t->dirfd, t->name, t->dirfd, name, 0) < 0)
                        return -errno;
                (void) unlinkat(t->dirfd, t->name, 0);
        }
        t->named = false;
        return 0;
}

int safe_write_file_at(int rootfd, const char *path, const void *data, size_t size, mode_t mode, uid_t uid,
                       gid_t gid, SafeWriteFlags flags) {
        _cleanup_close_ int pfd = -EBADF;
        const char *name;
        TmpFile t;
        int r;

        if (mode & ~0777)
                return -EINVAL;
        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        r = tmpfile_open(pfd, name, flags & SAFE_WRITE_REPLACE, &t);
        if (r < 0)
                return r;

        r = loop_write(t.fd, data, size);
        if (r >= 0)
                r = set_owner_mode_new(t.fd, mode, uid, gid);
        if (r >= 0 && (flags & SAFE_WRITE_SYNC) && fsync(t.fd) < 0)
                r = -errno;
        if (r >= 0)
                r = tmpfile_publish(&t, name, flags & SAFE_WRITE_REPLACE);
        tmpfile_discard(&t);
        return r < 0 ? r : 0;
}

/* After mknodat/mkfifoat: open the new node O_PATH (never the device or
 * FIFO itself), check it is the one we made, chown and chmod it. */
static int finish_node(int dirfd, const char *name, mode_t type, dev_t rdev, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if ((st.st_mode & S_IFMT) != type || (type != S_IFIFO && st.st_rdev != rdev) || st.st_uid != geteuid() ||
            st.st_nlink != 1)
                return -ESTALE;
        r = fd_chown_raw(fd, uid, gid);
        if (r < 0)
                return r;
        return fd_chmod_raw(fd, mode);
}

int safe_mkfifo_at(int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int pfd = -EBADF;
        const char *name;
        int r;

        if (mode & ~0777)
                return -EINVAL;
        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        if (mkfifoat(pfd, name, 0600) < 0)
                return -errno;
        r = finish_node(pfd, name, S_IFIFO, 0, mode, uid, gid);
        if (r < 0)
                (void) unlinkat(pfd, name, 0);
        return r;
}

int safe_mknod_at(int rootfd, const char *path, int dev_fd, mode_t mode, uid_t uid, gid_t gid) {
        _cleanup_close_ int pfd = -EBADF;
        struct stat dev;
        const char *name;
        mode_t type;
        int r;

        if (mode & ~0777)
                return -EINVAL;
        /* The node's identity comes from the kernel's view of a device we
         * opened ourselves, never from a number someone handed us. */
        if (fstat(dev_fd, &dev) < 0)
                return -errno;
        if (!S_ISBLK(dev.st_mode) && !S_ISCHR(dev.st_mode))
                return -ENODEV;
        type = dev.st_mode & S_IFMT;

        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        if (mknodat(pfd, name, type | 0600, dev.st_rdev) < 0) {
                _cleanup_close_ int fd = -EBADF;
                struct stat st;

                if (errno != EEXIST)
                        return -errno;
                /* crun's rule: an existing node is fine only if it is
                 * exactly the one we would have made. */
                fd = openat(pfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (fd < 0 || fstat(fd, &st) < 0)
                        return -EEXIST;
                if ((st.st_mode & S_IFMT) == type && st.st_rdev == dev.st_rdev && st.st_uid == uid &&
                    st.st_gid == gid && (st.st_mode & 07777) == mode && st.st_nlink == 1)
                        return 0;
                return -EEXIST;
        }
        r = finish_node(pfd, name, type, dev.st_rdev, mode, uid, gid);
        if (r < 0) {
                (void) unlinkat(pfd, name, 0);
                return r;
        }
        return 1;
}

int safe_link_at(int src_fd, int rootfd, const char *path) {
        _cleanup_close_ int pfd = -EBADF;
        struct stat src, st;
        const char *name;
        int r;

        if (fstat(src_fd, &src) < 0)
                return -errno;
        if (!S_ISREG(src.st_mode))
                return type_errno(S_IFREG, src.st_mode);
        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        r = link_fd(src_fd, pfd, name);
        if (r < 0)
                return r;
        if (fstatat(pfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (st.st_dev != src.st_dev || st.st_ino != src.st_ino)
                return -ESTALE;
        return 0;
}

/* ---- copying --------------------------------------------------------------- */

const char *safe_copy_method_to_string(SafeCopyMethod m) {
        switch (m) {
        case SAFE_COPY_REFLINK:
                return "reflink";
        case SAFE_COPY_SPARSE:
                return "sparse copy";
        case SAFE_COPY_FULL:
                return "full copy";
        default:
                return NULL;
        }
}

static int copy_range(int src, int dst, off_t off, off_t len) {
        bool use_cfr = true;
        _cleanup_free_ uint8_t *buf = NULL;
        const size_t bufsize = 256 * 1024;

        while (len > 0) {
                size_t chunk = (size_t) MIN(len, (off_t) 1 << 30);
                ssize_t n;

                if (use_cfr) {
                        loff_t in = off, out = off;

                        n = copy_file_range(src, &in, dst, &out, chunk, 0);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                if (!IN_SET(errno, EXDEV, EINVAL, ENOSYS, EOPNOTSUPP, EBADF))
                                        return -errno;
                                use_cfr = false;
                                continue;
                        }
                } else {
                        if (!buf) {
                                buf = malloc(bufsize);
                                if (!buf)
                                        return -ENOMEM;
                        }
                        n = pread(src, buf, MIN(chunk, bufsize), off);
                        if (n < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        for (ssize_t w = 0; w < n;) {
                                ssize_t k = pwrite(dst, buf + w, (size_t) (n - w), off + w);
                                if (k < 0) {
                                        if (errno == EINTR)
                                                continue;
                                        return -errno;
                                }
                                w += k;
                        }
                }
                if (n == 0)
                        return -ESTALE; /* the source shrank under us */
                off += n;
                len -= n;
        }
        return 0;
}

static int copy_data(int src, int dst, off_t size, SafeCopyMethod *ret_method) {
        bool seek_data = true;
        off_t pos = 0, copied = 0;
        int r;

        while (pos < size) {
                off_t data, end;

                data = lseek(src, pos, SEEK_DATA);
                if (data < 0) {
                        if (errno == ENXIO)
                                break;  /* nothing but a hole up to EOF */
                        if (!IN_SET(errno, EINVAL, EOPNOTSUPP))
                                return -errno;
                        /* No SEEK_DATA here: copy every byte. */
                        seek_data = false;
                        data = pos;
                        end = size;
                } else {
                        if (data >= size)
                                break;
                        end = lseek(src, data, SEEK_HOLE);
                        if (end < 0)
                                return -errno;
                        end = MIN(end, size);
                }
                r = copy_range(src, dst, data, end - data);
                if (r < 0)
                        return r;
                copied += end - data;
                pos = end;
        }
        /* Trailing hole, and the size in any case. */
        if (ftruncate(dst, size) < 0)
                return -errno;
        /* "sparse" only when holes were actually skipped: a source without
         * holes was copied byte for byte. */
        *ret_method = seek_data && copied < size ? SAFE_COPY_SPARSE : SAFE_COPY_FULL;
        return 0;
}

int safe_copy_file_at(int src_fd, int rootfd, const char *path, mode_t mode, uid_t uid, gid_t gid,
                      SafeCopyFlags flags, SafeCopyMethod *ret_method, int *ret_fd) {
        _cleanup_close_ int pfd = -EBADF, rfd = -EBADF;
        SafeCopyMethod method = SAFE_COPY_REFLINK;
        const char *name;
        struct stat src;
        TmpFile t;
        int r;

        if (mode & ~0777)
                return -EINVAL;
        if (fstat(src_fd, &src) < 0)
                return -errno;
        if (!S_ISREG(src.st_mode))
                return type_errno(S_IFREG, src.st_mode);
        if (is_open_for_path_only(src_fd)) {
                r = fd_reopen(src_fd, &src, O_RDONLY, &rfd);
                if (r < 0)
                        return r;
                src_fd = rfd;
        }

        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r < 0)
                return r;
        r = tmpfile_open(pfd, name, false, &t);
        if (r < 0)
                return r;

        if ((flags & SAFE_COPY_NO_REFLINK) || ioctl(t.fd, FICLONE, src_fd) < 0) {
                if (!(flags & SAFE_COPY_NO_REFLINK) &&
                    !IN_SET(errno, EOPNOTSUPP, ENOTTY, EXDEV, EINVAL, ENOSYS, EBADF)) {
                        r = -errno;
                        tmpfile_discard(&t);
                        return r;
                }
                r = copy_data(src_fd, t.fd, src.st_size, &method);
        } else
                r = 0;

        if (r >= 0)
                r = set_owner_mode_new(t.fd, mode, uid, gid);
        if (r >= 0 && (flags & SAFE_COPY_SYNC) && fsync(t.fd) < 0)
                r = -errno;
        if (r >= 0)
                r = tmpfile_publish(&t, name, false);
        if (r >= 0 && ret_fd) {
                *ret_fd = t.fd;
                t.fd = -EBADF;
        }
        tmpfile_discard(&t);
        if (r < 0)
                return r;
        if (ret_method)
                *ret_method = method;
        return 0;
}

/* ---- ownership and mode ------------------------------------------------------ */

int safe_fd_verify(int fd, mode_t type, uid_t uid) {
        struct stat st;
        int r;

        if (fstat(fd, &st) < 0)
                return -errno;
        r = check_type(&st, type);
        if (r < 0)
                return r;
        if (uid != UID_INVALID && st.st_uid != uid)
                return -EPERM;
        if (!S_ISDIR(st.st_mode) && st.st_nlink != 1)
                return -EMLINK;
        return 0;
}

static int verify_modifiable(int fd, struct stat *st) {
        if (fstat(fd, st) < 0)
                return -errno;
        if (S_ISLNK(st->st_mode))
                return -ELOOP;
        /* A second link means the inode is also visible elsewhere, maybe
         * outside the jail: changing it would change that file too. */
        if (!S_ISDIR(st->st_mode) && st->st_nlink != 1)
                return -EMLINK;
        return 0;
}

int safe_fd_chown(int fd, uid_t uid, gid_t gid) {
        struct stat st;
        int r;

        r = verify_modifiable(fd, &st);
        if (r < 0)
                return r;
        /* Ours (root's, just created) or already the VM's: never a file
         * some other user owns. */
        if (st.st_uid != 0 && st.st_uid != uid)
                return -EPERM;
        return fd_chown_raw(fd, uid, gid);
}

int safe_fd_chmod(int fd, mode_t mode) {
        struct stat st;
        int r;

        if (mode & ~01777)
                return -EINVAL;
        r = verify_modifiable(fd, &st);
        if (r < 0)
                return r;
        return fd_chmod_raw(fd, mode);
}

/* ---- removal -------------------------------------------------------------------- */

void safe_rm_report_done(SafeRmReport *r) {
        if (!r)
                return;
        for (size_t i = 0; i < r->n_refused; i++)
                free(r->refused[i].path);
        free(r->refused);
        *r = (SafeRmReport) {};
}

char *safe_rm_report_format(const SafeRmReport *r, const char *prefix) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!r || r->n_refused == 0)
                return NULL;
        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; i < r->n_refused; i++) {
                const SafeRmRefusal *x = &r->refused[i];

                fprintf(f, "%s%s%s: %s", strempty(prefix), isempty(prefix) ? "" : "/", x->path, x->reason);
                /* The errno text only where the reason does not say it all. */
                if (!IN_SET(-x->error, EXDEV, E2BIG, ELOOP, ESTALE))
                        fprintf(f, ": %s", strerror(-x->error));
                fputc('\n', f);
        }
        if (r->n_dropped > 0)
                fprintf(f, "%s... and %zu more\n", strempty(prefix), r->n_dropped);
        if (fclose(f) != 0)
                return NULL;
        if (size > 0 && buf[size - 1] == '\n')
                buf[size - 1] = '\0';
        return TAKE_PTR(buf);
}

typedef struct RmFrame {
        DIR *dir;
        int fd;                 /* dirfd(dir), owned by dir */
        char *name;             /* in the parent frame; NULL for the top */
        bool refused_below;     /* something below was left: ENOTEMPTY expected */
} RmFrame;

typedef struct RmCtx {
        const char *top_path;
        uint64_t root_mnt;
        dev_t root_dev;
        uint64_t max_entries;
        uint64_t n_entries;
        unsigned max_depth;
        RmFrame *frames;
        size_t n_frames;
        SafeRmReport *report;
        int first_error;
        uint64_t hoist_counter;
        bool hoisted_pending;
} RmCtx;

static void rm_refuse(RmCtx *c, const char *name, int error, const char *reason) {
        SafeRmReport *rep = c->report;
        size_t len = strlen(c->top_path) + 1;
        char *path, *q;

        if (c->first_error == 0)
                c->first_error = error;
        if (!rep)
                return;
        if (rep->n_refused >= SAFE_RM_REFUSALS_MAX) {
                rep->n_dropped++;
                return;
        }

        for (size_t i = 1; i < c->n_frames; i++)
                len += strlen(c->frames[i].name) + 1;
        if (name)
                len += strlen(name) + 1;
        path = q = malloc(len);
        if (!path) {
                rep->n_dropped++;
                return;
        }
        q = stpcpy(q, c->top_path);
        for (size_t i = 1; i < c->n_frames; i++) {
                *q++ = '/';
                q = stpcpy(q, c->frames[i].name);
        }
        if (name) {
                *q++ = '/';
                q = stpcpy(q, name);
        }

        /* A second pass over the top (after a hoist) meets the same
         * refusals again: report each once. */
        for (size_t i = 0; i < rep->n_refused; i++)
                if (rep->refused[i].error == error && streq(rep->refused[i].path, path)) {
                        free(path);
                        return;
                }

        if (!rep->refused) {
                rep->refused = calloc(SAFE_RM_REFUSALS_MAX, sizeof(SafeRmRefusal));
                if (!rep->refused) {
                        free(path);
                        rep->n_dropped++;
                        return;
                }
        }
        rep->refused[rep->n_refused++] = (SafeRmRefusal) {
                .path = path,
                .error = error,
                .reason = reason,
        };
}

static void rm_count_removed(RmCtx *c) {
        if (c->report)
                c->report->n_removed++;
}

static int rm_stat(int dirfd, const char *name, struct statx *ret) {
        /* AT_SYMLINK_NOFOLLOW: a symlink is looked at, not through;
         * AT_NO_AUTOMOUNT: do not trigger an automount by looking. */
        if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_DONT_SYNC,
                  STATX_TYPE | STATX_MODE | STATX_INO | STATX_MNT_ID, ret) < 0)
                return -errno;
        return 0;
}

static bool rm_is_mount(const RmCtx *c, const struct statx *sx) {
#if HAVE_STATX_ATTR_MOUNT_ROOT
        if ((sx->stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (sx->stx_attributes & STATX_ATTR_MOUNT_ROOT))
                return true;
#endif
        /* The mount id says it for every type. The device number does not:
         * overlayfs reports the underlying layer's device for everything but
         * directories (a file copied up to a tmpfs upper layer is on another
         * st_dev than its overlay directory), so it is the fallback for
         * kernels without STATX_MNT_ID, and for directories only. */
        if (sx->stx_mask & STATX_MNT_ID)
                return sx->stx_mnt_id != c->root_mnt;
        return S_ISDIR(sx->stx_mode) && makedev(sx->stx_dev_major, sx->stx_dev_minor) != c->root_dev;
}

static int rm_open_dir(RmCtx *c, int dirfd, const char *name, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        const int flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
        struct stat st;
        uint64_t mnt;
        int r;

        /* O_DIRECTORY|O_NOFOLLOW: a symlink, FIFO or device swapped in since
         * our statx fails here (ENOTDIR/ELOOP) instead of being opened. */
#if HAVE_SYS_OPENAT2
        if (safe_fs_openat2_available()) {
                fd = sys_openat2(dirfd, name, flags, 0);
                /* EXDEV here may also mean "renamed away while we looked"
                 * (see resolve_raw()): let the caller look again; its statx
                 * tells a mount point for sure. */
                if (fd < 0 && IN_SET(errno, EXDEV, EAGAIN))
                        return -EAGAIN;
        } else
#endif
                fd = openat(dirfd, name, flags);
        if (fd < 0)
                return -errno;
        /* Whatever the open went through, the fd says where we are. */
        r = fd_mount_id(fd, &mnt);
        if (r < 0)
                return r;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (mnt != c->root_mnt || st.st_dev != c->root_dev)
                return -EXDEV;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int rm_push(RmCtx *c, int fd, const char *name) {
        RmFrame *f = &c->frames[c->n_frames];
        DIR *d;

        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return -errno;
        }
        *f = (RmFrame) { .dir = d, .fd = fd };
        if (name) {
                f->name = strdup(name);
                if (!f->name) {
                        closedir(d);
                        return -ENOMEM;
                }
        }
        c->n_frames++;
        return 0;
}

static void rm_pop(RmCtx *c) {
        RmFrame *f = &c->frames[--c->n_frames];

        closedir(f->dir);
        free(f->name);
        *f = (RmFrame) {};
}

/* Moves a directory that is too deep up to the top of the tree, where it
 * is picked up again with a fresh, short stack. Both ends are inside the
 * tree we remove and on one mount: nothing leaves it. */
static int rm_hoist(RmCtx *c, int dirfd, const char *name) {
        char nn[NAME_MAX + 1];

        for (unsigned i = 0; i < 64; i++) {
                snprintf(nn, sizeof nn, SAFE_RM_HOIST_PREFIX "%" PRIu64, c->hoist_counter++);
                if (renameat2(dirfd, name, c->frames[0].fd, nn, RENAME_NOREPLACE) >= 0)
                        return 0;
                /* EINVAL: the directory now holds the top of the removal,
                 * which the kernel refuses to move into itself. We found
                 * it below the top, so someone moved them while we walked:
                 * the tree changed under us. (The other EINVAL, a file
                 * system without RENAME_NOREPLACE, is none that jails live
                 * on: ext4, xfs, btrfs, tmpfs and overlayfs all have it.) */
                if (errno == EINVAL)
                        return -ESTALE;
                if (errno != EEXIST)
                        return -errno;
        }
        return -EEXIST;
}

static void rm_entry(RmCtx *c, const char *name) {
        RmFrame *f = &c->frames[c->n_frames - 1];
        struct statx sx;
        int r, fd;

        /* A few rounds: the entry may change type under us (a directory
         * replaced by a symlink or the other way round). */
        for (unsigned attempt = 0; attempt < 4; attempt++) {
                r = rm_stat(f->fd, name, &sx);
                if (r == -ENOENT)
                        return;
                if (r < 0) {
                        rm_refuse(c, name, r, "cannot stat");
                        f->refused_below = true;
                        return;
                }
                if (rm_is_mount(c, &sx)) {
                        rm_refuse(c, name, -EXDEV, "mount point, not crossed");
                        f->refused_below = true;
                        return;
                }

                if (!S_ISDIR(sx.stx_mode)) {
                        /* Symlinks, FIFOs, sockets, devices, files: the name
                         * goes, nothing is opened or followed. */
                        if (unlinkat(f->fd, name, 0) >= 0) {
                                rm_count_removed(c);
                                return;
                        }
                        if (errno == ENOENT)
                                return;
                        if (errno == EISDIR)
                                continue;
                        rm_refuse(c, name, -errno, "cannot unlink");
                        f->refused_below = true;
                        return;
                }

                if (c->n_frames >= c->max_depth) {
                        r = rm_hoist(c, f->fd, name);
                        if (r == -ENOENT)
                                return;
                        if (r < 0) {
                                rm_refuse(c, name, r,
                                          r == -ESTALE ? "changed during removal: cannot move a too deep directory up"
                                                       : "cannot move a too deep directory up for removal");
                                f->refused_below = true;
                                return;
                        }
                        if (c->report)
                                c->report->n_hoisted++;
                        c->hoisted_pending = true;
                        return;
                }

                r = rm_open_dir(c, f->fd, name, &fd);
                if (r == -ENOENT)
                        return;
                if (IN_SET(r, -ENOTDIR, -ELOOP, -EAGAIN))
                        continue;
                if (r == -EXDEV) {
                        rm_refuse(c, name, r, "mount point, not crossed");
                        f->refused_below = true;
                        return;
                }
                if (r >= 0)
                        r = rm_push(c, fd, name);
                if (r < 0) {
                        rm_refuse(c, name, r, "cannot open directory");
                        f->refused_below = true;
                }
                return;
        }
        rm_refuse(c, name, -ESTALE, "kept changing type during removal");
        f->refused_below = true;
}

/* Removes everything below the directory open at topfd (consumed).
 * Iterative: the stack is c->frames, at most c->max_depth deep. */
static void rm_contents(RmCtx *c, int topfd) {
        int r;

        r = rm_push(c, topfd, NULL);
        if (r < 0) {
                rm_refuse(c, NULL, r, "cannot read directory");
                return;
        }

        while (c->n_frames > 0) {
                RmFrame *f = &c->frames[c->n_frames - 1];
                struct dirent *de;

                errno = 0;
                de = readdir(f->dir);
                if (!de) {
                        _cleanup_free_ char *name = NULL;
                        bool refused = f->refused_below;

                        if (errno != 0) {
                                rm_refuse(c, NULL, -errno, "cannot read directory");
                                refused = true;
                        }
                        if (c->n_frames == 1) {
                                if (c->hoisted_pending) {
                                        /* Pick up what was moved up here
                                         * (bounded: every pass follows a
                                         * hoist, every hoist an entry). */
                                        c->hoisted_pending = false;
                                        rewinddir(f->dir);
                                        continue;
                                }
                                rm_pop(c);
                                break;
                        }

                        name = TAKE_PTR(f->name);
                        rm_pop(c);
                        f = &c->frames[c->n_frames - 1];
                        if (refused) {
                                f->refused_below = true;
                                continue;
                        }
                        if (unlinkat(f->fd, name, AT_REMOVEDIR) >= 0)
                                rm_count_removed(c);
                        else if (errno != ENOENT) {
                                rm_refuse(c, name, -errno, "cannot remove directory");
                                f->refused_below = true;
                        }
                        continue;
                }
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (++c->n_entries > c->max_entries) {
                        rm_refuse(c, NULL, -E2BIG, "too many entries, removal stopped (limit reached)");
                        while (c->n_frames > 0)
                                rm_pop(c);
                        return;
                }
                rm_entry(c, de->d_name);
        }
}

int safe_remove_temporaries_at(int rootfd, const char *path) {
        _cleanup_close_ int fd = -EBADF;
        struct dirent *de;
        int r, n = 0;
        DIR *d;

        if (!path) {
                /* A new open file description (a dup would share rootfd's
                 * directory offset). "." is rootfd itself, never a link. */
                fd = openat(rootfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0)
                        return -errno;
                r = 0;
        } else {
                r = safe_open_dir_at(rootfd, path, &fd);
                if (r == -ENOENT)
                        return 0;
                if (r < 0)
                        return r;
        }
        d = fdopendir(fd);
        if (!d)
                return -errno;
        TAKE_FD(fd);
        while ((errno = 0, de = readdir(d))) {
                struct stat st;

                if (!startswith(de->d_name, SAFE_TEMP_PREFIX))
                        continue;
                /* lstat-like: a symlink or directory with such a name is
                 * not one of ours, and is left alone */
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) >= 0)
                        n++;
                else if (errno != ENOENT) {
                        r = -errno;
                        break;
                }
        }
        if (r >= 0 && errno != 0)
                r = -errno;
        closedir(d);
        return r < 0 ? r : n;
}

int safe_rm_rf_at(int rootfd, const char *path, SafeRmFlags flags, const SafeRmLimits *limits,
                  SafeRmReport *report) {
        _cleanup_close_ int pfd = -EBADF, topfd = -EBADF;
        _cleanup_free_ RmFrame *frames = NULL;
        struct statx sx;
        struct stat rst;
        const char *name;
        RmCtx c = {
                .top_path = path,
                .report = report,
                .max_entries = limits && limits->max_entries ? limits->max_entries : SAFE_RM_MAX_ENTRIES_DEFAULT,
                .max_depth = limits && limits->max_depth ? MAX(limits->max_depth, 2U) : SAFE_RM_MAX_DEPTH_DEFAULT,
        };
        int r;

        if (!relative_path_valid(path))
                return -EINVAL;
        r = fd_mount_id(rootfd, &c.root_mnt);
        if (r < 0)
                return r;
        if (fstat(rootfd, &rst) < 0)
                return -errno;
        c.root_dev = rst.st_dev;

        r = safe_open_parent_at(rootfd, path, &pfd, &name);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                rm_refuse(&c, NULL, r,
                          r == -ELOOP ? "a component of the path is a symlink, not followed"
                          : r == -EXDEV ? "a component of the path is a mount point, not crossed"
                                        : "cannot open the parent directory");
                return r;
        }

        for (unsigned attempt = 0;; attempt++) {
                if (attempt >= 4) {
                        rm_refuse(&c, NULL, -ESTALE, "kept changing type during removal");
                        return -ESTALE;
                }
                r = rm_stat(pfd, name, &sx);
                if (r == -ENOENT)
                        return 0;
                if (r < 0) {
                        rm_refuse(&c, NULL, r, "cannot stat");
                        return r;
                }
                if (rm_is_mount(&c, &sx)) {
                        rm_refuse(&c, NULL, -EXDEV, "mount point, not crossed");
                        return -EXDEV;
                }
                if (!S_ISDIR(sx.stx_mode)) {
                        if (flags & SAFE_RM_CONTENTS_ONLY)
                                return -ENOTDIR;
                        if (unlinkat(pfd, name, 0) >= 0) {
                                rm_count_removed(&c);
                                return 1;
                        }
                        if (errno == ENOENT)
                                return 0;
                        if (errno == EISDIR)
                                continue;
                        r = -errno;
                        rm_refuse(&c, NULL, r, "cannot unlink");
                        return r;
                }
                r = rm_open_dir(&c, pfd, name, &topfd);
                if (r == -ENOENT)
                        return 0;
                if (IN_SET(r, -ENOTDIR, -ELOOP, -EAGAIN))
                        continue;
                if (r < 0) {
                        rm_refuse(&c, NULL, r, r == -EXDEV ? "mount point, not crossed" : "cannot open directory");
                        return r;
                }
                break;
        }

        frames = calloc(c.max_depth, sizeof(RmFrame));
        if (!frames)
                return -ENOMEM;
        c.frames = frames;
        rm_contents(&c, TAKE_FD(topfd));

        if (c.first_error != 0)
                return c.first_error;
        if (flags & SAFE_RM_CONTENTS_ONLY)
                return 1;
        if (unlinkat(pfd, name, AT_REMOVEDIR) < 0) {
                r = -errno;
                if (r == -ENOENT)
                        return 1;
                rm_refuse(&c, NULL, r, "cannot remove directory");
                return r;
        }
        rm_count_removed(&c);
        return 1;
}
