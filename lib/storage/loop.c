/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <stdarg.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>

#include "util.h"
#include "loop.h"
#include "parse-util.h"
#include "storage-util.h"

#if !HAVE_LOOP_CONFIGURE
/* Kernel headers older than 5.8: the ioctl may still exist at run time. */
struct loop_config {
        __u32 fd;
        __u32 block_size;
        struct loop_info64 info;
        __u64 __reserved[8];
};
#define LOOP_CONFIGURE 0x4C0A
#endif
#ifndef LOOP_SET_DIRECT_IO
#define LOOP_SET_DIRECT_IO 0x4C08
#endif
#ifndef LO_FLAGS_DIRECT_IO
#define LO_FLAGS_DIRECT_IO 16
#endif

/* Set once LOOP_CONFIGURE failed as unknown and the legacy path worked. */
static bool loop_configure_unsupported;
static usec_t loop_ioctl_usec_total;

/* ioctl() that accounts its wall time (the kernel's share, for benchmarks). */
static int timed_ioctl(int fd, unsigned long request, unsigned long arg) {
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        int r = ioctl(fd, request, arg);
        int saved = errno;

        loop_ioctl_usec_total += now_usec(CLOCK_MONOTONIC) - t0;
        errno = saved;
        return r;
}

void loop_force_legacy(bool legacy) {
        loop_configure_unsupported = legacy;
}

usec_t loop_kernel_usec(void) {
        return loop_ioctl_usec_total;
}

void loop_device_done(LoopDevice *l) {
        if (!l)
                return;
        l->fd = safe_close(l->fd);
}

/* ---- pure ------------------------------------------------------------------ */

void loop_file_name_format(const char *path, char buf[static 64]) {
        snprintf(buf, 64, LOOP_MARKER "%s", path);
}

bool loop_file_name_is_ours(const char *lo_file_name) {
        return startswith(lo_file_name, LOOP_MARKER);
}

int loop_name_parse(const char *name, unsigned *ret) {
        const char *n = startswith(name, "loop");
        uint32_t v;

        if (!n || parse_u32(n, &v) < 0)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* ---- helpers --------------------------------------------------------------------- */

/* The path of an open file as the kernel prints it (the same d_path the
 * loop driver shows in sysfs backing_file). */
static int fd_path(int fd, char buf[static PATH_MAX]) {
        char proc[64];
        ssize_t n;

        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
        n = readlink(proc, buf, PATH_MAX - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        return 0;
}

/* Opens /dev/loopN and checks that it is the device sysfs calls loopN. */
/* The kernel has loopN (sysfs), but /dev has no node of that name. */
static bool loop_has_no_node(unsigned nr) {
        char path[64];

        snprintf(path, sizeof path, "/sys/block/loop%u", nr);
        if (access(path, F_OK) < 0)
                return false;
        snprintf(path, sizeof path, "/dev/loop%u", nr);
        return faccessat(AT_FDCWD, path, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
}

static int loop_open_nr(unsigned nr, bool read_only, int *ret_fd, dev_t *ret_devnum) {
        _cleanup_close_ int fd = -EBADF;
        char path[64], line[32];
        struct stat st;
        dev_t want;
        int r;

        snprintf(path, sizeof path, "/dev/loop%u", nr);
        fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISBLK(st.st_mode))
                return -ENOTBLK;
        snprintf(path, sizeof path, "/sys/block/loop%u/dev", nr);
        r = read_one_line_file(path, line, sizeof line);
        if (r < 0)
                return r;
        if (parse_devnum(line, &want) < 0)
                return -EBADMSG;
        /* /dev/loopN is a node someone could have replaced: it must be the
         * device the kernel calls loopN. */
        if (st.st_rdev != want)
                return -ESTALE;
        *ret_fd = TAKE_FD(fd);
        *ret_devnum = st.st_rdev;
        return 0;
}

int loop_lock(int *ret_lock_fd, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + LOOP_LOCK_TIMEOUT;

        fd = open("/dev/loop-control", O_RDWR | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                int e = errno;
                if (e == ENOENT || e == ENODEV || e == ENXIO)
                        return error_setf(ret_error, e,
                                         "/dev/loop-control: %m (the kernel has no loop device support: modprobe loop)");
                return error_setf(ret_error, e, "/dev/loop-control: %m");
        }
        /* Bounded: a hung holder yields a message, not a stuck start. */
        for (unsigned attempt = 0;; attempt++) {
                if (flock(fd, LOCK_EX | LOCK_NB) >= 0)
                        break;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return error_setf(ret_error, errno, "Failed to lock /dev/loop-control: %m");
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        return error_setf(ret_error, ETIMEDOUT,
                                         "Timed out after %u s waiting for the lock on /dev/loop-control (another process holds it)",
                                         (unsigned) (LOOP_LOCK_TIMEOUT / USEC_PER_SEC));
                sleep_usec(backoff_delay(attempt, 1000, 100 * USEC_PER_MSEC, random_u64()));
        }
        *ret_lock_fd = TAKE_FD(fd);
        return 0;
}

/* One attach attempt on the loop device open at fd. */
static int loop_configure_fd(int fd, int backing_fd, uint32_t lo_flags, const char *name) {
        struct loop_config c = { .fd = (uint32_t) backing_fd };
        struct loop_info64 info = {};
        int e;

        c.info.lo_flags = lo_flags;
        memcpy(c.info.lo_file_name, name, LO_NAME_SIZE);

        if (!loop_configure_unsupported) {
                if (timed_ioctl(fd, LOOP_CONFIGURE, (unsigned long) &c) >= 0)
                        return 0;
                e = errno;
                if (e == EINVAL && (lo_flags & LO_FLAGS_DIRECT_IO)) {
                        /* Newer kernels refuse direct I/O the backing file
                         * cannot do instead of dropping it: without. */
                        c.info.lo_flags &= ~(uint32_t) LO_FLAGS_DIRECT_IO;
                        if (timed_ioctl(fd, LOOP_CONFIGURE, (unsigned long) &c) >= 0)
                                return 0;
                        e = errno;
                }
                if (e != EINVAL && e != ENOTTY)
                        return -e;
                /* No LOOP_CONFIGURE (before 5.8): the legacy pair below. */
        }

        if (timed_ioctl(fd, LOOP_SET_FD, (unsigned long) backing_fd) < 0)
                return -errno;
        /* LO_FLAGS_READ_ONLY cannot be set here: SET_FD took it from the
         * backing fd's mode. AUTOCLEAR and the name can. */
        info.lo_flags = lo_flags & LO_FLAGS_AUTOCLEAR;
        memcpy(info.lo_file_name, name, LO_NAME_SIZE);
        for (unsigned attempt = 0;; attempt++) {
                if (timed_ioctl(fd, LOOP_SET_STATUS64, (unsigned long) &info) >= 0)
                        break;
                e = errno;
                /* EAGAIN: the kernel could not freeze the queue while a
                 * scanner (udev's blkid) had the device open; systemd
                 * retries it the same way. */
                if (e != EAGAIN || attempt >= 32) {
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return -e;
                }
                sleep_usec(backoff_delay(attempt, 1000, 50 * USEC_PER_MSEC, random_u64()));
        }
        if (lo_flags & LO_FLAGS_DIRECT_IO)
                (void) ioctl(fd, LOOP_SET_DIRECT_IO, 1UL);
        if (!loop_configure_unsupported)
                loop_configure_unsupported = true;
        return 0;
}

/* Can the backing file really do O_DIRECT? Some filesystems accept the
 * flag for the loop and then fail every I/O (overlayfs over tmpfs before
 * 6.6 announces direct I/O it cannot do): an O_DIRECT open and one aligned
 * read of our own settle it before the loop depends on it. */
static bool direct_io_usable(int backing_fd) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ void *buf = NULL;
        char p[64];

        snprintf(p, sizeof p, "/proc/self/fd/%d", backing_fd);
        fd = open(p, O_RDONLY | O_DIRECT | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return false;
        buf = aligned_alloc(4096, 4096);
        if (!buf)
                return false;
        return pread(fd, buf, 4096, 0) >= 0;
}

static bool status_matches_backing(const struct loop_info64 *info, const struct stat *st) {
        return info->lo_device == (uint64_t) st->st_dev && info->lo_inode == (uint64_t) st->st_ino &&
               info->lo_offset == 0 && info->lo_sizelimit == 0;
}

static int loop_fill(int fd, unsigned nr, dev_t devnum, LoopDevice *ret) {
        struct loop_info64 info = {};
        uint64_t size;

        if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                return -errno;
        if (ioctl(fd, BLKGETSIZE64, &size) < 0)
                return -errno;
        *ret = (LoopDevice) {
                .fd = fd,
                .nr = nr,
                .devnum = devnum,
                .size = size,
                .read_only = info.lo_flags & LO_FLAGS_READ_ONLY,
                .direct_io = info.lo_flags & LO_FLAGS_DIRECT_IO,
        };
        return 0;
}

int loop_attach(int lock_fd, int backing_fd, LoopAttachFlags flags, LoopDevice *ret, char **ret_error) {
        _cleanup_close_ int own_lock = -EBADF;
        bool read_only = flags & LOOP_ATTACH_READ_ONLY;
        char path[PATH_MAX], name[64];
        uint32_t lo_flags = LO_FLAGS_AUTOCLEAR;
        struct stat st;
        int r, accmode, last = 0;

        if (fstat(backing_fd, &st) < 0)
                return error_setf(ret_error, errno, "Failed to stat the backing file of a new loop device: %m");
        r = fd_path(backing_fd, path);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to find the path of the backing file (fd %d): %m", backing_fd);
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
                return error_setf(ret_error, EBADFD, "%s: not a regular file or block device, cannot back a loop device",
                                 path);
        accmode = fcntl(backing_fd, F_GETFL);
        if (accmode < 0)
                return error_setf(ret_error, errno, "%s: %m", path);
        if (!read_only && (accmode & O_ACCMODE) == O_RDONLY)
                return error_setf(ret_error, EBADF, "%s: opened read-only, cannot back a writable loop device", path);
        if (read_only)
                lo_flags |= LO_FLAGS_READ_ONLY;
        if ((flags & LOOP_ATTACH_DIRECT_IO) && direct_io_usable(backing_fd))
                lo_flags |= LO_FLAGS_DIRECT_IO;
        loop_file_name_format(path, name);

        if (lock_fd < 0) {
                r = loop_lock(&own_lock, ret_error);
                if (r < 0)
                        return r;
                lock_fd = own_lock;
        }

        int missing_nr = -1;
        unsigned missing_count = 0;
        for (unsigned attempt = 0; attempt < LOOP_ATTACH_ATTEMPTS; attempt++) {
                _cleanup_close_ int fd = -EBADF;
                struct loop_info64 info = {};
                dev_t devnum;
                int nr;

                if (attempt > 0)
                        sleep_usec(backoff_delay(attempt - 1, 500, 50 * USEC_PER_MSEC, random_u64()));

                nr = timed_ioctl(lock_fd, LOOP_CTL_GET_FREE, 0);
                if (nr < 0)
                        return error_setf(ret_error, errno, "Failed to get a free loop device (LOOP_CTL_GET_FREE): %m");
                r = loop_open_nr((unsigned) nr, read_only, &fd, &devnum);
                if (r == -ENOENT && loop_has_no_node((unsigned) nr)) {
                        /* The kernel's free device has no node in this /dev
                         * (a container given a fixed set of loop nodes):
                         * the same one again and again means none is
                         * usable here, not a race. */
                        if (nr == missing_nr && ++missing_count >= LOOP_MISSING_NODE_ATTEMPTS)
                                return error_setf(ret_error, ENOSPC,
                                                  "No free loop device for %s: every loop device with a node in "
                                                  "/dev is in use, and /dev/loop%d, the free one the kernel offers, "
                                                  "has no device node here (give this system more loop nodes, or "
                                                  "free some)",
                                                  path, nr);
                        if (nr != missing_nr)
                                missing_count = 1;
                        missing_nr = nr;
                }
                if (r == -ENOENT || r == -ENXIO) {
                        /* Removed (LOOP_CTL_REMOVE) or not yet visible: another. */
                        last = r;
                        continue;
                }
                if (r < 0)
                        return error_setf(ret_error, r, "Failed to open /dev/loop%d: %m", nr);

                r = loop_configure_fd(fd, backing_fd, lo_flags, name);
                if (r == -EBUSY || r == -ENXIO) {
                        /* Someone outside our lock took it first. */
                        last = r;
                        continue;
                }
                if (r < 0)
                        return error_setf(ret_error, r, "Failed to attach %s to /dev/loop%d: %m", path, nr);

                /* Trust, but verify: the kernel's view of what we set up. */
                if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0) {
                        r = -errno;
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return error_setf(ret_error, r, "Failed to read back /dev/loop%d: %m", nr);
                }
                if (info.lo_number != (uint32_t) nr || !status_matches_backing(&info, &st)) {
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return error_setf(ret_error, ESTALE,
                                         "/dev/loop%d does not serve %s after attaching it (someone changed it under us)",
                                         nr, path);
                }
                if (!(info.lo_flags & LO_FLAGS_AUTOCLEAR)) {
                        /* 5.8's LOOP_CONFIGURE could drop flags: set it again. */
                        struct loop_info64 fix = info;
                        fix.lo_flags |= LO_FLAGS_AUTOCLEAR;
                        if (ioctl(fd, LOOP_SET_STATUS64, &fix) < 0) {
                                r = -errno;
                                (void) ioctl(fd, LOOP_CLR_FD);
                                return error_setf(ret_error, r, "Failed to set autoclear on /dev/loop%d: %m", nr);
                        }
                }
                if (read_only != !!(info.lo_flags & LO_FLAGS_READ_ONLY)) {
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return error_setf(ret_error, EROFS,
                                         read_only ? "/dev/loop%d for %s is writable although read-only was asked for"
                                                   : "/dev/loop%d for %s came out read-only (read-only file or filesystem?)",
                                         nr, path);
                }
                r = loop_fill(fd, (unsigned) nr, devnum, ret);
                if (r < 0) {
                        (void) ioctl(fd, LOOP_CLR_FD);
                        return error_setf(ret_error, r, "Failed to query /dev/loop%d: %m", nr);
                }
                TAKE_FD(fd);
                return 0;
        }
        return error_setf(ret_error, last ?: -EBUSY,
                         "Failed to attach %s to a loop device: every free device was taken by someone else (%u attempts; last error: %m)",
                         path, LOOP_ATTACH_ATTEMPTS);
}

int loop_find_shared(int backing_fd, LoopDevice *ret) {
        _cleanup_(closedirp) DIR *d = NULL;
        char path[PATH_MAX];
        struct stat st;
        struct dirent *de;
        int r;

        if (fstat(backing_fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        r = fd_path(backing_fd, path);
        if (r < 0)
                return r;

        d = opendir("/sys/block");
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_close_ int fd = -EBADF;
                char p[PATH_MAX + 64], line[PATH_MAX];
                struct loop_info64 info = {};
                uint64_t size;
                dev_t devnum;
                unsigned nr;

                if (loop_name_parse(de->d_name, &nr) < 0)
                        continue;
                /* Cheap filter first: the path the kernel shows. */
                snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", de->d_name);
                if (read_one_line_file(p, line, sizeof line) < 0 || !streq(line, path))
                        continue;
                /* Then the identity, on the device we hold open from now on:
                 * an autoclear loop that vanished (or was reused) between
                 * the sysfs read and the open fails these checks. */
                if (loop_open_nr(nr, true, &fd, &devnum) < 0)
                        continue;
                if (ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                        continue;
                if (!status_matches_backing(&info, &st) || info.lo_number != nr ||
                    !(info.lo_flags & LO_FLAGS_READ_ONLY) || !(info.lo_flags & LO_FLAGS_AUTOCLEAR) ||
                    !loop_file_name_is_ours((const char *) info.lo_file_name))
                        continue;
                /* A loop made before the image grew or shrank shows the old
                 * size: not the image as it is now. */
                if (ioctl(fd, BLKGETSIZE64, &size) < 0 || size != ((uint64_t) st.st_size & ~(uint64_t) (SECTOR_SIZE - 1)))
                        continue;
                r = loop_fill(fd, nr, devnum, ret);
                if (r < 0)
                        continue;
                ret->shared = true;
                TAKE_FD(fd);
                return 1;
        }
        return 0;
}

int loop_attach_shared(int lock_fd, int backing_fd, LoopDevice *ret, char **ret_error) {
        char path[PATH_MAX];
        int r;

        if (lock_fd < 0)
                return error_setf(ret_error, EINVAL, "A shared loop device must be looked up under the loop lock");
        r = loop_find_shared(backing_fd, ret);
        if (r > 0)
                return 0;
        if (r < 0) {
                if (fd_path(backing_fd, path) < 0)
                        snprintf(path, sizeof path, "(fd %d)", backing_fd);
                if (r == -EBADFD)
                        return error_setf(ret_error, r, "%s: not a regular file (a base image must be a file)", path);
                return error_setf(ret_error, r, "Failed to look for a loop device serving %s: %m", path);
        }
        return loop_attach(lock_fd, backing_fd, LOOP_ATTACH_READ_ONLY | LOOP_ATTACH_DIRECT_IO, ret, ret_error);
}

void loop_infos_free(LoopInfo *l, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(l[i].backing_file);
        free(l);
}

static int cmp_loop_info(const void *a, const void *b) {
        const LoopInfo *x = a, *y = b;
        return x->nr < y->nr ? -1 : x->nr > y->nr;
}

int loop_list(LoopInfo **ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = NULL;
        LoopInfo *list = NULL;
        size_t n = 0;
        struct dirent *de;

        d = opendir("/sys/block");
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_close_ int fd = -EBADF;
                char p[PATH_MAX], line[PATH_MAX];
                struct loop_info64 info = {};
                LoopInfo *grown;
                dev_t devnum;
                unsigned nr;

                if (loop_name_parse(de->d_name, &nr) < 0)
                        continue;
                snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", de->d_name);
                if (read_one_line_file(p, line, sizeof line) < 0)
                        continue;       /* not bound */
                if (loop_open_nr(nr, true, &fd, &devnum) < 0 || ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                        continue;       /* gone meanwhile */
                grown = realloc(list, (n + 1) * sizeof *list);
                if (!grown) {
                        loop_infos_free(list, n);
                        return -ENOMEM;
                }
                list = grown;
                list[n] = (LoopInfo) {
                        .nr = nr,
                        .devnum = devnum,
                        .backing_file = strdup(line),
                        .backing_dev = info.lo_device,
                        .backing_ino = info.lo_inode,
                        .flags = info.lo_flags,
                };
                memcpy(list[n].file_name, info.lo_file_name, sizeof list[n].file_name);
                list[n].file_name[sizeof list[n].file_name - 1] = '\0';
                list[n].ours = loop_file_name_is_ours(list[n].file_name);
                snprintf(p, sizeof p, "/sys/block/%s/holders", de->d_name);
                list[n].n_holders = dir_count_entries(p, NULL, 0);
                if (!list[n].backing_file) {
                        loop_infos_free(list, n + 1);
                        return -ENOMEM;
                }
                n++;
        }
        if (n > 1)
                qsort(list, n, sizeof *list, cmp_loop_info);
        *ret = list;
        *ret_n = n;
        return 0;
}

int loop_reclaim(int lock_fd, char ***ret_failed) {
        _cleanup_close_ int own_lock = -EBADF;
        LoopInfo *list = NULL;
        size_t n = 0;
        int r, detached = 0;

        if (lock_fd < 0) {
                r = loop_lock(&own_lock, NULL);
                if (r < 0)
                        return r;
        }
        r = loop_list(&list, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                _cleanup_close_ int fd = -EBADF;
                struct loop_info64 info = {};
                dev_t devnum;

                if (!list[i].ours || list[i].n_holders > 0)
                        continue;
                r = loop_open_nr(list[i].nr, true, &fd, &devnum);
                if (r == -ENOENT || r == -ENXIO)
                        continue;
                /* Re-check on the open device: it may have been detached
                 * and reused by someone else since the listing. */
                if (r >= 0 && ioctl(fd, LOOP_GET_STATUS64, &info) < 0)
                        continue;
                if (r >= 0 && !loop_file_name_is_ours((const char *) info.lo_file_name))
                        continue;
                if (r >= 0 && ioctl(fd, LOOP_CLR_FD) < 0)
                        r = -errno;
                if (r == -ENXIO)
                        continue;       /* detached meanwhile */
                if (r < 0) {
                        if (ret_failed) {
                                char *m;
                                errno = -r;
                                if (asprintf(&m, "/dev/loop%u (%s): could not be detached: %m", list[i].nr,
                                             list[i].backing_file) >= 0) {
                                        (void) strv_push(ret_failed, m);
                                        free(m);
                                }
                        }
                        continue;
                }
                detached++;
        }
        loop_infos_free(list, n);
        return detached;
}
