/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Storage on real device-mapper and loop devices: snapshot, thin and block
 * drives, the thin pool, teardown, reclaim. Needs root and a kernel with
 * dm-snapshot and dm-thin-pool: meson runs it inside the dmvm QEMU guest
 * (tests/dmvm/dmvm-tap), once for the whole suite; where the host kernel
 * has device-mapper it also runs directly. Skips (TAP "1..0 # SKIP", exit
 * 77 without --tap) with the reason when it cannot run.
 *
 * Every test runs in its own process (criterion) with its own private
 * mount namespace and tmpfs (priv_sandbox()); dm and loop devices are
 * global, so every test uses its own VM ids and pool name and cleans up.
 * MICROVM_TEST_EXPECT_UDEV=1 (set by the udev run) makes the udev test
 * insist on udev synchronisation. */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/options.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "dm.h"
#include "loop.h"
#include "names.h"
#include "plan.h"
#include "priv-util.h"
#include "safe-fs.h"
#include "sha256.h"
#include "storage.h"
#include "uid-alloc.h"

#define MiB (UINT64_C(1) << 20)
#define IMAGE_SIZE (8 * MiB)
#define VM_UID ((uid_t) 3100000000U)

static char S[PATH_MAX];
static HostConfig *H;

static void *mfree(void *p) {
        free(p);
        return NULL;
}

static bool strv_contains(char **l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static int state_fd = -1;

/* ---- fixtures -------------------------------------------------------------- */

static void set_str(char **field, const char *value) {
        free(*field);
        *field = value ? strdup(value) : NULL;
        cr_assert(!value || *field);
}

static void setup(void) {
        char p[PATH_MAX];
        _cleanup_free_ char *err = NULL;

        snprintf(S, sizeof S, "%s", priv_sandbox());
        cr_assert_eq(host_config_new_default(&H), 0);
        snprintf(p, sizeof p, "%s/var/lib/microvm", S);
        set_str(&H->state_dir, p);
        snprintf(p, sizeof p, "%s/run/microvm", S);
        set_str(&H->run_dir, p);
        snprintf(p, sizeof p, "%s/srv/jailer", S);
        set_str(&H->chroot_base, p);
        cr_assert_eq(safe_root_open(H->state_dir, SAFE_ROOT_CREATE, 0700, &state_fd, &err), 0, "%s", err);
        snprintf(p, sizeof p, "%s/images", S);
        cr_assert_eq(mkdir(p, 0755), 0);
}

static void configure_pool(const char *name, uint64_t data_size) {
        char p[PATH_MAX];

        H->thin_pool.configured = true;
        set_str(&H->thin_pool.name, name);
        snprintf(p, sizeof p, "%s/var/lib/microvm/pool/data", S);
        set_str(&H->thin_pool.data, p);
        snprintf(p, sizeof p, "%s/var/lib/microvm/pool/metadata", S);
        set_str(&H->thin_pool.metadata, p);
        H->thin_pool.data_size = data_size;
        H->thin_pool.metadata_size = 0;
        H->thin_pool.block_size = DEFAULT_THIN_BLOCK_SIZE;
}

typedef struct TestVm {
        VmConfig c;
        DriveConfig d[4];
        char paths[4][PATH_MAX];
} TestVm;

static void vm_init(TestVm *v, const char *id) {
        *v = (TestVm) {};
        snprintf(v->c.id, sizeof v->c.id, "%s", id);
        v->c.drives = v->d;
        cr_assert_geq(safe_mkdir_at(state_fd, id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL), 0);
}

static DriveConfig *vm_drive(TestVm *v, const char *name, DriveMode mode, const char *path) {
        DriveConfig *d = &v->d[v->c.n_drives++];

        cr_assert_leq(v->c.n_drives, ELEMENTSOF(v->d));
        /* A copy: image_path() reuses its buffers. */
        snprintf(v->paths[v->c.n_drives - 1], PATH_MAX, "%s", path);
        *d = (DriveConfig) { .mode = mode, .path = v->paths[v->c.n_drives - 1] };
        snprintf(d->name, sizeof d->name, "%s", name);
        return d;
}

/* Block i of 4 KiB: its number in the first 8 bytes, then a byte pattern. */
static void make_image(const char *path, uint64_t size) {
        uint8_t block[4096];
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

        cr_assert_geq(fd, 0, "create %s: %m", path);
        for (uint64_t i = 0; i < size / sizeof block; i++) {
                memset(block, (int) ((i * 7 + 1) & 0xff), sizeof block);
                memcpy(block, &i, sizeof i);
                cr_assert_eq(write(fd, block, sizeof block), (ssize_t) sizeof block);
        }
        cr_assert_eq(close(fd), 0);
}

static const char *image_path(const char *name) {
        static char bufs[4][PATH_MAX];
        static unsigned i;
        char *p = bufs[i++ % 4];

        snprintf(p, PATH_MAX, "%s/images/%s", S, name);
        return p;
}

static void digest_file(const char *path, char hex[static 2 * SHA256_DIGEST_SIZE + 1]) {
        uint8_t buf[65536], d[SHA256_DIGEST_SIZE];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        Sha256 s;
        ssize_t n;

        cr_assert_geq(fd, 0, "open %s: %m", path);
        sha256_init(&s);
        while ((n = read(fd, buf, sizeof buf)) > 0)
                sha256_update(&s, buf, (size_t) n);
        cr_assert_eq(n, 0);
        close(fd);
        sha256_final(&s, d);
        sha256_hex(d, hex);
}

static int prepare(TestVm *v, DriveConfig *d, char **ret_error) {
        _cleanup_free_ char *name = NULL;
        int fd = -EBADF, r;

        r = storage_prepare_drive(H, &v->c, d, state_fd, VM_UID, &fd, &name, ret_error);
        if (r < 0)
                return r;
        return fd;
}

static int prepare_ok(TestVm *v, DriveConfig *d) {
        _cleanup_free_ char *err = NULL;
        int fd = prepare(v, d, &err);

        cr_assert_geq(fd, 0, "prepare %s/%s: %d %s", v->c.id, d->name, fd, strna(err));
        return fd;
}

static void teardown_ok(const char *id, StorageTeardownFlags flags) {
        StorageReport rep = {};
        int r = storage_teardown_vm(H, state_fd, id, NULL, flags, &rep);

        cr_assert_eq(r, 0, "teardown %s: %d; %s", id, r, rep.failed ? rep.failed[0] : "");
        cr_assert_null(rep.deferred, "teardown %s deferred: %s", id, rep.deferred ? rep.deferred[0] : "");
        storage_report_done(&rep);
}

/* Opens the device behind dev_fd read-write (a second open of the same
 * block device). */
static int reopen_rw(int dev_fd) {
        char p[64];
        int fd;

        snprintf(p, sizeof p, "/proc/self/fd/%d", dev_fd);
        fd = open(p, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0, "reopen %s: %m", p);
        return fd;
}

static void pwrite_ok(int fd, const void *buf, size_t n, off_t off) {
        cr_assert_eq(pwrite(fd, buf, n, off), (ssize_t) n, "pwrite: %m");
        cr_assert_eq(fsync(fd), 0);
}

static void pread_ok(int fd, void *buf, size_t n, off_t off) {
        cr_assert_eq(pread(fd, buf, n, off), (ssize_t) n, "pread: %m");
}

static dev_t fd_rdev(int fd) {
        struct stat st;
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert(S_ISBLK(st.st_mode));
        return st.st_rdev;
}

static bool dm_exists(const char *name) {
        DmInfo i = {};
        cr_assert_eq(dm_get_info(name, NULL, &i), 0);
        return i.exists;
}

static size_t loops_backed_by(const char *prefix) {
        LoopInfo *l = NULL;
        size_t n = 0, count = 0;

        cr_assert_eq(loop_list(&l, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (startswith(l[i].backing_file, prefix))
                        count++;
        loop_infos_free(l, n);
        return count;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* Waits (bounded) until no loop is backed by a file below prefix: with
 * autoclear the kernel detaches them as the last dm user goes. */
static void wait_no_loops(const char *prefix) {
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             loops_backed_by(prefix) > 0 && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(25);
        cr_assert_eq(loops_backed_by(prefix), 0, "loops backed by %s remain", prefix);
}

/* Does <state_dir>/<id>/<rel1><rel2> exist? */
static bool state_file_exists(const char *id, const char *rel1, const char *rel2) {
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/var/lib/microvm/%s/%s%s", S, id, rel1, rel2);
        return access(p, F_OK) == 0;
}

/* A loop device that is not ours: no marker, no autoclear (like losetup). */
static unsigned foreign_loop(const char *path, bool ours_without_autoclear) {
        struct loop_config c = {};
        char dev[64];
        int ctl, fd, bfd, nr;

        ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        cr_assert_geq(ctl, 0);
        nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        cr_assert_geq(nr, 0);
        close(ctl);
        snprintf(dev, sizeof dev, "/dev/loop%d", nr);
        fd = open(dev, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        bfd = open(path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(bfd, 0);
        c.fd = (uint32_t) bfd;
        snprintf((char *) c.info.lo_file_name, LO_NAME_SIZE, "%s%s", ours_without_autoclear ? LOOP_MARKER : "", path);
        cr_assert_eq(ioctl(fd, LOOP_CONFIGURE, &c), 0, "LOOP_CONFIGURE: %m");
        close(bfd);
        close(fd);
        return (unsigned) nr;
}

static bool loop_bound(unsigned nr) {
        char p[128];
        snprintf(p, sizeof p, "/sys/block/loop%u/loop/backing_file", nr);
        return access(p, F_OK) == 0;
}

static void detach_loop(unsigned nr) {
        char dev[64];
        int fd;

        snprintf(dev, sizeof dev, "/dev/loop%u", nr);
        fd = open(dev, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) ioctl(fd, LOOP_CLR_FD);
                close(fd);
        }
}

static void read_thin_record(const char *id, const char *drive, StorageRecord *rec) {
        _cleanup_free_ char *text = NULL;
        char p[128];
        size_t size;

        snprintf(p, sizeof p, "%s/" STORAGE_THIN_RECORD_PREFIX "%s", id, drive);
        cr_assert_eq(safe_read_file_at(state_fd, p, 4096, &text, &size), 0, "read %s", p);
        cr_assert_eq(storage_record_parse(text, size, rec), 0, "parse %s: %s", p, text);
}

/* ---- environment ------------------------------------------------------------ */

Test(storage, targets_and_udev_mode, .init = setup, .timeout = 120) {
        const char *const want[] = { "snapshot", "thin-pool", "thin", NULL };
        const char *const bogus[] = { "snapshot", "no-such-target", NULL };
        _cleanup_free_ char *err = NULL;
        const char *expect = getenv("MICROVM_TEST_EXPECT_UDEV");
        DmUdevMode m;

        cr_assert_eq(dm_targets_check(want, &err), 0, "%s", strna(err));
        cr_assert_eq(dm_targets_check(bogus, &err), -EOPNOTSUPP);
        cr_assert(strstr(err, "\"no-such-target\" is not available"), "%s", err);

        m = dm_get_udev_mode();
        fprintf(stderr, "# device-mapper udev mode: %s\n", dm_udev_mode_to_string(m));
        if (expect && streq(expect, "1"))
                cr_assert_eq(m, DM_UDEV_SYNC, "udev runs, but we do not synchronise with it");
        else if (expect && streq(expect, "0"))
                cr_assert_eq(m, DM_UDEV_NONE);
}

/* ---- snapshot --------------------------------------------------------------- */

Test(storage, snapshot_write_leaves_base_unchanged, .init = setup, .timeout = 120) {
        char before[65], after[65], p[PATH_MAX];
        uint8_t buf[4096], want[4096];
        _cleanup_close_ int fd = -EBADF, rw = -EBADF;
        struct stat st;
        TestVm v;
        DriveConfig *d;

        make_image(image_path("base.img"), IMAGE_SIZE);
        digest_file(image_path("base.img"), before);
        vm_init(&v, "snapw");
        d = vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));

        fd = prepare_ok(&v, d);
        cr_assert(dm_exists("microvm-snapw-root"));
        cr_assert_eq(major(fd_rdev(fd)) > 0, true);

        /* Reads of untouched blocks come from the base. */
        rw = reopen_rw(fd);
        pread_ok(rw, buf, sizeof buf, 5 * 4096);
        cr_assert_eq(*(uint64_t *) buf, 5);
        cr_assert_eq(buf[100], (5 * 7 + 1) & 0xff);

        memset(want, 0xab, sizeof want);
        pwrite_ok(rw, want, sizeof want, 5 * 4096);
        pread_ok(rw, buf, sizeof buf, 5 * 4096);
        cr_assert_arr_eq(buf, want, sizeof buf);
        rw = safe_close(rw);
        fd = safe_close(fd);

        digest_file(image_path("base.img"), after);
        cr_assert_str_eq(before, after, "the base image changed");

        /* The CoW file: default size (the whole base plus room), sparse. */
        snprintf(p, sizeof p, "%s/var/lib/microvm/snapw/drives/root.cow-tmp", S);
        cr_assert_eq(stat(p, &st), 0, "%s: %m", p);
        cr_assert_geq((uint64_t) st.st_size, IMAGE_SIZE);
        cr_assert_eq(st.st_uid, 0);
        cr_assert_eq(st.st_mode & 07777, 0600);

        teardown_ok("snapw", 0);
        cr_assert(!dm_exists("microvm-snapw-root"));
        cr_assert(!state_file_exists("snapw", "drives/root", ".cow-tmp"));
        wait_no_loops(S);
}

static void restart_keeps(bool persistent) {
        uint8_t buf[4096], want[4096];
        const char *id = persistent ? "persist" : "ephem";
        _cleanup_close_ int fd = -EBADF, rw = -EBADF;
        TestVm v;
        DriveConfig *d;

        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, id);
        d = vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        d->persistent = persistent;

        fd = prepare_ok(&v, d);
        rw = reopen_rw(fd);
        memset(want, 0x5a, sizeof want);
        pwrite_ok(rw, want, sizeof want, 9 * 4096);
        rw = safe_close(rw);
        fd = safe_close(fd);
        teardown_ok(id, 0);
        wait_no_loops(S);

        /* "Restart" */
        fd = prepare_ok(&v, d);
        rw = reopen_rw(fd);
        pread_ok(rw, buf, sizeof buf, 9 * 4096);
        if (persistent)
                cr_assert_arr_eq(buf, want, sizeof buf, "the persistent CoW lost the write");
        else {
                cr_assert_eq(*(uint64_t *) buf, 9, "the ephemeral disk kept a write across a restart");
                cr_assert_eq(buf[200], (9 * 7 + 1) & 0xff);
        }
        rw = safe_close(rw);
        fd = safe_close(fd);

        teardown_ok(id, 0);
        cr_assert_eq(state_file_exists(id, "drives/root", ".cow"), persistent);
        cr_assert_eq(state_file_exists(id, "drives/root", ".snapshot"), persistent);
        teardown_ok(id, STORAGE_TEARDOWN_REMOVE_STATE);
        cr_assert(!state_file_exists(id, "drives/root", ".cow"));
        cr_assert(!state_file_exists(id, "drives/root", ".snapshot"));
        wait_no_loops(S);
}

Test(storage, snapshot_persistent_survives_restart, .init = setup, .timeout = 120) {
        restart_keeps(true);
}

Test(storage, snapshot_ephemeral_is_fresh_on_restart, .init = setup, .timeout = 120) {
        restart_keeps(false);
}

Test(storage, snapshot_persistent_refuses_changed_base, .init = setup, .timeout = 120) {
        _cleanup_free_ char *err = NULL;
        struct timespec ts[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };
        TestVm v;
        DriveConfig *d;
        int fd;

        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, "changed");
        d = vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        d->persistent = true;
        fd = prepare_ok(&v, d);
        close(fd);
        teardown_ok("changed", 0);

        cr_assert_eq(utimensat(AT_FDCWD, image_path("base.img"), ts, 0), 0);
        fd = prepare(&v, d, &err);
        cr_assert_eq(fd, -ESTALE, "%d %s", fd, strna(err));
        cr_assert(strstr(err, "changed since"), "%s", err);
        cr_assert(!dm_exists("microvm-changed-root"));
        teardown_ok("changed", STORAGE_TEARDOWN_REMOVE_STATE);
        wait_no_loops(S);
}

Test(storage, twenty_vms_share_one_base_loop, .init = setup, .timeout = 600) {
        enum { N = 20 };
        int fds[N];
        TestVm v[N];
        char id[32];
        dev_t origin = 0;

        make_image(image_path("shared.img"), IMAGE_SIZE);
        for (int i = 0; i < N; i++) {
                _cleanup_free_ char *params = NULL;
                char name[128];
                dev_t o, c;
                unsigned major_o, minor_o, major_c, minor_c;
                char pn;

                snprintf(id, sizeof id, "share%d", i);
                vm_init(&v[i], id);
                fds[i] = prepare_ok(&v[i], vm_drive(&v[i], "root", DRIVE_MODE_SNAPSHOT, image_path("shared.img")));
                snprintf(name, sizeof name, "microvm-%s-root", id);
                cr_assert_eq(dm_get_table(name, NULL, &params, NULL), 0);
                cr_assert_eq(sscanf(params, "%u:%u %u:%u %c", &major_o, &minor_o, &major_c, &minor_c, &pn), 5, "%s",
                             params);
                o = makedev(major_o, minor_o);
                c = makedev(major_c, minor_c);
                if (i == 0)
                        origin = o;
                cr_assert_eq(o, origin, "VM %d has its own base loop", i);
                cr_assert_neq(c, origin);
        }
        cr_assert_eq(loops_backed_by(image_path("shared.img")), 1, "the base is attached more than once");
        cr_assert_eq(loops_backed_by(S), N + 1);
        for (int i = 0; i < N; i++) {
                close(fds[i]);
                teardown_ok(v[i].c.id, 0);
                /* The base loop lives exactly as long as its last user. */
                if (i < N - 1)
                        cr_assert_eq(loops_backed_by(image_path("shared.img")), 1);
        }
        wait_no_loops(S);
}

Test(storage, mknod_in_jail_has_device_owner_and_mode, .init = setup, .timeout = 120) {
        _cleanup_close_ int fd = -EBADF, jail = -EBADF, base = -EBADF;
        _cleanup_free_ char *err = NULL;
        char p[PATH_MAX];
        struct stat st;
        TestVm v;

        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, "jailed");
        fd = prepare_ok(&v, vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img")));

        snprintf(p, sizeof p, "%s/srv/jailer/firecracker/jailed", S);
        cr_assert_eq(safe_root_open(p, SAFE_ROOT_CREATE, 0755, &base, &err), 0, "%s", strna(err));
        cr_assert_eq(safe_mkdir_at(base, "root", 0700, 0, 0, 0, &jail), 1);
        cr_assert_eq(safe_mknod_at(jail, JAIL_DRIVE_PREFIX "root", fd, 0600, VM_UID, VM_UID), 1);
        /* Idempotent: the same node again is fine. */
        cr_assert_eq(safe_mknod_at(jail, JAIL_DRIVE_PREFIX "root", fd, 0600, VM_UID, VM_UID), 0);

        cr_assert_eq(fstatat(jail, JAIL_DRIVE_PREFIX "root", &st, AT_SYMLINK_NOFOLLOW), 0);
        cr_assert(S_ISBLK(st.st_mode));
        cr_assert_eq(st.st_rdev, fd_rdev(fd));
        cr_assert_eq(major(st.st_rdev), major(fd_rdev(fd)));
        cr_assert_eq(st.st_uid, VM_UID);
        cr_assert_eq(st.st_gid, VM_UID);
        cr_assert_eq(st.st_mode & 07777, 0600);
        /* And it is the dm device the drive got, by name. */
        {
                DmInfo i = {};
                cr_assert_eq(dm_get_info("microvm-jailed-root", NULL, &i), 0);
                cr_assert_eq(i.devnum, st.st_rdev);
                cr_assert_str_eq(i.uuid, "MICROVM-jailed-root");
        }
        fd = safe_close(fd);
        teardown_ok("jailed", 0);
        wait_no_loops(S);
}

/* ---- thin --------------------------------------------------------------------- */

static void activate_ok(ThinPoolInfo *ret) {
        _cleanup_free_ char *err = NULL;
        ThinPoolInfo info = {};

        cr_assert_eq(thin_pool_activate(H, &info, &err), 0, "%s", strna(err));
        cr_assert(info.active);
        cr_assert_eq(info.status.mode, THIN_POOL_RW);
        if (ret)
                *ret = info;
        else
                thin_pool_info_done(&info);
}

static void deactivate_ok(void) {
        _cleanup_free_ char *err = NULL;
        cr_assert_eq(thin_pool_deactivate(H, &err), 0, "%s", strna(err));
}

Test(storage, thin_pool_volume_survives_reboot, .init = setup, .timeout = 300) {
        uint8_t buf[4096], want[4096];
        char before[65], after[65];
        _cleanup_close_ int fd = -EBADF, rw = -EBADF;
        ThinPoolInfo info = {};
        StorageRecord rec;
        TestVm v;
        DriveConfig *d;

        make_image(image_path("thinbase.img"), IMAGE_SIZE);
        digest_file(image_path("thinbase.img"), before);
        configure_pool("tpool-reboot", 256 * MiB);
        activate_ok(&info);
        cr_assert(info.created_data && info.created_metadata);
        cr_assert(info.managed);
        thin_pool_info_done(&info);
        /* Activating an active pool is fine. */
        activate_ok(&info);
        cr_assert(!info.created_data && !info.created_metadata);
        thin_pool_info_done(&info);

        vm_init(&v, "thin1");
        d = vm_drive(&v, "root", DRIVE_MODE_THIN, image_path("thinbase.img"));
        d->size = 2 * IMAGE_SIZE;
        fd = prepare_ok(&v, d);
        read_thin_record("thin1", "root", &rec);
        cr_assert_eq(rec.thin_id, 1);
        cr_assert_str_eq(rec.pool, "tpool-reboot");
        cr_assert_eq(rec.size, 2 * IMAGE_SIZE);

        rw = reopen_rw(fd);
        /* External origin: the base's blocks, zeros beyond its end. */
        pread_ok(rw, buf, sizeof buf, 3 * 4096);
        cr_assert_eq(*(uint64_t *) buf, 3);
        pread_ok(rw, buf, sizeof buf, IMAGE_SIZE + 4096);
        memset(want, 0, sizeof want);
        cr_assert_arr_eq(buf, want, sizeof buf, "beyond the base: not zeros");
        memset(want, 0x77, sizeof want);
        pwrite_ok(rw, want, sizeof want, 3 * 4096);
        pwrite_ok(rw, want, sizeof want, IMAGE_SIZE + 8192);
        rw = safe_close(rw);
        fd = safe_close(fd);
        digest_file(image_path("thinbase.img"), after);
        cr_assert_str_eq(before, after, "the base image changed");

        /* "Reboot": every dm device and loop goes away. */
        teardown_ok("thin1", 0);
        deactivate_ok();
        cr_assert(!dm_exists("tpool-reboot"));
        wait_no_loops(S);

        /* ...and comes back larger: both files grow, nothing is lost. */
        H->thin_pool.data_size = 384 * MiB;
        H->thin_pool.metadata_size = 96 * MiB;
        activate_ok(&info);
        cr_assert(!info.created_data && !info.created_metadata, "the pool's files were recreated");
        cr_assert_eq(info.status.total_data_blocks, 384 * MiB / DEFAULT_THIN_BLOCK_SIZE);
        cr_assert_eq(info.status.total_metadata_blocks, 96 * MiB / THIN_METADATA_BLOCK_SIZE);
        thin_pool_info_done(&info);
        fd = prepare_ok(&v, d);
        rw = reopen_rw(fd);
        pread_ok(rw, buf, sizeof buf, 3 * 4096);
        cr_assert_arr_eq(buf, want, sizeof buf, "the thin volume lost its data across the reboot");
        pread_ok(rw, buf, sizeof buf, IMAGE_SIZE + 8192);
        cr_assert_arr_eq(buf, want, sizeof buf);
        pread_ok(rw, buf, sizeof buf, 4 * 4096);
        cr_assert_eq(*(uint64_t *) buf, 4);
        rw = safe_close(rw);
        fd = safe_close(fd);

        /* Removing the state deletes the volume from the pool. */
        teardown_ok("thin1", STORAGE_TEARDOWN_REMOVE_STATE);
        cr_assert(!state_file_exists("thin1", STORAGE_THIN_RECORD_PREFIX, "root"));
        {
                _cleanup_free_ char *err = NULL;
                cr_assert_eq(dm_message("tpool-reboot", "delete 1", NULL, &err), -ENODATA, "volume 1 still in the pool");
        }
        deactivate_ok();
        wait_no_loops(S);
}

Test(storage, thin_ids_allocated_concurrently_are_distinct, .init = setup, .timeout = 600) {
        enum { N = 12 };
        pid_t pids[N];
        bool seen[N + 2] = {};

        make_image(image_path("thinbase.img"), IMAGE_SIZE);
        configure_pool("tpool-conc", 256 * MiB);
        activate_ok(NULL);
        /* An id someone else took in the pool must be skipped, not reused. */
        cr_assert_eq(dm_message("tpool-conc", "create_thin 3", NULL, NULL), 0);

        for (int i = 0; i < N; i++) {
                char id[32];
                snprintf(id, sizeof id, "conc%d", i);
                cr_assert_geq(safe_mkdir_at(state_fd, id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL), 0);
                pids[i] = fork();
                cr_assert_geq(pids[i], 0);
                if (pids[i] == 0) {
                        _cleanup_free_ char *err = NULL, *name = NULL;
                        TestVm v = {};
                        int fd = -EBADF, r;

                        snprintf(v.c.id, sizeof v.c.id, "%s", id);
                        v.c.drives = v.d;
                        v.d[0] = (DriveConfig) { .mode = DRIVE_MODE_THIN, .path = (char *) image_path("thinbase.img") };
                        strcpy(v.d[0].name, "root");
                        v.c.n_drives = 1;
                        r = storage_prepare_drive(H, &v.c, &v.d[0], state_fd, VM_UID, &fd, &name, &err);
                        if (r < 0) {
                                fprintf(stderr, "child %s: %s\n", id, strna(err));
                                _exit(1);
                        }
                        _exit(0);
                }
        }
        for (int i = 0; i < N; i++)
                cr_assert_eq(wait_exit(pids[i]), 0, "concurrent stage %d failed", i);
        for (int i = 0; i < N; i++) {
                StorageRecord rec;
                char id[32];
                snprintf(id, sizeof id, "conc%d", i);
                read_thin_record(id, "root", &rec);
                cr_assert_leq(rec.thin_id, N + 1);
                cr_assert_neq(rec.thin_id, 3, "id 3 belongs to someone else");
                cr_assert(!seen[rec.thin_id], "thin id %u handed out twice", rec.thin_id);
                seen[rec.thin_id] = true;
        }
        for (int i = 0; i < N; i++) {
                char id[32];
                snprintf(id, sizeof id, "conc%d", i);
                teardown_ok(id, STORAGE_TEARDOWN_REMOVE_STATE);
        }
        /* The foreign volume is still there. */
        cr_assert_eq(dm_message("tpool-conc", "delete 3", NULL, NULL), 0);
        deactivate_ok();
        wait_no_loops(S);
}

Test(storage, thin_volume_missing_from_pool_is_named, .init = setup, .timeout = 300) {
        _cleanup_free_ char *err = NULL;
        TestVm v;
        DriveConfig *d;

        make_image(image_path("thinbase.img"), IMAGE_SIZE);
        configure_pool("tpool-missing", 256 * MiB);
        activate_ok(NULL);
        vm_init(&v, "thinmiss");
        d = vm_drive(&v, "root", DRIVE_MODE_THIN, image_path("thinbase.img"));
        close(prepare_ok(&v, d));
        teardown_ok("thinmiss", 0);
        /* Someone deleted the volume behind our back (or recreated the pool). */
        cr_assert_eq(dm_message("tpool-missing", "delete 1", NULL, NULL), 0);
        { int r = prepare(&v, d, &err); cr_assert_eq(r, -ENODATA, "%d: %s", r, strna(err)); }
        cr_assert(strstr(err, "has no thin volume 1") && strstr(err, "thin-root"), "%s", err);
        teardown_ok("thinmiss", STORAGE_TEARDOWN_REMOVE_STATE);      /* ENODATA on delete is fine */
        cr_assert(!state_file_exists("thinmiss", STORAGE_THIN_RECORD_PREFIX, "root"));
        deactivate_ok();
        wait_no_loops(S);
}

Test(storage, thin_needs_an_active_pool, .init = setup, .timeout = 120) {
        _cleanup_free_ char *err = NULL;
        TestVm v;

        make_image(image_path("thinbase.img"), IMAGE_SIZE);
        configure_pool("tpool-absent", 256 * MiB);
        vm_init(&v, "nopool");
        cr_assert_eq(prepare(&v, vm_drive(&v, "root", DRIVE_MODE_THIN, image_path("thinbase.img")), &err), -ENXIO);
        cr_assert(strstr(err, "is not active") && strstr(err, "microvm-pool.service"), "%s", err);
}

Test(storage, pool_refuses_untrusted_metadata, .init = setup, .timeout = 300) {
        _cleanup_free_ char *err = NULL;
        uint8_t byte, flipped;
        int fd;

        configure_pool("tpool-trust", 256 * MiB);
        activate_ok(NULL);
        deactivate_ok();
        wait_no_loops(S);

        /* A flipped bit in the superblock. */
        fd = open(H->thin_pool.metadata, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        cr_assert_eq(pread(fd, &byte, 1, 100), 1);
        flipped = byte ^ 0x10;
        cr_assert_eq(pwrite(fd, &flipped, 1, 100), 1);
        cr_assert_eq(thin_pool_activate(H, NULL, &err), -EUCLEAN);
        cr_assert(strstr(err, "checksum"), "%s", err);
        cr_assert(!dm_exists("tpool-trust"));
        err = mfree(err);
        cr_assert_eq(pwrite(fd, &byte, 1, 100), 1);

        /* Another data block size than the metadata was made with. */
        H->thin_pool.block_size = 128 * 1024;
        cr_assert_eq(thin_pool_activate(H, NULL, &err), -EINVAL);
        cr_assert(strstr(err, "block_size = 65536"), "%s", err);
        err = mfree(err);
        H->thin_pool.block_size = DEFAULT_THIN_BLOCK_SIZE;

        /* A zeroed superblock over metadata that still holds data: the
         * kernel would format it. */
        {
                uint8_t zero[4096] = {}, saved[4096];
                cr_assert_eq(pread(fd, saved, sizeof saved, 0), (ssize_t) sizeof saved);
                cr_assert_eq(pwrite(fd, zero, sizeof zero, 0), (ssize_t) sizeof zero);
                cr_assert_eq(thin_pool_activate(H, NULL, &err), -EUCLEAN);
                cr_assert(strstr(err, "all-zero superblock but holds data"), "%s", err);
                err = mfree(err);
                cr_assert_eq(pwrite(fd, saved, sizeof saved, 0), (ssize_t) sizeof saved);
        }
        close(fd);

        /* Intact again: activates. */
        activate_ok(NULL);
        deactivate_ok();

        /* Not metadata at all. */
        make_image(H->thin_pool.metadata, 4 * MiB);
        cr_assert_eq(thin_pool_activate(H, NULL, &err), -EUCLEAN);
        cr_assert(strstr(err, "not thin-pool metadata"), "%s", err);
        cr_assert(!dm_exists("tpool-trust"));
        wait_no_loops(S);
}

Test(storage, thin_refuses_changed_base, .init = setup, .timeout = 300) {
        _cleanup_free_ char *err = NULL;
        struct timespec ts[2] = { { .tv_sec = 1000000000 }, { .tv_sec = 1000000000 } };
        TestVm v;
        DriveConfig *d;
        int fd;

        make_image(image_path("thinbase.img"), IMAGE_SIZE);
        configure_pool("tpool-changed", 256 * MiB);
        activate_ok(NULL);
        vm_init(&v, "thinchg");
        d = vm_drive(&v, "root", DRIVE_MODE_THIN, image_path("thinbase.img"));
        fd = prepare_ok(&v, d);
        close(fd);
        teardown_ok("thinchg", 0);
        cr_assert_eq(utimensat(AT_FDCWD, image_path("thinbase.img"), ts, 0), 0);
        cr_assert_eq(prepare(&v, d, &err), -ESTALE);
        cr_assert(strstr(err, "changed since thin volume 1"), "%s", err);
        teardown_ok("thinchg", STORAGE_TEARDOWN_REMOVE_STATE);
        deactivate_ok();
        wait_no_loops(S);
}

/* ---- block ------------------------------------------------------------------------- */

Test(storage, block_passthrough_checks, .init = setup, .timeout = 300) {
        _cleanup_free_ char *err = NULL;
        char mnt[PATH_MAX], dev[64], link[PATH_MAX], cmd[PATH_MAX + 64];
        TestVm a, b;
        DriveConfig *da, *db;
        unsigned nr;
        int fd;

        make_image(image_path("disk.img"), IMAGE_SIZE);
        snprintf(cmd, sizeof cmd, "mke2fs -q -F %s >/dev/null 2>&1", image_path("disk.img"));
        cr_assert_eq(system(cmd), 0, "mke2fs failed");
        nr = foreign_loop(image_path("disk.img"), false);
        snprintf(dev, sizeof dev, "/dev/loop%u", nr);
        snprintf(link, sizeof link, "%s/images/disk-link", S);
        cr_assert_eq(symlink(dev, link), 0);

        vm_init(&a, "blka");
        vm_init(&b, "blkb");
        da = vm_drive(&a, "data", DRIVE_MODE_BLOCK, link);
        db = vm_drive(&b, "data", DRIVE_MODE_BLOCK, dev);

        /* Mounted: refused, and the message says where. */
        snprintf(mnt, sizeof mnt, "%s/mnt", S);
        cr_assert_eq(mkdir(mnt, 0755), 0);
        cr_assert_eq(mount(dev, mnt, "ext2", MS_RDONLY, NULL), 0, "mount: %m");
        cr_assert_eq(prepare(&a, da, &err), -EBUSY);
        cr_assert(strstr(err, "is mounted on") && strstr(err, mnt), "%s", err);
        err = mfree(err);
        cr_assert_eq(umount(mnt), 0);

        /* Free: passed through, the symlink resolved to the device. */
        fd = prepare_ok(&a, da);
        {
                struct stat st;
                cr_assert_eq(stat(dev, &st), 0);
                cr_assert_eq(fd_rdev(fd), st.st_rdev);
        }
        close(fd);
        /* Idempotent for the same VM and drive (a restart). */
        fd = prepare_ok(&a, da);
        close(fd);
        /* Reclaim sees the claim. */
        {
                _cleanup_strv_free_ char **ids = NULL, **names = NULL;
                cr_assert_eq(storage_list_vm_ids(H, &ids, &names), 0);
                cr_assert(strv_contains(ids, "blka"));
        }
        /* Another VM: refused, naming the VM that has it. */
        cr_assert_eq(prepare(&b, db, &err), -EBUSY);
        cr_assert(strstr(err, "in use by VM blka"), "%s", err);
        err = mfree(err);
        /* After blka's teardown it is free again. */
        teardown_ok("blka", 0);
        fd = prepare_ok(&b, db);
        close(fd);
        teardown_ok("blkb", 0);

        /* Held by a dm device on top: refused. */
        {
                char table[64];
                DmTarget t = { 0, IMAGE_SIZE / 512, "linear", table };
                struct stat st;
                cr_assert_eq(stat(dev, &st), 0);
                snprintf(table, sizeof table, "%u:%u 0", major(st.st_rdev), minor(st.st_rdev));
                cr_assert_eq(dm_create("blk-holder-test", "TEST-blk-holder", &t, 1, 0, NULL, &err), 0, "%s",
                             strna(err));
                cr_assert_eq(prepare(&a, da, &err), -EBUSY);
                cr_assert(strstr(err, "in use by dm-"), "%s", err);
                err = mfree(err);
                cr_assert_eq(dm_remove("TEST-blk-holder", 0, NULL), DM_REMOVE_DONE);
        }
        /* Held exclusively by someone (what mountinfo cannot show: swap, a
         * mount in another namespace, md, another program). */
        {
                int holder = open(dev, O_RDONLY | O_EXCL | O_CLOEXEC);
                cr_assert_geq(holder, 0, "%s: %m", dev);
                cr_assert_eq(prepare(&a, da, &err), -EBUSY);
                cr_assert(strstr(err, "exclusive open"), "%s", err);
                err = mfree(err);
                close(holder);
        }
        /* Not a block device at all. */
        {
                DriveConfig *df = vm_drive(&a, "file", DRIVE_MODE_BLOCK, image_path("disk.img"));
                cr_assert_eq(prepare(&a, df, &err), -ENOTBLK);
                cr_assert(strstr(err, "is not a block device"), "%s", err);
                err = mfree(err);
        }
        detach_loop(nr);
}

/* ---- teardown, reclaim, busy devices --------------------------------------------------------- */

Test(storage, teardown_leaves_nothing, .init = setup, .timeout = 300) {
        _cleanup_strv_free_ char **names = NULL;
        DmDevice *list = NULL;
        size_t n = 0;
        TestVm v;
        int fds[3];

        make_image(image_path("base.img"), IMAGE_SIZE);
        make_image(image_path("base2.img"), IMAGE_SIZE);
        configure_pool("tpool-clean", 256 * MiB);
        activate_ok(NULL);
        vm_init(&v, "mixed");
        fds[0] = prepare_ok(&v, vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img")));
        fds[1] = prepare_ok(&v, vm_drive(&v, "data", DRIVE_MODE_THIN, image_path("base2.img")));
        vm_drive(&v, "scratch", DRIVE_MODE_SNAPSHOT, image_path("base2.img"))->persistent = true;
        fds[2] = prepare_ok(&v, &v.d[2]);
        for (int i = 0; i < 3; i++)
                close(fds[i]);

        /* The plan's names are the devices the drives got. */
        cr_assert_eq(storage_plan_dm_names(&v.c, &names), 0);
        cr_assert_eq(strv_length(names), 3);
        for (char **p = names; *p; p++)
                cr_assert(dm_exists(*p), "%s", *p);

        {
                StorageReport rep = {};
                cr_assert_eq(storage_teardown_vm(H, state_fd, "mixed", names, STORAGE_TEARDOWN_DEFERRED, &rep), 0, "%s",
                             rep.failed ? rep.failed[0] : "");
                cr_assert_eq(rep.n_removed, 3);
                cr_assert_null(rep.deferred);
                storage_report_done(&rep);
        }
        cr_assert_eq(dm_list("MICROVM-mixed-", &list, &n), 0);
        cr_assert_eq(n, 0, "dm devices left: %s", n ? list[0].name : "");
        dm_devices_free(list, n);
        /* No image loop is left; the persistent CoW and the thin volume are
         * kept (state), until the state goes. */
        cr_assert_eq(loops_backed_by(image_path("")), 0);
        cr_assert(state_file_exists("mixed", "drives/scratch", ".cow"));
        cr_assert(state_file_exists("mixed", STORAGE_THIN_RECORD_PREFIX, "data"));
        cr_assert(!state_file_exists("mixed", "drives/root", ".cow-tmp"));
        teardown_ok("mixed", STORAGE_TEARDOWN_REMOVE_STATE);
        cr_assert(!state_file_exists("mixed", "drives/scratch", ".cow"));
        cr_assert(!state_file_exists("mixed", STORAGE_THIN_RECORD_PREFIX, "data"));
        /* Teardown again: a no-op. */
        teardown_ok("mixed", STORAGE_TEARDOWN_REMOVE_STATE);
        deactivate_ok();
        wait_no_loops(S);
}

static _noreturn_ void crash_after_staging(void *arg) {
        TestVm *v = arg;
        for (size_t i = 0; i < v->c.n_drives; i++) {
                _cleanup_free_ char *err = NULL;
                int fd = -EBADF;
                if (storage_prepare_drive(H, &v->c, &v->d[i], state_fd, VM_UID, &fd, NULL, &err) < 0) {
                        fprintf(stderr, "stage %s: %s\n", v->c.id, strna(err));
                        _exit(1);
                }
        }
        /* Die without cleanup, like a SIGKILLed VM whose cleanup never ran. */
        raise(SIGKILL);
        _exit(1);
}

Test(storage, reclaim_removes_exactly_ours, .init = setup, .timeout = 300) {
        _cleanup_strv_free_ char **ids = NULL, **names = NULL;
        _cleanup_free_ char *err = NULL;
        TestVm a, ab, a_b, keep;
        unsigned foreign, stale;
        pid_t pid;
        char table[64];
        struct stat st;
        StorageReport rep = {};
        int r;

        make_image(image_path("base.img"), IMAGE_SIZE);
        make_image(image_path("foreign.img"), IMAGE_SIZE);
        make_image(image_path("stale.img"), IMAGE_SIZE);
        configure_pool("tpool-reclaim", 256 * MiB);
        activate_ok(NULL);

        /* VM "a" crashes with a snapshot and a thin drive; "ab" (an id
         * with "a" as prefix) is also left behind; "keep" runs. */
        vm_init(&a, "a");
        vm_drive(&a, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        vm_drive(&a, "data", DRIVE_MODE_THIN, image_path("base.img"));
        vm_init(&ab, "ab");
        vm_drive(&ab, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        vm_init(&a_b, "a-b");   /* "MICROVM-a-" is a prefix of its UUIDs */
        vm_drive(&a_b, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        vm_init(&keep, "keep");
        vm_drive(&keep, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
                crash_after_staging(&a);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
                crash_after_staging(&ab);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
                crash_after_staging(&a_b);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
        close(prepare_ok(&keep, &keep.d[0]));

        /* Foreign: a dm device on a foreign loop, and a loop of ours left
         * by a crash in the legacy attach (marker, no autoclear, unused). */
        foreign = foreign_loop(image_path("foreign.img"), false);
        stale = foreign_loop(image_path("stale.img"), true);
        {
                char dev[64];
                snprintf(dev, sizeof dev, "/dev/loop%u", foreign);
                cr_assert_eq(stat(dev, &st), 0);
        }
        snprintf(table, sizeof table, "%u:%u 0", major(st.st_rdev), minor(st.st_rdev));
        {
                DmTarget t = { 0, IMAGE_SIZE / 512, "linear", table };
                cr_assert_eq(dm_create("foreign-linear", "FOREIGN-1", &t, 1, 0, NULL, &err), 0, "%s", strna(err));
        }

        cr_assert_eq(storage_list_vm_ids(H, &ids, &names), 0);
        cr_assert(strv_contains(ids, "a") && strv_contains(ids, "ab") && strv_contains(ids, "keep"));
        cr_assert(!strv_contains(ids, "foreign-linear"));
        cr_assert(strv_contains(names, "microvm-a-root") && strv_contains(names, "microvm-a-data"));

        /* Reclaim "a" (its unit is not running): exactly its devices. */
        r = storage_teardown_vm(H, state_fd, "a", NULL, 0, &rep);
        cr_assert_eq(r, 0, "%s", rep.failed ? rep.failed[0] : "");
        cr_assert_eq(rep.n_removed, 2);
        storage_report_done(&rep);
        cr_assert(!dm_exists("microvm-a-root") && !dm_exists("microvm-a-data"));
        cr_assert(dm_exists("microvm-ab-root"), "reclaiming a took ab's device");
        cr_assert(dm_exists("microvm-a-b-root"), "reclaiming a took a-b's device");
        cr_assert(dm_exists("microvm-keep-root"));
        r = storage_teardown_vm(H, state_fd, "ab", NULL, 0, &rep);
        cr_assert_eq(r, 0);
        storage_report_done(&rep);
        r = storage_teardown_vm(H, state_fd, "a-b", NULL, 0, &rep);
        cr_assert_eq(r, 0);
        storage_report_done(&rep);

        cr_assert(loop_bound(stale));
        r = storage_reclaim_loops(&rep);
        cr_assert_eq(r, 1, "reclaimed %d loops; %s", r, rep.failed ? rep.failed[0] : "");
        storage_report_done(&rep);
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             loop_bound(stale) && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(25);
        cr_assert(!loop_bound(stale), "the stale loop of ours is still attached");
        cr_assert(loop_bound(foreign), "a foreign loop was detached");
        cr_assert(dm_exists("foreign-linear"), "a foreign dm device was removed");
        cr_assert(dm_exists("tpool-reclaim"), "the pool was removed");
        cr_assert(dm_exists("microvm-keep-root"));
        cr_assert_eq(loops_backed_by(image_path("base.img")), 1, "keep's base loop is gone");

        cr_assert_eq(dm_remove("FOREIGN-1", 0, NULL), DM_REMOVE_DONE);
        detach_loop(foreign);
        teardown_ok("keep", 0);
        teardown_ok("a", STORAGE_TEARDOWN_REMOVE_STATE);
        deactivate_ok();
        wait_no_loops(S);
}

static _noreturn_ void stage_and_exit(void *arg) {
        TestVm *v = arg;
        for (size_t i = 0; i < v->c.n_drives; i++) {
                int fd = -EBADF;
                if (storage_prepare_drive(H, &v->c, &v->d[i], state_fd, VM_UID, &fd, NULL, NULL) < 0)
                        _exit(1);
        }
        _exit(0);
}

static usec_t now_us(void) {
        return now_usec(CLOCK_MONOTONIC);
}

/* SIGKILL a stage at random points; each time, teardown + loop reclaim
 * must leave no dm device of the VM and no loop of its files or of the
 * base behind. */
Test(storage, sigkill_during_stage_leaks_nothing, .init = setup, .timeout = 600) {
        enum { ROUNDS = 100 };
        char statedir[PATH_MAX];
        uint64_t seed = 0x9e3779b97f4a7c15ULL;
        usec_t full;
        TestVm v;
        pid_t pid;

        make_image(image_path("base.img"), IMAGE_SIZE);
        configure_pool("tpool-kill", 256 * MiB);
        activate_ok(NULL);
        vm_init(&v, "killed");
        vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img"));
        vm_drive(&v, "data", DRIVE_MODE_THIN, image_path("base.img"));
        vm_drive(&v, "keep", DRIVE_MODE_SNAPSHOT, image_path("base.img"))->persistent = true;
        snprintf(statedir, sizeof statedir, "%s/var/lib/microvm/killed/", S);

        /* How long a whole stage of the three drives takes here. */
        full = now_us();
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
                stage_and_exit(&v);
        cr_assert_eq(wait_exit(pid), 0);
        full = now_us() - full;
        teardown_ok("killed", 0);

        for (int round = 0; round < ROUNDS; round++) {
                StorageReport rep = {};
                DmDevice *list = NULL;
                size_t n = 0;
                usec_t delay;
                int r;

                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                delay = (seed >> 33) % (full + 1);
                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0)
                        stage_and_exit(&v);
                {
                        struct timespec ts = { .tv_sec = (time_t) (delay / 1000000),
                                               .tv_nsec = (long) (delay % 1000000) * 1000 };
                        nanosleep(&ts, NULL);
                }
                (void) kill(pid, SIGKILL);
                (void) wait_exit(pid);

                r = storage_teardown_vm(H, state_fd, "killed", NULL, 0, &rep);
                cr_assert_eq(r, 0, "round %d (kill after %llu us): %s", round, (unsigned long long) delay,
                             rep.failed ? rep.failed[0] : "");
                storage_report_done(&rep);
                cr_assert_geq(storage_reclaim_loops(&rep), 0);
                storage_report_done(&rep);
                cr_assert_eq(dm_list("MICROVM-killed-", &list, &n), 0);
                cr_assert_eq(n, 0, "round %d: %s left", round, n ? list[0].name : "");
                dm_devices_free(list, n);
                wait_no_loops(statedir);
                wait_no_loops(image_path(""));
        }
        /* The thin volume is still usable, and goes with the state. */
        close(prepare_ok(&v, &v.d[1]));
        teardown_ok("killed", STORAGE_TEARDOWN_REMOVE_STATE);
        deactivate_ok();
        wait_no_loops(S);
}

Test(storage, busy_device_is_deferred_and_reported, .init = setup, .timeout = 300) {
        _cleanup_close_ int fd = -EBADF, holder = -EBADF;
        StorageReport rep = {};
        DmInfo i = {};
        TestVm v;
        int r;

        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, "busy");
        fd = prepare_ok(&v, vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img")));
        holder = reopen_rw(fd);         /* like a VMM that has not exited yet */
        fd = safe_close(fd);

        /* Reclaim style: never pulled from under its user, reported. */
        r = storage_teardown_vm(H, state_fd, "busy", NULL, 0, &rep);
        cr_assert_eq(r, -EBUSY);
        cr_assert_eq(strv_length(rep.failed), 1);
        cr_assert(strstr(rep.failed[0], "microvm-busy-root") && strstr(rep.failed[0], "open count 1"), "%s",
                  rep.failed[0]);
        storage_report_done(&rep);
        cr_assert(dm_exists("microvm-busy-root"));

        /* Cleanup style: deferred, reported, gone on last close. */
        r = storage_teardown_vm(H, state_fd, "busy", NULL, STORAGE_TEARDOWN_DEFERRED, &rep);
        cr_assert_eq(r, 0, "%s", rep.failed ? rep.failed[0] : "");
        cr_assert_eq(strv_length(rep.deferred), 1);
        cr_assert(strstr(rep.deferred[0], "deferred removal scheduled") && strstr(rep.deferred[0], "microvm-busy-root"),
                  "%s", rep.deferred[0]);
        storage_report_done(&rep);
        cr_assert_eq(dm_get_info("microvm-busy-root", NULL, &i), 0);
        cr_assert(i.exists && i.deferred_remove);

        holder = safe_close(holder);
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             dm_exists("microvm-busy-root") && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(25);
        cr_assert(!dm_exists("microvm-busy-root"), "the deferred removal did not happen on last close");
        wait_no_loops(S);
}

Test(storage, udev_nodes, .init = setup, .timeout = 120) {
        _cleanup_close_ int fd = -EBADF;
        char p[PATH_MAX];
        struct stat st;
        TestVm v;

        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, "nodes");
        fd = prepare_ok(&v, vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img")));
        /* With udev, udev made the /dev/mapper link before we returned;
         * without, libdevmapper made a node. Either way it is our device. */
        snprintf(p, sizeof p, "/dev/mapper/microvm-nodes-root");
        cr_assert_eq(stat(p, &st), 0, "%s: %m (udev mode %s)", p, dm_udev_mode_to_string(dm_get_udev_mode()));
        cr_assert(S_ISBLK(st.st_mode));
        cr_assert_eq(st.st_rdev, fd_rdev(fd));
        cr_assert_null(dm_udev_notice(), "%s", dm_udev_notice());
        fd = safe_close(fd);
        teardown_ok("nodes", 0);
        cr_assert_null(dm_udev_notice(), "%s", dm_udev_notice());
        cr_assert_neq(lstat(p, &st), 0, "%s is left", p);
        wait_no_loops(S);
        (void) S;
}

/* udev detection and the bounded wait, with a fake udev: a control socket
 * nobody listens on (stale: no udev), and one that accepts connections
 * but never completes a cookie (a hung or foreign udev): the create must
 * finish within the bound and say so, never hang. Only where no real udev
 * runs (the default guest run); in a private mount namespace. */
static int fake_udev_socket(bool listening) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);

        cr_assert_geq(fd, 0);
        strcpy(sa.sun_path, "/run/udev/control");
        (void) unlink(sa.sun_path);
        cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0, "bind: %m");
        if (listening)
                cr_assert_eq(listen(fd, 16), 0);
        else
                fd = safe_close(fd);    /* a stale socket file */
        return fd;
}

static _noreturn_ void child_expect_mode(void *arg) {
        _exit(dm_get_udev_mode() == *(DmUdevMode *) arg ? 0 : 1);
}

Test(storage, udev_detection_and_bounded_wait, .init = setup, .timeout = 120) {
        _cleanup_close_ int sock = -EBADF, fd = -EBADF;
        DmUdevMode want;
        usec_t t0;
        TestVm v;
        pid_t pid;

        if (access("/run/udev/control", F_OK) == 0)
                cr_skip_test("a real udev runs here");
        (void) mkdir("/run/udev", 0755);
        cr_assert_eq(mount("fake-udev", "/run/udev", "tmpfs", 0, "mode=0755"), 0, "%m");

        /* Stale socket file: no udev. */
        fake_udev_socket(false);
        want = DM_UDEV_NONE;
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0)
                child_expect_mode(&want);
        cr_assert_eq(wait_exit(pid), 0, "a stale /run/udev/control was taken for a running udev");

        /* Listening, but never answering. */
        sock = fake_udev_socket(true);
        if (access("/lib/udev/rules.d/95-dm-notify.rules", F_OK) < 0 &&
            access("/usr/lib/udev/rules.d/95-dm-notify.rules", F_OK) < 0) {
                want = DM_UDEV_NONE;    /* without the dm rules, never wait */
                pid = fork();
                cr_assert_geq(pid, 0);
                if (pid == 0)
                        child_expect_mode(&want);
                cr_assert_eq(wait_exit(pid), 0);
                return;
        }
        cr_assert_eq(dm_get_udev_mode(), DM_UDEV_SYNC);
        make_image(image_path("base.img"), IMAGE_SIZE);
        vm_init(&v, "fakeudev");
        t0 = now_usec(CLOCK_MONOTONIC);
        fd = prepare_ok(&v, vm_drive(&v, "root", DRIVE_MODE_SNAPSHOT, image_path("base.img")));
        t0 = now_usec(CLOCK_MONOTONIC) - t0;
        cr_assert_lt(t0, DM_UDEV_WAIT_TIMEOUT + 10 * USEC_PER_SEC, "took %llu us", (unsigned long long) t0);
        cr_assert_not_null(dm_udev_notice(), "the wait for udev was not cut short");
        cr_assert(strstr(dm_udev_notice(), "did not confirm"), "%s", dm_udev_notice());
        cr_assert_eq(dm_get_udev_mode(), DM_UDEV_NONE);
        fd = safe_close(fd);
        teardown_ok("fakeudev", 0);
        wait_no_loops(S);
}

/* ---- main --------------------------------------------------------------------------- */

static const char *skip_reason(void) {
        static char why[256];
        _cleanup_free_ char *err = NULL;
        const char *const want[] = { "snapshot", "thin-pool", NULL };
        const char *p = priv_skip_reason();

        if (p)
                return p;
        if (dm_check_available(&err) < 0) {
                snprintf(why, sizeof why, "%s", err);
                return why;
        }
        if (access("/dev/loop-control", F_OK) < 0)
                return "no loop device support (/dev/loop-control)";
        /* The kernel loads targets on demand; make sure they can be. */
        if (dm_targets_check(want, &err) < 0) {
                err = mfree(err);
                /* A table load would autoload them: try the snapshot one. */
                if (system("modprobe dm_snapshot >/dev/null 2>&1; modprobe dm_thin_pool >/dev/null 2>&1") != 0 ||
                    dm_targets_check(want, &err) < 0) {
                        snprintf(why, sizeof why, "%s", strna(err));
                        return why;
                }
        }
        return NULL;
}

int main(int argc, char *argv[]) {
        const char *why = skip_reason();

        dm_release();
        return criterion_run_or_skip(argc, argv, why);
}
