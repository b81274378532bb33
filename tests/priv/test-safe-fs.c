/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The attack suite for lib/jail/safe-fs, as root on a real tmpfs in a private
 * mount namespace. A jail is laid out as microvm-stage makes it
 * (<base>/firecracker/vm1/root, root owned by the VM's uid), then populated
 * the way a compromised firecracker would: as the VM's uid (fork +
 * setresuid). The primitives then do what the tools do there. Every test
 * asserts that nothing outside the jail changed: victim files keep their
 * content, owner, mode and existence, and templates are never chowned.
 *
 * Tests that walk below a root fd run twice: with openat2() and with the
 * component-walk fallback forced (safe_fs_force_fallback()). */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "macro.h"
#include "priv-util.h"
#include "safe-fs.h"

#define VM_UID ((uid_t) 1000123)
#define ADMIN_UID ((uid_t) 1000999)
#define JAIL "firecracker/vm1"

static char T[PATH_MAX];        /* the scratch tmpfs */
static char R[PATH_MAX];        /* the jail root: <T>/base/firecracker/vm1/root */
static int base_fd = -1;        /* trusted chroot base: <T>/base */
static int jd = -1;             /* <base>/firecracker/vm1: root-owned, holds root/ */
static char *victim_before, *images_before;


static void mkdir_owned(const char *p, mode_t mode, uid_t uid) {
        cr_assert_eq(mkdir(p, mode), 0, "mkdir %s: %m", p);
        cr_assert_eq(chown(p, uid, uid), 0);
        cr_assert_eq(chmod(p, mode), 0);
}

static void setup(void) {
        _cleanup_free_ char *err = NULL;

        snprintf(T, sizeof T, "%s", priv_sandbox());
        umask(022);

        /* Victims: what an attacker would like root to write, chown or delete. */
        mkdir_owned(pf("%s/victim", T), 0755, 0);
        write_file(pf("%s/victim/secret", T), "top secret\n", 0600, 0);
        write_file(pf("%s/victim/public", T), "public\n", 0644, 0);
        write_file(pf("%s/victim/admin-file", T), "the admin's\n", 0644, ADMIN_UID);
        /* world-writable: the VM's uid may hardlink it (protected_hardlinks) */
        write_file(pf("%s/victim/shared", T), "shared\n", 0666, 0);
        mkdir_owned(pf("%s/victim/dir", T), 0755, 0);
        write_file(pf("%s/victim/dir/inner", T), "inner\n", 0644, 0);

        /* Templates: the admin's, never chowned. */
        mkdir_owned(pf("%s/images", T), 0755, 0);
        write_file(pf("%s/images/vmlinux", T), "kernel image\n", 0644, 0);

        /* The jail as the jailer leaves it after a run. */
        mkdir_owned(pf("%s/base", T), 0755, 0);
        mkdir_owned(pf("%s/base/firecracker", T), 0755, 0);
        mkdir_owned(pf("%s/base/" JAIL, T), 0755, 0);
        mkdir_owned(pf("%s/base/" JAIL "/root", T), 0700, VM_UID);

        snprintf(R, sizeof R, "%s/base/" JAIL "/root", T);
        cr_assert_eq(safe_root_open(pf("%s/base", T), 0, 0, &base_fd, &err), 0, "%s", err);
        cr_assert_eq(safe_open_dir_at(base_fd, JAIL, &jd), 0);

        victim_before = snapshot_tree(pf("%s/victim", T));
        images_before = snapshot_tree(pf("%s/images", T));
}

static void check_victims(void) {
        _cleanup_free_ char *v = snapshot_tree(pf("%s/victim", T));
        _cleanup_free_ char *i = snapshot_tree(pf("%s/images", T));

        assert_same_snapshot(victim_before, v, "victim tree");
        assert_same_snapshot(images_before, i, "template images");
}

static void set_mode(bool fallback) {
        safe_fs_force_fallback(fallback);
        if (fallback)
                cr_assert_not(safe_fs_openat2_available());
        else if (!safe_fs_openat2_available())
                cr_log_warn("openat2() unavailable on this kernel: both runs test the fallback");
}

static int open_path(const char *p, int flags) {
        int fd = open(p, flags | O_CLOEXEC);
        cr_assert_geq(fd, 0, "open %s: %m", p);
        return fd;
}

static bool exists(const char *p) {
        struct stat st;
        return lstat(p, &st) == 0;
}

static void assert_jail_gone(void) {
        cr_assert_not(exists(pf("%s/base/" JAIL, T)), "jail still exists");
        /* and nothing leaked next to it */
        cr_assert(exists(pf("%s/base/firecracker", T)));
}

#define BOTH_MODES(suite, name, ...)                                                   \
        ParameterizedTestParameters(suite, name) {                                     \
                static bool modes[] = { false, true };                                 \
                return cr_make_param_array(bool, modes, ELEMENTSOF(modes));            \
        }                                                                              \
        ParameterizedTest(bool *fallback, suite, name, .init = setup, .timeout = 300, ##__VA_ARGS__)

/* ---- trusted roots ------------------------------------------------------------ */

static void expect_root_fail(const char *p, SafeRootFlags flags, int want, const char *needle1, const char *needle2) {
        _cleanup_free_ char *err = NULL;
        int fd = -1, r;

        r = safe_root_open(p, flags, 0755, &fd, &err);
        cr_assert_eq(r, want, "%s: got %d (%s), wanted %d", p, r, strna(err), want);
        cr_assert_eq(fd, -1);
        cr_assert_not_null(err, "%s: no message", p);
        cr_assert(strstr(err, needle1), "%s: message \"%s\" does not name \"%s\"", p, err, needle1);
        if (needle2)
                cr_assert(strstr(err, needle2), "%s: message \"%s\" lacks \"%s\"", p, err, needle2);
}

Test(root, trusted_paths, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        struct stat st;
        int fd = -1;

        /* The base itself: fine, and an O_RDONLY directory fd. */
        cr_assert_eq(safe_root_open(pf("%s/base", T), 0, 0, &fd, &err), 0, "%s", err);
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert(S_ISDIR(st.st_mode));
        cr_assert_eq(fcntl(fd, F_GETFL) & O_PATH, 0);
        cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);

        /* The chroot base (or state dir) is a symlink → refused, named. */
        cr_assert_eq(symlink(pf("%s/base", T), pf("%s/link-base", T)), 0);
        expect_root_fail(pf("%s/link-base", T), 0, -ELOOP, pf("\"%s/link-base\"", T), "symlink");
        /* A symlink on the way. */
        expect_root_fail(pf("%s/link-base/firecracker", T), 0, -ELOOP, pf("\"%s/link-base\"", T), "symlink");
        /* ... also when we would create below it. */
        expect_root_fail(pf("%s/link-base/new", T), SAFE_ROOT_CREATE, -ELOOP, "link-base", NULL);
        cr_assert_not(exists(pf("%s/base/new", T)));

        /* Group-writable, world-writable (sticky /tmp-like too), foreign owner. */
        mkdir_owned(pf("%s/gw", T), 0775, 0);
        mkdir_owned(pf("%s/gw/state", T), 0755, 0);
        expect_root_fail(pf("%s/gw/state", T), 0, -EPERM, pf("\"%s/gw\"", T), "group-writable");
        expect_root_fail(pf("%s/gw/new", T), SAFE_ROOT_CREATE, -EPERM, pf("\"%s/gw\"", T), "chmod go-w");
        cr_assert_not(exists(pf("%s/gw/new", T)), "created below an untrusted directory");
        mkdir_owned(pf("%s/tmp", T), 01777, 0);
        mkdir_owned(pf("%s/tmp/jailer", T), 0755, 0);
        expect_root_fail(pf("%s/tmp/jailer", T), 0, -EPERM, pf("\"%s/tmp\"", T), "world-writable");
        mkdir_owned(pf("%s/user", T), 0755, ADMIN_UID);
        expect_root_fail(pf("%s/user", T), 0, -EPERM, pf("\"%s/user\"", T), "not owned by root");
        /* the last component counts as much as the others */
        mkdir_owned(pf("%s/base-gw", T), 0770, 0);
        expect_root_fail(pf("%s/base-gw", T), 0, -EPERM, "base-gw", "group-writable");

        /* Not a directory, missing. */
        write_file(pf("%s/file", T), "x", 0644, 0);
        expect_root_fail(pf("%s/file/x", T), 0, -ENOTDIR, pf("\"%s/file\"", T), "not a directory");
        expect_root_fail(pf("%s/missing/x", T), 0, -ENOENT, pf("\"%s/missing\"", T), "does not exist");
        expect_root_fail("relative/path", 0, -EINVAL, "relative/path", NULL);
        expect_root_fail(pf("%s/base/", T), 0, -EINVAL, "base", NULL);
}

Test(root, create_missing, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        struct stat st;
        int fd = -1;

        umask(077);
        cr_assert_eq(safe_root_open(pf("%s/var/lib/microvm", T), SAFE_ROOT_CREATE, 0711, &fd, &err), 0, "%s", err);
        close(fd);
        cr_assert_eq(lstat(pf("%s/var/lib/microvm", T), &st), 0);
        cr_assert(S_ISDIR(st.st_mode));
        cr_assert_eq(st.st_mode & 07777, 0711, "mode %o", st.st_mode & 07777);
        cr_assert_eq(st.st_uid, 0);
        cr_assert_eq(lstat(pf("%s/var", T), &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0711);

        /* Existing components are checked, not changed. */
        cr_assert_eq(safe_root_open(pf("%s/var/lib/microvm", T), SAFE_ROOT_CREATE, 0700, &fd, &err), 0, "%s", err);
        close(fd);
        cr_assert_eq(lstat(pf("%s/var/lib/microvm", T), &st), 0);
        cr_assert_eq(st.st_mode & 07777, 0711);
}

Test(root, regular_files, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        struct stat st;
        int fd = -1;

        mkdir_owned(pf("%s/bin", T), 0755, 0);
        write_file(pf("%s/bin/firecracker", T), "ELF", 0755, 0);
        write_file(pf("%s/bin/gw", T), "ELF", 0775, 0);
        write_file(pf("%s/bin/user", T), "ELF", 0755, ADMIN_UID);
        cr_assert_eq(symlink("firecracker", pf("%s/bin/link", T)), 0);
        cr_assert_eq(mkfifo(pf("%s/bin/fifo", T), 0600), 0);

        cr_assert_eq(safe_root_open(pf("%s/bin/firecracker", T), SAFE_ROOT_REGULAR, 0, &fd, &err), 0, "%s", err);
        cr_assert_eq(fstat(fd, &st), 0);
        cr_assert(S_ISREG(st.st_mode));
        close(fd);
        expect_root_fail(pf("%s/bin/gw", T), SAFE_ROOT_REGULAR, -EPERM, "bin/gw", "group-writable");
        expect_root_fail(pf("%s/bin/user", T), SAFE_ROOT_REGULAR, -EPERM, "bin/user", "not owned by root");
        expect_root_fail(pf("%s/bin/link", T), SAFE_ROOT_REGULAR, -ELOOP, "bin/link", "symlink");
        /* a FIFO is looked at through O_PATH only: no hang */
        expect_root_fail(pf("%s/bin/fifo", T), SAFE_ROOT_REGULAR, -EBADFD, "bin/fifo", "not a regular file");
        expect_root_fail(pf("%s/bin", T), SAFE_ROOT_REGULAR, -EBADFD, "bin", "not a regular file");
}

/* ---- symlinks at every path the tools touch ---------------------------------- */

static void plant_symlinks(void *arg) {
        static const struct {
                const char *name;
                const char *target; /* below <T>/victim, or relative when starting with '.' */
        } links[] = {
                /* intermediate: run/ and dev/ are directories the tools use */
                { "run", "dir" },
                { "dev", "dir" },
                /* leaves: kernel, drive, config, initrd (relative target) */
                { "vmlinux", "secret" },
                { "drive-root", "secret" },
                { "vm-config.json", "public" },
                { "initrd", "../../../../victim/secret" },
                { "owned", "admin-file" },
        };
        int dfd = open((const char *) arg, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (dfd < 0)
                _exit(1);
        for (size_t i = 0; i < ELEMENTSOF(links); i++) {
                char target[PATH_MAX];

                if (links[i].target[0] == '.')
                        snprintf(target, sizeof target, "%s", links[i].target);
                else
                        snprintf(target, sizeof target, "%s/victim/%s", T, links[i].target);
                if (symlinkat(target, dfd, links[i].name) < 0)
                        _exit(2);
        }
        close(dfd);
}

BOTH_MODES(attack, symlinks) {
        _cleanup_free_ char *data = NULL;
        SafeRmReport rep = {};
        int kfd, nullfd, fd = -1;
        struct stat st;

        set_mode(*fallback);
        run_as_wait(VM_UID, plant_symlinks, (void *) R);
        kfd = open_path(pf("%s/images/vmlinux", T), O_PATH);
        nullfd = open_path("/dev/null", O_PATH);

        /* What microvm-stage would do in the jail. */
        cr_expect_eq(safe_mkdir_at(jd, "root/run", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), -ELOOP);
        cr_expect_eq(safe_mkdir_at(jd, "root/run/sub", 0700, VM_UID, VM_UID, SAFE_MKDIR_PARENTS, NULL), -ELOOP);
        cr_expect_eq(safe_mkdir_at(jd, "root/dev", 0700, VM_UID, VM_UID, 0, NULL), -EEXIST);
        cr_expect_eq(safe_write_file_at(jd, "root/run/firecracker.socket", "x", 1, 0600, VM_UID, VM_UID, 0), -ELOOP);
        cr_expect_eq(safe_write_file_at(jd, "root/run/x", "x", 1, 0600, VM_UID, VM_UID, SAFE_WRITE_REPLACE), -ELOOP);
        cr_expect_eq(safe_create_file_at(jd, "root/dev/x", 0600, VM_UID, VM_UID, NULL), -ELOOP);
        cr_expect_eq(safe_mkfifo_at(jd, "root/run/console", 0600, VM_UID, VM_UID), -ELOOP);
        cr_expect_eq(safe_mknod_at(jd, "root/dev/null", nullfd, 0600, VM_UID, VM_UID), -ELOOP);
        cr_expect_eq(safe_mknod_at(jd, "root/drive-root", nullfd, 0600, VM_UID, VM_UID), -EEXIST);
        cr_expect_eq(safe_link_at(kfd, jd, "root/vmlinux"), -EEXIST);
        cr_expect_eq(safe_copy_file_at(kfd, jd, "root/drive-root", 0600, VM_UID, VM_UID, 0, NULL, NULL), -EEXIST);
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID, 0), -EEXIST);
        /* What cleanup/stop would read or open. */
        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_RDONLY, S_IFREG, &fd), -ELOOP);
        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_RDWR, S_IFREG, &fd), -ELOOP);
        cr_expect_eq(safe_open_at(jd, "root/run/inner", O_RDONLY, S_IFREG, &fd), -ELOOP);
        cr_expect_eq(safe_open_at(jd, "root/run", O_RDONLY | O_DIRECTORY, S_IFDIR, &fd), -ELOOP);
        cr_expect_eq(safe_open_at(jd, "root/initrd", O_RDONLY, S_IFREG, &fd), -ELOOP);
        cr_expect_eq(safe_read_file_at(jd, "root/initrd", 4096, &data, NULL), -ELOOP);
        cr_expect_eq(safe_read_root_file_at(jd, "root/initrd", 4096, &data, NULL), -ELOOP);
        cr_expect_eq(safe_open_parent_at(jd, "root/run/firecracker.socket", &fd, &(const char *) { NULL }), -ELOOP);
        /* an O_PATH open of the link itself is refused as well: nothing to chown through */
        cr_expect_eq(safe_open_at(jd, "root/owned", O_PATH, 0, &fd), -ELOOP);
        cr_assert_eq(fd, -1);

        /* Replacing the name is fine: the link goes, its target stays. */
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID,
                                        SAFE_WRITE_REPLACE), 0);
        cr_assert_eq(lstat(pf("%s/base/" JAIL "/root/vm-config.json", T), &st), 0);
        cr_assert(S_ISREG(st.st_mode));
        cr_assert_eq(st.st_uid, VM_UID);
        cr_assert_eq(st.st_mode & 07777, 0600);

        /* Removal unlinks links, never follows them. */
        cr_expect_eq(safe_rm_rf_at(jd, "root/run", 0, NULL, &rep), 1);
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, &rep), 1);
        cr_expect_eq(rep.n_refused, 0);
        assert_jail_gone();
        check_victims();
        safe_rm_report_done(&rep);
        close(kfd);
        close(nullfd);
}

BOTH_MODES(attack, symlinked_jail_dirs) {
        SafeRmReport rep = {};
        int fd = -1, jd2 = -1;
        const char *v = pf("%s/victim", T);

        set_mode(*fallback);
        /* <id>/root → victim dir (only root could do this; the primitives
         * must refuse whoever did). */
        mkdir_owned(pf("%s/base/firecracker/vm2", T), 0755, 0);
        cr_assert_eq(symlink(pf("%s/dir", v), pf("%s/base/firecracker/vm2/root", T)), 0);
        cr_assert_eq(safe_open_dir_at(base_fd, "firecracker/vm2", &jd2), 0);
        cr_expect_eq(safe_mkdir_at(jd2, "root/run", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), -ELOOP);
        cr_expect_eq(safe_mkdir_at(jd2, "root", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), -ELOOP);
        cr_expect_eq(safe_write_file_at(jd2, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID, 0), -ELOOP);
        cr_expect_eq(safe_rm_rf_at(jd2, "root/inner", 0, NULL, &rep), -ELOOP);
        cr_expect_eq(safe_rm_rf_at(base_fd, "firecracker/vm2", 0, NULL, &rep), 1);
        cr_assert_not(exists(pf("%s/base/firecracker/vm2", T)));

        /* <id> itself → victim */
        cr_assert_eq(symlink(v, pf("%s/base/firecracker/vm3", T)), 0);
        cr_expect_eq(safe_open_dir_at(base_fd, "firecracker/vm3", &fd), -ELOOP);
        cr_expect_eq(safe_mkdir_at(base_fd, "firecracker/vm3/root", 0700, VM_UID, VM_UID, 0, NULL), -ELOOP);
        cr_expect_eq(safe_rm_rf_at(base_fd, "firecracker/vm3/root", 0, NULL, &rep), -ELOOP);
        cr_expect_eq(safe_rm_rf_at(base_fd, "firecracker/vm3", 0, NULL, &rep), 1);
        cr_assert_not(exists(pf("%s/base/firecracker/vm3", T)));
        /* the refusals above were reported with their paths */
        cr_expect_geq(rep.n_refused, 2);
        cr_expect_str_eq(rep.refused[0].path, "root/inner");
        cr_expect_str_eq(rep.refused[1].path, "firecracker/vm3/root");
        cr_expect_eq(rep.refused[1].error, -ELOOP);
        check_victims();
        safe_rm_report_done(&rep);
        close(jd2);
}

/* ---- hardlinks -------------------------------------------------------------------- */

static void plant_hardlink(void *arg) {
        /* Allowed under protected_hardlinks: the file is world-writable. */
        if (link(pf("%s/victim/shared", T), pf("%s/base/" JAIL "/root/drive-root", T)) < 0)
                _exit(1);
}

BOTH_MODES(attack, hardlinks) {
        int fd = -1, kfd;

        set_mode(*fallback);
        run_as_wait(VM_UID, plant_hardlink, NULL);
        /* And one to a root-only file, as root (as if protected_hardlinks
         * were off). */
        cr_assert_eq(link(pf("%s/victim/secret", T), pf("%s/base/" JAIL "/root/vm-config.json", T)), 0);
        kfd = open_path(pf("%s/images/vmlinux", T), O_PATH);

        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_RDWR, S_IFREG, &fd), -EMLINK);
        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_WRONLY | O_TRUNC, S_IFREG, &fd), -EMLINK);
        cr_expect_eq(safe_open_at(jd, "root/drive-root", O_RDONLY | O_APPEND, S_IFREG, &fd), -EMLINK);
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID, 0), -EEXIST);
        cr_expect_eq(safe_copy_file_at(kfd, jd, "root/drive-root", 0600, VM_UID, VM_UID, 0, NULL, NULL), -EEXIST);

        cr_assert_eq(safe_open_at(jd, "root/drive-root", O_PATH, S_IFREG, &fd), 0);
        cr_expect_eq(safe_fd_verify(fd, S_IFREG, UID_INVALID), -EMLINK);
        cr_expect_eq(safe_fd_chown(fd, VM_UID, VM_UID), -EMLINK);
        cr_expect_eq(safe_fd_chmod(fd, 0600), -EMLINK);
        close(fd);

        /* Replacing the name replaces the link only. */
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID,
                                        SAFE_WRITE_REPLACE), 0);
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        assert_jail_gone();
        check_victims();
        close(kfd);
}

/* ---- FIFOs and other specials where files are expected --------------------------- */

static void plant_fifos(void *arg) {
        const char *root = R;
        if (mkfifo(pf("%s/vm-config.json", root), 0600) < 0 || mkfifo(pf("%s/vmlinux", root), 0666) < 0 ||
            mkdir(pf("%s/run", root), 0700) < 0 || mkfifo(pf("%s/run/firecracker.socket", root), 0600) < 0)
                _exit(1);
}

BOTH_MODES(attack, fifos) {
        _cleanup_free_ char *data = NULL;
        int fd = -1, ffd = -1, kfd;
        SafeRmReport rep = {};

        set_mode(*fallback);
        run_as_wait(VM_UID, plant_fifos, NULL);
        kfd = open_path(pf("%s/images/vmlinux", T), O_PATH);

        /* No open blocks: every one of these would hang on a FIFO opened
         * for reading with no writer. The test timeout is the backstop. */
        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_RDONLY, S_IFREG, &fd), -EBADFD);
        cr_expect_eq(safe_open_at(jd, "root/vm-config.json", O_RDONLY, S_IFSOCK, &fd), -EBADFD);
        cr_expect_eq(safe_read_file_at(jd, "root/vmlinux", 4096, &data, NULL), -EBADFD);
        /* the root-tree read opens it at once, O_NONBLOCK: no writer, no wait */
        cr_expect_eq(safe_read_root_file_at(jd, "root/vmlinux", 4096, &data, NULL), -EBADFD);
        cr_expect_eq(safe_open_at(jd, "root/run/firecracker.socket", O_RDONLY, S_IFREG, &fd), -EBADFD);
        cr_expect_eq(safe_open_at(jd, "root/vmlinux", O_RDONLY | O_DIRECTORY, S_IFDIR, &fd), -ENOTDIR);
        cr_expect_eq(safe_link_at(kfd, jd, "root/vmlinux"), -EEXIST);
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, VM_UID, VM_UID, 0), -EEXIST);
        cr_expect_eq(safe_mkdir_at(jd, "root/vmlinux", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), -ENOTDIR);

        /* An O_PATH fd on the FIFO is fine, and useless as a source. */
        cr_assert_eq(safe_open_at(jd, "root/vmlinux", O_PATH, 0, &ffd), 0);
        cr_expect_eq(safe_copy_file_at(ffd, jd, "root/copy", 0600, VM_UID, VM_UID, 0, NULL, NULL), -EBADFD);
        cr_expect_eq(safe_link_at(ffd, jd, "root/link"), -EBADFD);
        cr_expect_eq(safe_mknod_at(jd, "root/node", ffd, 0600, VM_UID, VM_UID), -ENODEV);
        cr_expect_eq(safe_mknod_at(jd, "root/node", kfd, 0600, VM_UID, VM_UID), -ENODEV);
        cr_expect_eq(safe_fd_chown(ffd, 0, 0), -EPERM); /* owned by the VM, target root: not ours to give */
        close(ffd);

        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, &rep), 1);
        cr_expect_eq(rep.n_refused, 0);
        cr_expect_geq(rep.n_removed, 6);
        assert_jail_gone();
        check_victims();
        close(kfd);
}

/* ---- mounts inside the jail ------------------------------------------------------- */

static void plant_mountpoints(void *arg) {
        const char *root = R;
        int fd;

        if (mkdir(pf("%s/mnt", root), 0700) < 0 || mkdir(pf("%s/sub", root), 0700) < 0 ||
            mkdir(pf("%s/sub/tmpfs", root), 0700) < 0 || mkdir(pf("%s/junk", root), 0700) < 0)
                _exit(1);
        fd = open(pf("%s/file", root), O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
                _exit(1);
        close(fd);
        fd = open(pf("%s/junk/x", root), O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0)
                _exit(1);
        close(fd);
}

BOTH_MODES(attack, mounts) {
        const char *root = R;
        _cleanup_free_ char *msg = NULL;
        SafeRmReport rep = {};
        int fd = -1, r;

        set_mode(*fallback);
        run_as_wait(VM_UID, plant_mountpoints, NULL);
        /* A bind mount of a victim dir and of a victim file, and a tmpfs,
         * inside the jail: same st_dev for the binds, so only the mount id
         * tells them apart. */
        cr_assert_eq(mount(pf("%s/victim/dir", T), pf("%s/mnt", root), NULL, MS_BIND, NULL), 0, "%m");
        cr_assert_eq(mount(pf("%s/victim/secret", T), pf("%s/file", root), NULL, MS_BIND, NULL), 0, "%m");
        priv_mount_tmpfs(pf("%s/sub/tmpfs", root));
        write_file(pf("%s/sub/tmpfs/data", root), "on another fs\n", 0644, 0);

        cr_expect_eq(safe_open_at(jd, "root/mnt/inner", O_RDONLY, S_IFREG, &fd), -EXDEV);
        cr_expect_eq(safe_open_at(jd, "root/mnt", O_RDONLY | O_DIRECTORY, S_IFDIR, &fd), -EXDEV);
        cr_expect_eq(safe_open_at(jd, "root/file", O_RDONLY, S_IFREG, &fd), -EXDEV);
        cr_expect_eq(safe_open_at(jd, "root/file", O_PATH, S_IFREG, &fd), -EXDEV);
        cr_expect_eq(safe_mkdir_at(jd, "root/mnt/new", 0700, VM_UID, VM_UID, 0, NULL), -EXDEV);
        cr_expect_eq(safe_mkdir_at(jd, "root/mnt", 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL), -EXDEV);
        cr_expect_eq(safe_write_file_at(jd, "root/mnt/new", "x", 1, 0600, VM_UID, VM_UID, 0), -EXDEV);
        cr_expect_eq(safe_write_file_at(jd, "root/sub/tmpfs/new", "x", 1, 0600, VM_UID, VM_UID, 0), -EXDEV);
        cr_expect_eq(safe_rm_rf_at(jd, "root/mnt", 0, NULL, NULL), -EXDEV);
        cr_expect_eq(safe_rm_rf_at(jd, "root/mnt/inner", 0, NULL, NULL), -EXDEV);
        cr_expect_eq(fd, -1);

        r = safe_rm_rf_at(base_fd, JAIL, 0, NULL, &rep);
        cr_expect_eq(r, -EXDEV);
        msg = safe_rm_report_format(&rep, pf("%s/base", T));
        cr_assert_not_null(msg);
        cr_log_info("cleanup report:\n%s", msg);
        /* exactly the three mount points, no "not empty" noise for their
         * ancestors */
        cr_expect_eq(rep.n_refused, 3, "%s", msg);
        cr_expect(strstr(msg, JAIL "/root/mnt: mount point, not crossed"), "%s", msg);
        cr_expect(strstr(msg, JAIL "/root/file: mount point, not crossed"), "%s", msg);
        cr_expect(strstr(msg, JAIL "/root/sub/tmpfs: mount point, not crossed"), "%s", msg);
        /* everything else went */
        cr_expect_not(exists(pf("%s/junk", root)));
        /* the mounts are untouched: not unmounted, not emptied */
        cr_expect(exists(pf("%s/mnt/inner", root)));
        cr_expect(exists(pf("%s/sub/tmpfs/data", root)));

        cr_assert_eq(umount2(pf("%s/mnt", root), MNT_DETACH), 0);
        cr_assert_eq(umount2(pf("%s/file", root), MNT_DETACH), 0);
        cr_assert_eq(umount2(pf("%s/sub/tmpfs", root), MNT_DETACH), 0);
        check_victims();
        safe_rm_report_done(&rep);

        /* Once the mounts are gone, a second run finishes (idempotent). */
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 0);
        assert_jail_gone();
}

/* ---- depth and breadth ---------------------------------------------------------------- */

#define DEEP 10000

static void plant_deep_chain(void *arg) {
        int fd = open(pf("%s/base/" JAIL "/root", T), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                _exit(1);
        for (unsigned i = 0; i < DEEP; i++) {
                int nfd;

                if (mkdirat(fd, "d", 0700) < 0)
                        _exit(2);
                if (i % 1000 == 0) {
                        /* some files and a symlink to a victim on the way down */
                        int f = openat(fd, "f", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                        if (f < 0 || symlinkat(pf("%s/victim/secret", T), fd, "s") < 0)
                                _exit(3);
                        close(f);
                }
                nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                if (nfd < 0)
                        _exit(4);
                close(fd);
                fd = nfd;
        }
        if (symlinkat(pf("%s/victim", T), fd, "bottom") < 0)
                _exit(5);
        close(fd);
}

static void plant_wide(void *arg) {
        const char *root = R;
        int dfd;

        if (mkdir(pf("%s/wide", root), 0700) < 0)
                _exit(1);
        dfd = open(pf("%s/wide", root), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (unsigned i = 0; i < 5000; i++) {
                char n[32];
                snprintf(n, sizeof n, "%u", i);
                int f = openat(dfd, n, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (f < 0)
                        _exit(2);
                close(f);
        }
        close(dfd);
}

BOTH_MODES(attack, deep_chain) {
        SafeRmReport rep = {};
        _cleanup_free_ char *msg = NULL;
        SafeRmLimits small = { .max_entries = 1000 };
        usec_t t0;

        set_mode(*fallback);
        run_as_wait(VM_UID, plant_deep_chain, NULL);
        run_as_wait(VM_UID, plant_wide, NULL);

        /* The entry limit stops it with a clear refusal, no crash. */
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, &small, &rep), -E2BIG);
        msg = safe_rm_report_format(&rep, NULL);
        cr_assert_not_null(msg);
        cr_expect(strstr(msg, "too many entries"), "%s", msg);
        cr_expect(exists(pf("%s/base/" JAIL, T)));
        safe_rm_report_done(&rep);

        /* With the default limits the whole 10000-deep chain goes, with at
         * most SAFE_RM_MAX_DEPTH_DEFAULT directories open at once. */
        t0 = now_usec(CLOCK_MONOTONIC);
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, &rep), 1);
        cr_log_info("removed %" PRIu64 " entries (%" PRIu64 " hoists) in %" PRIu64 " ms", rep.n_removed,
                    rep.n_hoisted, (now_usec(CLOCK_MONOTONIC) - t0) / 1000);
        cr_expect_eq(rep.n_refused, 0);
        cr_expect_gt(rep.n_hoisted, 0);
        cr_expect_geq(rep.n_removed, DEEP + 5000 - 1000); /* the first run took up to 1000 */
        assert_jail_gone();
        check_victims();
        safe_rm_report_done(&rep);
}

BOTH_MODES(attack, small_depth_window) {
        SafeRmReport rep = {};
        SafeRmLimits lim = { .max_depth = 3 };
        const char *root = R;
        char p[PATH_MAX];

        set_mode(*fallback);
        /* A bushy tree: the hoisting must not lose or duplicate anything. */
        snprintf(p, sizeof p, "%s", root);
        for (unsigned i = 0; i < 40; i++) {
                strcat(p, i % 2 ? "/b" : "/a");
                mkdir_owned(p, 0700, VM_UID);
                write_file(pf("%s/file", p), "x", 0600, VM_UID);
                mkdir_owned(pf("%s/side", p), 0700, VM_UID);
                write_file(pf("%s/side/f", p), "x", 0600, VM_UID);
                cr_assert_eq(symlink(pf("%s/victim/dir", T), pf("%s/side/l", p)), 0);
        }
        cr_expect_eq(safe_rm_rf_at(jd, "root", SAFE_RM_CONTENTS_ONLY, &lim, &rep), 1);
        cr_expect_eq(rep.n_refused, 0);
        cr_expect_gt(rep.n_hoisted, 0);
        cr_expect_eq(rep.n_removed, 40 * 5, "removed %" PRIu64, rep.n_removed);
        cr_expect(exists(root));
        cr_expect_eq(safe_rm_rf_at(jd, "root", SAFE_RM_CONTENTS_ONLY, &lim, NULL), 1);
        check_victims();
        safe_rm_report_done(&rep);
}

/* ---- races: a directory swapped for a symlink between two steps ---------------------- */

_noreturn_ static void swap_run_forever(void *arg) {
        const char *root = R;
        int dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        /* run/ is a real directory, run.lnk a symlink to the victim dir;
         * swap them as fast as we can until killed. */
        if (dfd < 0 || mkdirat(dfd, "run", 0755) < 0 || symlinkat(pf("%s/victim/dir", T), dfd, "run.lnk") < 0)
                _exit(1);
        child_ready();
        for (;;)
                (void) renameat2(dfd, "run", dfd, "run.lnk", RENAME_EXCHANGE);
}

static pid_t start_attacker(void (*fn)(void *), const char *ready_path) {
        /* Returns once the attacker has built its objects (it says so). */
        pid_t pid = run_as_until_ready(VM_UID, fn, NULL);
        struct stat st;

        cr_assert_eq(lstat(ready_path, &st), 0, "the attacker is ready, but %s is not there: %m", ready_path);
        return pid;
}

static void stop_attacker(pid_t pid) {
        cr_assert_eq(kill(pid, SIGKILL), 0);
        cr_assert_eq(wait_exit(pid), 128 + SIGKILL);
}

/* After a race, the attacker stopped: no victim changed, and the jail,
 * whatever the attacker left in it, is removed completely. */
static void race_aftermath(void) {
        check_victims();
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        assert_jail_gone();
        check_victims();
}

BOTH_MODES(attack, race_dir_symlink_swap) {
        const char *root = R;
        unsigned ok = 0, refused = 0;
        int nullfd = open_path("/dev/null", O_PATH);
        pid_t pid;

        set_mode(*fallback);
        pid = start_attacker(swap_run_forever, pf("%s/run.lnk", root));

        /* 2000 rounds, and more (for at most 60 s) until the attacker won
         * one: on a loaded machine it may get no CPU for a while. */
        usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
        for (unsigned i = 0; i < 2000 || (refused == 0 && now_usec(CLOCK_MONOTONIC) < end); i++) {
                char name[64];
                int fd = -1, r;

                snprintf(name, sizeof name, "root/run/c%u", i);
                r = safe_mkdir_at(jd, "root/run/d", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL);
                r = r >= 0 ? safe_write_file_at(jd, "root/run/f", "x", 1, 0600, VM_UID, VM_UID, SAFE_WRITE_REPLACE) : r;
                r = r >= 0 ? safe_create_file_at(jd, name, 0600, VM_UID, VM_UID, NULL) : r;
                r = r >= 0 ? safe_mknod_at(jd, "root/run/null", nullfd, 0600, VM_UID, VM_UID) : r;
                if (r >= 0 && safe_open_at(jd, "root/run/f", O_PATH, S_IFREG, &fd) >= 0) {
                        (void) safe_fd_chown(fd, VM_UID, VM_UID);
                        (void) safe_fd_chmod(fd, 0640);
                        close(fd);
                }
                (void) safe_rm_rf_at(jd, "root/run/d", 0, NULL, NULL);
                (void) safe_rm_rf_at(jd, name, 0, NULL, NULL);
                if (r >= 0)
                        ok++;
                else {
                        cr_assert(r == -ELOOP || r == -ENOENT || r == -ENOTDIR || r == -EEXIST || r == -ESTALE,
                                  "iteration %u: unexpected error %d (%s)", i, r, strerror(-r));
                        refused++;
                }
        }
        stop_attacker(pid);
        cr_log_info("race: %u rounds completed, %u refused", ok, refused);
        cr_expect_gt(refused, 0, "the attacker never won a round: the race was not exercised");
        race_aftermath();
        close(nullfd);
}

/* In an attacker: makes <root>/t (its own) and returns it open. */
static int attacker_make_t(void) {
        const char *root = R;
        int dfd;

        if (mkdir(pf("%s/t", root), 0755) < 0)
                _exit(1);
        dfd = open(pf("%s/t", root), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                _exit(1);
        return dfd;
}

_noreturn_ static void swap_tree_forever(void *arg) {
        int dfd = attacker_make_t();

        for (;;) {
                int f;

                /* a/ with content, and a.lnk → victim; swap them. Both are
                 * recreated when the remover took them. */
                (void) mkdirat(dfd, "a", 0755);
                (void) mkdirat(dfd, "a/sub", 0755);
                f = openat(dfd, "a/sub/file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                if (f >= 0)
                        close(f);
                /* EEXIST is the normal case here */
                int q = symlinkat(pf("%s/victim/dir", T), dfd, "a.lnk");
                q = symlinkat(pf("%s/victim/dir", T), dfd, "a/sub/l");
                (void) q;
                child_ready(); /* once; a no-op after */
                (void) renameat2(dfd, "a", dfd, "a.lnk", RENAME_EXCHANGE);
                (void) renameat2(dfd, "a/sub", dfd, "a.lnk", RENAME_EXCHANGE);
        }
}

BOTH_MODES(attack, race_during_removal) {
        const char *root = R;
        pid_t pid;

        set_mode(*fallback);
        uint64_t removed = 0;

        pid = start_attacker(swap_tree_forever, pf("%s/t/a.lnk", root));
        /* 300 rounds, and more (for at most 60 s) until the race took
         * place: on a loaded machine the attacker may get no CPU for a
         * while. */
        usec_t end = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;
        for (unsigned i = 0; i < 300 || (removed <= 100 && now_usec(CLOCK_MONOTONIC) < end); i++) {
                SafeRmReport rep = {};
                struct stat st;
                int r;

                /* Let the attacker rebuild its tree first, so that most
                 * rounds race a live tree: wait for it to appear, for at
                 * most 50 ms (it may never come back: with symlinks at both
                 * names, the attacker's mkdirat()s go nowhere until this
                 * round clears them). A bound in time: sched_yield()
                 * returns at once when nothing else waits for this CPU. */
                for (usec_t wait_end = now_usec(CLOCK_MONOTONIC) + 50 * USEC_PER_MSEC;
                     lstat(pf("%s/t/a/sub", root), &st) < 0 && now_usec(CLOCK_MONOTONIC) < wait_end;)
                        sched_yield();
                r = safe_rm_rf_at(jd, "root/t/a", 0, NULL, &rep);
                removed += rep.n_removed;
                cr_assert(r >= 0 || r == -ESTALE || r == -ENOTEMPTY || r == -ELOOP || r == -ENOTDIR || r == -ENOENT,
                          "round %u (%s): %d (%s): %s", i, *fallback ? "walk" : "openat2", r, strerror(-r),
                          strna(safe_rm_report_format(&rep, NULL)));
                safe_rm_report_done(&rep);
                r = safe_rm_rf_at(jd, "root/t", SAFE_RM_CONTENTS_ONLY, NULL, &rep);
                cr_assert(r >= 0 || r == -ESTALE || r == -ENOTEMPTY || r == -ENOTDIR || r == -ENOENT,
                          "round %u (%s): %d (%s): %s", i, *fallback ? "walk" : "openat2", r, strerror(-r),
                          strna(safe_rm_report_format(&rep, NULL)));
                safe_rm_report_done(&rep);
        }
        stop_attacker(pid);
        cr_log_info("race during removal: %" PRIu64 " entries removed while the attacker swapped", removed);
        cr_expect_gt(removed, 100, "the attacker's tree was hardly ever there: the race was not exercised");
        race_aftermath();
}

/* The top of a removal moved into the very directory that is about to be
 * moved up to it (a tree deeper than the depth window): the kernel refuses
 * to move a directory into itself (EINVAL), which is the tree changing
 * under us, and is reported as such (ESTALE), never as another error. */
_noreturn_ static void move_top_into_deep_forever(void *arg) {
        int dfd = attacker_make_t();

        for (unsigned n = 0;; n++) {
                /* a/d1/d2/d3, then d1 out beside a, a into d2, and back */
                (void) mkdirat(dfd, "a", 0755);
                (void) mkdirat(dfd, "a/d1", 0755);
                (void) mkdirat(dfd, "a/d1/d2", 0755);
                (void) mkdirat(dfd, "a/d1/d2/d3", 0755);
                if (n == 0)
                        child_ready();
                (void) renameat(dfd, "a/d1", dfd, "x");
                (void) renameat(dfd, "a", dfd, "x/d2/a");
                (void) renameat(dfd, "x/d2/a", dfd, "a");
                (void) renameat(dfd, "x", dfd, "a/d1");
        }
}

BOTH_MODES(attack, top_moved_into_hoisted_dir) {
        const SafeRmLimits lim = { .max_depth = 2 };
        const char *root = R;
        unsigned stale = 0, rounds = 0;
        pid_t pid;

        set_mode(*fallback);
        pid = start_attacker(move_top_into_deep_forever, pf("%s/t", root));
        /* 2 s of rounds, and on (60 s at most) until the race was hit */
        usec_t start = now_usec(CLOCK_MONOTONIC);
        for (usec_t t = start; t < start + 2 * USEC_PER_SEC || (stale == 0 && t < start + 60 * USEC_PER_SEC);
             t = now_usec(CLOCK_MONOTONIC), rounds++) {
                SafeRmReport rep = {};
                int r = safe_rm_rf_at(jd, "root/t/a", 0, &lim, &rep);

                cr_assert(r >= 0 || r == -ESTALE || r == -ENOTEMPTY || r == -ENOTDIR || r == -ENOENT || r == -ELOOP,
                          "round %u (%s): %d (%s): %s", rounds, *fallback ? "walk" : "openat2", r, strerror(-r),
                          strna(safe_rm_report_format(&rep, NULL)));
                for (size_t i = 0; i < rep.n_refused; i++)
                        if (rep.refused[i].error == -ESTALE &&
                            strstr(rep.refused[i].reason, "changed during removal: cannot move a too deep directory up"))
                                stale++;
                safe_rm_report_done(&rep);
        }
        stop_attacker(pid);
        cr_log_info("top moved into the hoisted directory: %u of %u rounds", stale, rounds);
        cr_expect_gt(stale, 0, "the top was never inside the hoisted directory: the race was not exercised");
        race_aftermath();
}

/* ---- creating: device nodes, links, copies, files ----------------------------------- */

BOTH_MODES(create, device_nodes) {
        const char *root = R;
        int nullfd = open_path("/dev/null", O_PATH), kfd = open_path(pf("%s/images/vmlinux", T), O_PATH);
        int loopfd;
        struct stat st, dev;

        set_mode(*fallback);
        cr_assert_eq(safe_mkdir_at(jd, "root/dev", 0700, VM_UID, VM_UID, 0, NULL), 1);
        cr_expect_eq(safe_mknod_at(jd, "root/dev/null", nullfd, 0600, VM_UID, VM_UID), 1);
        cr_assert_eq(lstat(pf("%s/dev/null", root), &st), 0);
        cr_assert_eq(fstat(nullfd, &dev), 0);
        cr_expect(S_ISCHR(st.st_mode));
        cr_expect_eq(st.st_rdev, dev.st_rdev);
        cr_expect_eq(st.st_uid, VM_UID);
        cr_expect_eq(st.st_gid, VM_UID);
        cr_expect_eq(st.st_mode & 07777, 0600);
        /* exactly this node again: accepted; anything else there: EEXIST */
        cr_expect_eq(safe_mknod_at(jd, "root/dev/null", nullfd, 0600, VM_UID, VM_UID), 0);
        cr_expect_eq(safe_mknod_at(jd, "root/dev/null", nullfd, 0660, VM_UID, VM_UID), -EEXIST);
        cr_expect_eq(safe_mknod_at(jd, "root/dev/null", nullfd, 0600, 0, 0), -EEXIST);
        cr_expect_eq(safe_mknod_at(jd, "root/dev/file", kfd, 0600, VM_UID, VM_UID), -ENODEV);

        /* A block device, from the kernel's own numbers. */
        loopfd = open("/dev/loop0", O_PATH | O_CLOEXEC);
        if (loopfd >= 0) {
                cr_expect_eq(safe_mknod_at(jd, "root/drive-root", loopfd, 0600, VM_UID, VM_UID), 1);
                cr_assert_eq(fstat(loopfd, &dev), 0);
                cr_assert_eq(lstat(pf("%s/drive-root", root), &st), 0);
                cr_expect(S_ISBLK(st.st_mode));
                cr_expect_eq(st.st_rdev, dev.st_rdev);
                cr_expect_eq(major(st.st_rdev), major(dev.st_rdev));
                cr_expect_eq(st.st_uid, VM_UID);
                close(loopfd);
        } else
                cr_log_warn("no /dev/loop0: block node case not exercised");

        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        check_victims();
        close(nullfd);
        close(kfd);
}

BOTH_MODES(create, hardlinks_and_exdev) {
        const char *root = R;
        _cleanup_free_ char *err = NULL;
        int kfd = open_path(pf("%s/images/vmlinux", T), O_PATH), ofd = -1;
        struct stat st, k;

        set_mode(*fallback);
        cr_expect_eq(safe_link_at(kfd, jd, "root/vmlinux"), 0);
        cr_assert_eq(lstat(pf("%s/vmlinux", root), &st), 0);
        cr_assert_eq(fstat(kfd, &k), 0);
        cr_expect_eq(st.st_ino, k.st_ino);
        cr_expect_eq(k.st_nlink, 2);
        /* the template is neither chowned nor chmodded (check_victims) */
        cr_expect_eq(safe_link_at(kfd, jd, "root/vmlinux"), -EEXIST);

        /* Another filesystem: EXDEV, for the caller to copy instead. */
        mkdir_owned(pf("%s/other", T), 0755, 0);
        priv_mount_tmpfs(pf("%s/other", T));
        cr_assert_eq(safe_root_open(pf("%s/other", T), 0, 0, &ofd, &err), 0, "%s", err);
        cr_expect_eq(safe_link_at(kfd, ofd, "vmlinux"), -EXDEV);
        cr_expect_eq(safe_copy_file_at(kfd, ofd, "vmlinux", 0644, 0, 0, 0, NULL, NULL), 0);

        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        check_victims();
        close(kfd);
        close(ofd);
}

static void make_sparse(const char *p, off_t size) {
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        char buf[4096];

        cr_assert_geq(fd, 0);
        memset(buf, 'A', sizeof buf);
        cr_assert_eq(pwrite(fd, buf, sizeof buf, 0), (ssize_t) sizeof buf);
        memset(buf, 'B', sizeof buf);
        cr_assert_eq(pwrite(fd, buf, sizeof buf, size / 2), (ssize_t) sizeof buf);
        cr_assert_eq(ftruncate(fd, size), 0);
        close(fd);
}

static void assert_same_content(int a, int b, off_t size) {
        static char x[1 << 16], y[1 << 16];

        for (off_t off = 0; off < size; off += sizeof x) {
                ssize_t n = pread(a, x, sizeof x, off), m = pread(b, y, sizeof y, off);
                cr_assert_eq(n, m);
                cr_assert(memcmp(x, y, (size_t) n) == 0, "content differs at %lld", (long long) off);
        }
}

BOTH_MODES(create, copies) {
        const off_t size = 64 << 20;
        _cleanup_free_ char *err = NULL, *listing = NULL;
        SafeCopyMethod m = _SAFE_COPY_METHOD_MAX;
        int state = -1, src, dst = -1, small = -1, big;
        struct stat st, sst;

        set_mode(*fallback);
        make_sparse(pf("%s/images/disk.img", T), size);
        free(images_before);
        images_before = snapshot_tree(pf("%s/images", T));
        src = open_path(pf("%s/images/disk.img", T), O_PATH);
        cr_assert_eq(safe_root_open(pf("%s/state", T), SAFE_ROOT_CREATE, 0700, &state, &err), 0, "%s", err);
        cr_assert_eq(safe_mkdir_at(state, "vm1/drives", 0700, 0, 0, SAFE_MKDIR_PARENTS, NULL), 1);

        cr_assert_eq(safe_copy_file_at(src, state, "vm1/drives/root", 0600, VM_UID, VM_UID, 0, &m, &dst), 0);
        cr_log_info("copy method: %s", safe_copy_method_to_string(m));
        /* tmpfs has no reflinks but reports holes */
        cr_expect(m == SAFE_COPY_SPARSE || m == SAFE_COPY_REFLINK);
        cr_assert_eq(fstat(dst, &st), 0);
        cr_assert_eq(fstat(src, &sst), 0);
        cr_expect_eq(st.st_size, size);
        cr_expect_lt(st.st_blocks * 512, 1 << 20, "holes were filled: %lld blocks", (long long) st.st_blocks);
        cr_expect_eq(st.st_uid, VM_UID);
        cr_expect_eq(st.st_mode & 07777, 0600);
        cr_expect_eq(st.st_nlink, 1);
        {
                int rs = open_path(pf("%s/images/disk.img", T), O_RDONLY);
                assert_same_content(rs, dst, size);
                close(rs);
        }
        close(dst);
        /* exclusive */
        cr_expect_eq(safe_copy_file_at(src, state, "vm1/drives/root", 0600, VM_UID, VM_UID, 0, NULL, NULL), -EEXIST);
        cr_expect_eq(safe_copy_file_at(src, state, "vm1/drives/data", 0600, VM_UID, VM_UID, SAFE_COPY_NO_REFLINK | SAFE_COPY_SYNC,
                                       &m, NULL), 0);
        cr_expect_eq(m, SAFE_COPY_SPARSE);
        /* A source without holes is copied byte for byte: a full copy,
         * never reported as sparse (issue 12.8). */
        {
                char block[4096];
                int full = open(pf("%s/full-src.img", T), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644), fsrc;
                cr_assert_geq(full, 0);
                memset(block, 'x', sizeof block);
                for (int i = 0; i < 64; i++)
                        cr_assert_eq(write(full, block, sizeof block), (ssize_t) sizeof block);
                close(full);
                fsrc = open_path(pf("%s/full-src.img", T), O_PATH);
                cr_expect_eq(safe_copy_file_at(fsrc, state, "vm1/drives/full", 0600, VM_UID, VM_UID,
                                               SAFE_COPY_NO_REFLINK, &m, NULL), 0);
                cr_expect_eq(m, SAFE_COPY_FULL, "a copy without holes reported as %s", safe_copy_method_to_string(m));
                close(fsrc);
                cr_assert_eq(unlink(pf("%s/full-src.img", T)), 0);
        }

        /* Out of space: -ENOSPC, and nothing left behind under any name. */
        mkdir_owned(pf("%s/small", T), 0755, 0);
        cr_assert_eq(mount("microvm-small", pf("%s/small", T), "tmpfs", 0, "mode=0755,size=1m"), 0);
        cr_assert_eq(safe_root_open(pf("%s/small", T), 0, 0, &small, &err), 0, "%s", err);
        big = open(pf("%s/images/big.img", T), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        cr_assert_geq(big, 0);
        for (unsigned i = 0; i < 4 * 256; i++) {
                char buf[4096];
                memset(buf, (int) i, sizeof buf);
                cr_assert_eq(write(big, buf, sizeof buf), (ssize_t) sizeof buf);
        }
        cr_expect_eq(safe_copy_file_at(big, small, "copy", 0600, VM_UID, VM_UID, 0, NULL, NULL), -ENOSPC);
        listing = snapshot_tree(pf("%s/small", T));
        cr_expect_eq(strchr(listing, '\n') - listing + 1, (long) strlen(listing), "left behind:\n%s", listing);

        close(big);
        unlink(pf("%s/images/big.img", T));
        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        check_victims();
        close(src);
        close(state);
        close(small);
}

BOTH_MODES(create, files_dirs_modes) {
        const char *root = R;
        _cleanup_free_ char *data = NULL, *listing = NULL;
        int fd = -1, afd;
        struct stat st;
        size_t size;

        set_mode(*fallback);
        umask(077);
        /* mkdir: exact mode and owner whatever the umask */
        cr_expect_eq(safe_mkdir_at(jd, "root/run", 0755, VM_UID, VM_UID, 0, &fd), 1);
        cr_assert_eq(fstat(fd, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0755);
        cr_expect_eq(st.st_uid, VM_UID);
        close(fd);
        cr_expect_eq(safe_mkdir_at(jd, "root/run", 0755, VM_UID, VM_UID, 0, NULL), -EEXIST);
        cr_expect_eq(safe_mkdir_at(jd, "root/run", 0755, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), 0);
        cr_expect_eq(safe_mkdir_at(jd, "root/run", 0755, 0, 0, SAFE_MKDIR_EXIST_OK, NULL), -EPERM);
        cr_expect_eq(safe_mkdir_at(jd, "root/a/b/c", 0700, VM_UID, VM_UID, SAFE_MKDIR_PARENTS, NULL), 1);
        cr_expect_eq(safe_mkdir_at(jd, "root/a/b/c", 0700, VM_UID, VM_UID, SAFE_MKDIR_PARENTS | SAFE_MKDIR_EXIST_OK, NULL), 0);
        cr_assert_eq(lstat(pf("%s/a/b", root), &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0700);
        /* a group-writable existing dir is more open than wanted */
        cr_assert_eq(chmod(pf("%s/a/b/c", root), 0770), 0);
        cr_expect_eq(safe_mkdir_at(jd, "root/a/b/c", 0700, VM_UID, VM_UID, SAFE_MKDIR_EXIST_OK, NULL), -EPERM);

        /* files: exclusive, exact owner and mode, atomic replace */
        cr_expect_eq(safe_create_file_at(jd, "root/new", 0640, VM_UID, VM_UID, &fd), 0);
        cr_assert_eq(fstat(fd, &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0640);
        cr_expect_eq(st.st_uid, VM_UID);
        close(fd);
        cr_expect_eq(safe_create_file_at(jd, "root/new", 0640, VM_UID, VM_UID, NULL), -EEXIST);
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{\"a\":1}", 7, 0644, VM_UID, VM_UID, 0), 0);
        cr_expect_eq(safe_write_file_at(jd, "root/vm-config.json", "{}", 2, 0600, 0, 0, SAFE_WRITE_REPLACE | SAFE_WRITE_SYNC), 0);
        /* both readers: the checked one and the one for root's own trees */
        int (*const readers[])(int, const char *, size_t, char **, size_t *) = { safe_read_file_at,
                                                                                  safe_read_root_file_at };
        for (size_t i = 0; i < ELEMENTSOF(readers); i++) {
                cr_expect_eq(readers[i](jd, "root/vm-config.json", 100, &data, &size), 0);
                cr_expect_eq(size, 2);
                cr_expect_str_eq(data, "{}");
                free(data);
                data = NULL;
                cr_expect_eq(readers[i](jd, "root/vm-config.json", 1, &data, &size), -EFBIG);
        }
        /* a file root does not own is no file of root's tree */
        cr_expect_eq(safe_read_root_file_at(jd, "root/new", 100, &data, &size), -EPERM);
        cr_expect_eq(safe_read_root_file_at(jd, "root", 100, &data, &size), -EISDIR);
        cr_assert_eq(lstat(pf("%s/vm-config.json", root), &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0600);
        cr_expect_eq(st.st_uid, 0);
        cr_expect_eq(safe_mkfifo_at(jd, "root/run/console.in", 0600, 0, 0), 0);
        cr_assert_eq(lstat(pf("%s/run/console.in", root), &st), 0);
        cr_expect(S_ISFIFO(st.st_mode));

        /* no temporary files left behind (named ones in fallback mode) */
        listing = snapshot_tree(root);
        cr_expect_null(strstr(listing, SAFE_TEMP_PREFIX), "%s", listing);

        /* chown/chmod only where it is safe */
        write_file(pf("%s/admins", root), "x", 0644, ADMIN_UID);
        cr_assert_eq(safe_open_at(jd, "root/admins", O_PATH, S_IFREG, &afd), 0);
        cr_expect_eq(safe_fd_verify(afd, S_IFREG, ADMIN_UID), 0);
        cr_expect_eq(safe_fd_verify(afd, S_IFREG, VM_UID), -EPERM);
        cr_expect_eq(safe_fd_verify(afd, S_IFDIR, UID_INVALID), -ENOTDIR);
        cr_expect_eq(safe_fd_chown(afd, VM_UID, VM_UID), -EPERM);
        cr_expect_eq(safe_fd_chmod(afd, 04755), -EINVAL);
        cr_expect_eq(safe_fd_chmod(afd, 0600), 0); /* O_PATH fd: through /proc/self/fd */
        cr_assert_eq(lstat(pf("%s/admins", root), &st), 0);
        cr_expect_eq(st.st_mode & 07777, 0600);
        close(afd);
        cr_assert_eq(safe_open_at(jd, "root/new", O_PATH, S_IFREG, &afd), 0);
        cr_expect_eq(safe_fd_chown(afd, 0, 0), -EPERM); /* the VM's file is not given to root */
        close(afd);
        cr_assert_eq(safe_open_at(jd, "root/vm-config.json", O_PATH, S_IFREG, &afd), 0);
        cr_expect_eq(safe_fd_chown(afd, VM_UID, VM_UID), 0);
        close(afd);

        cr_expect_eq(safe_rm_rf_at(base_fd, JAIL, 0, NULL, NULL), 1);
        check_victims();
}

/* ---- temporaries a killed writer left ------------------------------------------------- */

BOTH_MODES(create, remove_temporaries) {
        _cleanup_free_ char *err = NULL;
        int state = -1;

        set_mode(*fallback);
        cr_assert_eq(safe_root_open(pf("%s/state", T), SAFE_ROOT_CREATE, 0700, &state, &err), 0, "%s", err);
        cr_assert_eq(safe_mkdir_at(state, "vm1/drives", 0700, 0, 0, SAFE_MKDIR_PARENTS, NULL), 1);
        /* What a SIGKILL between create and publish leaves, and neighbours
         * that must stay: the real names, and things merely named like a
         * temporary that are not files. */
        write_file(pf("%s/state/vm1/uid", T), "1000123\n", 0644, 0);
        write_file(pf("%s/state/vm1/.#uid.0123456789abcdef", T), "10", 0644, 0);
        write_file(pf("%s/state/vm1/drives/root.img", T), "disk", 0600, VM_UID);
        write_file(pf("%s/state/vm1/drives/.#root.img.fedcba9876543210", T), "di", 0600, VM_UID);
        cr_assert_eq(symlink(pf("%s/victim/secret", T), pf("%s/state/vm1/drives/.#link", T)), 0);
        cr_assert_eq(mkdir(pf("%s/state/vm1/drives/.#dir", T), 0700), 0);
        cr_assert_eq(mkfifo(pf("%s/state/vm1/drives/.#fifo", T), 0600), 0);

        cr_expect_eq(safe_remove_temporaries_at(state, "vm1"), 1);
        cr_expect_eq(safe_remove_temporaries_at(state, "vm1/drives"), 1);
        cr_expect_eq(safe_remove_temporaries_at(state, "vm1/drives"), 0);
        cr_expect_eq(safe_remove_temporaries_at(state, "vm1/missing"), 0);
        cr_expect_not(exists(pf("%s/state/vm1/.#uid.0123456789abcdef", T)));
        cr_expect_not(exists(pf("%s/state/vm1/drives/.#root.img.fedcba9876543210", T)));
        cr_expect(exists(pf("%s/state/vm1/uid", T)));
        cr_expect(exists(pf("%s/state/vm1/drives/root.img", T)));
        cr_expect(exists(pf("%s/state/vm1/drives/.#link", T)));
        cr_expect(exists(pf("%s/state/vm1/drives/.#dir", T)));
        cr_expect(exists(pf("%s/state/vm1/drives/.#fifo", T)));
        /* NULL: the root fd itself; a symlinked path is refused */
        write_file(pf("%s/state/.#x.0000000000000000", T), "", 0600, 0);
        cr_expect_eq(safe_remove_temporaries_at(state, NULL), 1);
        cr_assert_eq(symlink(pf("%s/state/vm1/drives", T), pf("%s/state/lnk", T)), 0);
        cr_expect_eq(safe_remove_temporaries_at(state, "lnk"), -ELOOP);
        check_victims();
        close(state);
}

PRIV_TEST_MAIN
