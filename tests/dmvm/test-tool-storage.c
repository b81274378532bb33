/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The storage step of the real tools on real device-mapper: microvm-stage,
 * microvm-cleanup, microvm-reclaim and microvm-pool run as subprocesses
 * (tests/priv/tool-util.h: a scratch host on a tmpfs in a private mount
 * namespace, copies of the jailer/firecracker doubles, a cgroup namespace
 * of the test's own) for VMs with snapshot (persistent and not), thin and
 * block drives, and what they leave is checked against the kernel:
 *  - stage: the jail nodes against the dm devices (/dev/dm-N) and loops
 *    (type, major:minor, owner, mode), the plan's DM list, firecracker's
 *    path_on_host, the block claims;
 *  - cleanup (from the unit's .control cgroup as ExecStopPost=, and by
 *    hand): no dm device and no loop of the VM left (a base shared with a
 *    VM still staged stays), persistent CoW files and thin volumes kept
 *    with their data across a restart, the rest fresh; an ephemeral VM's
 *    thin volumes deleted from the pool, also after a host crash; a device
 *    held by someone else deferred, reported and finished later;
 *  - reclaim after a crash: exactly that VM's dm devices, loops and claims
 *    go, a running VM, a foreign dm device, foreign loops and the pool stay;
 *  - SIGKILL of microvm-stage (and of microvm-cleanup) at random points,
 *    followed by cleanup, the next start or a reclaim: nothing leaks;
 *  - block passthrough of a mounted or taken device is refused by name.
 *
 * Needs root, dm-snapshot and dm-thin-pool: meson runs it inside the dmvm
 * guest (tests/dmvm/dmvm-tap) in one boot; MICROVM_DMVM_DIRECT=1 runs it on
 * a host kernel that has device-mapper. The guest mounts no cgroup2: main()
 * mounts it where there is none. Skips (TAP "1..0 # SKIP", exit 77 without
 * --tap) with the reason when it cannot run.
 *
 * dm devices and loops are global (the tmpfs and cgroups are not): every
 * test uses VM ids and a pool name of its own, so that what a failed test
 * leaves cannot be mistaken for another's. */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/options.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/loop.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "dm.h"
#include "loop.h"
#include "names.h"
#include "plan.h"
#include "priv-util.h"
#include "storage.h"
#include "tool-util.h"

#define MiB (UINT64_C(1) << 20)
#define BASE_SIZE (4 * MiB)
#define BLK 4096
#define MARK_BLOCK 7            /* the block markers are written to */
#define UNIT(id) "microvm.slice/microvm@" id ".service"

static char pool_dir[PATH_MAX];
static char pool_name[64];

static void setup(void) {
        tool_sandbox();
        cgroup_sandbox();
        /* The tools judge whether a unit runs by the cgroups this test
         * builds, never by asking a system bus (where one exists, with
         * MICROVM_DMVM_DIRECT=1, it knows nothing of these VMs). */
        cr_assert_eq(setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS, 1), 0);
        snprintf(pool_dir, sizeof pool_dir, "%s/pool", S.root);
        pool_name[0] = '\0';
}

static void teardown(void) {
        cgroup_sandbox_done();
}

static const char *outcome(const ToolRun *r) {
        return pf("exit %d, stderr:\n%s", r->status, r->err);
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

/* ---- configs and images ------------------------------------------------------------ */

/* The host config of tool-util, plus a managed thin pool when pool is set. */
static void host_write(const char *pool) {
        char text[8192];

        snprintf(text, sizeof text,
                 "[host]\n"
                 "jailer = %s/jailer\n"
                 "firecracker = %s/firecracker\n"
                 "chroot_base = %s\n"
                 "state_dir = %s\n"
                 "run_dir = %s\n"
                 "uid_range = %u-%u\n",
                 S.bin, S.bin, S.base, S.state, S.run, VM_RANGE_MIN, VM_RANGE_MAX);
        if (pool)
                snprintf(text + strlen(text), sizeof text - strlen(text),
                         "\n[thin_pool]\n"
                         "name = %s\n"
                         "data = %s/data\n"
                         "metadata = %s/metadata\n"
                         "data_size = 1G\n",
                         pool, pool_dir, pool_dir);
        (void) unlink(S.host_conf);
        write_file(S.host_conf, text, 0644, 0);
}

/* A VM with the kernel and initrd of tool-util (assert_staged() checks
 * them) and the given [drive.*] sections; vm_extra goes into [vm]. */
static void vm_write(const char *id, const char *vm_extra, const char *drives) {
        char path[PATH_MAX], text[8192];

        snprintf(path, sizeof path, "%s/%s.conf", S.vms, id);
        snprintf(text, sizeof text,
                 "[vm]\n"
                 "vcpus = 1\n"
                 "memory = 128M\n"
                 "kernel = %s/vmlinux\n"
                 "initrd = %s/initrd.img\n"
                 "cmdline = \"console=ttyS0\"\n"
                 "%s\n"
                 "%s",
                 S.images, S.images, vm_extra ? vm_extra : "", drives);
        (void) unlink(path);
        write_file(path, text, 0644, 0);
}

/* One [drive.NAME] section. */
static const char *drive(const char *name, const char *mode, const char *path, const char *extra) {
        return pf("[drive.%s]\nmode = %s\npath = %s\n%s\n", name, mode, path, extra ? extra : "");
}

static const char *image(const char *name) {
        return pf("%s/%s", S.images, name);
}

/* Backing files of foreign loops ("LVs", bystanders): outside images/,
 * which victims_check() proves unchanged, since the tests write to them. */
static const char *lv_file(const char *name) {
        return pf("%s/%s", S.root, name);
}

/* Block i of 4 KiB: its number in the first 8 bytes, then a byte pattern. */
static void make_base(const char *path, uint64_t size) {
        uint8_t block[BLK];
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

        cr_assert_geq(fd, 0, "create %s: %m", path);
        for (uint64_t i = 0; i < size / BLK; i++) {
                memset(block, (int) ((i * 7 + 1) & 0xff), sizeof block);
                memcpy(block, &i, sizeof i);
                cr_assert_eq(write(fd, block, sizeof block), (ssize_t) sizeof block);
        }
        cr_assert_eq(fchmod(fd, 0644), 0);
        cr_assert_eq(close(fd), 0);
}

/* ---- devices ---------------------------------------------------------------------- */

/* A loop device that is not ours, like losetup makes: no marker, no
 * autoclear, read-write. The "LV" of block drives, or a bystander. */
static unsigned foreign_loop(const char *path) {
        struct loop_config c = {};
        char dev[64];
        int ctl, fd, bfd, nr;

        ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
        cr_assert_geq(ctl, 0, "/dev/loop-control: %m");
        nr = ioctl(ctl, LOOP_CTL_GET_FREE);
        cr_assert_geq(nr, 0, "LOOP_CTL_GET_FREE: %m");
        close(ctl);
        snprintf(dev, sizeof dev, "/dev/loop%d", nr);
        fd = open(dev, O_RDWR | O_CLOEXEC);
        cr_assert_geq(fd, 0, "%s: %m", dev);
        bfd = open(path, O_RDWR | O_CLOEXEC);
        cr_assert_geq(bfd, 0, "%s: %m", path);
        c.fd = (uint32_t) bfd;
        snprintf((char *) c.info.lo_file_name, LO_NAME_SIZE, "%s", path);
        cr_assert_eq(ioctl(fd, LOOP_CONFIGURE, &c), 0, "LOOP_CONFIGURE: %m");
        close(bfd);
        close(fd);
        return (unsigned) nr;
}

static dev_t loop_devnum(unsigned nr) {
        struct stat st;
        cr_assert_eq(stat(pf("/dev/loop%u", nr), &st), 0, "/dev/loop%u: %m", nr);
        cr_assert(S_ISBLK(st.st_mode));
        return st.st_rdev;
}

static bool loop_bound(unsigned nr) {
        return access(pf("/sys/block/loop%u/loop/backing_file", nr), F_OK) == 0;
}

static void detach_loop(unsigned nr) {
        int fd = open(pf("/dev/loop%u", nr), O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) ioctl(fd, LOOP_CLR_FD);
                close(fd);
        }
}

/* Loops backed by a file below prefix; only those with our marker when
 * only_ours (the foreign "LV" lives among the images). */
static size_t loops_below(const char *prefix, bool only_ours) {
        LoopInfo *l = NULL;
        size_t n = 0, count = 0;

        cr_assert_eq(loop_list(&l, &n), 0);
        for (size_t i = 0; i < n; i++)
                if (l[i].backing_file && startswith(l[i].backing_file, prefix) && (!only_ours || l[i].ours))
                        count++;
        loop_infos_free(l, n);
        return count;
}

/* Waits (bounded) for the number of such loops to be want: autoclear
 * detaches a loop as its last dm user goes. */
static void assert_loops(const char *prefix, bool only_ours, size_t want, const char *what) {
        size_t have = 0;

        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             (have = loops_below(prefix, only_ours)) != want && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(25);
        cr_assert_eq(have, want, "%s: %zu loop(s) backed by %s*, want %zu", what, have, prefix, want);
}

/* The loops a VM's storage can leave: its CoW files (below its state dir,
 * marker or not) and base images (ours, below images/). */
static void assert_no_loops_of(const char *id, const char *what) {
        assert_loops(pf("%s/%s/", S.state, id), false, 0, what);
        assert_loops(pf("%s/", S.images), true, 0, what);
}

static bool dm_exists(const char *name) {
        DmInfo i = {};
        cr_assert_eq(dm_get_info(name, NULL, &i), 0);
        return i.exists;
}

/* dm devices whose UUID is exactly one of VM id's. */
static size_t dm_count_of(const char *id) {
        DmDevice *l = NULL;
        size_t n = 0, count = 0;

        cr_assert_eq(dm_list(pf(DM_UUID_PREFIX "%s-", id), &l, &n), 0);
        for (size_t i = 0; i < n; i++) {
                char owner[VM_ID_MAX + 1];
                if (dm_uuid_parse(l[i].uuid, owner) && streq(owner, id))
                        count++;
        }
        dm_devices_free(l, n);
        return count;
}

/* The dm device of a drive, checked: our name and UUID, and /dev/dm-N is
 * a block device with exactly its major:minor. */
static dev_t dm_dev_of(const char *id, const char *drive) {
        const char *name = strdupa(pf(DM_NAME_PREFIX "%s-%s", id, drive));
        const char *node;
        struct stat st;
        DmInfo i = {};

        cr_assert_eq(dm_get_info(name, NULL, &i), 0);
        cr_assert(i.exists, "dm device %s does not exist", name);
        cr_assert_str_eq(i.uuid, pf(DM_UUID_PREFIX "%s-%s", id, drive));
        node = pf("/dev/dm-%u", minor(i.devnum));
        cr_assert_eq(stat(node, &st), 0, "%s: %m", node);
        cr_assert(S_ISBLK(st.st_mode) && st.st_rdev == i.devnum, "%s is %u:%u, the kernel says %s is %u:%u", node,
                  major(st.st_rdev), minor(st.st_rdev), name, major(i.devnum), minor(i.devnum));
        return i.devnum;
}

/* Opens the kernel's own node of devnum (/dev/dm-N, /dev/loopN), checked. */
static int dev_open(dev_t devnum, int flags) {
        char link[PATH_MAX];
        const char *slash, *node;
        struct stat st;
        ssize_t n;
        int fd;

        n = readlink(pf("/sys/dev/block/%u:%u", major(devnum), minor(devnum)), link, sizeof link - 1);
        cr_assert_gt(n, 0, "%u:%u is not in /sys/dev/block: %m", major(devnum), minor(devnum));
        link[n] = '\0';
        slash = strrchr(link, '/');
        node = pf("/dev/%s", slash ? slash + 1 : link);
        fd = open(node, flags | O_CLOEXEC | O_DIRECT);
        cr_assert_geq(fd, 0, "open %s: %m", node);
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert(S_ISBLK(st.st_mode) && st.st_rdev == devnum, "%s is not %u:%u", node, major(devnum),
                  minor(devnum));
        return fd;
}

static void *block_buf(void) {
        void *p = NULL;
        cr_assert_eq(posix_memalign(&p, BLK, BLK), 0);
        return p;
}

static void fill_marker(uint8_t *b, const char *tag) {
        size_t len = strlen(tag);
        for (size_t i = 0; i < BLK; i++)
                b[i] = (uint8_t) tag[i % len];
}

/* Writes a marker through the device (O_DIRECT: no page cache between
 * this device and the next one on the same minor). */
static void marker_write(dev_t devnum, const char *tag) {
        _cleanup_free_ uint8_t *b = block_buf();
        int fd = dev_open(devnum, O_RDWR);

        fill_marker(b, tag);
        cr_assert_eq(pwrite(fd, b, BLK, (off_t) MARK_BLOCK * BLK), BLK, "pwrite: %m");
        cr_assert_eq(fsync(fd), 0, "fsync: %m");
        close(fd);
}

typedef enum Content { CONTENT_MARKER, CONTENT_BASE, CONTENT_OTHER } Content;

/* What the marker block of the device holds: the marker, the base
 * image's block, or something else. */
static Content marker_read(dev_t devnum, const char *tag) {
        _cleanup_free_ uint8_t *b = block_buf(), *want = block_buf();
        int fd = dev_open(devnum, O_RDONLY);
        uint64_t nr;

        cr_assert_eq(pread(fd, b, BLK, (off_t) MARK_BLOCK * BLK), BLK, "pread: %m");
        close(fd);
        fill_marker(want, tag);
        if (memcmp(b, want, BLK) == 0)
                return CONTENT_MARKER;
        memcpy(&nr, b, sizeof nr);
        if (nr == MARK_BLOCK && b[100] == ((MARK_BLOCK * 7 + 1) & 0xff) && b[BLK - 1] == b[100])
                return CONTENT_BASE;
        return CONTENT_OTHER;
}

/* ---- the pool ------------------------------------------------------------------------ */

/* Activates a managed pool with the real tool (as microvm-pool.service). */
static void pool_up(const char *name) {
        ToolRun r;

        snprintf(pool_name, sizeof pool_name, "%s", name);
        cr_assert_not(dm_exists(name), "a pool %s exists already (left by an earlier run?)", name);
        host_write(name);
        r = tool_run("microvm-pool", "activate", NULL);
        cr_assert_eq(r.status, 0, "microvm-pool activate: %s", outcome(&r));
        tool_run_done(&r);
        cr_assert(dm_exists(name));
}

static void pool_down(void) {
        ToolRun r = tool_run("microvm-pool", "deactivate", NULL);
        cr_assert_eq(r.status, 0, "microvm-pool deactivate: %s", outcome(&r));
        tool_run_done(&r);
        cr_assert_not(dm_exists(pool_name));
        assert_loops(pf("%s/", pool_dir), false, 0, "the pool after deactivate");
}

/* The thin volumes of the pool among ids [THIN_ID_MIN, 16). The kernel has
 * no read-only query for a pool's thin ids: "create_thin N" fails with
 * EEXIST for an id in use; one that succeeds is deleted again at once. */
static unsigned pool_thin_count(void) {
        unsigned n = 0;

        for (uint32_t id = THIN_ID_MIN; id < 16; id++) {
                _cleanup_free_ char *err = NULL;
                int r = dm_message(pool_name, pf("create_thin %u", id), NULL, &err);

                if (r == -EEXIST) {
                        n++;
                        continue;
                }
                cr_assert_eq(r, 0, "create_thin %u in %s: %s", id, pool_name, strna(err));
                cr_assert_eq(dm_message(pool_name, pf("delete %u", id), NULL, NULL), 0);
        }
        return n;
}

/* ---- what stage made --------------------------------------------------------------- */

static void assert_node(const char *id, const char *drive, dev_t want) {
        const char *p = strdupa(pf("%s/" JAIL_DRIVE_PREFIX "%s", jail_root(id), drive));
        uid_t uid = vm_uid(id);
        struct stat st;

        cr_assert_eq(lstat(p, &st), 0, "%s: %m", p);
        cr_assert(S_ISBLK(st.st_mode), "%s is not a block device node (mode %o)", p, (unsigned) st.st_mode);
        cr_assert_eq(st.st_rdev, want, "%s is %u:%u, the device is %u:%u", p, major(st.st_rdev), minor(st.st_rdev),
                     major(want), minor(want));
        cr_assert(st.st_uid == uid && st.st_gid == (gid_t) uid, "%s: owner %u:%u, want the VM's %u", p,
                  (unsigned) st.st_uid, (unsigned) st.st_gid, (unsigned) uid);
        cr_assert_eq(st.st_mode & 07777, 0600, "%s: mode %04o", p, (unsigned) (st.st_mode & 07777));
}

/* The plan's DM list is exactly want (in order). */
static void assert_plan_dm(const char *id, const char *const *want) {
        _cleanup_free_ char *text = read_file(pf("%s/plan", run_dir(id)));
        _cleanup_free_ char *err = NULL;
        Plan *p = NULL;
        size_t n = 0;

        cr_assert_eq(plan_parse(text, strlen(text), &p, &err), 0, "plan of %s: %s", id, strna(err));
        while (want[n])
                n++;
        cr_assert_eq(strv_length(p->dm), n, "plan of %s names %zu dm devices, want %zu:\n%s", id,
                     strv_length(p->dm), n, text);
        for (size_t i = 0; i < n; i++)
                cr_assert_str_eq(p->dm[i], want[i], "plan of %s: DM #%zu", id, i);
        plan_free(p);
}

/* Every drive's path_on_host in vm-config.json is /drive-<name>. */
static void assert_fc_drives(const char *id, const char *const *drives) {
        _cleanup_free_ char *json = read_file(pf("%s/" JAIL_CONFIG_FILE, jail_root(id)));
        unsigned n = 0, seen = 0;

        for (const char *p = json; (p = strstr(p, "\"path_on_host\"")); p++)
                seen++;
        for (; drives[n]; n++) {
                const char *want = pf("\"drive_id\": \"%s\",\n      \"path_on_host\": \"/" JAIL_DRIVE_PREFIX "%s\"",
                                      drives[n], drives[n]);
                cr_assert(strstr(json, want), "vm-config.json of %s lacks %s:\n%s", id, want, json);
        }
        cr_assert_eq(seen, n, "vm-config.json of %s has %u drives, want %u", id, seen, n);
}

static const char *claim_path(dev_t devnum) {
        return pf("%s/" STORAGE_RUN_DIR "/block-%u:%u", S.run, major(devnum), minor(devnum));
}

static bool state_has(const char *id, const char *rel) {
        return exists(pf("%s/%s/%s", S.state, id, rel));
}

/* A process in the cgroup of cg_fd (a VMM), holding the n devices open as
 * firecracker holds its drives. */
static pid_t vmm_in(int cg_fd, const dev_t *hold, size_t n) {
        int p[2], fds[8];
        char c;
        pid_t pid;

        cr_assert_leq(n, ELEMENTSOF(fds));
        for (size_t i = 0; i < n; i++)
                fds[i] = dev_open(hold[i], O_RDWR);     /* inherited by the child */
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                int f = openat(cg_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                if (f < 0 || write(f, "0", 1) != 1 || prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || write(p[1], "x", 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(p[1]);
        cr_assert_eq(read(p[0], &c, 1), 1, "the VMM did not get into its cgroup");
        close(p[0]);
        for (size_t i = 0; i < n; i++)
                close(fds[i]);
        return pid;
}

static pid_t sleeper_in(int cg_fd) {
        return vmm_in(cg_fd, NULL, 0);
}

static bool alive(pid_t pid) {
        return waitpid(pid, NULL, WNOHANG) == 0;
}

/* ---- stage, cleanup, restart ------------------------------------------------------------ */

/* sv: a persistent snapshot (root), a fresh-every-start snapshot and a thin
 * volume on one base image, and a block drive on a foreign loop ("LV"). */
static void sv_assert_staged(unsigned lv, const char *tag) {
        static const char *const dm[] = { "microvm-sv-sys", "microvm-sv-tmp", "microvm-sv-thin", NULL };
        static const char *const drives[] = { "sys", "tmp", "thin", "blk", NULL };

        assert_staged("sv");
        assert_plan_dm("sv", dm);
        assert_fc_drives("sv", drives);
        assert_node("sv", "sys", dm_dev_of("sv", "sys"));
        assert_node("sv", "tmp", dm_dev_of("sv", "tmp"));
        assert_node("sv", "thin", dm_dev_of("sv", "thin"));
        assert_node("sv", "blk", loop_devnum(lv));
        cr_assert_eq(dm_count_of("sv"), 3);
        {
                _cleanup_free_ char *claim = read_file(claim_path(loop_devnum(lv)));
                cr_assert_str_eq(claim, "sv blk\n");
        }
        /* One shared read-only loop for the base of all three, one per CoW. */
        assert_loops(image("base.img"), true, 1, tag);
        assert_loops(pf("%s/sv/", S.state), false, 2, tag);
        cr_assert_eq(pool_thin_count(), 1, "%s", tag);
}

static void sv_assert_stopped(unsigned lv, const char *tag) {
        cr_assert_eq(dm_count_of("sv"), 0, "%s: dm devices of sv left", tag);
        assert_no_loops_of("sv", tag);
        assert_nothing_left("sv");
        cr_assert_not(exists(claim_path(loop_devnum(lv))), "%s: the block claim is left", tag);
        cr_assert(loop_bound(lv), "%s: the LV (a foreign loop) was detached", tag);
        /* Kept: the persistent CoW with its record, the thin volume. Gone:
         * the fresh-every-start CoW. */
        cr_assert(state_has("sv", "drives/sys.cow") && state_has("sv", "drives/sys.snapshot"), "%s", tag);
        cr_assert_not(state_has("sv", "drives/tmp.cow-tmp"), "%s: the non-persistent CoW is left", tag);
        cr_assert(state_has("sv", "thin-thin"), "%s: the thin record went", tag);
        cr_assert(dm_exists(pool_name));
        cr_assert_eq(pool_thin_count(), 1, "%s: the thin volume went", tag);
}

Test(tool_storage, stage_cleanup_restart, .init = setup, .fini = teardown, .timeout = 600) {
        _cleanup_free_ char *thin_rec = NULL, *thin_rec2 = NULL;
        const char *base = strdupa(image("base.img"));
        char drives[4096];
        unsigned lv;
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        int control;
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        make_base(lv_file("lv.img"), BASE_SIZE);
        lv = foreign_loop(lv_file("lv.img"));
        pool_up("tp-sv");
        snprintf(drives, sizeof drives, "%s%s%s%s", drive("sys", "snapshot", base, "root = yes\npersistent = yes"),
                 drive("tmp", "snapshot", base, NULL), drive("thin", "thin", base, "size = 8M"),
                 drive("blk", "block", pf("/dev/loop%u", lv), NULL));
        vm_write("sv", NULL, drives);
        victims_snapshot();

        stage_ok("sv");
        sv_assert_staged(lv, "first start");
        jailer_simulate("sv"); /* the VM runs: the guest writes below */
        thin_rec = read_file(pf("%s/sv/thin-thin", S.state));
        /* The unwritten blocks come from the base; then the guest writes. */
        cr_assert_eq(marker_read(dm_dev_of("sv", "sys"), "sv/sys"), CONTENT_BASE);
        cr_assert_eq(marker_read(dm_dev_of("sv", "thin"), "sv/thin"), CONTENT_BASE);
        marker_write(dm_dev_of("sv", "sys"), "sv/sys");
        marker_write(dm_dev_of("sv", "tmp"), "sv/tmp");
        marker_write(dm_dev_of("sv", "thin"), "sv/thin");
        marker_write(loop_devnum(lv), "sv/blk");

        /* A VMM that holds every drive open, left in the unit's cgroup
         * (systemd's SIGKILL has not reached it yet). ExecStopPost=, from
         * the unit's .control cgroup, kills it first: then nothing holds
         * the devices, and they go at once, none deferred. */
        {
                const dev_t held[] = { dm_dev_of("sv", "sys"), dm_dev_of("sv", "tmp"), dm_dev_of("sv", "thin"),
                                       loop_devnum(lv) };
                int leaf = cgroup_mkdir(UNIT("sv") "/sv");
                pid_t vmm = vmm_in(leaf, held, ELEMENTSOF(held));

                control = cgroup_mkdir(UNIT("sv") "/.control");
                r = tool_run_cg(control, "microvm-cleanup", "sv", NULL);
                cr_assert_eq(r.status, 0, "cleanup from .control: %s", outcome(&r));
                cr_assert(strstr(r.err, "Killed processes left in 1 cgroup(s) of sv"), "%s", outcome(&r));
                cr_assert_null(strstr(r.err, "deferred"), "%s", outcome(&r));
                tool_run_done(&r);
                cr_assert_eq(wait_exit_bounded(vmm, TOOL_TIMEOUT), 128 + SIGKILL);
                close(leaf);
        }
        sv_assert_stopped(lv, "cleanup from .control");

        /* Restart: the persistent CoW, the thin volume (same id) and the
         * block device kept what was written; the other CoW is fresh. */
        stage_ok("sv");
        sv_assert_staged(lv, "restart");
        thin_rec2 = read_file(pf("%s/sv/thin-thin", S.state));
        cr_assert_str_eq(thin_rec, thin_rec2, "the thin volume's record changed across a restart");
        cr_assert_eq(marker_read(dm_dev_of("sv", "sys"), "sv/sys"), CONTENT_MARKER, "the persistent CoW lost a write");
        cr_assert_eq(marker_read(dm_dev_of("sv", "tmp"), "sv/tmp"), CONTENT_BASE,
                     "the non-persistent snapshot kept a write across a restart");
        cr_assert_eq(marker_read(dm_dev_of("sv", "thin"), "sv/thin"), CONTENT_MARKER, "the thin volume lost a write");
        cr_assert_eq(marker_read(loop_devnum(lv), "sv/blk"), CONTENT_MARKER);

        /* By hand (not in the unit), twice: the second is a no-op. */
        tool_ok("microvm-cleanup", "sv");
        sv_assert_stopped(lv, "cleanup by hand");
        tool_ok("microvm-cleanup", "sv");
        sv_assert_stopped(lv, "second cleanup");

        /* The admin's images were only read. */
        victims_check();
        close(control);
        pool_down();
        detach_loop(lv);
        assert_loops(pf("%s/", S.root), false, 0, "the end");
        cr_log_info("stage_cleanup_restart: %.1f s", (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC);
}

/* A base shared by two VMs: one base loop; it stays while either uses it. */
Test(tool_storage, shared_base_lives_with_its_last_user, .init = setup, .fini = teardown, .timeout = 300) {
        const char *base = strdupa(image("shared.img"));
        _cleanup_free_ char *ta = NULL, *tb = NULL;
        unsigned oa, ob;
        int control;
        ToolRun r;

        make_base(image("shared.img"), BASE_SIZE);
        host_write(NULL);
        vm_write("sa", NULL, drive("sys", "snapshot", base, "root = yes"));
        vm_write("sb", NULL, drive("sys", "snapshot", base, "root = yes\npersistent = yes"));
        stage_ok("sa");
        stage_ok("sb");
        assert_node("sa", "sys", dm_dev_of("sa", "sys"));
        assert_node("sb", "sys", dm_dev_of("sb", "sys"));
        assert_loops(base, true, 1, "two VMs on one base");
        /* Both snapshots sit on that one loop. */
        cr_assert_eq(dm_get_table("microvm-sa-sys", NULL, &ta, NULL), 0);
        cr_assert_eq(dm_get_table("microvm-sb-sys", NULL, &tb, NULL), 0);
        cr_assert(sscanf(ta, "%*u:%u", &oa) == 1 && sscanf(tb, "%*u:%u", &ob) == 1, "%s / %s", ta, tb);
        cr_assert_eq(oa, ob, "the two VMs have different base loops: %s / %s", ta, tb);

        control = cgroup_mkdir(UNIT("sa") "/.control");
        r = tool_run_cg(control, "microvm-cleanup", "sa", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(dm_count_of("sa"), 0);
        assert_loops(pf("%s/sa/", S.state), false, 0, "sa's CoW");
        assert_loops(base, true, 1, "the base with sb still staged");
        cr_assert_eq(marker_read(dm_dev_of("sb", "sys"), "x"), CONTENT_BASE, "sb's disk broke with sa's cleanup");
        assert_nothing_left("sa");

        tool_ok("microvm-cleanup", "sb");
        cr_assert_eq(dm_count_of("sb"), 0);
        assert_no_loops_of("sb", "after the last user");
        assert_nothing_left("sb");
        close(control);
}

/* An ephemeral VM's stop deletes its thin volume from the pool and its CoW. */
Test(tool_storage, ephemeral_vm_drops_its_volumes, .init = setup, .fini = teardown, .timeout = 300) {
        const char *base = strdupa(image("base.img"));
        char drives[2048];
        int control;
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        pool_up("tp-eph");
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes\npersistent = yes"),
                 drive("data", "thin", base, NULL));
        vm_write("eph", "ephemeral = yes", drives);
        control = cgroup_mkdir(UNIT("eph") "/.control");

        for (unsigned round = 0; round < 2; round++) {
                stage_ok("eph");
                jailer_simulate("eph");
                assert_node("eph", "sys", dm_dev_of("eph", "sys"));
                assert_node("eph", "data", dm_dev_of("eph", "data"));
                cr_assert_eq(pool_thin_count(), 1);
                cr_assert(state_has("eph", "thin-data") && state_has("eph", "drives/sys.cow"));
                /* A fresh disk on every start: nothing of the last run. */
                cr_assert_eq(marker_read(dm_dev_of("eph", "sys"), "eph/sys"), CONTENT_BASE, "round %u", round);
                cr_assert_eq(marker_read(dm_dev_of("eph", "data"), "eph/data"), CONTENT_BASE, "round %u", round);
                marker_write(dm_dev_of("eph", "sys"), "eph/sys");
                marker_write(dm_dev_of("eph", "data"), "eph/data");

                if (round == 0) {
                        r = tool_run_cg(control, "microvm-cleanup", "eph", NULL);
                        cr_assert_eq(r.status, 0, "%s", outcome(&r));
                        tool_run_done(&r);
                } else
                        tool_ok("microvm-cleanup", "eph");
                cr_assert_eq(dm_count_of("eph"), 0);
                assert_no_loops_of("eph", "ephemeral stop");
                assert_nothing_left("eph");
                cr_assert_eq(pool_thin_count(), 0, "round %u: the thin volume is still in the pool", round);
                cr_assert_not(state_has("eph", "thin-data"), "the thin record is left");
                cr_assert_not(state_has("eph", "drives/sys.cow"), "the CoW is left");
                cr_assert_not(state_has("eph", "drives/sys.snapshot"), "the CoW's record is left");
                cr_assert(state_has("eph", "uid"), "the uid record went");
        }

        /* The host crashes while the VM runs: no stop, no cleanup. The
         * reboot takes /run (the plan) and every dm device and loop; the
         * boot-time reclaim finds the jail. The next start still begins
         * from the base image ("every start begins from the template
         * images"), and the old thin volume does not linger in the pool. */
        stage_ok("eph");
        jailer_simulate("eph");
        marker_write(dm_dev_of("eph", "sys"), "eph/sys");
        marker_write(dm_dev_of("eph", "data"), "eph/data");
        cr_assert_eq(dm_remove("MICROVM-eph-sys", 0, NULL), DM_REMOVE_DONE);
        cr_assert_eq(dm_remove("MICROVM-eph-data", 0, NULL), DM_REMOVE_DONE);
        rm_rf_as_root(run_dir("eph"));
        assert_no_loops_of("eph", "after the simulated reboot");
        tool_ok("microvm-reclaim", NULL);
        assert_nothing_left("eph");
        stage_ok("eph");
        cr_assert_eq(marker_read(dm_dev_of("eph", "sys"), "eph/sys"), CONTENT_BASE,
                     "an ephemeral VM started with the disk of the run before a host crash");
        cr_assert_eq(marker_read(dm_dev_of("eph", "data"), "eph/data"), CONTENT_BASE,
                     "an ephemeral VM started with the thin volume of the run before a host crash");
        cr_assert_eq(pool_thin_count(), 1, "the old thin volume lingers in the pool");
        tool_ok("microvm-cleanup", "eph");
        cr_assert_eq(pool_thin_count(), 0);
        assert_nothing_left("eph");
        close(control);
        pool_down();
}

/* A device someone outside the unit still holds when the VM stops (a
 * backup, a blkid): cleanup hands it to the kernel's deferred removal and
 * says so; an ephemeral VM's thin volume cannot be deleted while its
 * device lives, which is reported, with the plan kept for the next
 * cleanup. Once the holder closes, the devices and loops go by themselves
 * and the next cleanup finishes. */
Test(tool_storage, busy_device_is_deferred_then_finished, .init = setup, .fini = teardown, .timeout = 300) {
        const char *base = strdupa(image("base.img"));
        char drives[2048];
        int control, fd_sys, fd_data;
        DmInfo i = {};
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        pool_up("tp-busy");
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes"),
                 drive("data", "thin", base, NULL));
        vm_write("busy", "ephemeral = yes", drives);
        stage_ok("busy");
        fd_sys = dev_open(dm_dev_of("busy", "sys"), O_RDONLY);
        fd_data = dev_open(dm_dev_of("busy", "data"), O_RDONLY);

        control = cgroup_mkdir(UNIT("busy") "/.control");
        r = tool_run_cg(control, "microvm-cleanup", "busy", NULL);
        cr_assert_neq(r.status, 0, "the thin volume of an open device was deleted? %s", outcome(&r));
        cr_assert(strstr(r.err, "Removal deferred until its last user closes it") && strstr(r.err, "microvm-busy-sys") &&
                          strstr(r.err, "microvm-busy-data"),
                  "%s", outcome(&r));
        cr_assert(strstr(r.err, "not deleted, its device microvm-busy-data is still open"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_not(exists(jail_dir("busy")), "the jail is left");
        cr_assert(exists(pf("%s/plan", run_dir("busy"))), "the plan went, but it names what is left");
        cr_assert_eq(dm_get_info("microvm-busy-sys", NULL, &i), 0);
        cr_assert(i.exists && i.deferred_remove, "microvm-busy-sys is not scheduled for removal");
        cr_assert_eq(dm_get_info("microvm-busy-data", NULL, &i), 0);
        cr_assert(i.exists && i.deferred_remove, "microvm-busy-data is not scheduled for removal");
        cr_assert(state_has("busy", "thin-data"));
        cr_assert_eq(pool_thin_count(), 1);

        /* The last user closes: the kernel finishes the removals, the
         * loops detach. */
        close(fd_sys);
        close(fd_data);
        for (usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
             dm_count_of("busy") > 0 && now_usec(CLOCK_MONOTONIC) < end;)
                sleep_ms(25);
        cr_assert_eq(dm_count_of("busy"), 0, "the deferred removals did not happen on last close");
        assert_no_loops_of("busy", "after the deferred removals");

        /* The next cleanup finishes the job from the plan. */
        tool_ok("microvm-cleanup", "busy");
        assert_nothing_left("busy");
        cr_assert_not(state_has("busy", "thin-data"));
        cr_assert_eq(pool_thin_count(), 0, "the thin volume is still in the pool");
        close(control);
        pool_down();
}

/* The next start after a crash that no cleanup followed, with the old
 * VMM still alive and holding its drives: by hand, stage refuses and
 * touches nothing; as ExecStartPre= (in the unit's cgroup) it kills the
 * leftovers first, then replaces the devices (none deferred: the reset
 * must never leave a device to a later removal), and the persistent disk
 * keeps its data. */
Test(tool_storage, restart_over_a_crashed_run, .init = setup, .fini = teardown, .timeout = 300) {
        const char *base = strdupa(image("base.img"));
        char drives[2048];
        dev_t old_sys, old_tmp;
        int unit, leaf;
        pid_t vmm;
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        host_write(NULL);
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes\npersistent = yes"),
                 drive("tmp", "snapshot", base, NULL));
        vm_write("rs", NULL, drives);
        stage_ok("rs");
        old_sys = dm_dev_of("rs", "sys");
        old_tmp = dm_dev_of("rs", "tmp");
        marker_write(old_sys, "rs/sys");
        marker_write(old_tmp, "rs/tmp");
        unit = cgroup_mkdir(UNIT("rs"));
        leaf = cgroup_mkdir(UNIT("rs") "/rs");
        {
                const dev_t held[] = { old_sys, old_tmp };
                vmm = vmm_in(leaf, held, ELEMENTSOF(held));
        }

        r = tool_run("microvm-stage", "rs", NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "microvm@rs.service is running"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert(alive(vmm));
        cr_assert_eq(dm_dev_of("rs", "sys"), old_sys);
        cr_assert_eq(marker_read(old_tmp, "rs/tmp"), CONTENT_MARKER, "a refused stage touched the running disk");

        r = tool_run_cg(unit, "microvm-stage", "rs", NULL);
        cr_assert_eq(r.status, 0, "ExecStartPre= over a crashed run: %s", outcome(&r));
        cr_assert(strstr(r.err, "Removed what an earlier run of rs left behind"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(wait_exit_bounded(vmm, TOOL_TIMEOUT), 128 + SIGKILL);
        assert_staged("rs");
        assert_node("rs", "sys", dm_dev_of("rs", "sys"));
        assert_node("rs", "tmp", dm_dev_of("rs", "tmp"));
        cr_assert_eq(dm_count_of("rs"), 2);
        {
                DmInfo i = {};
                cr_assert_eq(dm_get_info("microvm-rs-sys", NULL, &i), 0);
                cr_assert(!i.deferred_remove && i.open_count == 0, "the new device is not a fresh one");
        }
        cr_assert_eq(marker_read(dm_dev_of("rs", "sys"), "rs/sys"), CONTENT_MARKER, "the persistent CoW lost a write");
        cr_assert_eq(marker_read(dm_dev_of("rs", "tmp"), "rs/tmp"), CONTENT_BASE, "the fresh CoW is not fresh");
        assert_loops(pf("%s/rs/", S.state), false, 2, "after the restart");
        assert_loops(base, true, 1, "after the restart");

        tool_ok("microvm-cleanup", "rs");
        cr_assert_eq(dm_count_of("rs"), 0);
        assert_no_loops_of("rs", "the end");
        assert_nothing_left("rs");
        close(unit);
        close(leaf);
}

/* Starts and stops of several VMs at once, on one base image and one pool:
 * the shared base loop is looked up, used and released concurrently, thin
 * ids are allocated concurrently, and the base loop lives exactly as long
 * as its last user. */
#define NCONC 6

static void spawn_all(const char *const *tools, pid_t *pids) {
        for (unsigned i = 0; i < NCONC; i++)
                pids[i] = tool_spawn(tools[i], pf("c%u", i));
}

static void wait_all(const char *const *tools, const pid_t *pids) {
        for (unsigned i = 0; i < NCONC; i++)
                cr_assert_eq(wait_exit_bounded(pids[i], TOOL_TIMEOUT), 0, "concurrent %s c%u failed", tools[i], i);
}

static void assert_c_staged(unsigned i) {
        const char *id = strdupa(pf("c%u", i));
        assert_node(id, "sys", dm_dev_of(id, "sys"));
        assert_node(id, "data", dm_dev_of(id, "data"));
        cr_assert_eq(dm_count_of(id), 2);
}

static void assert_c_stopped(unsigned i) {
        const char *id = strdupa(pf("c%u", i));
        cr_assert_eq(dm_count_of(id), 0, "%s has dm devices", id);
        assert_loops(pf("%s/%s/", S.state, id), false, 0, id);
        assert_nothing_left(id);
}

Test(tool_storage, concurrent_starts_and_stops_share_one_base, .init = setup, .fini = teardown, .timeout = 600) {
        const char *const all_stage[NCONC] = { "microvm-stage", "microvm-stage", "microvm-stage",
                                               "microvm-stage", "microvm-stage", "microvm-stage" };
        const char *const all_cleanup[NCONC] = { "microvm-cleanup", "microvm-cleanup", "microvm-cleanup",
                                                 "microvm-cleanup", "microvm-cleanup", "microvm-cleanup" };
        const char *const half[NCONC] = { "microvm-cleanup", "microvm-cleanup", "microvm-cleanup",
                                          "microvm-stage", "microvm-stage", "microvm-stage" };
        const char *base = strdupa(image("base.img"));
        bool seen[64] = {};
        char drives[2048];
        pid_t pids[NCONC];

        make_base(image("base.img"), BASE_SIZE);
        pool_up("tp-conc");
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes"),
                 drive("data", "thin", base, NULL));
        for (unsigned i = 0; i < NCONC; i++)
                vm_write(pf("c%u", i), NULL, drives);

        spawn_all(all_stage, pids);
        wait_all(all_stage, pids);
        for (unsigned i = 0; i < NCONC; i++) {
                _cleanup_free_ char *text = read_file(pf("%s/c%u/thin-data", S.state, i));
                StorageRecord rec;

                assert_c_staged(i);
                cr_assert_eq(storage_record_parse(text, strlen(text), &rec), 0, "%s", text);
                cr_assert_lt(rec.thin_id, ELEMENTSOF(seen));
                cr_assert_not(seen[rec.thin_id], "thin id %u handed out twice", rec.thin_id);
                seen[rec.thin_id] = true;
        }
        assert_loops(base, true, 1, "six VMs on one base");
        cr_assert_eq(pool_thin_count(), NCONC);

        /* Half stop while the other half restart. */
        spawn_all(half, pids);
        wait_all(half, pids);
        for (unsigned i = 0; i < NCONC; i++) {
                if (i < NCONC / 2)
                        assert_c_stopped(i);
                else
                        assert_c_staged(i);
        }
        assert_loops(base, true, 1, "three VMs on one base");

        /* Then all stop (three of them again). */
        spawn_all(all_cleanup, pids);
        wait_all(all_cleanup, pids);
        for (unsigned i = 0; i < NCONC; i++)
                assert_c_stopped(i);
        assert_loops(pf("%s/", S.images), true, 0, "after the last user");
        cr_assert_eq(pool_thin_count(), NCONC, "a cleanup deleted a thin volume");
        pool_down();
}

/* ---- reclaim ---------------------------------------------------------------------------- */

Test(tool_storage, reclaim_after_crash_removes_exactly_that_vm, .init = setup, .fini = teardown, .timeout = 600) {
        const char *base = strdupa(image("base.img"));
        char drives[4096], table[64];
        dev_t run_sys, run_data;
        unsigned lv, bystander;
        int leaf, crash_leaf, control;
        pid_t sleeper, crashed;
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        make_base(lv_file("lv.img"), BASE_SIZE);
        make_base(lv_file("foreign.img"), BASE_SIZE);
        lv = foreign_loop(lv_file("lv.img"));
        bystander = foreign_loop(lv_file("foreign.img"));
        {
                /* A foreign dm device on the foreign loop. */
                _cleanup_free_ char *err = NULL;
                dev_t d = loop_devnum(bystander);
                DmTarget t = { 0, BASE_SIZE / 512, "linear", table };

                snprintf(table, sizeof table, "%u:%u 0", major(d), minor(d));
                cr_assert_eq(dm_create("foreign-rc", "FOREIGN-rc", &t, 1, 0, NULL, &err), 0, "%s", strna(err));
        }
        pool_up("tp-rc");

        /* running: staged, its unit's cgroup populated (the VMM runs). */
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes\npersistent = yes"),
                 drive("data", "thin", base, NULL));
        vm_write("running", NULL, drives);
        stage_ok("running");
        run_sys = dm_dev_of("running", "sys");
        run_data = dm_dev_of("running", "data");
        leaf = cgroup_mkdir(UNIT("running") "/running");
        {
                const dev_t held[] = { run_sys, run_data };
                sleeper = vmm_in(leaf, held, ELEMENTSOF(held));
        }

        /* crash: staged, its VMM died, and no cleanup ever ran. */
        snprintf(drives, sizeof drives, "%s%s%s", drive("sys", "snapshot", base, "root = yes"),
                 drive("data", "thin", base, NULL), drive("blk", "block", pf("/dev/loop%u", lv), NULL));
        vm_write("crash", NULL, drives);
        stage_ok("crash");
        crash_leaf = cgroup_mkdir(UNIT("crash") "/crash");
        crashed = sleeper_in(crash_leaf);
        cr_assert_eq(kill(crashed, SIGKILL), 0);
        cr_assert_eq(wait_exit_bounded(crashed, TOOL_TIMEOUT), 128 + SIGKILL);
        cr_assert_eq(dm_count_of("crash"), 2);
        cr_assert(exists(claim_path(loop_devnum(lv))));
        assert_loops(base, true, 1, "two VMs on one base");
        assert_loops(pf("%s/crash/", S.state), false, 1, "crash's CoW");
        cr_assert_eq(pool_thin_count(), 2);

        /* orphan: only its storage is left (its jail, run dir and plan are
         * gone): found by the UUIDs of its dm devices alone. */
        make_base(image("orphan.img"), BASE_SIZE);
        vm_write("orphan", NULL, drive("sys", "snapshot", image("orphan.img"), "root = yes"));
        stage_ok("orphan");
        rm_rf_as_root(jail_dir("orphan"));
        rm_rf_as_root(run_dir("orphan"));
        cr_assert_eq(dm_count_of("orphan"), 1);
        assert_loops(image("orphan.img"), true, 1, "orphan's base");

        /* The dry run names crash's and orphan's storage, nothing of
         * running's, and changes nothing. */
        r = tool_run("microvm-reclaim", "--dry-run", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.out, "crash: would remove its jail, run directory, cgroup and device-mapper devices"),
                  "dry run said:\n%s", r.out);
        cr_assert(strstr(r.out, "orphan: would remove its device-mapper devices"), "dry run said:\n%s", r.out);
        cr_assert_null(strstr(r.out, "running:"), "dry run said:\n%s", r.out);
        tool_run_done(&r);
        cr_assert_eq(dm_count_of("crash"), 2);
        cr_assert_eq(dm_count_of("orphan"), 1);

        r = tool_run("microvm-reclaim", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        tool_run_done(&r);

        /* crash: its dm devices, CoW loop, claim, jail, run dir and cgroup
         * went; its thin volume is state (kept, not ephemeral). */
        cr_assert_eq(dm_count_of("crash"), 0, "reclaim left crash's dm devices");
        assert_loops(pf("%s/crash/", S.state), false, 0, "crash's CoW after reclaim");
        cr_assert_not(exists(claim_path(loop_devnum(lv))), "crash's block claim is left");
        assert_nothing_left("crash");
        /* Its leftover cgroup goes; the unit cgroup itself is systemd's (a
         * start may be creating it right now): reclaim leaves it. */
        cr_assert_not(exists(pf("%s/" UNIT("crash") "/crash", cgroup_sandbox_mount())), "crash's leftover cgroup is left");
        cr_assert(state_has("crash", "thin-data"));
        cr_assert_eq(pool_thin_count(), 2, "reclaim deleted a thin volume");
        cr_assert_eq(dm_count_of("orphan"), 0, "reclaim left orphan's dm device");
        assert_loops(pf("%s/orphan/", S.state), false, 0, "orphan's CoW after reclaim");
        assert_loops(image("orphan.img"), true, 0, "orphan's base after reclaim");

        /* running: untouched, down to the device numbers. */
        cr_assert(alive(sleeper), "reclaim killed the running VM");
        cr_assert_eq(dm_count_of("running"), 2);
        cr_assert_eq(dm_dev_of("running", "sys"), run_sys);
        cr_assert_eq(dm_dev_of("running", "data"), run_data);
        assert_node("running", "sys", run_sys);
        assert_loops(pf("%s/running/", S.state), false, 1, "running's CoW");
        assert_loops(base, true, 1, "the base running uses");
        cr_assert(exists(pf("%s/plan", run_dir("running"))));
        /* Foreign: the LV, a bystander loop, a dm device on it, the pool. */
        cr_assert(loop_bound(lv), "the LV was detached");
        cr_assert(loop_bound(bystander), "a foreign loop was detached");
        cr_assert(dm_exists("foreign-rc"), "a foreign dm device was removed");
        cr_assert(dm_exists(pool_name), "the pool was removed");

        /* Named explicitly, a running VM is still left alone. */
        tool_ok("microvm-reclaim", "running");
        cr_assert(alive(sleeper));
        cr_assert_eq(dm_count_of("running"), 2);

        /* Its own ExecStopPost= ends it. */
        control = cgroup_mkdir(UNIT("running") "/.control");
        r = tool_run_cg(control, "microvm-cleanup", "running", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(wait_exit_bounded(sleeper, TOOL_TIMEOUT), 128 + SIGKILL);
        cr_assert_eq(dm_count_of("running"), 0);
        assert_no_loops_of("running", "after running's cleanup");
        cr_assert(loop_bound(bystander) && dm_exists("foreign-rc"));

        cr_assert_eq(dm_remove("FOREIGN-rc", 0, NULL), DM_REMOVE_DONE);
        detach_loop(bystander);
        detach_loop(lv);
        close(leaf);
        close(crash_leaf);
        close(control);
        pool_down();
}

/* ---- SIGKILL ------------------------------------------------------------------------------ */

#define KILL_ROUNDS 50

static uint64_t rng;

static uint64_t rnd(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static unsigned kv_lv;

static void kv_assert_clean(unsigned round, const char *how) {
        const char *tag = strdupa(pf("round %u (%s)", round, how));

        cr_assert_eq(dm_count_of("kv"), 0, "%s: dm devices of kv left", tag);
        assert_no_loops_of("kv", tag);
        assert_nothing_left("kv");
        cr_assert_not(state_has("kv", "drives/tmp.cow-tmp"), "%s: the non-persistent CoW is left", tag);
        cr_assert_not(exists(claim_path(loop_devnum(kv_lv))), "%s: the block claim is left", tag);
        cr_assert(loop_bound(kv_lv), "%s: the LV was detached", tag);
}

/* Runs tool with arg, SIGKILLs it after delay; its exit status. */
static int run_killed(const char *tool, const char *arg, usec_t delay) {
        pid_t pid = tool_spawn(tool, arg);
        int st;

        /* The random delay only picks the point of the kill; nothing
         * after it relies on the tool having got anywhere. */
        usleep((useconds_t) delay);
        (void) kill(pid, SIGKILL);
        st = wait_exit_bounded(pid, TOOL_TIMEOUT);
        cr_assert(st == 0 || st == 128 + SIGKILL, "%s %s exited with %d", tool, arg, st);
        return st;
}

/* A start SIGKILLed at a random point, then one of: its ExecStopPost=
 * (cleanup), the next start (whose reset removes what the killed one
 * left), a boot-time microvm-reclaim, or a cleanup itself SIGKILLed at a
 * random point and then run again. Afterwards no dm device and no loop of
 * the VM is left, nor its CoW-tmp, block claim, jail or run dir; the
 * persistent CoW keeps what was written to it before. */
Test(tool_storage, stage_sigkilled_at_random_points, .init = setup, .fini = teardown, .timeout = 900) {
        static const char *const follow_ups[] = { "cleanup", "next start", "reclaim", "killed cleanup" };
        const char *base = strdupa(image("base.img"));
        unsigned killed = 0, finished = 0, cleanups_killed = 0, done[ELEMENTSOF(follow_ups)] = {};
        usec_t t_full = 0, t_clean = 0, t_est, t0 = now_usec(CLOCK_MONOTONIC);
        char drives[2048];

        if (getrandom(&rng, sizeof rng, 0) != sizeof rng || rng == 0)
                rng = (uint64_t) now_usec(CLOCK_REALTIME) | 1;
        cr_log_info("kill loop: seed %llu", (unsigned long long) rng);
        make_base(image("base.img"), BASE_SIZE);
        make_base(lv_file("lv.img"), BASE_SIZE);
        kv_lv = foreign_loop(lv_file("lv.img"));
        host_write(NULL);
        snprintf(drives, sizeof drives, "%s%s%s", drive("sys", "snapshot", base, "root = yes\npersistent = yes"),
                 drive("tmp", "snapshot", base, NULL), drive("blk", "block", pf("/dev/loop%u", kv_lv), NULL));
        vm_write("kv", NULL, drives);

        /* How long a whole start and a cleanup take here: the kill delays
         * spread over that. The first start also makes the persistent CoW,
         * which gets a marker that no killed start may lose. */
        for (unsigned i = 0; i < 3; i++) {
                ToolRun r = tool_run("microvm-stage", "kv", NULL);
                cr_assert_eq(r.status, 0, "%s", outcome(&r));
                t_full = i == 0 ? r.usec : MIN(t_full, r.usec);
                tool_run_done(&r);
                if (i == 0) {
                        jailer_simulate("kv"); /* it ran, and wrote */
                        marker_write(dm_dev_of("kv", "sys"), "kv/sys");
                }
                r = tool_run("microvm-cleanup", "kv", NULL);
                cr_assert_eq(r.status, 0, "%s", outcome(&r));
                t_clean = i == 0 ? r.usec : MIN(t_clean, r.usec);
                tool_run_done(&r);
        }
        kv_assert_clean(0, "before");
        cr_log_info("kill loop: a start takes %llu us, a cleanup %llu us", (unsigned long long) t_full,
                    (unsigned long long) t_clean);
        t_est = t_full;

        for (unsigned i = 0; i < KILL_ROUNDS; i++) {
                usec_t delay = rnd() % (t_est + 1);
                unsigned follow = (unsigned) (rnd() % ELEMENTSOF(follow_ups));
                int st;

                st = run_killed("microvm-stage", "kv", delay);
                /* Keep the delays spread over a whole stage as the load
                 * changes: a stage that finished first means the range is
                 * too long, a kill that it may be too short. */
                if (st == 0) {
                        finished++;
                        t_est = MAX(t_est * 3 / 4, (usec_t) 1000);
                } else {
                        killed++;
                        t_est = MIN(t_est * 21 / 20, 10 * USEC_PER_SEC);
                }
                done[follow]++;

                switch (follow) {
                case 0:
                        tool_ok("microvm-cleanup", "kv");
                        break;
                case 1:
                        /* The next start, then a full check and stop. */
                        stage_ok("kv");
                        assert_node("kv", "sys", dm_dev_of("kv", "sys"));
                        assert_node("kv", "tmp", dm_dev_of("kv", "tmp"));
                        assert_node("kv", "blk", loop_devnum(kv_lv));
                        cr_assert_eq(marker_read(dm_dev_of("kv", "sys"), "kv/sys"), CONTENT_MARKER,
                                     "round %u: the persistent CoW lost its data", i);
                        cr_assert_eq(marker_read(dm_dev_of("kv", "tmp"), "kv/sys"), CONTENT_BASE);
                        assert_loops(pf("%s/kv/", S.state), false, 2, "the next start");
                        assert_loops(base, true, 1, "the next start");
                        tool_ok("microvm-cleanup", "kv");
                        break;
                case 2:
                        tool_ok("microvm-reclaim", NULL);
                        break;
                case 3:
                        if (run_killed("microvm-cleanup", "kv", rnd() % (t_clean + 1)) != 0)
                                cleanups_killed++;
                        tool_ok("microvm-cleanup", "kv");
                        break;
                }
                kv_assert_clean(i, pf("kill after %llu us, then %s", (unsigned long long) delay, follow_ups[follow]));
        }
        /* The persistent disk survived every killed start. */
        stage_ok("kv");
        cr_assert_eq(marker_read(dm_dev_of("kv", "sys"), "kv/sys"), CONTENT_MARKER, "the persistent CoW lost its data");
        tool_ok("microvm-cleanup", "kv");
        kv_assert_clean(KILL_ROUNDS, "the end");
        detach_loop(kv_lv);
        cr_log_info("kill loop: %u rounds, %u stages killed, %u finished first; then %u cleanups, %u next starts, %u "
                    "reclaims, %u killed cleanups (%u landed); %.1f s",
                    KILL_ROUNDS, killed, finished, done[0], done[1], done[2], done[3], cleanups_killed,
                    (double) (now_usec(CLOCK_MONOTONIC) - t0) / USEC_PER_SEC);
        cr_expect_gt(killed, KILL_ROUNDS / 4, "too few kills landed: the loop tested little");
}

/* ---- block passthrough ---------------------------------------------------------------------- */

Test(tool_storage, block_mounted_or_taken_is_refused, .init = setup, .fini = teardown, .timeout = 300) {
        const char *mnt = strdupa(pf("%s/mnt", S.root));
        const char *dev;
        unsigned lv;
        ToolRun r;

        make_base(lv_file("disk.img"), BASE_SIZE);
        cr_assert_eq(system(pf("mke2fs -q -F %s >/dev/null 2>&1", lv_file("disk.img"))), 0, "mke2fs failed");
        lv = foreign_loop(lv_file("disk.img"));
        dev = strdupa(pf("/dev/loop%u", lv));
        host_write(NULL);
        vm_write("bm", NULL, drive("blk", "block", dev, "root = yes"));
        vm_write("bm2", NULL, drive("blk", "block", dev, "root = yes"));

        /* Mounted: refused, naming the device and where it is mounted. */
        cr_assert_eq(mkdir(mnt, 0755), 0);
        cr_assert_eq(mount(dev, mnt, "ext2", MS_RDONLY, NULL), 0, "mount %s: %m", dev);
        r = tool_run("microvm-stage", "bm", NULL);
        cr_assert_neq(r.status, 0, "stage passed a mounted device through: %s", outcome(&r));
        cr_assert(strstr(r.err, dev) && strstr(r.err, "is mounted on") && strstr(r.err, mnt), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_not(exists(pf("%s/" JAIL_DRIVE_PREFIX "blk", jail_root("bm"))), "a node was made anyway");
        cr_assert_not(exists(claim_path(loop_devnum(lv))), "a refused device was claimed");
        /* The failed start's ExecStopPost=. */
        tool_ok("microvm-cleanup", "bm");
        assert_nothing_left("bm");
        cr_assert(loop_bound(lv));
        cr_assert_eq(umount(mnt), 0, "umount: %m");

        /* Free: passed through; another VM then cannot have it. */
        stage_ok("bm");
        assert_node("bm", "blk", loop_devnum(lv));
        r = tool_run("microvm-stage", "bm2", NULL);
        cr_assert_neq(r.status, 0, "two VMs got %s: %s", dev, outcome(&r));
        cr_assert(strstr(r.err, "in use by VM bm"), "%s", outcome(&r));
        tool_run_done(&r);
        tool_ok("microvm-cleanup", "bm2");
        cr_assert(exists(claim_path(loop_devnum(lv))), "bm2's cleanup removed bm's claim");
        assert_node("bm", "blk", loop_devnum(lv));
        tool_ok("microvm-cleanup", "bm");
        cr_assert_not(exists(claim_path(loop_devnum(lv))));
        stage_ok("bm2");
        assert_node("bm2", "blk", loop_devnum(lv));
        tool_ok("microvm-cleanup", "bm2");
        assert_nothing_left("bm2");
        cr_assert(loop_bound(lv), "cleanup detached the passed-through device");

        /* An LV proper: a foreign dm device, named by its /dev/mapper
         * name. The node is the kernel's dm-N; neither cleanup nor a
         * reclaim after a crash ever removes the device itself. */
        {
                _cleanup_free_ char *err = NULL;
                char table[64];
                dev_t d = loop_devnum(lv), lvdev;
                DmTarget t = { 0, BASE_SIZE / 512, "linear", table };
                DmInfo i = {};

                snprintf(table, sizeof table, "%u:%u 0", major(d), minor(d));
                cr_assert_eq(dm_create("vg-lv-bm", "LVM-test-bm", &t, 1, 0, &lvdev, &err), 0, "%s", strna(err));
                vm_write("bm3", NULL, drive("blk", "block", "/dev/mapper/vg-lv-bm", "root = yes"));
                stage_ok("bm3");
                assert_node("bm3", "blk", lvdev);
                marker_write(lvdev, "bm3");
                /* The loop under the LV is in use by it: refused. */
                r = tool_run("microvm-stage", "bm2", NULL);
                cr_assert_neq(r.status, 0, "%s", outcome(&r));
                cr_assert(strstr(r.err, dev) && strstr(r.err, "in use by dm-"), "%s", outcome(&r));
                tool_run_done(&r);
                tool_ok("microvm-cleanup", "bm2");
                /* bm3 crashes; a reclaim tears down what it left. */
                tool_ok("microvm-reclaim", NULL);
                assert_nothing_left("bm3");
                cr_assert_not(exists(claim_path(lvdev)), "the LV's claim is left");
                cr_assert_eq(dm_get_info("vg-lv-bm", NULL, &i), 0);
                cr_assert(i.exists && i.devnum == lvdev, "reclaim removed the LV");
                stage_ok("bm3");
                cr_assert_eq(marker_read(lvdev, "bm3"), CONTENT_MARKER);
                tool_ok("microvm-cleanup", "bm3");
                cr_assert_eq(dm_get_info("vg-lv-bm", NULL, &i), 0);
                cr_assert(i.exists, "cleanup removed the LV");
                cr_assert_eq(dm_remove("LVM-test-bm", 0, NULL), DM_REMOVE_DONE);
        }
        detach_loop(lv);
}

/* A start that fails half-way (the thin pool is down) after it made the
 * snapshot drive. The VM's first start: stage itself removes what it made
 * and gives the uid back (it never ran). A later start of a VM that ran:
 * its ExecStopPost= removes what it made. */
Test(tool_storage, failed_start_is_cleaned_up, .init = setup, .fini = teardown, .timeout = 300) {
        const char *base = strdupa(image("base.img"));
        char drives[2048];
        ToolRun r;

        make_base(image("base.img"), BASE_SIZE);
        snprintf(pool_name, sizeof pool_name, "tp-down");
        host_write(pool_name);
        snprintf(drives, sizeof drives, "%s%s", drive("sys", "snapshot", base, "root = yes"),
                 drive("data", "thin", base, NULL));
        vm_write("fail", NULL, drives);
        r = tool_run("microvm-stage", "fail", NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "Thin pool tp-down is not active") && strstr(r.err, "Gave back uid"), "%s",
                  outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(dm_count_of("fail"), 0, "the failed first start left its snapshot drive");
        assert_no_loops_of("fail", "after the failed first start");
        assert_nothing_left("fail");
        cr_assert_not(exists(pf("%s/fail", S.state)), "the failed first start kept its state and uid");

        /* The VM ran once (without the thin drive); then a start fails. */
        vm_write("fail", NULL, drive("sys", "snapshot", base, "root = yes"));
        tool_ok("microvm-stage", "fail");
        jailer_simulate("fail");
        tool_ok("microvm-cleanup", "fail");
        vm_write("fail", NULL, drives);
        r = tool_run("microvm-stage", "fail", NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "Thin pool tp-down is not active") && strstr(r.err, "microvm-pool.service"), "%s",
                  outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(dm_count_of("fail"), 1, "the snapshot drive before the thin one was not made");
        tool_ok("microvm-cleanup", "fail");
        cr_assert_eq(dm_count_of("fail"), 0);
        assert_no_loops_of("fail", "after the failed start");
        assert_nothing_left("fail");
        cr_assert_not(dm_exists("tp-down"), "cleanup activated the pool");
}

/* ---- main --------------------------------------------------------------------------------- */

static const char *skip_reason(void) {
        static char why[512];
        _cleanup_free_ char *err = NULL, *cg = NULL;
        const char *const want[] = { "snapshot", "thin-pool", "thin", NULL };
        const char *p = priv_skip_reason();

        if (p)
                return p;
        if (dm_check_available(&err) < 0) {
                snprintf(why, sizeof why, "%s", strna(err));
                return why;
        }
        if (access("/dev/loop-control", F_OK) < 0)
                return "no loop device support (/dev/loop-control)";
        if (dm_targets_check(want, &err) < 0) {
                free(err);
                err = NULL;
                /* The kernel loads targets on demand; make sure they can be. */
                if (system("modprobe dm_snapshot >/dev/null 2>&1; modprobe dm_thin_pool >/dev/null 2>&1") != 0 ||
                    dm_targets_check(want, &err) < 0) {
                        snprintf(why, sizeof why, "%s", strna(err));
                        return why;
                }
        }
        /* The dmvm guest mounts no cgroup2; the tools need one (and the
         * tests a cgroup namespace on it). */
        if (cgroup2_find_mount(&cg) < 0 &&
            mount("cgroup2", "/sys/fs/cgroup", "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0) {
                snprintf(why, sizeof why, "no cgroup2 mount, and mounting one on /sys/fs/cgroup failed: %s",
                         strerror(errno));
                return why;
        }
        return NULL;
}

int main(int argc, char *argv[]) {
        const char *why = skip_reason();

        dm_release();
        return criterion_run_or_skip(argc, argv, why);
}
