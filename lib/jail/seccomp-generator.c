/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#if ENABLE_TEST_HOOKS
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#endif
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "seccomp-generator.h"
#include "util.h"

/* How glibc's fork() calls clone(): a new process, never a thread or a
 * new namespace. (s390 swaps clone's first two arguments.) */
#define FORK_CLONE_FLAGS (CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | SIGCHLD)
#if defined(__s390__) || defined(__s390x__)
#define FORK_CLONE_FLAGS_ARG 1
#else
#define FORK_CLONE_FLAGS_ARG 0
#endif

/* Everything the generator does after confinement: read configs (iniparser
 * 4.1 reads through a memfd opened via /proc/self/fd), allocate, create
 * directories, new files and symlinks below the output directory, log. */
static const SeccompAllow generator_syscalls[] = {
        /* Opening: read-only, or a new file (O_CREAT|O_EXCL never follows
         * or truncates anything that exists). */
        SECCOMP_ALLOW_MASKED("openat", 2, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY),
        SECCOMP_ALLOW_MASKED("openat", 2, O_CREAT | O_EXCL, O_CREAT | O_EXCL),
        SECCOMP_ALLOW_MASKED("open", 1, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY),
        SECCOMP_ALLOW_MASKED("open", 1, O_CREAT | O_EXCL, O_CREAT | O_EXCL),
        SECCOMP_ALLOW("close"),
        SECCOMP_ALLOW("read"),
        SECCOMP_ALLOW("pread64"),
        SECCOMP_ALLOW("readv"),
        SECCOMP_ALLOW("lseek"),
        SECCOMP_ALLOW("_llseek"),
        SECCOMP_ALLOW("getdents64"),
        SECCOMP_ALLOW("getdents"),
        SECCOMP_ALLOW("fstat"),
        SECCOMP_ALLOW("fstat64"),
        SECCOMP_ALLOW("newfstatat"),
        SECCOMP_ALLOW("fstatat64"),
        SECCOMP_ALLOW("stat"),
        SECCOMP_ALLOW("stat64"),
        SECCOMP_ALLOW("lstat"),
        SECCOMP_ALLOW("lstat64"),
        SECCOMP_ALLOW("statx"),
        SECCOMP_ALLOW("fcntl"),
        SECCOMP_ALLOW("fcntl64"),
        /* isatty() from stdio, nothing else */
        SECCOMP_ALLOW_EQ("ioctl", 1, TCGETS),
        /* iniparser input, our output files, the log */
        SECCOMP_ALLOW("memfd_create"),
        SECCOMP_ALLOW("write"),
        SECCOMP_ALLOW("writev"),
        /* lib/config/ini.c rewrites one memory file for every config it parses */
        SECCOMP_ALLOW("pwrite64"),
        SECCOMP_ALLOW("ftruncate"),
        SECCOMP_ALLOW("mkdirat"),
        SECCOMP_ALLOW("mkdir"),
        SECCOMP_ALLOW("symlinkat"),
        SECCOMP_ALLOW("symlink"),
        /* memory, never executable */
        SECCOMP_ALLOW("brk"),
        SECCOMP_ALLOW_MASKED("mmap", 2, PROT_EXEC, 0),
        SECCOMP_ALLOW_MASKED("mmap2", 2, PROT_EXEC, 0),
        SECCOMP_ALLOW_MASKED("mprotect", 2, PROT_EXEC, 0),
        SECCOMP_ALLOW("munmap"),
        SECCOMP_ALLOW("mremap"),
        SECCOMP_ALLOW("madvise"),
        /* process basics; abort() signals only ourselves (arg 0 filled in) */
        SECCOMP_ALLOW("exit"),
        SECCOMP_ALLOW("exit_group"),
        SECCOMP_ALLOW("rt_sigreturn"),
        SECCOMP_ALLOW("rt_sigprocmask"),
        SECCOMP_ALLOW("rt_sigaction"),
        SECCOMP_ALLOW("getpid"),
        SECCOMP_ALLOW("gettid"),
        SECCOMP_ALLOW("getuid"),
        SECCOMP_ALLOW("geteuid"),
        SECCOMP_ALLOW("getgid"),
        SECCOMP_ALLOW("getegid"),
        SECCOMP_ALLOW_EQ("tgkill", 0, 0),
        SECCOMP_ALLOW("clock_gettime"),
        SECCOMP_ALLOW("clock_gettime64"),
        SECCOMP_ALLOW("gettimeofday"),
        SECCOMP_ALLOW("time"),
        SECCOMP_ALLOW("getrandom"),
        SECCOMP_ALLOW("futex"),
        /* worker processes (fork(), never threads: iniparser 4.1 keeps
         * static buffers), and waiting for them */
        SECCOMP_ALLOW_EQ("clone", FORK_CLONE_FLAGS_ARG, FORK_CLONE_FLAGS),
        SECCOMP_ALLOW("wait4"),
        SECCOMP_ALLOW("set_robust_list"), /* glibc, in a new child */
        /* a worker dies with the generator (a manager's timeout kills only that) */
        SECCOMP_ALLOW_EQ("prctl", 0, PR_SET_PDEATHSIG),
        SECCOMP_ALLOW("getppid"),
        /* glibc's qsort() asks for the physical memory size before sorting
         * more than 1 KiB (vm_config_enumerate(), from ~43 VMs on) */
        SECCOMP_ALLOW("sysinfo"),
};

int seccomp_confine_generator(bool sanitizer_build) {
        _cleanup_free_ SeccompAllow *allow = NULL;
        size_t n = ELEMENTSOF(generator_syscalls);

        allow = malloc(sizeof(SeccompAllow) * (n + seccomp_allow_sanitizer_runtime_n));
        if (!allow)
                return -ENOMEM;
        memcpy(allow, generator_syscalls, sizeof generator_syscalls);
        /* tgkill(getpid(), ...) only: abort() may signal ourselves. */
        for (size_t i = 0; i < n; i++)
                if (streq(allow[i].name, "tgkill") && allow[i].arg == 0)
                        allow[i].value = (uint64_t) getpid();
        /* ASan/UBSan builds (tests only, never installed) need more. */
        if (sanitizer_build) {
                memcpy(allow + n, seccomp_allow_sanitizer_runtime,
                       sizeof(SeccompAllow) * seccomp_allow_sanitizer_runtime_n);
                n += seccomp_allow_sanitizer_runtime_n;
        }
        return seccomp_install_allowlist(allow, n, SECCOMP_VIOLATION_TRAP);
}

/* Test-only (tests/generator/test-seccomp.sh): try something the filter
 * forbids, right after confinement. Every action is harmless even without
 * a filter (a shell that exits 0, a socket, a new file in our own output
 * dir), so that the test sees clearly when the filter did not stop it.
 * Compiled only with -Dtest-hooks=true. */
#if ENABLE_TEST_HOOKS
void seccomp_generator_test_violation(int outfd) {
        const char *what = getenv("MICROVM_GENERATOR_TEST_VIOLATION");

        if (isempty(what))
                return;
        log_notice("Test: attempting %s after confinement.", what);
        if (streq(what, "execve")) {
                char *const argv[] = { (char *) "sh", (char *) "-c", (char *) "exit 0", NULL };
                char *const envp[] = { NULL };
                execve("/bin/sh", argv, envp);
                log_error_errno(errno, "Test: execve() was not blocked: %m");
        } else if (streq(what, "socket")) {
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                log_error("Test: socket() was not blocked (fd %d).", fd);
                safe_close(fd);
        } else if (streq(what, "overwrite")) {
                int fd = openat(outfd, "test-violation", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
                log_error("Test: openat(O_TRUNC) without O_EXCL was not blocked (fd %d).", fd);
                safe_close(fd);
        } else if (streq(what, "namespace")) {
                /* A fork into a new mount namespace: not fork()'s flags. */
                long pid = syscall(SYS_clone, (long) (CLONE_NEWNS | SIGCHLD), 0L, 0L, 0L, 0L);
                if (pid == 0)
                        _exit(EXIT_SUCCESS);
                log_error("Test: clone(CLONE_NEWNS) was not blocked (%ld).", pid);
                if (pid > 0)
                        (void) waitpid((pid_t) pid, NULL, 0);
        } else if (streq(what, "ptrace")) {
                long r = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
                log_error("Test: ptrace() was not blocked (%ld).", r);
        } else
                log_error("Test: unknown violation \"%s\".", what);
        _exit(EXIT_FAILURE);
}
#else
void seccomp_generator_test_violation(int outfd) {
}
#endif
