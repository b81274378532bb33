/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* lib/storage/loop on real loop devices (root, /dev/loop-control): attach with
 * LOOP_CONFIGURE and with the legacy LOOP_SET_FD path, read-only, marker,
 * autoclear, shared base lookup, reclaim of stale loops of ours (and never
 * a foreign one), the lock, and concurrent attaches with and without our
 * lock (the EBUSY retry). Needs no device-mapper: runs on the host. Each
 * test is parameterized over both attach paths where it matters. */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sched.h>
#include <time.h>

#include "loop.h"
#include "plan.h"
#include "priv-util.h"

#define MiB (1024 * 1024)

static char S[PATH_MAX];

static void setup(void) {
        snprintf(S, sizeof S, "%s", priv_sandbox());
}

static const char *path_in(const char *name) {
        return pf("%s/%s", S, name);
}

static void make_file(const char *path, off_t size, uint8_t fill) {
        uint8_t buf[4096];
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

        cr_assert_geq(fd, 0, "%s: %m", path);
        memset(buf, fill, sizeof buf);
        for (off_t o = 0; o < size; o += (off_t) sizeof buf)
                cr_assert_eq(pwrite(fd, buf, sizeof buf, o), (ssize_t) sizeof buf);
        close(fd);
}

static int open_file(const char *path, int flags) {
        int fd = open(path, flags | O_CLOEXEC);
        cr_assert_geq(fd, 0, "%s: %m", path);
        return fd;
}

static bool bound(unsigned nr) {
        char p[128];
        snprintf(p, sizeof p, "/sys/block/loop%u/loop/backing_file", nr);
        return access(p, F_OK) == 0;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static void wait_unbound(unsigned nr) {
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             bound(nr) && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(10);
        cr_assert(!bound(nr), "/dev/loop%u is still attached", nr);
}

static struct loop_info64 status_of(const LoopDevice *l) {
        struct loop_info64 i = {};
        cr_assert_eq(ioctl(l->fd, LOOP_GET_STATUS64, &i), 0, "LOOP_GET_STATUS64: %m");
        return i;
}

static unsigned raw_attach(const char *path, bool marker, bool autoclear, bool read_only) {
        struct loop_config c = {};
        char dev[64];
        int ctl, fd, bfd, nr;

        ctl = open_file("/dev/loop-control", O_RDWR);
        nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        cr_assert_geq(nr, 0);
        close(ctl);
        snprintf(dev, sizeof dev, "/dev/loop%d", nr);
        fd = open_file(dev, O_RDWR);
        bfd = open_file(path, read_only ? O_RDONLY : O_RDWR);
        c.fd = (uint32_t) bfd;
        c.info.lo_flags = (autoclear ? LO_FLAGS_AUTOCLEAR : 0) | (read_only ? LO_FLAGS_READ_ONLY : 0);
        snprintf((char *) c.info.lo_file_name, LO_NAME_SIZE, "%s%s", marker ? LOOP_MARKER : "", path);
        cr_assert_eq(ioctl(fd, LOOP_CONFIGURE, &c), 0, "LOOP_CONFIGURE: %m");
        close(bfd);
        close(fd);
        return (unsigned) nr;
}

static void raw_detach(unsigned nr) {
        char dev[64];
        int fd;

        snprintf(dev, sizeof dev, "/dev/loop%u", nr);
        fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) ioctl(fd, LOOP_CLR_FD);
                close(fd);
        }
}

static bool params[] = { false, true };

#define LOOP_TEST(name, ...)                                                                           \
        static void run_##name(bool legacy);                                                            \
        ParameterizedTestParameters(loop, name) {                                                       \
                return cr_make_param_array(bool, params, ELEMENTSOF(params));                           \
        }                                                                                               \
        ParameterizedTest(bool *legacy, loop, name, .init = setup, .timeout = 120, ##__VA_ARGS__) {     \
                loop_force_legacy(*legacy);                                                             \
                run_##name(*legacy);                                                                    \
        }                                                                                               \
        static void run_##name(bool legacy)

LOOP_TEST(attach_rw_autoclear_marker) {
        _cleanup_free_ char *err = NULL;
        LoopDevice l = LOOP_DEVICE_NULL;
        struct loop_info64 i;
        struct stat st, bst;
        char sysdev[128], line[32];
        int bfd;
        uint8_t buf[512], want[512];
        unsigned nr;

        make_file(path_in("rw.img"), 4 * MiB, 0x11);
        bfd = open_file(path_in("rw.img"), O_RDWR);
        cr_assert_eq(loop_attach(-EBADF, bfd, LOOP_ATTACH_DIRECT_IO, &l, &err), 0, "%s", strna(err));
        cr_assert_geq(l.fd, 0);
        cr_assert(!l.read_only);
        cr_assert(!l.shared);
        cr_assert_eq(l.size, 4 * MiB);
        cr_assert_eq(fstat(l.fd, &st), 0);
        cr_assert(S_ISBLK(st.st_mode));
        cr_assert_eq(st.st_rdev, l.devnum);
        snprintf(sysdev, sizeof sysdev, "/sys/block/loop%u/dev", l.nr);
        {
                int sfd = open_file(sysdev, O_RDONLY);
                ssize_t n = read(sfd, line, sizeof line - 1);
                cr_assert_gt(n, 0);
                line[n] = '\0';
                close(sfd);
        }
        {
                char want_dev[32];
                snprintf(want_dev, sizeof want_dev, "%u:%u\n", major(l.devnum), minor(l.devnum));
                cr_assert_str_eq(line, want_dev);
        }
        i = status_of(&l);
        cr_assert_eq(i.lo_number, l.nr);
        cr_assert(i.lo_flags & LO_FLAGS_AUTOCLEAR);
        cr_assert(!(i.lo_flags & LO_FLAGS_READ_ONLY));
        cr_assert(!(i.lo_flags & LO_FLAGS_PARTSCAN));
        cr_assert(loop_file_name_is_ours((const char *) i.lo_file_name), "%s", i.lo_file_name);
        cr_assert(strstr((const char *) i.lo_file_name, "rw.img"), "%s", i.lo_file_name);
        cr_assert_eq(fstat(bfd, &bst), 0);
        cr_assert_eq(i.lo_device, (uint64_t) bst.st_dev);
        cr_assert_eq(i.lo_inode, (uint64_t) bst.st_ino);
        cr_assert_eq(l.direct_io, !!(i.lo_flags & LO_FLAGS_DIRECT_IO));

        /* Writes reach the file. */
        memset(want, 0x42, sizeof want);
        cr_assert_eq(pwrite(l.fd, want, sizeof want, 4096), (ssize_t) sizeof want);
        cr_assert_eq(fsync(l.fd), 0);
        cr_assert_eq(pread(bfd, buf, sizeof buf, 4096), (ssize_t) sizeof buf);
        cr_assert_arr_eq(buf, want, sizeof buf);

        /* Autoclear: our close is the last one. */
        nr = l.nr;
        close(bfd);
        loop_device_done(&l);
        cr_assert_eq(l.fd, -EBADF);
        wait_unbound(nr);
        (void) legacy;
}

LOOP_TEST(attach_read_only) {
        _cleanup_free_ char *err = NULL;
        LoopDevice l = LOOP_DEVICE_NULL;
        char dev[64];
        int bfd, wfd;
        unsigned nr;

        make_file(path_in("ro.img"), 2 * MiB, 0x22);
        bfd = open_file(path_in("ro.img"), O_RDONLY);
        cr_assert_eq(loop_attach(-EBADF, bfd, LOOP_ATTACH_READ_ONLY, &l, &err), 0, "%s", strna(err));
        cr_assert(l.read_only);
        cr_assert(status_of(&l).lo_flags & LO_FLAGS_READ_ONLY);
        snprintf(dev, sizeof dev, "/dev/loop%u", l.nr);
        wfd = open(dev, O_RDWR | O_CLOEXEC);
        if (wfd >= 0) {
                uint8_t b = 0;
                cr_assert_lt(pwrite(wfd, &b, 1, 0), 0, "a write to the read-only loop succeeded");
                close(wfd);
        } else
                cr_assert(errno == EROFS || errno == EACCES || errno == EPERM, "open: %m");

        /* A writable loop on a read-only fd is refused up front. */
        {
                LoopDevice w = LOOP_DEVICE_NULL;
                cr_assert_eq(loop_attach(-EBADF, bfd, 0, &w, &err), -EBADF);
                cr_assert(strstr(err, "opened read-only"), "%s", err);
                free(err);
                err = NULL;
        }
        nr = l.nr;
        close(bfd);
        loop_device_done(&l);
        wait_unbound(nr);
        (void) legacy;
}

LOOP_TEST(shared_base_is_attached_once) {
        _cleanup_free_ char *err = NULL;
        LoopDevice a = LOOP_DEVICE_NULL, b = LOOP_DEVICE_NULL, c = LOOP_DEVICE_NULL;
        int lock = -EBADF, bfd, rwfd;
        unsigned foreign, writable, nr;

        make_file(path_in("base.img"), 2 * MiB, 0x33);
        bfd = open_file(path_in("base.img"), O_RDONLY);

        /* Neither a foreign read-only loop nor a writable one of ours on the
         * same file may be taken for the shared base. */
        foreign = raw_attach(path_in("base.img"), false, true, true);
        rwfd = open_file(path_in("base.img"), O_RDWR);
        {
                LoopDevice w = LOOP_DEVICE_NULL;
                cr_assert_eq(loop_attach(-EBADF, rwfd, 0, &w, &err), 0, "%s", strna(err));
                writable = w.nr;
                /* keep it open: it stays attached while w.fd lives */
                cr_assert_eq(loop_find_shared(bfd, &c), 0);
                cr_assert_eq(loop_lock(&lock, &err), 0, "%s", strna(err));
                cr_assert_eq(loop_attach_shared(lock, bfd, &a, &err), 0, "%s", strna(err));
                cr_assert(!a.shared);
                cr_assert_neq(a.nr, foreign);
                cr_assert_neq(a.nr, writable);
                cr_assert(a.read_only);
                /* The second user finds it. */
                cr_assert_eq(loop_attach_shared(lock, bfd, &b, &err), 0, "%s", strna(err));
                cr_assert(b.shared);
                cr_assert_eq(b.nr, a.nr);
                cr_assert_eq(b.devnum, a.devnum);
                lock = safe_close(lock);
                loop_device_done(&w);
        }
        close(rwfd);

        /* While either holds it, it stays; with the last one, it goes. */
        nr = a.nr;
        loop_device_done(&a);
        cr_assert(bound(nr));
        loop_device_done(&b);
        wait_unbound(nr);
        cr_assert_eq(loop_find_shared(bfd, &c), 0);

        /* Needs the lock. */
        free(err);
        err = NULL;
        cr_assert_eq(loop_attach_shared(-EBADF, bfd, &a, &err), -EINVAL);
        close(bfd);
        raw_detach(foreign);
        wait_unbound(foreign);
        (void) legacy;
}

LOOP_TEST(shared_base_not_reused_after_resize) {
        _cleanup_free_ char *err = NULL;
        LoopDevice a = LOOP_DEVICE_NULL, b = LOOP_DEVICE_NULL;
        int lock = -EBADF, bfd;

        make_file(path_in("grow.img"), 2 * MiB, 0x44);
        bfd = open_file(path_in("grow.img"), O_RDONLY);
        cr_assert_eq(loop_lock(&lock, &err), 0);
        cr_assert_eq(loop_attach_shared(lock, bfd, &a, &err), 0, "%s", strna(err));
        cr_assert_eq(truncate(path_in("grow.img"), 3 * MiB), 0);
        cr_assert_eq(loop_attach_shared(lock, bfd, &b, &err), 0, "%s", strna(err));
        cr_assert(!b.shared, "a loop of the old size was reused");
        cr_assert_neq(a.nr, b.nr);
        cr_assert_eq(b.size, 3 * MiB);
        close(lock);
        loop_device_done(&a);
        loop_device_done(&b);
        close(bfd);
        (void) legacy;
}

/* Resource exhaustion (issue 14): a /dev with a fixed set of loop nodes
 * (a container's), every one of them in use. The kernel's free device has
 * no node: the attach fails at once with ENOSPC and a message naming the
 * resource, instead of 64 retries of a "race", and attaches nothing. Runs
 * in a mount namespace of this test process (criterion forks each test)
 * with a tmpfs /dev holding loop-control and the two busy loops only. */
Test(loop, no_usable_loop_node, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        LoopDevice a = LOOP_DEVICE_NULL, b = LOOP_DEVICE_NULL, c = LOOP_DEVICE_NULL;
        struct stat ctl;
        char node[64], backing[PATH_MAX];
        int fa, fb, fc;

        make_file(path_in("a.img"), 1 * MiB, 0x1);
        make_file(path_in("b.img"), 1 * MiB, 0x2);
        make_file(path_in("c.img"), 1 * MiB, 0x3);
        fa = open_file(path_in("a.img"), O_RDWR);
        fb = open_file(path_in("b.img"), O_RDWR);
        fc = open_file(path_in("c.img"), O_RDWR);
        cr_assert_eq(loop_attach(-EBADF, fa, 0, &a, &err), 0, "%s", strna(err));
        cr_assert_eq(loop_attach(-EBADF, fb, 0, &b, &err), 0, "%s", strna(err));
        cr_assert_eq(stat("/dev/loop-control", &ctl), 0, "%m");

        cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare: %m");
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%m");
        cr_assert_eq(mount("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755"), 0, "%m");
        cr_assert_eq(mknod("/dev/loop-control", S_IFCHR | 0600, ctl.st_rdev), 0, "%m");
        snprintf(node, sizeof node, "/dev/loop%u", a.nr);
        cr_assert_eq(mknod(node, S_IFBLK | 0600, a.devnum), 0, "%m");
        snprintf(node, sizeof node, "/dev/loop%u", b.nr);
        cr_assert_eq(mknod(node, S_IFBLK | 0600, b.devnum), 0, "%m");

        free(err);
        err = NULL;
        cr_assert_eq(loop_attach(-EBADF, fc, 0, &c, &err), -ENOSPC, "%s", strna(err));
        cr_assert(err && strstr(err, "No free loop device for ") && strstr(err, "c.img") &&
                  strstr(err, "has no device node here"), "%s", strna(err));
        cr_assert_eq(c.fd, -EBADF);

        /* Nothing attached to c.img, anywhere. */
        snprintf(backing, sizeof backing, "%s", path_in("c.img"));
        for (unsigned nr = 0; nr < 4096; nr++) {
                char p[128], line[PATH_MAX];
                ssize_t n;
                int fd;

                snprintf(p, sizeof p, "/sys/block/loop%u/loop/backing_file", nr);
                fd = open(p, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        continue;
                n = read(fd, line, sizeof line - 1);
                close(fd);
                line[n > 0 ? n : 0] = '\0';
                cr_assert_null(strstr(line, backing), "loop%u serves %s after the failed attach", nr, backing);
        }
        loop_device_done(&a);
        loop_device_done(&b);
        close(fa);
        close(fb);
        close(fc);
}

Test(loop, reclaim_detaches_only_stale_loops_of_ours, .init = setup, .timeout = 120) {
        _cleanup_free_ char *err = NULL;
        _cleanup_strv_free_ char **failed = NULL;
        LoopDevice held = LOOP_DEVICE_NULL;
        unsigned stale, foreign, foreign_noac;
        int bfd, r;

        make_file(path_in("a.img"), MiB, 1);
        make_file(path_in("b.img"), MiB, 2);
        make_file(path_in("c.img"), MiB, 3);
        make_file(path_in("d.img"), MiB, 4);
        stale = raw_attach(path_in("a.img"), true, false, false);       /* legacy-crash leftover */
        foreign = raw_attach(path_in("b.img"), false, false, false);     /* losetup's */
        foreign_noac = raw_attach(path_in("c.img"), false, false, true);
        bfd = open_file(path_in("d.img"), O_RDWR);
        cr_assert_eq(loop_attach(-EBADF, bfd, 0, &held, &err), 0, "%s", strna(err));   /* a stage in flight */

        r = loop_reclaim(-EBADF, &failed);
        cr_assert_geq(r, 1, "%d: %s", r, failed ? failed[0] : "");
        wait_unbound(stale);
        cr_assert(bound(foreign), "a foreign loop was detached");
        cr_assert(bound(foreign_noac), "a foreign loop was detached");
        /* Ours and still open: never yanked (the kernel only marks it). */
        cr_assert(bound(held.nr));
        {
                char p[64];
                uint8_t b;
                int fd;
                snprintf(p, sizeof p, "/dev/loop%u", held.nr);
                fd = open_file(p, O_RDONLY);
                cr_assert_eq(pread(fd, &b, 1, 0), 1, "the held loop stopped working: %m");
                cr_assert_eq(b, 4);
                close(fd);
        }
        {
                unsigned nr = held.nr;
                loop_device_done(&held);
                wait_unbound(nr);
        }
        close(bfd);
        raw_detach(foreign);
        raw_detach(foreign_noac);
}

Test(loop, list_reports_ours_and_holders, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        LoopDevice l = LOOP_DEVICE_NULL;
        LoopInfo *list = NULL;
        size_t n = 0;
        bool found = false;
        int bfd;

        make_file(path_in("list.img"), MiB, 9);
        bfd = open_file(path_in("list.img"), O_RDWR);
        cr_assert_eq(loop_attach(-EBADF, bfd, 0, &l, &err), 0, "%s", strna(err));
        cr_assert_eq(loop_list(&list, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (list[i].nr == l.nr) {
                        found = true;
                        cr_assert(list[i].ours);
                        cr_assert_str_eq(list[i].backing_file, path_in("list.img"));
                        cr_assert_eq(list[i].n_holders, 0);
                        cr_assert_eq(list[i].devnum, l.devnum);
                }
        cr_assert(found);
        for (size_t i = 1; i < n; i++)
                cr_assert_lt(list[i - 1].nr, list[i].nr);
        loop_infos_free(list, n);
        loop_device_done(&l);
        close(bfd);
}

Test(loop, lock_excludes_other_processes, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        int lock = -EBADF, p[2];
        pid_t pid;
        char c;

        cr_assert_eq(loop_lock(&lock, &err), 0, "%s", strna(err));
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                int l2 = -EBADF;
                close(lock);
                if (loop_lock(&l2, NULL) < 0)
                        _exit(1);
                (void) !write(p[1], "x", 1);
                _exit(0);
        }
        close(p[1]);
        /* The child cannot get it while we hold it... */
        {
                struct timespec ts = { 0, 200 * 1000000L };
                fd_set set;
                struct timeval tv = { 0, 200000 };
                FD_ZERO(&set);
                FD_SET(p[0], &set);
                cr_assert_eq(select(p[0] + 1, &set, NULL, NULL, &tv), 0, "the lock was taken twice");
                (void) ts;
        }
        /* ...and gets it as soon as we let go. */
        close(lock);
        cr_assert_eq(read(p[0], &c, 1), 1);
        cr_assert_eq(wait_exit(pid), 0);
        close(p[0]);
}

/* Many processes attach at once, half of them through our lock, half
 * racing LOOP_CTL_GET_FREE without it (like other tools): every attach
 * succeeds (EBUSY is retried), every process gets its own device. */
Test(loop, concurrent_attach, .init = setup, .timeout = 300) {
        enum { NPROC = 8, PER = 6 };
        pid_t pids[NPROC];

        for (int i = 0; i < NPROC; i++) {
                char name[32];
                snprintf(name, sizeof name, "c%d.img", i);
                make_file(path_in(name), MiB, (uint8_t) i);
        }
        for (int i = 0; i < NPROC; i++) {
                pids[i] = fork();
                cr_assert_geq(pids[i], 0);
                if (pids[i] == 0) {
                        char name[32];
                        snprintf(name, sizeof name, "c%d.img", i);
                        for (int k = 0; k < PER; k++) {
                                if (i % 2 == 0) {
                                        LoopDevice l = LOOP_DEVICE_NULL;
                                        char *err = NULL;
                                        int bfd = open(path_in(name), O_RDWR | O_CLOEXEC);
                                        if (bfd < 0 || loop_attach(-EBADF, bfd, 0, &l, &err) < 0) {
                                                fprintf(stderr, "attach: %s\n", strna(err));
                                                _exit(1);
                                        }
                                        close(bfd);
                                        /* l.fd stays open until exit: autoclear then */
                                } else {
                                        /* An unlocked competitor, retrying EBUSY itself. */
                                        for (int t = 0;; t++) {
                                                struct loop_config c = {};
                                                char dev[64];
                                                int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
                                                int nr = ioctl(ctl, LOOP_CTL_GET_FREE), fd, bfd;
                                                close(ctl);
                                                snprintf(dev, sizeof dev, "/dev/loop%d", nr);
                                                fd = open(dev, O_RDWR | O_CLOEXEC);
                                                bfd = open(path_in(name), O_RDWR | O_CLOEXEC);
                                                c.fd = (uint32_t) bfd;
                                                c.info.lo_flags = LO_FLAGS_AUTOCLEAR;
                                                if (fd >= 0 && ioctl(fd, LOOP_CONFIGURE, &c) == 0) {
                                                        close(bfd);
                                                        break;  /* fd kept open */
                                                }
                                                if (fd >= 0)
                                                        close(fd);
                                                close(bfd);
                                                if (t > 1000)
                                                        _exit(2);
                                        }
                                }
                        }
                        _exit(0);
                }
        }
        for (int i = 0; i < NPROC; i++)
                cr_assert_eq(wait_exit(pids[i]), 0, "process %d failed", i);
}

int main(int argc, char *argv[]) {
        /* Loop devices are all this needs besides root. */
        return criterion_run_or_skip(argc, argv,
                                     access("/dev/loop-control", F_OK) < 0
                                             ? "no loop device support (/dev/loop-control missing)"
                                             : priv_skip_reason());
}
