/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mount_sandbox_read_only() for real (root, a private mount namespace with
 * a scratch tmpfs): in a child that made it, nothing outside the writable
 * trees can be written (files, /proc/sys, the cgroup tree), the writable
 * trees and devices can, sockets on read-only mounts still connect, hidden
 * directories are empty, and the parent's view is untouched. */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cgroup.h"
#include "mount-sandbox.h"
#include "priv-util.h"
#include "util.h"

static char T[PATH_MAX];

static const char *p(const char *rel) {
        return pf("%s/%s", T, rel);
}

static void setup(void) {
        snprintf(T, sizeof T, "%s", priv_sandbox());
        for (const char *const *d = (const char *const[]) { "rw", "rw/sub", "ro", "hide", "hide2", "hide2/rw2", NULL };
             *d; d++)
                cr_assert_eq(mkdir(p(*d), 0755), 0, "mkdir %s: %m", *d);
        write_file(p("ro/file"), "old\n", 0644, 0);
        write_file(p("hide/secret"), "secret\n", 0600, 0);
        write_file(p("hide2/rw2/file"), "x\n", 0644, 0);
}

TestSuite(mount_sandbox, .init = setup);

/* In the child: the first check that fails names itself and exits 1. */
static void check(bool ok, const char *fmt, ...) _printf_(2, 3);
static void check(bool ok, const char *fmt, ...) {
        va_list ap;

        if (ok)
                return;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        _exit(1);
}

/* -errno of opening path for writing (creating it when create), 0 when it
 * opened. */
static int open_write(const char *path, bool create) {
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | (create ? O_CREAT | O_EXCL : 0), 0644);
        if (fd < 0)
                return -errno;
        close(fd);
        return 0;
}

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        size_t n = 0;

        if (!d)
                return SIZE_MAX;
        for (struct dirent *de; (de = readdir(d));)
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static int listen_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        cr_assert_geq(fd, 0);
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        cr_assert_eq(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0, "bind %s: %m", path);
        cr_assert_eq(listen(fd, 4), 0);
        return fd;
}

static int connect_unix(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0)
                return -errno;
        return 0;
}

static size_t mount_count(void) {
        _cleanup_free_ char *text = read_file("/proc/self/mountinfo");
        size_t n = 0;

        for (const char *c = text; *c; c++)
                n += *c == '\n';
        return n;
}

Test(mount_sandbox, read_only_but_the_writable_trees) {
        _cleanup_free_ char *cg_mount = NULL;
        _cleanup_close_ int listener = listen_unix(p("ro/sock"));
        size_t mounts = mount_count();
        bool have_cgroup2 = cgroup2_find_mount(&cg_mount) >= 0;

        cr_assert_geq(listener, 0); /* open until the child connected */
        pid_t pid = fork();

        cr_assert_geq(pid, 0);
        if (pid == 0) {
                const char *writable[] = { p("rw"), p("hide2/rw2"), p("missing"), NULL };
                const char *hidden[] = { p("hide"), p("hide2"), p("nonexistent"), NULL };
                _cleanup_free_ char *error = NULL, *procs = NULL;
                int r = mount_sandbox_read_only(writable, hidden, &error);

                check(r == 0, "mount_sandbox_read_only: %s", error ?: "(none)");
                /* Outside the writable trees: nothing. */
                r = open_write(p("ro/new"), true);
                check(r == -EROFS, "ro/new: %d", r);
                check(open_write(p("ro/file"), false) == -EROFS, "ro/file opened for writing");
                check(mkdir(p("ro/dir"), 0755) < 0 && errno == EROFS, "mkdir ro/dir: %m");
                r = open_write("/proc/sys/kernel/hostname", false);
                check(r == -EROFS, "/proc/sys/kernel/hostname for writing: %d", r);
                if (have_cgroup2 && asprintf(&procs, "%s/cgroup.procs", cg_mount) >= 0)
                        check(open_write(procs, false) == -EROFS, "%s opened for writing", procs);
                /* The writable trees, and below them. */
                r = open_write(p("rw/new"), true);
                check(r == 0, "rw/new: %d", r);
                check(open_write(p("rw/sub/new"), true) == 0, "rw/sub/new");
                check(open_write(p("hide2/rw2/new"), true) == 0, "hide2/rw2/new");
                /* Hidden: empty and read-only; not the one that holds a
                 * writable tree. */
                check(count_entries(p("hide")) == 0, "hide is not empty");
                check(open_write(p("hide/new"), true) == -EROFS, "created hide/new");
                check(count_entries(p("hide2")) == 1, "hide2 was hidden");
                /* Devices and sockets are not files on a mount. */
                check(open_write("/dev/null", false) == 0, "/dev/null not writable");
                r = connect_unix(p("ro/sock"));
                check(r == 0, "connect ro/sock: %d", r);
                _exit(0);
        }
        cr_assert_eq(wait_exit(pid), 0, "the sandboxed child failed a check (its stderr says which)");
        /* Written through the writable trees: the real files. */
        cr_assert_eq(access(p("rw/new"), F_OK), 0);
        cr_assert_eq(access(p("hide2/rw2/new"), F_OK), 0);
        cr_assert_eq(access(p("ro/new"), F_OK), -1);
        /* The parent's view: no mount more or less, hide still there. */
        cr_assert_eq(mount_count(), mounts);
        cr_assert_eq(count_entries(p("hide")), 1);
}

Test(mount_sandbox, refuses_relative_paths) {
        pid_t pid = fork();

        cr_assert_geq(pid, 0);
        if (pid == 0) {
                const char *writable[] = { "run/microvm", NULL };
                _cleanup_free_ char *error = NULL;
                int r = mount_sandbox_read_only(writable, NULL, &error);
                check(r == -EINVAL, "relative path: %d", r);
                check(error && strstr(error, "run/microvm"), "the error does not name the path: %s", error ?: "(none)");
                _exit(0);
        }
        cr_assert_eq(wait_exit(pid), 0);
}

PRIV_TEST_MAIN
