/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Full runs of the doubles as root: jailer double → firecracker double exec'd
 * in place inside a pivot_root jail as an unprivileged uid, with cgroup v2
 * placement on this host's cgroup2 mount (found through mountinfo; on a
 * hybrid host /sys/fs/cgroup/unified), device nodes, the pid file, a tap,
 * namespaces, and the API reached through an O_PATH fd of the socket.
 *
 * The jails live on a tmpfs of the test's own, mounted with device nodes
 * allowed, in a mount namespace of its own: /tmp may be mounted nodev (a
 * tmpfs /tmp: Debian 13, any host with tmp.mount), where the nodes the
 * jailer makes could not be opened.
 *
 * Exits 77 (skip) with the reason when not root, without cgroup2, or where
 * device nodes cannot be made. Everything a test creates (jail trees, test
 * cgroups, taps, processes, controllers it enabled on the cgroup root) is
 * removed in the suite's teardown, even after a failed assertion. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test-helpers.h"

#define VM_UID 123456
#define VM_UID_STR "123456"

static struct {
        char *tmp;
        char *base;
        char *id;
        char *jail;             /* <base>/firecracker/<id>/root */
        char *cg_mount;
        char *cg_rel;           /* parent cgroup, relative to the mount */
        char *cg_parent;        /* absolute */
        char *root_subtree_before;
        char tap[IFNAMSIZ];
        pid_t extra_pids[8];    /* VMMs that are not our children */
        size_t n_extra_pids;
        pid_t netns_holder;
} t;

static const char *firecracker_path(void) {
        return getenv("FIRECRACKER_DOUBLE");
}

static const char *jailer_path(void) {
        return getenv("JAILER_DOUBLE");
}

static char *strf(const char *fmt, ...) _printf_(1, 2);
static char *strf(const char *fmt, ...) {
        char *s;
        va_list ap;
        va_start(ap, fmt);
        cr_assert(vasprintf(&s, fmt, ap) >= 0);
        va_end(ap);
        return s;
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);
        return a >= b && streq(s + a - b, suffix);
}

static char *jail_path(const char *rel) {
        return strf("%s/%s", t.jail, rel);
}

/* --------------------------------------------------------------------- */
/* cgroups: find, create, kill (cgroup.kill, wait for populated 0), remove */

static bool cgroup_populated(const char *cg) {
        _cleanup_free_ char *events = strf("%s/cgroup.events", cg), *content = read_file(events);
        return content && strstr(content, "populated 1");
}

/* cgroup.kill, then wait for "populated 0" — an event: cgroup.events
 * signals POLLPRI on change — then rmdir. */
static void cgroup_kill_and_remove(const char *cg) {
        struct stat st;
        if (stat(cg, &st) < 0)
                return;
        _cleanup_free_ char *kill_file = strf("%s/cgroup.kill", cg), *events = strf("%s/cgroup.events", cg);
        (void) write_file(kill_file, "1", 0644);
        int fd = open(events, O_RDONLY | O_CLOEXEC);
        for (int i = 0; fd >= 0 && i < 100 && cgroup_populated(cg); i++) {
                struct pollfd p = { .fd = fd, .events = POLLPRI };
                (void) poll(&p, 1, 100);
                char buf[256];
                ssize_t n = pread(fd, buf, sizeof(buf), 0);
                (void) n;
        }
        if (fd >= 0)
                close(fd);
        (void) rmdir(cg);
}

static bool controller_listed(const char *file, const char *controller) {
        _cleanup_free_ char *content = read_file(file);
        if (!content)
                return false;
        for (char *s = content, *tok; (tok = strsep(&s, " \n"));)
                if (streq(tok, controller))
                        return true;
        return false;
}

/* A --cgroup value this host can take, or NULL: the jailer only accepts
 * controllers listed in <mount>/cgroup.controllers. */
static const char *pick_cgroup_value(const char **ret_file, const char **ret_value) {
        _cleanup_free_ char *list = strf("%s/cgroup.controllers", t.cg_mount);
        if (controller_listed(list, "pids")) {
                *ret_file = "pids.max";
                *ret_value = "100";
                return "pids.max=100";
        }
        if (controller_listed(list, "hugetlb") && access("/sys/kernel/mm/hugepages/hugepages-2048kB", F_OK) >= 0) {
                *ret_file = "hugetlb.2MB.max";
                *ret_value = "4194304";
                return "hugetlb.2MB.max=4194304";
        }
        return NULL;
}

/* --------------------------------------------------------------------- */
/* taps */

static int tap_ioctl(const char *name, unsigned long req, unsigned long arg) {
        struct ifreq ifr = {};
        int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        memcpy(ifr.ifr_name, name, MIN(strlen(name), (size_t) IFNAMSIZ - 1));
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        int r = 0;
        if (ioctl(fd, TUNSETIFF, &ifr) < 0 || (req && ioctl(fd, req, arg) < 0))
                r = -errno;
        close(fd);
        return r;
}

/* A persistent tap owned by the VM uid, as microvm-stage makes them. */
static void tap_create(void) {
        snprintf(t.tap, sizeof(t.tap), "fcdbl%d", (int) getpid() % 1000000);
        int r = tap_ioctl(t.tap, TUNSETOWNER, VM_UID);
        cr_assert(r >= 0, "tap owner: %s", strerror(-r));
        r = tap_ioctl(t.tap, TUNSETPERSIST, 1);
        cr_assert(r >= 0, "tap persist: %s", strerror(-r));
}

static void tap_delete(void) {
        if (t.tap[0])
                (void) tap_ioctl(t.tap, TUNSETPERSIST, 0);
        t.tap[0] = 0;
}

/* --------------------------------------------------------------------- */
/* fixture */

static void setup(void) {
        t = (typeof(t)) {};
        t.tmp = make_temp_dir("doubles-jail");
        cr_assert(t.tmp);
        t.base = strf("%s/base", t.tmp);
        cr_assert(mkdir(t.base, 0755) >= 0);
        t.cg_mount = find_cgroup2_mount();
        cr_assert(t.cg_mount);
        t.cg_rel = strf("doubles-test-%d", (int) getpid());
        t.cg_parent = strf("%s/%s", t.cg_mount, t.cg_rel);
        _cleanup_free_ char *root_subtree = strf("%s/cgroup.subtree_control", t.cg_mount);
        t.root_subtree_before = read_file(root_subtree);
        /* A 64-character id: the longest valid one, so the host-side socket
         * path exceeds sun_path. */
        t.id = strf("t%d-", (int) getpid());
        size_t l = strlen(t.id);
        t.id = realloc(t.id, 65);
        memset(t.id + l, 'x', 64 - l);
        t.id[64] = 0;
        t.jail = strf("%s/firecracker/%s/root", t.base, t.id);
}

static void teardown(void) {
        if (!t.tmp)
                return;
        children_kill_all();
        for (size_t i = 0; i < t.n_extra_pids; i++)
                if (t.extra_pids[i] > 0 && kill(t.extra_pids[i], SIGKILL) >= 0)
                        (void) waitpid(t.extra_pids[i], NULL, 0);
        if (t.netns_holder > 0) {
                kill(t.netns_holder, SIGKILL);
                (void) waitpid(t.netns_holder, NULL, 0);
        }

        /* Deepest first: the VM leaves and the launcher leaf, then the parent. */
        _cleanup_free_ char *leaf = strf("%s/%s", t.cg_parent, t.id), *launcher = strf("%s/launcher", t.cg_parent);
        cgroup_kill_and_remove(leaf);
        cgroup_kill_and_remove(launcher);
        cgroup_kill_and_remove(t.cg_parent);

        /* Give back what the jailer enabled on the cgroup root (it never
         * disables anything itself). EBUSY means someone else uses it now:
         * then it stays. */
        _cleanup_free_ char *root_subtree = strf("%s/cgroup.subtree_control", t.cg_mount);
        _cleanup_free_ char *now = read_file(root_subtree);
        for (char *s = now, *tok; s && (tok = strsep(&s, " \n"));) {
                if (!*tok)
                        continue;
                bool before = false;
                _cleanup_free_ char *copy = t.root_subtree_before ? strdup(t.root_subtree_before) : NULL;
                for (char *b = copy, *btok; b && (btok = strsep(&b, " \n"));)
                        if (streq(btok, tok))
                                before = true;
                if (!before) {
                        _cleanup_free_ char *minus = strf("-%s", tok);
                        (void) write_file(root_subtree, minus, 0644);
                }
        }

        tap_delete();
        remove_tree(t.tmp);
        free(t.tmp);
        free(t.base);
        free(t.id);
        free(t.jail);
        free(t.cg_mount);
        free(t.cg_rel);
        free(t.cg_parent);
        free(t.root_subtree_before);
        t = (typeof(t)) {};
}

/* criterion does not run .fini after cr_skip_test(): clean up first. */
#define skip_test(...)                          \
        do {                                    \
                teardown();                     \
                cr_skip_test(__VA_ARGS__);      \
        } while (0)

TestSuite(jail, .init = setup, .fini = teardown, .timeout = 120);

/* --------------------------------------------------------------------- */
/* staging (what microvm-stage would do) and running */

/* Kernel, drive and config inside the jail, readable/writable by the VM uid. */
static void stage_jail(const char *boot_args, const char *extra_top) {
        cr_assert(mkdir_p(t.jail, 0755) >= 0);
        _cleanup_free_ char *kernel = jail_path("vmlinux"), *drive = jail_path("rootfs.ext4"),
                            *config = jail_path("config.json");
        cr_assert(write_file(kernel, "not really a kernel\n", 0644) >= 0);
        int fd = open(drive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        cr_assert(fd >= 0 && ftruncate(fd, 4 << 20) >= 0 && fchown(fd, VM_UID, VM_UID) >= 0);
        close(fd);
        _cleanup_free_ char *cfg = make_vm_config("/vmlinux", boot_args, "/rootfs.ext4", false, extra_top);
        cr_assert(write_file(config, cfg, 0644) >= 0);
}

#define MAX_ARGS 64

typedef struct Argv {
        const char *v[MAX_ARGS];
        size_t n;
} Argv;

static void argv_add(Argv *a, const char *s) {
        cr_assert(a->n < MAX_ARGS - 1);
        a->v[a->n++] = s;
        a->v[a->n] = NULL;
}

/* The jailer command line of our tools, up to and excluding "--". */
static Argv jailer_argv(bool cgroup_v2) {
        Argv a = {};
        argv_add(&a, jailer_path());
        argv_add(&a, "--id");
        argv_add(&a, t.id);
        argv_add(&a, "--exec-file");
        argv_add(&a, firecracker_path());
        argv_add(&a, "--uid");
        argv_add(&a, VM_UID_STR);
        argv_add(&a, "--gid");
        argv_add(&a, VM_UID_STR);
        argv_add(&a, "--chroot-base-dir");
        argv_add(&a, t.base);
        if (cgroup_v2) {
                argv_add(&a, "--cgroup-version");
                argv_add(&a, "2");
                argv_add(&a, "--parent-cgroup");
                argv_add(&a, t.cg_rel);
        }
        return a;
}

static void add_firecracker_args(Argv *a) {
        argv_add(a, "--");
        argv_add(a, "--config-file");
        argv_add(a, "/config.json");
}

static void start(Child *c, Argv *a, const SpawnOptions *o) {
        cr_assert(child_spawn(c, (char *const *) a->v, o) >= 0);
        cr_assert(child_wait_output(c, "] Successfully started microvm that was configured from one single json\n",
                                    false, TEST_TIMEOUT_MS),
                  "did not boot:\nstdout:\n%s\nstderr:\n%s", sb_str(&c->out), sb_str(&c->err));
}

static int api_connect(void) {
        _cleanup_free_ char *sock = jail_path("run/firecracker.socket");
        int fd = unix_connect_via_opath(sock);
        cr_assert(fd >= 0, "connect via O_PATH to %s: %s", sock, strerror(-fd));
        return fd;
}

static void request(int fd, const char *method, const char *uri, const char *body, int expect_status) {
        int status;
        _cleanup_free_ char *resp = NULL;
        cr_assert_eq(http_request(fd, method, uri, body, &status, &resp), 0, "%s %s failed", method, uri);
        cr_assert_eq(status, expect_status, "%s %s: %d %s", method, uri, status, resp);
}

static void ctrl_alt_del(void) {
        int fd = api_connect();
        request(fd, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", 204);
        close(fd);
}

static char *proc_cgroup_v2(pid_t pid) {
        _cleanup_free_ char *path = strf("/proc/%d/cgroup", (int) pid), *content = read_file(path);
        cr_assert(content);
        for (char *s = content, *line; (line = strsep(&s, "\n"));)
                if (startswith(line, "0::"))
                        return strdup(line + 3);
        return NULL;
}

static void assert_char_dev(const char *rel, unsigned major_, unsigned minor_) {
        _cleanup_free_ char *p = jail_path(rel);
        struct stat st;
        cr_assert(lstat(p, &st) >= 0, "%s: %m", p);
        cr_assert(S_ISCHR(st.st_mode), "%s is no char device", rel);
        cr_assert_eq(major(st.st_rdev), major_, "%s major", rel);
        cr_assert_eq(minor(st.st_rdev), minor_, "%s minor", rel);
        cr_assert_eq(st.st_mode & 07777, 0600, "%s mode %o", rel, st.st_mode & 07777);
        cr_assert_eq(st.st_uid, VM_UID);
        cr_assert_eq(st.st_gid, VM_UID);
}

static void assert_jail_dir(const char *rel) {
        _cleanup_free_ char *p = jail_path(rel);
        struct stat st;
        cr_assert(lstat(p, &st) >= 0 && S_ISDIR(st.st_mode), "%s", p);
        cr_assert_eq(st.st_mode & 07777, 0700, "%s mode %o", rel, st.st_mode & 07777);
        cr_assert_eq(st.st_uid, VM_UID);
        cr_assert_eq(st.st_gid, VM_UID);
}

/* The userfaultfd minor the jailer finds in /proc/misc, or -1. */
static int userfaultfd_minor(void) {
        _cleanup_free_ char *misc = read_file("/proc/misc");
        for (char *s = misc, *line; s && (line = strsep(&s, "\n"));) {
                char *f0 = strsep(&line, " ");
                if (line && streq(line, "userfaultfd"))
                        return atoi(f0);
        }
        return -1;
}

static size_t count_lines_containing(const char *file, const char *needle) {
        _cleanup_free_ char *content = read_file(file);
        size_t n = 0;
        for (char *s = content, *line; s && (line = strsep(&s, "\n"));)
                if (strstr(line, needle))
                        n++;
        return n;
}

/* --------------------------------------------------------------------- */

Test(jail, full_run_as_the_vm_user) {
        Child c;
        const char *cg_file = NULL, *cg_value = NULL, *cg_arg = pick_cgroup_value(&cg_file, &cg_value);
        _cleanup_free_ char *extra = NULL;
        static char *const env[] = { "NOTIFY_SOCKET=/run/systemd/notify", "LISTEN_FDS=1", NULL };
        SpawnOptions o = { .leak_fd = 42, .env = env, .stdin_mode = STDIN_PIPE };

        tap_create();
        extra = strf(",\n  \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"%s\", "
                     "\"guest_mac\": \"06:00:0a:00:00:02\"}],\n  \"vsock\": {\"guest_cid\": 3, \"uds_path\": "
                     "\"/run/v.sock\"}", t.tap);
        stage_jail("console=ttyS0 reboot=k panic=1", extra);
        _cleanup_free_ char *mounts_before = read_file("/proc/self/mountinfo");

        Argv a = jailer_argv(true);
        if (cg_arg) {
                argv_add(&a, "--cgroup");
                argv_add(&a, cg_arg);
        }
        argv_add(&a, "--resource-limit");
        argv_add(&a, "no-file=1024");
        add_firecracker_args(&a);
        start(&c, &a, &o);
        pid_t pid = c.pid;

        /* The host-side socket path is longer than sun_path ... */
        _cleanup_free_ char *sock = jail_path("run/firecracker.socket");
        cr_assert_gt(strlen(sock), 107);
        cr_assert_eq(unix_connect(sock), -ENAMETOOLONG);
        /* ... connect(2) through an O_PATH directory fd reaches it ... */
        _cleanup_free_ char *run_dir = jail_path("run");
        int dfd = open(run_dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        cr_assert(dfd >= 0);
        _cleanup_free_ char *via_dir = strf("/proc/self/fd/%d/firecracker.socket", dfd);
        int fd = unix_connect(via_dir);
        cr_assert(fd >= 0, "connect %s: %s", via_dir, strerror(-fd));
        request(fd, "GET", "/version", NULL, 200);
        close(fd);
        close(dfd);
        /* ... and so does connect(2) on /proc/self/fd/N of an O_PATH fd of the socket itself. */
        fd = api_connect();
        int status;
        _cleanup_free_ char *body = NULL;
        cr_assert_eq(http_request(fd, "GET", "/", NULL, &status, &body), 0);
        cr_assert_eq(status, 200);
        _cleanup_free_ char *want = strf("{\"id\":\"%s\",\"state\":\"Running\"", t.id);
        cr_assert(startswith(body, want), "%s", body);

        /* In place: the jailer's pid is the VMM's, written without newline, root-owned. */
        _cleanup_free_ char *pidfile = jail_path("firecracker.pid"), *pidtext = read_file(pidfile);
        _cleanup_free_ char *pidstr = strf("%d", (int) pid);
        cr_assert_str_eq(pidtext, pidstr);
        struct stat st;
        cr_assert(stat(pidfile, &st) >= 0);
        cr_assert_eq(st.st_uid, 0);

        /* Credentials: all four ids, no supplementary groups. */
        _cleanup_free_ char *status_path = strf("/proc/%d/status", (int) pid), *status_text = read_file(status_path);
        cr_assert(strstr(status_text, "\nUid:\t123456\t123456\t123456\t123456\n"), "%s", status_text);
        cr_assert(strstr(status_text, "\nGid:\t123456\t123456\t123456\t123456\n"));
        const char *groups = strstr(status_text, "\nGroups:");
        cr_assert(groups);
        groups += strlen("\nGroups:");
        cr_assert_eq(groups[strspn(groups, " \t")], '\n', "supplementary groups left: %.40s", groups);

        /* argv: the jailer's prefix, then what followed "--". */
        _cleanup_free_ char *cmdline_path = strf("/proc/%d/cmdline", (int) pid);
        int cfd = open(cmdline_path, O_RDONLY | O_CLOEXEC);
        char cmdline[4096];
        ssize_t cl = read(cfd, cmdline, sizeof(cmdline) - 1);
        close(cfd);
        cr_assert_gt(cl, 0);
        _cleanup_sb_ StrBuf args = {};
        for (ssize_t i = 0; i < cl; i++)
                sb_append_n(&args, cmdline[i] ? &cmdline[i] : " ", 1);
        _cleanup_free_ char *prefix = strf("/firecracker --id %s --start-time-us ", t.id);
        cr_assert(startswith(sb_str(&args), prefix), "%s", sb_str(&args));
        cr_assert(strstr(sb_str(&args), " --start-time-cpu-us "));
        cr_assert(strstr(sb_str(&args), " --parent-cpu-time-us "));
        cr_assert(ends_with(sb_str(&args), " --config-file /config.json "), "%s", sb_str(&args));

        /* Empty environment, no inherited fd. */
        _cleanup_free_ char *environ_path = strf("/proc/%d/environ", (int) pid), *environ_text = read_file(environ_path);
        cr_assert_str_eq(environ_text, "");
        _cleanup_free_ char *leaked = strf("/proc/%d/fd/42", (int) pid);
        cr_assert(access(leaked, F_OK) < 0, "fd 42 was inherited by the VMM");

        /* Resource limits. */
        _cleanup_free_ char *limits_path = strf("/proc/%d/limits", (int) pid);
        cr_assert_eq(count_lines_containing(limits_path, "Max open files            1024                 1024"), 1);

        /* Cgroup: a leaf <parent>/<id>, values written, controller enabled down the ancestry. */
        _cleanup_free_ char *cg = proc_cgroup_v2(pid), *want_cg = strf("/%s/%s", t.cg_rel, t.id);
        if (cg_arg) {
                cr_assert_str_eq(cg, want_cg);
                _cleanup_free_ char *value_file = strf("%s/%s/%s", t.cg_parent, t.id, cg_file);
                _cleanup_free_ char *value = read_file(value_file);
                _cleanup_free_ char *want_value = strf("%s\n", cg_value);
                cr_assert_str_eq(value, want_value);
                _cleanup_free_ char *ctrl = strndup(cg_file, strcspn(cg_file, "."));
                _cleanup_free_ char *parent_sc = strf("%s/cgroup.subtree_control", t.cg_parent);
                _cleanup_free_ char *root_sc = strf("%s/cgroup.subtree_control", t.cg_mount);
                cr_assert(controller_listed(parent_sc, ctrl));
                cr_assert(controller_listed(root_sc, ctrl));
        }

        /* The mount namespace holds the jail only; the host's table is unchanged. */
        _cleanup_free_ char *mountinfo = strf("/proc/%d/mountinfo", (int) pid);
        _cleanup_free_ char *vm_mounts = read_file(mountinfo);
        cr_assert_eq(count_lines_containing(mountinfo, " "), 1, "%s", vm_mounts);
        cr_assert(strstr(vm_mounts, " / / ") || strstr(vm_mounts, "/root / "), "%s", vm_mounts);
        _cleanup_free_ char *mounts_after = read_file("/proc/self/mountinfo");
        cr_assert_str_eq(mounts_before, mounts_after);

        /* The jail. */
        assert_jail_dir(".");
        assert_jail_dir("dev");
        assert_jail_dir("dev/net");
        assert_jail_dir("run");
        assert_char_dev("dev/net/tun", 10, 200);
        assert_char_dev("dev/kvm", 10, 232);
        assert_char_dev("dev/urandom", 1, 9);
        int uffd = userfaultfd_minor();
        if (uffd >= 100)
                assert_char_dev("dev/userfaultfd", 10, (unsigned) uffd);
        _cleanup_free_ char *copy = jail_path("firecracker");
        struct stat orig;
        cr_assert(stat(copy, &st) >= 0 && stat(firecracker_path(), &orig) >= 0);
        cr_assert_eq(st.st_uid, VM_UID);
        cr_assert_eq(st.st_nlink, 1);
        cr_assert_eq(st.st_size, orig.st_size);
        cr_assert_neq(st.st_ino, orig.st_ino);
        _cleanup_free_ char *vsock = jail_path("run/v.sock");
        cr_assert(lstat(vsock, &st) >= 0 && S_ISSOCK(st.st_mode) && st.st_uid == VM_UID);

        /* The console. */
        const char *out = sb_str(&c.out);
        cr_assert(strstr(out, "] Command line: console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw "), "%s", out);
        cr_assert(strstr(out, "] virtio_blk virtio0: [vda] 8192 512-byte logical blocks"), "%s", out);
        _cleanup_free_ char *nic = strf("] virtio_net virtio1 eth0: eth0 on tap %s, MAC 06:00:0a:00:00:02\n", t.tap);
        cr_assert(strstr(out, nic), "%s", out);
        cr_assert(child_wait_output(&c, " login: \n", false, TEST_TIMEOUT_MS));
        cr_assert(write(c.in_fd, "echo-through-the-jail\n", 22) == 22);
        cr_assert(child_wait_output(&c, "\necho-through-the-jail\n", false, TEST_TIMEOUT_MS));

        /* A second start while this VM runs: the copy hits the running binary. */
        Child c2;
        cr_assert(child_spawn(&c2, (char *const *) a.v, NULL) >= 0);
        cr_assert(child_wait_exit(&c2, TEST_TIMEOUT_MS));
        _cleanup_free_ char *busy = strf("Failed to open %s: Text file busy (os error 26)\nError: Open(\"%s\", Os { "
                                         "code: 26, kind: ExecutableFileBusy, message: \"Text file busy\" })\n",
                                         copy, copy);
        cr_assert(child_exited_with(&c2, 1));
        cr_assert_str_eq(sb_str(&c2.err), busy);
        child_done(&c2);

        if (cg_arg) {
                /* Without --cgroup values the jailer joins <parent> itself, at
                 * argument time — which the kernel refuses now that <parent>
                 * has a controller enabled for its children (EBUSY). */
                Argv a3 = jailer_argv(true);
                add_firecracker_args(&a3);
                cr_assert(child_spawn(&c2, (char *const *) a3.v, NULL) >= 0);
                cr_assert(child_wait_exit(&c2, TEST_TIMEOUT_MS));
                _cleanup_free_ char *move = strf("Failed to move process to cgroup (%s): Device or resource busy (os "
                                                 "error 16).\nHint: If you intended to create a child cgroup under "
                                                 "%s, pass any --cgroup parameters.\nError: CgroupMove(\"%s\", Os { "
                                                 "code: 16, kind: ResourceBusy, message: \"Device or resource busy\" "
                                                 "})\n", t.cg_parent, t.cg_parent, t.cg_parent);
                cr_assert(child_exited_with(&c2, 1));
                cr_assert_str_eq(sb_str(&c2.err), move);
                child_done(&c2);
        }

        /* Graceful stop: Ctrl-Alt-Del, the guest reboots, the VMM (our child) exits 0. */
        request(fd, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", 204);
        close(fd);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d\n%s", c.status, sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] reboot: Restarting system\n"));
        /* It removes nothing: jail, socket, pid file stay for the caller. */
        cr_assert(access(sock, F_OK) >= 0 && access(pidfile, F_OK) >= 0);
        child_done(&c);
}

Test(jail, second_start_over_an_old_jail_fails) {
        Child c;

        stage_jail("console=ttyS0", NULL);
        Argv a = jailer_argv(false);
        argv_add(&a, "--");
        argv_add(&a, "--version");

        cr_assert(child_spawn(&c, (char *const *) a.v, NULL) >= 0);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d\n%s%s", c.status, sb_str(&c.out), sb_str(&c.err));
        cr_assert_str_eq(sb_str(&c.out), "Firecracker v" DOUBLES_FIRECRACKER_VERSION "\n\n");
        child_done(&c);

        /* Same jail again: the tun node exists. */
        cr_assert(child_spawn(&c, (char *const *) a.v, NULL) >= 0);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 1));
        cr_assert_str_eq(sb_str(&c.err), "Failed to create /dev/net/tun via mknod inside the jail: File exists (os "
                                         "error 17)\nError: MknodDev(Os { code: 17, kind: AlreadyExists, message: "
                                         "\"File exists\" }, \"/dev/net/tun\")\n");
        child_done(&c);

        /* Without the nodes, the old pid file is what fails. */
        static const char *const nodes[] = { "dev/net/tun", "dev/kvm", "dev/urandom", "dev/userfaultfd" };
        for (size_t i = 0; i < ELEMENTSOF(nodes); i++) {
                _cleanup_free_ char *p = jail_path(nodes[i]);
                (void) unlink(p);
        }
        cr_assert(child_spawn(&c, (char *const *) a.v, NULL) >= 0);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 1));
        cr_assert_str_eq(sb_str(&c.err), "Failed to open file /firecracker.pid: File exists (os error 17)\nError: "
                                         "FileOpen(\"/firecracker.pid\", Os { code: 17, kind: AlreadyExists, message: "
                                         "\"File exists\" })\n");
        child_done(&c);
}

Test(jail, cgroup_values_ebusy_unless_the_parent_is_empty) {
        Child c;
        const char *cg_file, *cg_value, *cg_arg = pick_cgroup_value(&cg_file, &cg_value);
        if (!cg_arg) {
                /* skip_test() tears down (t.cg_mount goes) before it formats */
                static char mount[4096];
                snprintf(mount, sizeof(mount), "%s", t.cg_mount);
                skip_test("no controller usable in %s/cgroup.controllers", mount);
        }

        stage_jail("console=ttyS0 reboot=k", NULL);
        cr_assert(mkdir(t.cg_parent, 0755) >= 0);
        _cleanup_free_ char *parent_procs = strf("%s/cgroup.procs", t.cg_parent);

        /* The jailer runs inside <parent>: enabling a controller for the
         * parent's children is refused by the kernel (no internal processes). */
        Argv a = jailer_argv(true);
        argv_add(&a, "--cgroup");
        argv_add(&a, cg_arg);
        add_firecracker_args(&a);
        SpawnOptions o = { .cgroup_procs = parent_procs };
        cr_assert(child_spawn(&c, (char *const *) a.v, &o) >= 0);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        _cleanup_free_ char *want = strf("Failed to write to %s/cgroup.subtree_control: Device or resource busy (os "
                                         "error 16)\n", t.cg_parent);
        cr_assert(child_exited_with(&c, 1));
        cr_assert(startswith(sb_str(&c.err), want), "%s", sb_str(&c.err));
        child_done(&c);

        /* What microvm-launch does: leave the parent for a sibling leaf first. */
        _cleanup_free_ char *launcher = strf("%s/launcher", t.cg_parent), *launcher_procs = NULL;
        cr_assert(mkdir(launcher, 0755) >= 0);
        launcher_procs = strf("%s/cgroup.procs", launcher);
        o.cgroup_procs = launcher_procs;
        _cleanup_free_ char *old_jail = strf("%s/firecracker/%s", t.base, t.id);
        remove_tree(old_jail);
        stage_jail("console=ttyS0 reboot=k", NULL);
        start(&c, &a, &o);
        _cleanup_free_ char *cg = proc_cgroup_v2(c.pid), *want_cg = strf("/%s/%s", t.cg_rel, t.id);
        cr_assert_str_eq(cg, want_cg);
        ctrl_alt_del();
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0));
        child_done(&c);
}

Test(jail, no_cgroup_values_join_the_parent_if_it_exists) {
        Child c;

        stage_jail("console=ttyS0 reboot=k", NULL);
        cr_assert(mkdir(t.cg_parent, 0755) >= 0);
        Argv a = jailer_argv(true);
        add_firecracker_args(&a);
        start(&c, &a, NULL);
        _cleanup_free_ char *cg = proc_cgroup_v2(c.pid), *want = strf("/%s", t.cg_rel);
        cr_assert_str_eq(cg, want);
        /* Nothing created below it. */
        _cleanup_free_ char *leaf = strf("%s/%s", t.cg_parent, t.id);
        cr_assert(access(leaf, F_OK) < 0);
        ctrl_alt_del();
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0));
        child_done(&c);
}

Test(jail, no_cgroup_values_and_no_parent_stay_put) {
        Child c;

        stage_jail("console=ttyS0 reboot=k", NULL);
        Argv a = jailer_argv(true);
        add_firecracker_args(&a);
        _cleanup_free_ char *mine = proc_cgroup_v2(getpid());
        start(&c, &a, NULL);
        _cleanup_free_ char *cg = proc_cgroup_v2(c.pid);
        cr_assert_str_eq(cg, mine);
        cr_assert(access(t.cg_parent, F_OK) < 0, "the jailer created the parent cgroup");
        ctrl_alt_del();
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0));
        child_done(&c);
}

Test(jail, netns_is_joined) {
        Child c;
        int ready[2];

        cr_assert(pipe2(ready, O_CLOEXEC) >= 0);
        t.netns_holder = fork();
        cr_assert(t.netns_holder >= 0);
        if (t.netns_holder == 0) {
                if (unshare(CLONE_NEWNET) < 0)
                        _exit(1);
                if (write(ready[1], "x", 1) != 1)
                        _exit(1);
                for (;;)
                        pause();
        }
        close(ready[1]);
        char x;
        cr_assert_eq(read(ready[0], &x, 1), 1, "netns holder failed");
        close(ready[0]);

        _cleanup_free_ char *netns = strf("/proc/%d/ns/net", (int) t.netns_holder);
        stage_jail("console=ttyS0 reboot=k", NULL);
        Argv a = jailer_argv(false);
        argv_add(&a, "--netns");
        argv_add(&a, netns);
        add_firecracker_args(&a);
        start(&c, &a, NULL);
        struct stat want, got;
        _cleanup_free_ char *vm_netns = strf("/proc/%d/ns/net", (int) c.pid);
        cr_assert(stat(netns, &want) >= 0 && stat(vm_netns, &got) >= 0);
        cr_assert_eq(got.st_ino, want.st_ino, "the VMM is not in the given network namespace");
        ctrl_alt_del();
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0));
        child_done(&c);
}

/* Waits for a VMM that is not our child (we are its subreaper). */
static int wait_foreign_exit(pid_t pid) {
        int pfd = (int) syscall(SYS_pidfd_open, pid, 0), status = -1;
        cr_assert(pfd >= 0);
        struct pollfd p = { .fd = pfd, .events = POLLIN };
        cr_assert_eq(poll(&p, 1, TEST_TIMEOUT_MS), 1, "pid %d did not exit", (int) pid);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        close(pfd);
        for (size_t i = 0; i < t.n_extra_pids; i++)
                if (t.extra_pids[i] == pid)
                        t.extra_pids[i] = 0;
        return status;
}

static pid_t read_pid_file(void) {
        _cleanup_free_ char *pidfile = jail_path("firecracker.pid"), *text = read_file(pidfile);
        cr_assert(text, "no pid file");
        pid_t pid = atoi(text);
        cr_assert_gt(pid, 0);
        t.extra_pids[t.n_extra_pids++] = pid;
        return pid;
}

Test(jail, new_pid_ns) {
        Child c;

        cr_assert(prctl(PR_SET_CHILD_SUBREAPER, 1) >= 0);
        stage_jail("console=ttyS0 reboot=k", NULL);
        /* In a test cgroup, so that teardown's cgroup.kill finds the VMM even
         * if the test fails before it learns the pid. */
        cr_assert(mkdir(t.cg_parent, 0755) >= 0);
        Argv a = jailer_argv(true);
        argv_add(&a, "--new-pid-ns");
        add_firecracker_args(&a);
        cr_assert(child_spawn(&c, (char *const *) a.v, NULL) >= 0);
        /* The jailer clones the VMM as pid 1 of a new namespace, writes its pid, exits 0. */
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d\n%s", c.status, sb_str(&c.err));
        pid_t vmm = read_pid_file();
        cr_assert_neq(vmm, c.pid);
        cr_assert(child_wait_output(&c, "] Successfully started microvm", false, TEST_TIMEOUT_MS), "%s",
                  sb_str(&c.out));
        _cleanup_free_ char *status_path = strf("/proc/%d/status", (int) vmm), *status = read_file(status_path);
        _cleanup_free_ char *nspid = strf("\nNSpid:\t%d\t1\n", (int) vmm);
        cr_assert(strstr(status, nspid), "%s", status);
        ctrl_alt_del();
        int st = wait_foreign_exit(vmm);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
        child_done(&c);
}

Test(jail, daemonize) {
        Child c;

        cr_assert(prctl(PR_SET_CHILD_SUBREAPER, 1) >= 0);
        stage_jail("console=ttyS0 reboot=k", NULL);
        /* In a test cgroup, so that teardown's cgroup.kill finds the VMM even
         * if the test fails before it learns the pid. */
        cr_assert(mkdir(t.cg_parent, 0755) >= 0);
        Argv a = jailer_argv(true);
        argv_add(&a, "--daemonize");
        add_firecracker_args(&a);
        cr_assert(child_spawn(&c, (char *const *) a.v, NULL) >= 0);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d\n%s", c.status, sb_str(&c.err));

        /* The grandchild writes the pid file, then execs the VMM. Its stdio
         * is /dev/null, so the event to wait for is a socket that accepts. */
        _cleanup_free_ char *sock = jail_path("run/firecracker.socket");
        int fd = unix_connect_via_opath_wait(sock, TEST_TIMEOUT_MS);
        cr_assert(fd >= 0, "API socket never accepted: %s", strerror(-fd));
        request(fd, "GET", "/", NULL, 200);
        close(fd);
        pid_t vmm = read_pid_file();
        _cleanup_free_ char *fd1 = strf("/proc/%d/fd/1", (int) vmm);
        char target[64] = "";
        cr_assert_gt(readlink(fd1, target, sizeof(target) - 1), 0);
        cr_assert_str_eq(target, "/dev/null");
        cr_assert_neq(getsid(vmm), vmm, "the daemon must not be a session leader");
        ctrl_alt_del();
        int st = wait_foreign_exit(vmm);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
        child_done(&c);
}

/* --------------------------------------------------------------------- */

static bool tap_output = false;

/* Exit 77 for meson's plain protocol; under --tap meson wants a TAP plan
 * that says the whole program was skipped, and why. */
static int skip(const char *why) {
        fprintf(stderr, "test-doubles-jail: skipped: %s\n", why);
        if (tap_output) {
                printf("TAP version 13\n1..0 # SKIP %s\n", why);
                return 0;
        }
        return 77;
}

int main(int argc, char *argv[]) {
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--tap") || startswith(argv[i], "--tap="))
                        tap_output = true;
        if (geteuid() != 0)
                return skip("needs root (jails, device nodes, cgroups, changing uid)");
        if (!getenv("JAILER_DOUBLE") || !getenv("FIRECRACKER_DOUBLE"))
                return skip("JAILER_DOUBLE/FIRECRACKER_DOUBLE not set: run through meson test");
        _cleanup_free_ char *cg = find_cgroup2_mount();
        if (!cg)
                return skip("no cgroup2 mount in /proc/self/mountinfo");
        if (access("/dev/net/tun", R_OK | W_OK) < 0)
                return skip("no /dev/net/tun");

        /* The jails' file system: a tmpfs of our own that allows device
         * nodes, on a directory below /tmp, in a mount namespace of our own
         * (criterion's test processes inherit it; it goes with the last of
         * them). The build tree and everything else stay as they are. */
        char top[] = "/tmp/doubles-jail-dev-XXXXXX";
        if (!mkdtemp(top))
                return skip("mkdtemp below /tmp failed");
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
            mount("doubles-jail", top, "tmpfs", MS_NOSUID, "mode=0755") < 0) {
                int e = errno;
                (void) rmdir(top);
                fprintf(stderr, "test-doubles-jail: a tmpfs of its own on %s: %s\n", top, strerror(e));
                return skip("cannot mount a tmpfs in a private mount namespace (jails need one that allows device "
                            "nodes)");
        }
        set_temp_dir_base(top);

        /* A container without CAP_MKNOD, or one whose device policy denies
         * opening the nodes it makes, cannot host a jailer. */
        char node[64];
        snprintf(node, sizeof(node), "%s/null", top);
        int fd = mknod(node, S_IFCHR | 0666, makedev(1, 3)) < 0 ? -2 : open(node, O_RDWR | O_CLOEXEC);
        (void) unlink(node);
        if (fd < 0) {
                (void) umount2(top, MNT_DETACH);
                (void) rmdir(top);
                return skip(fd == -2 ? "cannot create device nodes here (mknod: no CAP_MKNOD?)"
                                     : "device nodes made here cannot be opened (the device cgroup denies it)");
        }
        close(fd);

        struct criterion_test_set *tests = criterion_initialize();
        int result = 0;
        if (criterion_handle_args(argc, argv, true))
                result = !criterion_run_all_tests(tests);
        criterion_finalize(tests);
        /* The mount point below the host's /tmp: empty once our namespace
         * is gone; remove it from the host's side of the mount. */
        (void) umount2(top, MNT_DETACH);
        (void) rmdir(top);
        return result;
}
