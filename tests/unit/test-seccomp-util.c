/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seccomp helper, for real: each case forks a child that installs a
 * filter (no privileges needed: the filter sets no_new_privs) and then
 * does something forbidden; the parent checks how the child ended and what
 * it logged. The criterion worker itself is never filtered. */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/stat.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "log.h"
#include "seccomp-util.h"

typedef struct Outcome {
        int status;             /* from waitpid() */
        char log[4096];         /* the child's stderr */
} Outcome;

/* Runs body(arg) in a child with stderr on a pipe. body returns the exit
 * status to use when it survives. */
static Outcome run(int (*body)(void *), void *arg) {
        Outcome o = {};
        int p[2];
        pid_t pid;
        size_t n = 0;

        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
                dup2(p[1], STDERR_FILENO);
                log_set_program_name("test-seccomp");
                log_set_target(LOG_TARGET_CONSOLE);
                _exit(body(arg));
        }
        close(p[1]);
        for (;;) {
                ssize_t k = read(p[0], o.log + n, sizeof o.log - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
        }
        close(p[0]);
        cr_assert_eq(waitpid(pid, &o.status, 0), pid);
        return o;
}

static void expect_trapped(const Outcome *o, const char *message) {
        cr_assert(WIFEXITED(o->status), "child did not exit (status 0x%x), log: %s", o->status, o->log);
        cr_assert_eq(WEXITSTATUS(o->status), SECCOMP_VIOLATION_EXIT_STATUS,
                     "exit status %d, log: %s", WEXITSTATUS(o->status), o->log);
        cr_assert(strstr(o->log, message), "expected \"%s\" in the log, got: %s", message, o->log);
}

static int exec_true(void *arg) {
        const SeccompViolation *v = arg;
        char *const argv[] = { (char *) "true", NULL };

        if (seccomp_install_denylist(seccomp_deny_tools, *v) < 0)
                return 10;
        execv("/bin/true", argv);
        return errno == EPERM ? 20 : 30;
}

Test(seccomp, deny_exec_trap) {
        SeccompViolation v = SECCOMP_VIOLATION_TRAP;
        Outcome o = run(exec_true, &v);
        expect_trapped(&o, "test-seccomp: Blocked system call execve (");
        cr_assert(strstr(o.log, "not permitted after confinement"));
}

Test(seccomp, deny_exec_kill) {
        SeccompViolation v = SECCOMP_VIOLATION_KILL;
        Outcome o = run(exec_true, &v);
        cr_assert(WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGSYS, "status 0x%x", o.status);
        cr_assert_str_eq(o.log, "", "KILL says nothing itself");
}

Test(seccomp, deny_exec_errno) {
        SeccompViolation v = SECCOMP_VIOLATION_ERRNO;
        Outcome o = run(exec_true, &v);
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 20, "status 0x%x", o.status);
}

static int deny_groups(void *arg) {
        /* Each group denies its calls with EPERM; everything else works.
         * The arguments are such that the calls would fail harmlessly (and
         * differently) even without the filter. */
        if (seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_ERRNO) < 0)
                return 10;
        if (mount("none", "/nonexistent/microvm-test", "tmpfs", 0, NULL) >= 0 || errno != EPERM)
                return 11;
        if (umount2("/nonexistent", 0) >= 0 || errno != EPERM)
                return 12;
        /* (an ASan build lets ptrace through for LeakSanitizer) */
        if (!seccomp_sanitizer_build() && (ptrace(PTRACE_TRACEME, 0, NULL, NULL) >= 0 || errno != EPERM))
                return 13;
        if (syscall(SYS_finit_module, -1, "", 0) >= 0 || errno != EPERM)
                return 14;
        if (syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL) >= 0 || errno != EPERM)
                return 15;
        if (syscall(SYS_bpf, 0, NULL, 0) >= 0 || errno != EPERM)
                return 16;
        if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) >= 0 || errno != EPERM)
                return 17;
        if (syscall(SYS_pivot_root, "/", "/") >= 0 || errno != EPERM)
                return 18;
        if (syscall(SYS_open_by_handle_at, -1, NULL, 0) >= 0 || errno != EPERM)
                return 19;
        /* allowed */
        if (getpid() <= 0 || access("/", F_OK) < 0)
                return 20;
        return 0;
}

Test(seccomp, deny_groups) {
        Outcome o = run(deny_groups, NULL);
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "status 0x%x, log: %s", o.status, o.log);
}

static int deny_sandboxed(void *arg) {
        /* seccomp_deny_sandboxed: the tools' groups, and no new or other
         * namespace (flags and fds that would fail anyway). */
        if (seccomp_install_denylist(seccomp_deny_sandboxed, SECCOMP_VIOLATION_ERRNO) < 0)
                return 10;
        if (syscall(SYS_unshare, 0x1) >= 0 || errno != EPERM)
                return 11;
        if (syscall(SYS_setns, -1, 0) >= 0 || errno != EPERM)
                return 12;
        if (syscall(SYS_mount_setattr, -1, "", 0, NULL, 0) >= 0 || errno != EPERM)
                return 13;
        if (syscall(SYS_open_tree, -1, "", 0) >= 0 || errno != EPERM)
                return 14;
        if (getpid() <= 0 || access("/", F_OK) < 0)
                return 20;
        return 0;
}

Test(seccomp, deny_sandboxed) {
        Outcome o = run(deny_sandboxed, NULL);
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "status 0x%x, log: %s", o.status, o.log);
}

static const SeccompAllow minimal_allow[] = {
        SECCOMP_ALLOW("write"),
        SECCOMP_ALLOW("writev"),
        SECCOMP_ALLOW("getpid"),
        SECCOMP_ALLOW("fstat"),
        SECCOMP_ALLOW("newfstatat"),
        SECCOMP_ALLOW("close"),
        SECCOMP_ALLOW("exit_group"),
        SECCOMP_ALLOW("brk"),
        SECCOMP_ALLOW("mmap"),
        SECCOMP_ALLOW("munmap"),
        SECCOMP_ALLOW_MASKED("openat", 2, O_ACCMODE | O_CREAT, O_RDONLY),
};

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZER_BUILD 1
#else
#define SANITIZER_BUILD 0
#endif

static int allow_then(void *arg) {
        const char *what = arg;
        SeccompAllow allow[ELEMENTSOF(minimal_allow) + 64];
        size_t n = ELEMENTSOF(minimal_allow);

        memcpy(allow, minimal_allow, sizeof minimal_allow);
        /* the ASan runtime's own calls (its _exit() path, for one) */
        if (SANITIZER_BUILD && seccomp_allow_sanitizer_runtime_n <= 64) {
                memcpy(allow + n, seccomp_allow_sanitizer_runtime,
                       sizeof(SeccompAllow) * seccomp_allow_sanitizer_runtime_n);
                n += seccomp_allow_sanitizer_runtime_n;
        }
        if (seccomp_install_allowlist(allow, n, SECCOMP_VIOLATION_TRAP) < 0)
                return 10;
        if (streq(what, "read-only open")) {
                int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                return fd >= 0 ? 0 : 11;
        }
        if (streq(what, "write open"))
                (void) open("/dev/null", O_WRONLY | O_CLOEXEC);
        else if (streq(what, "getsid"))
                (void) syscall(SYS_getsid, 0);
        else if (streq(what, "socket"))
                (void) syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
#if defined(__x86_64__)
        else if (streq(what, "i386")) {
                /* getpid through the i386 entry point: foreign ABI */
                long r;
                __asm__ volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
        }
#endif
        return 12;
}

Test(seccomp, allow_conditional) {
        Outcome o = run(allow_then, (void *) "read-only open");
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "status 0x%x, log: %s", o.status, o.log);

        o = run(allow_then, (void *) "write open");
        expect_trapped(&o, "Blocked system call openat (");
}

Test(seccomp, allow_unlisted) {
        Outcome o = run(allow_then, (void *) "socket");
        expect_trapped(&o, "Blocked system call socket (");

        /* not among the names we resolved: reported by number */
        o = run(allow_then, (void *) "getsid");
        expect_trapped(&o, "Blocked system call number ");
}

#if defined(__x86_64__)
Test(seccomp, foreign_arch) {
        Outcome o = run(allow_then, (void *) "i386");
        if (WIFSIGNALED(o.status) && WTERMSIG(o.status) == SIGSEGV)
                cr_skip_test("kernel without IA32 emulation: int 0x80 faults before seccomp sees it");
        expect_trapped(&o, "of foreign architecture 0x40000003");
}
#endif

Test(seccomp, names) {
        /* names become known as filters are built (in a child here) */
        cr_assert_null(seccomp_known_name(-1));
        for (const char *const *n = seccomp_deny_tools; *n; n++)
                cr_assert(strlen(*n) > 0);
}

/* ---- the unit options as filter rules (SeccompRestrict) ---- */

static void *thread_ok(void *arg) {
        return arg;
}

/* 0 if the call failed with err, else a distinct code */
#define EXPECT_FAIL(call, err, code)                                                    \
        do {                                                                            \
                errno = 0;                                                              \
                long _r = (long) (call);                                                \
                if (_r != -1 || errno != (err))                                         \
                        return (code);                                                  \
        } while (0)

static int restricted(void *arg) {
        const char *dir = arg;
        static const char *const none[] = { NULL };
        char path[4096];
        struct stat st;
        int fd;

        if (seccomp_install_denylist_restricted(none, &seccomp_restrict_all, SECCOMP_VIOLATION_TRAP) < 0)
                return 10;
        /* RestrictAddressFamilies=AF_UNIX */
        EXPECT_FAIL(socket(AF_INET, SOCK_STREAM, 0), EAFNOSUPPORT, 11);
        EXPECT_FAIL(socket(AF_NETLINK, SOCK_RAW, 0), EAFNOSUPPORT, 12);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 13;
        close(fd);
        /* RestrictNamespaces=yes; threads and fork() still work */
        EXPECT_FAIL(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM, 14);
        EXPECT_FAIL(syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0), EPERM, 15);
        EXPECT_FAIL(syscall(SYS_clone3, NULL, 0), ENOSYS, 16);
        pthread_t t;
        void *ret = NULL;
        if (pthread_create(&t, NULL, thread_ok, (void *) 7) != 0 || pthread_join(t, &ret) != 0 || ret != (void *) 7)
                return 17;
        pid_t pid = fork();
        if (pid == 0)
                _exit(0);
        int status;
        if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
                return 18;
        /* LockPersonality=yes: only the current one (as systemd's, not
         * even the 0xffffffff query) */
        EXPECT_FAIL(personality(PER_LINUX32), EPERM, 19);
        if (personality(PER_LINUX) != PER_LINUX)
                return 20;
        /* MemoryDenyWriteExecute=yes */
        void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED || errno != EPERM)
                return 21;
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
                return 22;
        EXPECT_FAIL(mprotect(m, 4096, PROT_READ | PROT_EXEC), EPERM, 23);
        if (mprotect(m, 4096, PROT_READ) < 0)
                return 24;
        /* RestrictRealtime=yes (all of it: SCHED_BATCH needs no privilege) */
        struct sched_param sp = {};
        EXPECT_FAIL(sched_setscheduler(0, SCHED_BATCH, &sp), EPERM, 25);
        /* RestrictSUIDSGID=yes */
        snprintf(path, sizeof path, "%s/plain", dir);
        fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0755);
        if (fd < 0)
                return 26;
        close(fd);
        EXPECT_FAIL(chmod(path, 04755), EPERM, 27);
        EXPECT_FAIL(chmod(path, 02755), EPERM, 28);
        EXPECT_FAIL(fchmodat(AT_FDCWD, path, 04755, 0), EPERM, 29);
        if (chmod(path, 0700) < 0)
                return 30;
        EXPECT_FAIL(syscall(452 /* fchmodat2 */, AT_FDCWD, path, 04755, 0), ENOSYS, 31);
        snprintf(path, sizeof path, "%s/suid", dir);
        EXPECT_FAIL(open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 04755), EPERM, 32);
        EXPECT_FAIL(openat(AT_FDCWD, path, O_CREAT | O_WRONLY | O_CLOEXEC, 02755), EPERM, 33);
        EXPECT_FAIL(openat(AT_FDCWD, dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 04755), EPERM, 34);
        EXPECT_FAIL(creat(path, 04755), EPERM, 35);
        snprintf(path, sizeof path, "%s/sgid-dir", dir);
        EXPECT_FAIL(mkdir(path, 02755), EPERM, 36);
        if (mkdir(path, 0755) < 0 || stat(path, &st) < 0)
                return 37;
        return 0;
}

static char *make_temp_dir(void) {
        char *dir = strdup("/tmp/test-seccomp-XXXXXX");
        cr_assert(dir && mkdtemp(dir));
        return dir;
}

static void remove_temp_dir(char *dir) {
        /* what the cases may have made */
        static const char *const names[] = { "plain", "suid", "a", "b", "sgid-dir" };
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        cr_assert_geq(dfd, 0);
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (unlinkat(dfd, names[i], 0) < 0 && errno == EISDIR)
                        (void) unlinkat(dfd, names[i], AT_REMOVEDIR);
        close(dfd);
        cr_assert_eq(rmdir(dir), 0, "%s: %m", dir);
        free(dir);
}

Test(seccomp, restrictions) {
        char *dir = make_temp_dir();
        Outcome o = run(restricted, dir);
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "status 0x%x (exit %d), log: %s", o.status,
                  WIFEXITED(o.status) ? WEXITSTATUS(o.status) : -1, o.log);
        remove_temp_dir(dir);
}

/* openat2() (mode invisible to seccomp): refused while CAP_FSETID may be
 * had; allowed without it, where the kernel clears S_ISUID of a new file at
 * its first write, so no set-user-ID program can be made through it. */
static long openat2_create(const char *path, mode_t mode) {
        struct open_how how = { .flags = O_CREAT | O_RDWR | O_CLOEXEC, .mode = mode };
        return syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how);
}

static int drop_fsetid(void) {
        struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

        if (syscall(SYS_capget, &head, data) < 0)
                return -1;
        for (size_t i = 0; i < _LINUX_CAPABILITY_U32S_3; i++) {
                uint32_t drop = i == CAP_FSETID / 32 ? 1U << (CAP_FSETID % 32) : 0;
                data[i].effective &= ~drop;
                data[i].permitted &= ~drop;
                data[i].inheritable &= ~drop;
        }
        return (int) syscall(SYS_capset, &head, data);
}

static int openat2_with_fsetid(void *arg) {
        const char *dir = arg;
        static const char *const none[] = { NULL };
        char path[4096];

        if (geteuid() != 0)
                return 77;
        if (seccomp_install_denylist_restricted(none, &seccomp_restrict_all, SECCOMP_VIOLATION_TRAP) < 0)
                return 10;
        snprintf(path, sizeof path, "%s/a", dir);
        EXPECT_FAIL(openat2_create(path, 0644), ENOSYS, 11);
        return 0;
}

static int openat2_without_fsetid(void *arg) {
        const char *dir = arg;
        static const char *const none[] = { NULL };
        char path[4096];
        struct stat st;

        if (drop_fsetid() < 0)
                return 9;
        if (seccomp_install_denylist_restricted(none, &seccomp_restrict_all, SECCOMP_VIOLATION_TRAP) < 0)
                return 10;
        snprintf(path, sizeof path, "%s/b", dir);
        long fd = openat2_create(path, 04755);
        if (fd < 0)
                return 11;
        if (write((int) fd, "#!", 2) != 2 || fstat((int) fd, &st) < 0)
                return 12;
        close((int) fd);
        /* what the filter relies on */
        return st.st_mode & (S_ISUID | S_ISGID) ? 13 : 0;
}

Test(seccomp, restrictions_openat2) {
        char *dir = make_temp_dir();
        Outcome o = run(openat2_with_fsetid, dir);
        cr_assert(WIFEXITED(o.status), "status 0x%x, log: %s", o.status, o.log);
        if (WEXITSTATUS(o.status) != 77)
                cr_assert_eq(WEXITSTATUS(o.status), 0, "with CAP_FSETID: exit %d, log: %s", WEXITSTATUS(o.status), o.log);
        o = run(openat2_without_fsetid, dir);
        cr_assert(WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0, "without CAP_FSETID: status 0x%x (exit %d), log: %s",
                  o.status, WIFEXITED(o.status) ? WEXITSTATUS(o.status) : -1, o.log);
        remove_temp_dir(dir);
}
