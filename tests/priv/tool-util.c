/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <pwd.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "priv-util.h"
#include "names.h"
#include "tool-util.h"

ToolSandbox S;
static char *victim_before, *images_before;

bool exists(const char *p) {
        struct stat st;
        return lstat(p, &st) == 0;
}

static int rm_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

void rm_rf_as_root(const char *p) {
        cr_assert(nftw(p, rm_visit, 64, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) == 0 || errno == ENOENT, "rm -rf %s: %m", p);
}

static void mkdir_owned(const char *p, mode_t mode, uid_t uid) {
        cr_assert_eq(mkdir(p, mode), 0, "mkdir %s: %m", p);
        cr_assert_eq(chown(p, uid, uid), 0);
        cr_assert_eq(chmod(p, mode), 0);
}

static void copy_binary(const char *from, const char *to) {
        int in = open(from, O_RDONLY | O_CLOEXEC), out;
        char buf[1 << 16];
        ssize_t k;

        cr_assert_geq(in, 0, "open %s: %m (is the build complete?)", from);
        out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        cr_assert_geq(out, 0, "create %s: %m", to);
        while ((k = read(in, buf, sizeof buf)) > 0)
                cr_assert_eq(write(out, buf, (size_t) k), k);
        cr_assert_eq(k, 0);
        cr_assert_eq(fchmod(out, 0755), 0);
        close(in);
        close(out);
}

static const char *build_root(void) {
        const char *b = getenv("MICROVM_BUILD_ROOT");
        cr_assert_not_null(b, "MICROVM_BUILD_ROOT is not set (run through meson test)");
        return b;
}

static void write_config(const char *path, const char *text) {
        (void) unlink(path);
        write_file(path, text, 0644, 0);
}

void host_config_write(const char *base, const char *state, const char *run) {
        write_config(S.host_conf, pf("[host]\n"
                                     "jailer = %s/jailer\n"
                                     "firecracker = %s/firecracker\n"
                                     "chroot_base = %s\n"
                                     "state_dir = %s\n"
                                     "run_dir = %s\n"
                                     "uid_range = %u-%u\n",
                                     S.bin, S.bin, base, state, run, VM_RANGE_MIN, VM_RANGE_MAX));
}

void vm_config_write(const char *id, const char *extra) {
        write_config(pf("%s/%s.conf", S.vms, id),
                     pf("[vm]\n"
                        "vcpus = 1\n"
                        "memory = 128M\n"
                        "kernel = %s/vmlinux\n"
                        "initrd = %s/initrd.img\n"
                        "cmdline = \"console=ttyS0 reboot=k panic=1\"\n"
                        "%s\n"
                        "[drive.root]\n"
                        "mode = file\n"
                        "path = %s/root.ext4\n"
                        "root = yes\n"
                        "\n"
                        "[drive.data]\n"
                        "mode = file\n"
                        "path = %s/data.ext4\n"
                        "\n"
                        "[drive.ro]\n"
                        "mode = file\n"
                        "path = %s/ro.ext4\n"
                        "read_only = yes\n",
                        S.images, S.images, strempty(extra), S.images, S.images, S.images));
}

void vm_config_write_many(const char *id, unsigned n_drives) {
        char *text = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&text, &size);

        cr_assert_not_null(f);
        fprintf(f, "[vm]\nvcpus = 1\nmemory = 128M\nkernel = %s/vmlinux\ncmdline = \"console=ttyS0\"\n", S.images);
        for (unsigned i = 0; i < n_drives; i++)
                fprintf(f, "\n[drive.d%u]\nmode = file\npath = %s/big-%u.img\n%s", i, S.images, i,
                        i == 0 ? "root = yes\n" : "");
        cr_assert_eq(fclose(f), 0);
        write_config(pf("%s/%s.conf", S.vms, id), text);
        free(text);
}

void big_images_create(unsigned n, size_t size) {
        uint64_t x = 0x9e3779b97f4a7c15ULL;
        uint64_t *buf = malloc(size);

        cr_assert_not_null(buf);
        for (unsigned i = 0; i < n; i++) {
                const char *p = pf("%s/big-%u.img", S.images, i);
                int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

                cr_assert_geq(fd, 0, "create %s: %m", p);
                for (size_t k = 0; k < size / sizeof *buf; k++) {
                        /* xorshift: incompressible, different per image */
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        buf[k] = x;
                }
                cr_assert_eq(write(fd, buf, size), (ssize_t) size);
                cr_assert_eq(fchmod(fd, 0644), 0);
                close(fd);
        }
        free(buf);
}

static void make_image(const char *name, const char *head, off_t size) {
        const char *p = pf("%s/%s", S.images, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

        cr_assert_geq(fd, 0, "create %s: %m", p);
        cr_assert_eq(pwrite(fd, head, strlen(head), 0), (ssize_t) strlen(head));
        if (size > 0) {
                /* data at the end too, holes between */
                cr_assert_eq(pwrite(fd, head, strlen(head), size - (off_t) strlen(head)), (ssize_t) strlen(head));
                cr_assert_eq(ftruncate(fd, size), 0);
        }
        cr_assert_eq(fchmod(fd, 0644), 0);
        close(fd);
}

void tool_sandbox(void) {
        const char *b;

        snprintf(S.root, sizeof S.root, "%s", priv_sandbox());
        umask(022);
        for (uid_t u = VM_RANGE_MIN; u < VM_RANGE_MIN + 400; u++)
                cr_assert(!getpwuid(u) && !getgrgid((gid_t) u), "test range assumption broken: %u is known to NSS",
                          (unsigned) u);

        snprintf(S.bin, sizeof S.bin, "%s/bin", S.root);
        snprintf(S.etc, sizeof S.etc, "%s/etc", S.root);
        snprintf(S.host_conf, sizeof S.host_conf, "%s/etc/microvm.conf", S.root);
        snprintf(S.vms, sizeof S.vms, "%s/vms", S.root);
        snprintf(S.images, sizeof S.images, "%s/images", S.root);
        snprintf(S.base, sizeof S.base, "%s/jailer", S.root);
        snprintf(S.state, sizeof S.state, "%s/state", S.root);
        snprintf(S.run, sizeof S.run, "%s/run", S.root);
        snprintf(S.victim, sizeof S.victim, "%s/victim", S.root);

        mkdir_owned(S.bin, 0755, 0);
        mkdir_owned(S.etc, 0755, 0);
        mkdir_owned(S.vms, 0755, 0);
        mkdir_owned(S.images, 0755, 0);
        b = build_root();
        copy_binary(pf("%s/tests/doubles/jailer", b), pf("%s/jailer", S.bin));
        copy_binary(pf("%s/tests/doubles/firecracker", b), pf("%s/firecracker", S.bin));

        /* The admin's templates: never chowned, chmodded or written. */
        make_image("vmlinux", "kernel image\n", 0);
        make_image("initrd.img", "initrd image\n", 0);
        make_image("root.ext4", "root filesystem\n", 16 << 20);
        make_image("data.ext4", "data filesystem\n", 8 << 20);
        make_image("ro.ext4", "read-only filesystem\n", 4 << 20);

        /* Victims: what an attacker would like root to write, chown or delete. */
        mkdir_owned(S.victim, 0755, 0);
        write_file(pf("%s/secret", S.victim), "top secret\n", 0600, 0);
        write_file(pf("%s/public", S.victim), "public\n", 0644, 0);
        write_file(pf("%s/admin-file", S.victim), "the admin's\n", 0644, ADMIN_UID);
        /* world-writable: the VM's uid may hardlink it (protected_hardlinks) */
        write_file(pf("%s/shared", S.victim), "shared\n", 0666, 0);
        mkdir_owned(pf("%s/dir", S.victim), 0755, 0);
        write_file(pf("%s/dir/inner", S.victim), "inner\n", 0644, 0);
        mkdir_owned(pf("%s/dir/sub", S.victim), 0700, ADMIN_UID);
        write_file(pf("%s/dir/sub/deep", S.victim), "deep\n", 0600, ADMIN_UID);
        /* a tree shaped like a jail, for links that aim a tool at it */
        mkdir_owned(pf("%s/jail", S.victim), 0755, 0);
        mkdir_owned(pf("%s/jail/vm1", S.victim), 0755, 0);
        mkdir_owned(pf("%s/jail/vm1/root", S.victim), 0755, 0);
        write_file(pf("%s/jail/vm1/root/vmlinux", S.victim), "not a kernel\n", 0644, 0);
        mkdir_owned(pf("%s/jail/vm1/root/run", S.victim), 0755, 0);

        host_config_write(S.base, S.state, S.run);
        cr_assert_eq(setenv("MICROVM_HOST_CONFIG", S.host_conf, 1), 0);
        cr_assert_eq(setenv("MICROVM_CONFIG_PATH", S.vms, 1), 0);
        tools_use_fallback(false);
        (void) unsetenv("MICROVM_CONFIG_DIGEST");
        (void) unsetenv("NOTIFY_SOCKET");
        cr_assert_eq(setenv("SYSTEMD_LOG_LEVEL", "info", 1), 0);
        /* Which source of truth the tools ask whether microvm@<id> runs:
         * here always the cgroup fallback, the bus explicitly absent. The
         * VMs of these suites are processes in a cgroup tree of their own
         * that no systemd knows, so a system bus (a stock host runs one)
         * would answer "not running" for every one of them. The bus path,
         * against a real systemd, is the e2e scenario sc_running_per_systemd. */
        cr_assert_eq(setenv("DBUS_SYSTEM_BUS_ADDRESS", NO_SYSTEM_BUS, 1), 0);
}

void tools_use_fallback(bool fallback) {
#if !ENABLE_TEST_HOOKS
        /* Without the hook the tools would quietly run openat2 again. */
        if (fallback)
                cr_skip_test("the tools' component-walk run needs a build with -Dtest-hooks=true (MICROVM_SAFE_FS_FALLBACK)");
#endif
        if (fallback)
                cr_assert_eq(setenv("MICROVM_SAFE_FS_FALLBACK", "1", 1), 0);
        else
                cr_assert_eq(unsetenv("MICROVM_SAFE_FS_FALLBACK"), 0);
}

/* ---- running the tools ------------------------------------------------------------ */

static int pidfd_open_(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

int wait_exit_bounded(pid_t pid, usec_t timeout) {
        int pfd = pidfd_open_(pid), status;
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;

        cr_assert_geq(pfd, 0, "pidfd_open: %m");
        for (;;) {
                struct pollfd p = { .fd = pfd, .events = POLLIN };
                usec_t now = now_usec(CLOCK_MONOTONIC);
                int r;

                if (now >= deadline) {
                        (void) kill(pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        close(pfd);
                        return -ETIMEDOUT;
                }
                r = poll(&p, 1, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, 1000));
                if (r > 0)
                        break;
                cr_assert(r == 0 || errno == EINTR, "poll: %m");
        }
        close(pfd);
        while (waitpid(pid, &status, 0) < 0)
                cr_assert_eq(errno, EINTR, "waitpid: %m");
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 128 + WTERMSIG(status);
}

static char *read_memfd(int fd) {
        struct stat st;
        char *buf;

        cr_assert_eq(fstat(fd, &st), 0);
        buf = calloc(1, (size_t) st.st_size + 1);
        cr_assert_not_null(buf);
        cr_assert_eq(pread(fd, buf, (size_t) st.st_size, 0), st.st_size);
        return buf;
}

static pid_t spawn(int cg_fd, const char *tool, char **argv, int out_fd, int err_fd) {
        const char *path = pf("%s/tools/%s", build_root(), tool);
        pid_t pid = fork();

        cr_assert_geq(pid, 0, "fork: %m");
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd >= 0 ? out_fd : null, 1) < 0 ||
                    dup2(err_fd >= 0 ? err_fd : null, 2) < 0)
                        _exit(120);
                if (cg_fd >= 0) {
                        int f = openat(cg_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                        if (f < 0 || write(f, "0", 1) != 1)
                                _exit(121);
                        close(f);
                }
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                argv[0] = (char *) path;
                execv(path, argv);
                _exit(122);
        }
        return pid;
}

ToolRun tool_run_cg(int cg_fd, const char *tool, ...) {
        char *argv[16] = {};
        ToolRun r = {};
        int out, err;
        usec_t t0;
        va_list ap;
        size_t n = 1;

        va_start(ap, tool);
        for (const char *a; (a = va_arg(ap, const char *));) {
                cr_assert_lt(n, ELEMENTSOF(argv) - 1);
                argv[n++] = (char *) a;
        }
        va_end(ap);

        out = memfd_create("stdout", MFD_CLOEXEC);
        err = memfd_create("stderr", MFD_CLOEXEC);
        cr_assert(out >= 0 && err >= 0, "memfd_create: %m");
        t0 = now_usec(CLOCK_MONOTONIC);
        r.status = wait_exit_bounded(spawn(cg_fd, tool, argv, out, err), TOOL_TIMEOUT);
        r.usec = now_usec(CLOCK_MONOTONIC) - t0;
        r.out = read_memfd(out);
        r.err = read_memfd(err);
        close(out);
        close(err);
        cr_assert_neq(r.status, -ETIMEDOUT, "%s %s hung (killed after %llu s); stderr:\n%s", tool,
                      strna(argv[1]), (unsigned long long) (TOOL_TIMEOUT / USEC_PER_SEC), r.err);
        return r;
}

pid_t tool_spawn_cg(int cg_fd, const char *tool, const char *arg, int out_fd, int err_fd) {
        char *argv[3] = { NULL, (char *) arg, NULL };
        return spawn(cg_fd, tool, argv, out_fd, err_fd);
}

pid_t tool_spawn(const char *tool, const char *arg) {
        char *argv[3] = { NULL, (char *) arg, NULL };
        return spawn(-1, tool, argv, -1, -1);
}

void tool_run_done(ToolRun *r) {
        free(r->err);
        free(r->out);
        *r = (ToolRun) {};
}

void host_leaks_check(void) {
        /* The sandbox's files go with its tmpfs and its cgroups with
         * cgroup_sandbox_done() (which must succeed); what would outlive
         * it on the host is checked here. */
        ToolRun r = tool_run("../tests/leak/leak-check", "--only=block,tap,process", NULL);
        cr_assert_eq(r.status, 0, "left on the host after the test (tests/leak/leak-check):\n%s%s", r.out, r.err);
        tool_run_done(&r);
}

void tool_ok(const char *tool, const char *id) {
        ToolRun r = tool_run(tool, id, NULL);
        cr_assert_eq(r.status, 0, "%s %s exited with %d:\n%s", tool, strna(id), r.status, r.err);
        tool_run_done(&r);
}

const char *jail_dir(const char *id) {
        return pf("%s/" EXEC_NAME "/%s", S.base, id);
}

const char *jail_root(const char *id) {
        return pf("%s/" EXEC_NAME "/%s/root", S.base, id);
}

const char *run_dir(const char *id) {
        return pf("%s/%s", S.run, id);
}

uid_t vm_uid(const char *id) {
        _cleanup_free_ char *text = read_file(pf("%s/%s/uid", S.state, id));
        unsigned long u = strtoul(text, NULL, 10);

        cr_assert(u >= VM_RANGE_MIN && u <= VM_RANGE_MAX, "uid record of %s: \"%s\"", id, text);
        return (uid_t) u;
}

static void assert_file(const char *p, mode_t type, uid_t uid, mode_t mode) {
        struct stat st;

        cr_assert_eq(lstat(p, &st), 0, "%s: %m", p);
        cr_assert_eq(st.st_mode & S_IFMT, type, "%s: type %o", p, (unsigned) (st.st_mode & S_IFMT));
        cr_assert_eq(st.st_uid, uid, "%s: owner %u, wanted %u", p, (unsigned) st.st_uid, (unsigned) uid);
        cr_assert_eq(st.st_mode & 07777, mode, "%s: mode %04o, wanted %04o", p, (unsigned) (st.st_mode & 07777),
                     (unsigned) mode);
}

static void assert_same_inode(const char *a, const char *b) {
        struct stat x, y;

        cr_assert_eq(lstat(a, &x), 0, "%s: %m", a);
        cr_assert_eq(lstat(b, &y), 0, "%s: %m", b);
        cr_assert(x.st_dev == y.st_dev && x.st_ino == y.st_ino, "%s is not a hardlink of %s", a, b);
}

const char *const *vm_drive_templates(void) {
        static char a[PATH_MAX], b[PATH_MAX];
        static const char *d[5];

        snprintf(a, sizeof a, "%s/root.ext4", S.images);
        snprintf(b, sizeof b, "%s/data.ext4", S.images);
        d[0] = "root.img", d[1] = a, d[2] = "data.img", d[3] = b, d[4] = NULL;
        return d;
}

void stage_ok(const char *id) {
        tool_ok("microvm-stage", id);
        assert_staged(id);
}

void assert_staged(const char *id) {
        const char *root;
        uid_t uid;

        uid = vm_uid(id);
        root = strdupa(jail_root(id));
        /* What stage builds (and only that: no dev/, no pid file). */
        assert_file(jail_dir(id), S_IFDIR, 0, 0711);
        assert_file(root, S_IFDIR, 0, 0700);
        assert_file(pf("%s/run", root), S_IFDIR, uid, 0700);
        assert_file(pf("%s/vm-config.json", root), S_IFREG, 0, 0444);
        assert_same_inode(pf("%s/vmlinux", root), pf("%s/vmlinux", S.images));
        assert_same_inode(pf("%s/initrd", root), pf("%s/initrd.img", S.images));
        if (exists(pf("%s/drive-ro", root)))
                assert_same_inode(pf("%s/drive-ro", root), pf("%s/ro.ext4", S.images));
        if (exists(pf("%s/drive-root", root))) {
                assert_same_inode(pf("%s/drive-root", root), pf("%s/%s/drives/root.img", S.state, id));
                assert_file(pf("%s/drive-root", root), S_IFREG, uid, 0600);
        }
        cr_assert_not(exists(pf("%s/dev", root)), "stage created dev/ (the jailer's job)");
        cr_assert_not(exists(pf("%s/" EXEC_NAME ".pid", root)), "stage created the pid file");
        assert_file(pf("%s/plan", run_dir(id)), S_IFREG, 0, 0600);
        assert_file(pf("%s/console.in", run_dir(id)), S_IFIFO, 0, 0600);
}

void launch_simulate(const char *id) {
        /* microvm-launch, before it execs the jailer: the VM may run from
         * now on (lib/vm/vm-first-run.h) */
        if (exists(pf("%s/%s/" STATE_UNLAUNCHED_FILE, S.state, id)))
                cr_assert_eq(rename(pf("%s/%s/" STATE_UNLAUNCHED_FILE, S.state, id),
                                    pf("%s/%s/" STATE_LAUNCHING_FILE, S.state, id)), 0, "%m");
}

void jailer_simulate(const char *id) {
        const char *root = strdupa(jail_root(id));
        uid_t uid = vm_uid(id);
        int fd;

        launch_simulate(id);
        /* step 3: the exec file is copied (never linked) and chowned */
        copy_binary(pf("%s/firecracker", S.bin), pf("%s/" EXEC_NAME, root));
        cr_assert_eq(chown(pf("%s/" EXEC_NAME, root), uid, uid), 0);
        /* step 6: /, /dev, /dev/net, /run: 0700, the VM's */
        cr_assert_eq(mkdir(pf("%s/dev", root), 0700), 0);
        cr_assert_eq(mkdir(pf("%s/dev/net", root), 0700), 0);
        for (const char *const *d = (const char *const[]) { "", "/dev", "/dev/net", "/run", NULL }; *d; d++) {
                cr_assert_eq(chown(pf("%s%s", root, *d), uid, uid), 0);
                cr_assert_eq(chmod(pf("%s%s", root, *d), 0700), 0);
        }
        /* step 7: nodes, 0600, the VM's */
        cr_assert_eq(mknod(pf("%s/dev/net/tun", root), S_IFCHR | 0600, makedev(10, 200)), 0);
        cr_assert_eq(mknod(pf("%s/dev/kvm", root), S_IFCHR | 0600, makedev(10, 232)), 0);
        cr_assert_eq(mknod(pf("%s/dev/urandom", root), S_IFCHR | 0600, makedev(1, 9)), 0);
        cr_assert_eq(chown(pf("%s/dev/net/tun", root), uid, uid), 0);
        cr_assert_eq(chown(pf("%s/dev/kvm", root), uid, uid), 0);
        cr_assert_eq(chown(pf("%s/dev/urandom", root), uid, uid), 0);
        /* step 8: the pid file, root's */
        fd = open(pf("%s/" EXEC_NAME ".pid", root), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, "4242", 4), 4);
        close(fd);
}

void victims_snapshot(void) {
        free(victim_before);
        free(images_before);
        victim_before = snapshot_tree(S.victim);
        images_before = snapshot_tree(S.images);
}

void victims_check(void) {
        _cleanup_free_ char *v = snapshot_tree(S.victim);
        _cleanup_free_ char *i = snapshot_tree(S.images);

        assert_same_snapshot(victim_before, v, "victim tree");
        assert_same_snapshot(images_before, i, "template images");
}

void assert_nothing_left(const char *id) {
        cr_assert_not(exists(jail_dir(id)), "%s: the jail %s is left", id, jail_dir(id));
        cr_assert_not(exists(run_dir(id)), "%s: the run dir %s is left", id, run_dir(id));
}

static void assert_same_content(const char *a, const char *b) {
        static char x[1 << 16], y[1 << 16];
        int fa = open(a, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), fb = open(b, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat sa, sb;

        cr_assert(fa >= 0 && fb >= 0, "open %s / %s: %m", a, b);
        cr_assert_eq(fstat(fa, &sa), 0);
        cr_assert_eq(fstat(fb, &sb), 0);
        cr_assert_eq(sa.st_size, sb.st_size, "%s: %lld bytes, its template %s %lld: a truncated copy", a,
                     (long long) sa.st_size, b, (long long) sb.st_size);
        for (off_t off = 0; off < sa.st_size;) {
                /* Holes read back as zeroes; compare only where either has data. */
                off_t da = lseek(fa, off, SEEK_DATA), db = lseek(fb, off, SEEK_DATA), d = MIN(da, db);
                ssize_t n, m;

                if (da < 0 && db < 0)
                        break;
                if (da < 0 || db < 0)
                        d = MAX(da, db);
                n = pread(fa, x, sizeof x, d);
                m = pread(fb, y, sizeof y, d);
                cr_assert(n > 0 && n == m, "%s: short read at %lld", a, (long long) d);
                cr_assert(memcmp(x, y, (size_t) n) == 0, "%s differs from its template %s at %lld", a, b,
                          (long long) d);
                off = d + n;
        }
        close(fa);
        close(fb);
}

unsigned assert_state_is(const char *id, bool want_uid, const char *const *drive_templates, StateFlags flags) {
        const char *dir = strdupa(pf("%s/%s", S.state, id));
        bool all_drives = flags & STATE_ALL_DRIVES;
        unsigned n_drives = 0, seen_drives = 0, temporaries = 0;
        struct dirent *de;
        DIR *d;

        for (const char *const *t = drive_templates; t && *t; t += 2)
                n_drives++;
        d = opendir(dir);
        if (!d) {
                cr_assert_eq(errno, ENOENT);
                cr_assert(!want_uid && (!all_drives || n_drives == 0), "%s: no state dir", id);
                return 0;
        }
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (streq(de->d_name, "uid"))
                        continue;
                /* The first-run marker (lib/vm/vm-first-run.h): only beside a
                 * uid record, except "unlaunched" after a kill (a new VM's
                 * marker is written just before its record: the next stage
                 * writes the record beside it, a cleanup removes both). */
                if (streq(de->d_name, STATE_UNLAUNCHED_FILE) || streq(de->d_name, STATE_LAUNCHING_FILE)) {
                        cr_assert(exists(pf("%s/uid", dir)) ||
                                  ((flags & STATE_TEMPORARIES_OK) && streq(de->d_name, STATE_UNLAUNCHED_FILE)),
                                  "%s: %s/%s without a uid record", id, dir, de->d_name);
                        continue;
                }
                if ((flags & STATE_TEMPORARIES_OK) && startswith(de->d_name, ".#")) {
                        temporaries++;
                        continue;
                }
                cr_assert(streq(de->d_name, "drives"), "%s: unexpected %s/%s left in the state dir", id, dir,
                          de->d_name);
        }
        closedir(d);
        if (want_uid)
                (void) vm_uid(id);
        else
                cr_assert_not(exists(pf("%s/uid", dir)), "%s: unexpected uid record", id);

        d = opendir(pf("%s/drives", dir));
        if (!d) {
                cr_assert(!all_drives || n_drives == 0, "%s: no drives/ dir", id);
                return temporaries;
        }
        while ((de = readdir(d))) {
                bool known = false;
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if ((flags & STATE_TEMPORARIES_OK) && startswith(de->d_name, ".#")) {
                        temporaries++;
                        continue;
                }
                for (const char *const *t = drive_templates; t && *t; t += 2)
                        if (streq(de->d_name, t[0])) {
                                assert_same_content(pf("%s/drives/%s", dir, t[0]), t[1]);
                                known = true;
                        }
                cr_assert(known, "%s: unexpected %s/drives/%s (a temporary or half-done copy?)", id, dir,
                          de->d_name);
                seen_drives++;
        }
        closedir(d);
        cr_assert(all_drives ? seen_drives == n_drives : seen_drives <= n_drives, "%s: %u drive copies, wanted %u",
                  id, seen_drives, n_drives);
        return temporaries;
}

/* ---- an isolated cgroup tree ------------------------------------------------------ */

static char cg_host_dir[PATH_MAX];      /* our cgroup, as the host sees it */
static int cg_host_root_fd = -1;        /* the host's cgroup2 root, kept from before the remount */
static char cg_mount[PATH_MAX];

static void cg_remove_tree(int dirfd);

static void write_at(int dirfd, const char *file, const char *value) {
        int fd = openat(dirfd, file, O_WRONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0, "open %s: %m", file);
        cr_assert_eq(write(fd, value, strlen(value)), (ssize_t) strlen(value), "write %s to %s: %m", value, file);
        close(fd);
}

const char *cgroup_sandbox(void) {
        _cleanup_free_ char *mount_point = NULL;
        char name[64];
        int fd;

        cr_assert_eq(cgroup2_find_mount(&mount_point), 0, "no cgroup2 mount");
        snprintf(cg_mount, sizeof cg_mount, "%s", mount_point);
        snprintf(name, sizeof name, "microvm-priv-test.%d", (int) getpid());
        cg_host_root_fd = open(cg_mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(cg_host_root_fd, 0, "%s: %m", cg_mount);
        {
                /* What a test killed by its timeout left: its process is
                 * gone, so its tree can go. */
                int dfd = fcntl(cg_host_root_fd, F_DUPFD_CLOEXEC, 3);
                DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
                struct dirent *de;

                while (d && (de = readdir(d))) {
                        const char *p = startswith(de->d_name, "microvm-priv-test.");
                        int child;
                        if (!p || kill((pid_t) atoi(p), 0) == 0 || errno != ESRCH)
                                continue;
                        child = openat(cg_host_root_fd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (child >= 0) {
                                cg_remove_tree(child);
                                close(child);
                        }
                        (void) unlinkat(cg_host_root_fd, de->d_name, AT_REMOVEDIR);
                }
                if (d)
                        closedir(d);
        }
        cr_assert(mkdirat(cg_host_root_fd, name, 0755) == 0 || errno == EEXIST, "mkdir %s/%s: %m", cg_mount, name);
        snprintf(cg_host_dir, sizeof cg_host_dir, "%s", name);
        fd = openat(cg_host_root_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        write_at(fd, "cgroup.procs", "0");
        close(fd);
        /* Our cgroup becomes the root of a new cgroup namespace; mounting
         * cgroup2 again (the old mount must go first: the same superblock
         * cannot be mounted on its own root) shows only our subtree. The
         * mount namespace is private (priv_sandbox()). */
        cr_assert_eq(unshare(CLONE_NEWCGROUP), 0, "unshare(CLONE_NEWCGROUP): %m");
        cr_assert_eq(umount2(cg_mount, MNT_DETACH), 0, "umount %s: %m", cg_mount);
        cr_assert_eq(mount("cgroup2", cg_mount, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), 0,
                     "mount cgroup2 on %s: %m", cg_mount);
        return cg_mount;
}

static void cg_remove_tree(int dirfd) {
        DIR *d;
        struct dirent *de;
        int fd;

        fd = openat(dirfd, "cgroup.kill", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                if (write(fd, "1", 1) < 0) { /* best effort: nothing may be left to kill */ }
                close(fd);
        }
        fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d)
                return;
        while ((de = readdir(d))) {
                int child;
                if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                child = openat(dirfd, de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (child >= 0) {
                        cg_remove_tree(child);
                        close(child);
                }
                /* A killed cgroup drains asynchronously: retries, for
                 * at most 30 s (a bound in time: the reaping of killed
                 * sanitizer builds on a loaded machine can take long). */
                for (usec_t end = now_usec(CLOCK_MONOTONIC) + 30 * USEC_PER_SEC;
                     unlinkat(dirfd, de->d_name, AT_REMOVEDIR) < 0 && errno == EBUSY &&
                     now_usec(CLOCK_MONOTONIC) < end;)
                        usleep(1000);
        }
        closedir(d);
}

void cgroup_sandbox_done(void) {
        int fd;

        if (cg_host_root_fd < 0)
                return;
        /* Back to the host's root cgroup (through the fd from before the
         * remount), then remove our tree. */
        write_at(cg_host_root_fd, "cgroup.procs", "0");
        fd = openat(cg_host_root_fd, cg_host_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
                cg_remove_tree(fd);
                close(fd);
        }
        cr_expect(unlinkat(cg_host_root_fd, cg_host_dir, AT_REMOVEDIR) == 0 || errno == ENOENT,
                  "rmdir %s/%s: %m", cg_mount, cg_host_dir);
        cg_host_root_fd = safe_close(cg_host_root_fd);
}

const char *cgroup_sandbox_mount(void) {
        return cg_mount;
}

int cgroup_mkdir(const char *rel) {
        char p[PATH_MAX];
        int fd;

        snprintf(p, sizeof p, "%s", rel);
        for (char *s = strchr(p + 1, '/');; s = strchr(s + 1, '/')) {
                if (s)
                        *s = '\0';
                cr_assert(mkdir(pf("%s/%s", cg_mount, p), 0755) == 0 || errno == EEXIST, "mkdir cgroup %s: %m", p);
                if (!s)
                        break;
                *s = '/';
        }
        fd = open(pf("%s/%s", cg_mount, rel), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(fd, 0, "open cgroup %s: %m", rel);
        return fd;
}
