/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The seccomp helper, for real: each case forks a child that installs a
 * filter (no privileges needed: the filter sets no_new_privs) and then
 * does something forbidden; the parent checks how the child ended and what
 * it logged. The criterion worker itself is never filtered. */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
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
