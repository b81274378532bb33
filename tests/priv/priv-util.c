/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/options.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "priv-util.h"
#include "sha256.h"

bool is_root(void) {
        return geteuid() == 0;
}

static int try_sandbox(void) {
        if (unshare(CLONE_NEWNS) < 0)
                return -errno;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return -errno;
        if (mount("microvm-test", "/mnt", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0 &&
            mount("microvm-test", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
                return -errno;
        return 0;
}

bool priv_test_hooks_built(void) {
        return ENABLE_TEST_HOOKS;
}

const char *priv_skip_reason(void) {
        pid_t pid;
        int status;

        if (!is_root())
                return "needs root (privileged filesystem tests: mount namespaces, tmpfs, chown, mknod)";
        /* Probe in a child, so this process keeps the host namespace. */
        pid = fork();
        if (pid < 0)
                return "fork() failed";
        if (pid == 0)
                _exit(try_sandbox() < 0 ? 1 : 0);
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                return "cannot make a private mount namespace with a tmpfs (needs CAP_SYS_ADMIN)";
        return NULL;
}

int criterion_run_or_skip(int argc, char *argv[], const char *why) {
        struct criterion_test_set *tests;
        bool tap = false;
        int result = 0;

        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--tap") || startswith(argv[i], "--tap="))
                        tap = true;

        if (why) {
                fprintf(stderr, "SKIP: %s\n", why);
                if (tap) {
                        printf("TAP version 13\n1..0 # SKIP %s\n", why);
                        return 0;
                }
                return 77;
        }

        tests = criterion_initialize();
        /* One test at a time (override with -jN): the race tests want both
         * CPUs for attacker and victim, and with overlapping long tests
         * LeakSanitizer (CI) reported 48 bytes lost inside libcriterion's
         * parallel runner (criterion 2.4.1), never with -j1. */
        criterion_options.jobs = 1;
        if (criterion_handle_args(argc, argv, true))
                result = !criterion_run_all_tests(tests);
        criterion_finalize(tests);
        return result;
}

int priv_criterion_main(int argc, char *argv[]) {
        return criterion_run_or_skip(argc, argv, priv_skip_reason());
}

const char *priv_sandbox(void) {
        static const char *const candidates[] = { "/mnt", "/srv", "/opt", "/media", "/tmp" };
        struct stat st;

        cr_assert_eq(unshare(CLONE_NEWNS), 0, "unshare(CLONE_NEWNS): %m");
        cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "make / private: %m");
        for (size_t i = 0; i < ELEMENTSOF(candidates); i++) {
                if (lstat(candidates[i], &st) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (mount("microvm-test", candidates[i], "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=512m") < 0)
                        continue;
                return candidates[i];
        }
        cr_assert_fail("no directory below / to mount a scratch tmpfs on");
        return NULL;
}

void priv_mount_tmpfs(const char *path) {
        cr_assert_eq(mount("microvm-test2", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m"), 0,
                     "mount tmpfs on %s: %m", path);
}

/* The write end of run_as_until_ready()'s pipe, in its child. */
static int ready_fd = -1;

pid_t run_as(uid_t uid, void (*fn)(void *arg), void *arg) {
        pid_t pid = fork();

        cr_assert_geq(pid, 0, "fork: %m");
        if (pid == 0) {
                if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
                        _exit(99);
                /* Die with the test (a failed assertion ends it early):
                 * set after setresuid(), which clears it. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() == 1)
                        _exit(98);
                fn(arg);
                _exit(0);
        }
        return pid;
}

int wait_exit(pid_t pid) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -1;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status))
                return 128 + WTERMSIG(status);
        return -1;
}

void run_as_wait(uid_t uid, void (*fn)(void *arg), void *arg) {
        int r = wait_exit(run_as(uid, fn, arg));
        cr_assert_eq(r, 0, "helper running as uid %u exited with %d", (unsigned) uid, r);
}

pid_t run_as_until_ready(uid_t uid, void (*fn)(void *arg), void *arg) {
        struct pollfd pfd = { .events = POLLIN };
        int p[2], n;
        char c;
        pid_t pid;

        cr_assert_eq(pipe2(p, O_CLOEXEC), 0, "pipe2: %m");
        ready_fd = p[1];
        pid = run_as(uid, fn, arg);
        ready_fd = -1;
        close(p[1]);
        pfd.fd = p[0];
        do
                n = poll(&pfd, 1, 60 * 1000);
        while (n < 0 && errno == EINTR);
        cr_assert_eq(n, 1, "the helper running as uid %u did not get ready in 60 s", (unsigned) uid);
        n = (int) read(p[0], &c, 1);
        close(p[0]);
        if (n != 1) {
                /* EOF: it exited (or was killed) before it was ready */
                int r = wait_exit(pid);
                cr_assert_fail("the helper running as uid %u exited with %d before it was ready", (unsigned) uid, r);
        }
        return pid;
}

void child_ready(void) {
        if (ready_fd < 0)
                return;
        if (write(ready_fd, "r", 1) != 1)
                _exit(97);
        close(ready_fd);
        ready_fd = -1;
}

/* nftw() has no user data pointer: one snapshot at a time. */
static char **snap_lines;
static size_t snap_n, snap_base_len;

static int snap_visit(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        char extra[256] = "", hex[2 * SHA256_DIGEST_SIZE + 1], *line;
        const char *rel = path + snap_base_len;

        if (S_ISREG(st->st_mode)) {
                uint8_t digest[SHA256_DIGEST_SIZE], buf[4096];
                Sha256 s;
                int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                ssize_t k;

                sha256_init(&s);
                if (fd >= 0) {
                        while ((k = read(fd, buf, sizeof buf)) > 0)
                                sha256_update(&s, buf, (size_t) k);
                        close(fd);
                }
                sha256_final(&s, digest);
                sha256_hex(digest, hex);
                snprintf(extra, sizeof extra, "sha256=%s", hex);
        } else if (S_ISLNK(st->st_mode)) {
                char target[PATH_MAX];
                ssize_t k = readlink(path, target, sizeof target - 1);
                target[k < 0 ? 0 : k] = '\0';
                snprintf(extra, sizeof extra, "-> %s", target);
        } else if (S_ISBLK(st->st_mode) || S_ISCHR(st->st_mode))
                snprintf(extra, sizeof extra, "rdev=%lx", (unsigned long) st->st_rdev);

        cr_assert(asprintf(&line, "%s type=%o mode=%04o owner=%u:%u size=%lld %s", *rel ? rel : ".",
                           (unsigned) (st->st_mode & S_IFMT), (unsigned) (st->st_mode & 07777), (unsigned) st->st_uid,
                           (unsigned) st->st_gid, S_ISDIR(st->st_mode) ? 0LL : (long long) st->st_size, extra) >= 0);
        snap_lines = realloc(snap_lines, (snap_n + 1) * sizeof(char *));
        cr_assert_not_null(snap_lines);
        snap_lines[snap_n++] = line;
        return 0;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

char *snapshot_tree(const char *dir) {
        char *out = NULL;
        size_t size = 0;
        FILE *f;

        snap_lines = NULL;
        snap_n = 0;
        snap_base_len = strlen(dir);
        cr_assert_eq(nftw(dir, snap_visit, 64, FTW_PHYS | FTW_MOUNT), 0, "snapshot of %s: %m", dir);
        qsort(snap_lines, snap_n, sizeof(char *), cmp_str);
        f = open_memstream(&out, &size);
        cr_assert_not_null(f);
        for (size_t i = 0; i < snap_n; i++) {
                fprintf(f, "%s\n", snap_lines[i]);
                free(snap_lines[i]);
        }
        free(snap_lines);
        snap_lines = NULL;
        cr_assert_eq(fclose(f), 0);
        return out;
}

void assert_same_snapshot(const char *before, const char *after, const char *what) {
        const char *a = before, *b = after;

        while (*a && *b) {
                const char *ea = strchrnul(a, '\n'), *eb = strchrnul(b, '\n');
                if (ea - a != eb - b || memcmp(a, b, (size_t) (ea - a)) != 0)
                        cr_assert_fail("%s changed:\n  before: %.*s\n  after:  %.*s", what, (int) (ea - a), a,
                                       (int) (eb - b), b);
                a = *ea ? ea + 1 : ea;
                b = *eb ? eb + 1 : eb;
        }
        cr_assert(!*a && !*b, "%s changed: entries %s:\n%s", what, *a ? "disappeared" : "appeared", *a ? a : b);
}

void write_file(const char *path, const char *content, mode_t mode, uid_t uid) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        size_t l = strlen(content);

        cr_assert_geq(fd, 0, "create %s: %m", path);
        cr_assert_eq(write(fd, content, l), (ssize_t) l);
        cr_assert_eq(fchown(fd, uid, uid), 0);
        cr_assert_eq(fchmod(fd, mode), 0);
        close(fd);
}

char *read_file(const char *path) {
        char *buf = calloc(1, 65536);
        int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        ssize_t k;

        cr_assert_geq(fd, 0, "open %s: %m", path);
        k = read(fd, buf, 65535);
        cr_assert_geq(k, 0);
        close(fd);
        return buf;
}

const char *pf(const char *fmt, ...) {
        static char bufs[16][PATH_MAX];
        static unsigned i;
        char *b = bufs[i++ % ELEMENTSOF(bufs)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(b, PATH_MAX, fmt, ap);
        va_end(ap);
        return b;
}
