/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "seccomp-util.h"

#define DENY_EXEC "execve", "execveat"
#define DENY_DEBUG                                                                      \
        "ptrace", "process_vm_readv", "process_vm_writev", "process_madvise", "kcmp",   \
        "pidfd_getfd", "perf_event_open", "userfaultfd"
#define DENY_MOUNT                                                                      \
        "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "fsopen",   \
        "fsconfig", "fsmount", "fspick", "open_tree", "mount_setattr"
#define DENY_KERNEL                                                                     \
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", \
        "bpf", "keyctl", "add_key", "request_key", "reboot", "swapon", "swapoff",       \
        "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm", \
        "acct", "syslog", "uselib", "vhangup", "sethostname", "setdomainname",          \
        "open_by_handle_at", "lookup_dcookie", "nfsservctl", "quotactl"
#define DENY_NAMESPACES "unshare", "setns"

const char *const seccomp_deny_exec[] = { DENY_EXEC, NULL };
const char *const seccomp_deny_debug[] = { DENY_DEBUG, NULL };
const char *const seccomp_deny_mount[] = { DENY_MOUNT, NULL };
const char *const seccomp_deny_kernel[] = { DENY_KERNEL, NULL };
const char *const seccomp_deny_tools[] = { DENY_EXEC, DENY_DEBUG, DENY_MOUNT, DENY_KERNEL, NULL };
const char *const seccomp_deny_sandboxed[] = { DENY_EXEC, DENY_DEBUG, DENY_MOUNT, DENY_KERNEL, DENY_NAMESPACES, NULL };

const SeccompAllow seccomp_allow_sanitizer_runtime[] = {
        SECCOMP_ALLOW("clone"),
        SECCOMP_ALLOW("clone3"),
        SECCOMP_ALLOW("ptrace"),
        SECCOMP_ALLOW("wait4"),
        SECCOMP_ALLOW("waitid"),
        SECCOMP_ALLOW("prctl"),
        SECCOMP_ALLOW("sigaltstack"),
        SECCOMP_ALLOW("sched_yield"),
        SECCOMP_ALLOW("sched_getaffinity"),
        SECCOMP_ALLOW("readlink"),
        SECCOMP_ALLOW("readlinkat"),
        SECCOMP_ALLOW("getppid"),
        SECCOMP_ALLOW("prlimit64"),
        SECCOMP_ALLOW("getrlimit"),
        SECCOMP_ALLOW("setrlimit"),
        SECCOMP_ALLOW("pipe"),
        SECCOMP_ALLOW("pipe2"),
        SECCOMP_ALLOW("dup"),
        SECCOMP_ALLOW("dup2"),
        SECCOMP_ALLOW("dup3"),
        SECCOMP_ALLOW("uname"),
        SECCOMP_ALLOW("getcwd"),
        SECCOMP_ALLOW("nanosleep"),
        SECCOMP_ALLOW("clock_nanosleep"),
        SECCOMP_ALLOW("arch_prctl"),
        SECCOMP_ALLOW("kill"),
        SECCOMP_ALLOW("tgkill"),
        SECCOMP_ALLOW("gettid"),
        SECCOMP_ALLOW("getpid"),
        SECCOMP_ALLOW("exit"),
        SECCOMP_ALLOW("exit_group"),
        SECCOMP_ALLOW("rt_sigaction"),
        SECCOMP_ALLOW("rt_sigprocmask"),
        SECCOMP_ALLOW("rt_sigreturn"),
        SECCOMP_ALLOW("madvise"),
        SECCOMP_ALLOW("munmap"),
        SECCOMP_ALLOW_MASKED("mmap", 2, PROT_EXEC, 0),
        SECCOMP_ALLOW_MASKED("mprotect", 2, PROT_EXEC, 0),
        SECCOMP_ALLOW_MASKED("openat", 2, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY),
        SECCOMP_ALLOW("read"),
        SECCOMP_ALLOW("write"),
        SECCOMP_ALLOW("close"),
        SECCOMP_ALLOW("futex"),
};
const size_t seccomp_allow_sanitizer_runtime_n = ELEMENTSOF(seccomp_allow_sanitizer_runtime);

/* Calls a confined process is most likely to be caught making, named in
 * the violation message even when no rule mentions them (as are all of
 * seccomp_deny_tools). */
static const char *const suspects[] = {
        "socket", "connect", "bind", "sendto", "sendmsg", "fork", "vfork", "clone", "clone3",
        "kill", "tkill", "unlinkat", "unlink", "renameat2", "rename", "chmod", "fchmodat",
        "chown", "fchownat", "setuid", "setgid", "unshare", "setns", "prctl", "seccomp",
};

/* nr → name for the SIGSYS handler, filled before the filter is loaded:
 * the handler must neither allocate nor call into libseccomp. */
static struct {
        int nr;
        const char *name;
} known[192];
static size_t n_known;
static uint32_t native_arch;

static void remember(int nr, const char *name) {
        for (size_t i = 0; i < n_known; i++)
                if (known[i].nr == nr)
                        return;
        if (n_known < ELEMENTSOF(known))
                known[n_known++] = (typeof(known[0])) { nr, name };
}

const char *seccomp_known_name(int nr) {
        for (size_t i = 0; i < n_known; i++)
                if (known[i].nr == nr)
                        return known[i].name;
        return NULL;
}

static int resolve(const char *name) {
        int nr = seccomp_syscall_resolve_name(name);

        /* __NR_SCMP_ERROR: unknown; other negative numbers are libseccomp's
         * pseudo-syscalls for calls this architecture does not have. */
        if (nr < 0)
                return -ENOENT;
        remember(nr, name);
        return nr;
}

static size_t append(char *buf, size_t n, size_t size, const char *s) {
        while (*s && n + 1 < size)
                buf[n++] = *s++;
        buf[n] = '\0';
        return n;
}

static size_t append_uint(char *buf, size_t n, size_t size, unsigned long v, unsigned base) {
        char tmp[24];
        size_t k = 0;

        do {
                tmp[k++] = "0123456789abcdef"[v % base];
                v /= base;
        } while (v > 0);
        while (k > 0 && n + 1 < size)
                buf[n++] = tmp[--k];
        buf[n] = '\0';
        return n;
}

/* Runs instead of the forbidden call; signal-safe by construction. */
_noreturn_ static void sigsys_handler(int sig, siginfo_t *si, void *ctx) {
        char msg[256];
        size_t n = 0;
        const char *name = NULL;

        n = append(msg, n, sizeof msg, "Blocked system call ");
        if ((uint32_t) si->si_arch != native_arch) {
                n = append(msg, n, sizeof msg, "number ");
                n = append_uint(msg, n, sizeof msg, (unsigned long) si->si_syscall, 10);
                n = append(msg, n, sizeof msg, " of foreign architecture 0x");
                n = append_uint(msg, n, sizeof msg, (unsigned long) (uint32_t) si->si_arch, 16);
        } else {
                name = seccomp_known_name(si->si_syscall);
                n = append(msg, n, sizeof msg, name ?: "number ");
                n = append(msg, n, sizeof msg, name ? " (" : "");
                n = append_uint(msg, n, sizeof msg, (unsigned long) si->si_syscall, 10);
                n = append(msg, n, sizeof msg, name ? ")" : "");
        }
        n = append(msg, n, sizeof msg,
                   ": not permitted after confinement (a bug, or the process was subverted); terminating.");
        (void) n;
        log_signal_safe(LOG_CRIT, msg);
        _exit(SECCOMP_VIOLATION_EXIT_STATUS);
}

static uint32_t action_for(SeccompViolation v) {
        switch (v) {
        case SECCOMP_VIOLATION_TRAP:
                return SCMP_ACT_TRAP;
        case SECCOMP_VIOLATION_ERRNO:
                return SCMP_ACT_ERRNO(EPERM);
        case SECCOMP_VIOLATION_KILL:
        default:
                return SCMP_ACT_KILL_PROCESS;
        }
}

static void seccomp_releasep(scmp_filter_ctx *ctx) {
        if (*ctx)
                seccomp_release(*ctx);
}

static int prepare(scmp_filter_ctx *ret, uint32_t default_action, SeccompViolation v) {
        scmp_filter_ctx ctx = seccomp_init(default_action);
        int r;

        if (!ctx)
                return -ENOMEM;
        /* Only the native ABI is in the filter; anything else is a violation. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, action_for(v));
        if (r < 0) {
                seccomp_release(ctx);
                return r;
        }
        /* A binary tree instead of a linear chain of comparisons: every
         * system call of the process runs through the filter (libseccomp
         * >= 2.5; older versions refuse the attribute, which is harmless). */
        (void) seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
        native_arch = seccomp_arch_native();
        for (size_t i = 0; i < ELEMENTSOF(suspects); i++)
                (void) resolve(suspects[i]);
        for (const char *const *name = seccomp_deny_tools; *name; name++)
                (void) resolve(*name);
        *ret = ctx;
        return 0;
}

static int load(scmp_filter_ctx ctx, SeccompViolation v) {
        int r;

        if (v == SECCOMP_VIOLATION_TRAP) {
                struct sigaction sa = {
                        .sa_sigaction = sigsys_handler,
                        .sa_flags = SA_SIGINFO,
                };
                sigset_t set;

                sigfillset(&sa.sa_mask);
                if (sigaction(SIGSYS, &sa, NULL) < 0)
                        return -errno;
                /* A blocked SIGSYS would turn the trap into a plain kill. */
                sigemptyset(&set);
                sigaddset(&set, SIGSYS);
                (void) sigprocmask(SIG_UNBLOCK, &set, NULL);
        }
        r = seccomp_load(ctx);
        if (r == -EINVAL || r == -ENOSYS)
                return -EOPNOTSUPP; /* kernel without CONFIG_SECCOMP_FILTER */
        return r;
}

int seccomp_install_allowlist(const SeccompAllow *allow, size_t n, SeccompViolation on_violation) {
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        int r;

        r = prepare(&ctx, action_for(on_violation), on_violation);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                const SeccompAllow *a = &allow[i];
                int nr = resolve(a->name);

                if (nr < 0)
                        continue;
                if (a->arg == SECCOMP_ARG_NONE)
                        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
                else {
                        struct scmp_arg_cmp cmp = {
                                .arg = (unsigned) a->arg,
                                .op = a->mask == UINT64_MAX ? SCMP_CMP_EQ : SCMP_CMP_MASKED_EQ,
                                .datum_a = a->mask == UINT64_MAX ? a->value : a->mask,
                                .datum_b = a->mask == UINT64_MAX ? 0 : a->value,
                        };
                        if (a->arg < 0 || a->arg > 5)
                                return -EINVAL;
                        r = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, 1, &cmp);
                }
                if (r < 0)
                        return r;
        }
        return load(ctx, on_violation);
}

/* AddressSanitizer builds (tests and CI only, never installed). Detected
 * from the compiler, not from a meson define: this file is built once, for
 * every tool. */
#if defined(__SANITIZE_ADDRESS__)
#define ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASAN_BUILD 1
#endif
#endif
#ifndef ASAN_BUILD
#define ASAN_BUILD 0
#endif

/* In an ASan build, LeakSanitizer's check at exit stops the world with a
 * tracer that ptrace()s the process; a denied ptrace kills the tracer and
 * leaves the process spinning in sched_yield() forever (every tool hung at
 * exit). A denylist therefore never denies, in such a build only, what
 * the sanitizer runtime needs. */
bool seccomp_sanitizer_build(void) {
        return ASAN_BUILD;
}

static bool needed_by_sanitizer(const char *name) {
        if (!ASAN_BUILD)
                return false;
        for (size_t i = 0; i < seccomp_allow_sanitizer_runtime_n; i++)
                if (streq(seccomp_allow_sanitizer_runtime[i].name, name))
                        return true;
        return false;
}

/* fchmodat2() (Linux 6.6), unknown to older libseccomp and headers: one
 * number on every architecture. */
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif

#define MASKED(a, m) SCMP_CMP((a), SCMP_CMP_MASKED_EQ, (m), (m))

static int errno_rule(scmp_filter_ctx ctx, int err, const char *name, unsigned n, const struct scmp_arg_cmp *cmp) {
        int nr = resolve(name);

        /* Not on this architecture (open() on arm64, ...): nothing to deny. */
        if (nr < 0)
                return 0;
        return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(err), nr, n, cmp);
}

/* Whether CAP_FSETID is in the permitted set (it could be made effective). */
static bool may_fsetid(void) {
        struct __user_cap_header_struct head = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

        if (syscall(SYS_capget, &head, data) < 0)
                return true;
        return data[CAP_FSETID / 32].permitted & (1U << (CAP_FSETID % 32));
}

static int add_restrictions(scmp_filter_ctx ctx, const SeccompRestrict *rs) {
        int r = 0;

        if (rs->unix_sockets_only)
                r = errno_rule(ctx, EAFNOSUPPORT, "socket", 1, &SCMP_A0(SCMP_CMP_NE, AF_UNIX));
        if (r >= 0 && rs->no_new_namespaces) {
                /* (CLONE_NEWTIME is unshare()'s and clone3()'s only: in
                 * clone() that bit is part of the exit signal.) */
                static const uint64_t flags[] = { CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                                  CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP };
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(flags); i++)
                        r = errno_rule(ctx, EPERM, "clone", 1, &MASKED(0, flags[i]));
                if (r >= 0)
                        r = errno_rule(ctx, ENOSYS, "clone3", 0, NULL);
        }
        if (r >= 0 && rs->lock_personality) {
                int cur = personality(0xffffffff);
                r = cur < 0 ? -errno : errno_rule(ctx, EPERM, "personality", 1, &SCMP_A0(SCMP_CMP_NE, (uint64_t) cur));
        }
        if (r >= 0 && rs->no_write_execute) {
                r = errno_rule(ctx, EPERM, "mmap", 1, &MASKED(2, PROT_WRITE | PROT_EXEC));
                if (r >= 0)
                        r = errno_rule(ctx, EPERM, "mprotect", 1, &MASKED(2, PROT_EXEC));
                if (r >= 0)
                        r = errno_rule(ctx, EPERM, "pkey_mprotect", 1, &MASKED(2, PROT_EXEC));
                if (r >= 0)
                        r = errno_rule(ctx, EPERM, "shmat", 1, &MASKED(2, SHM_EXEC));
        }
        if (r >= 0 && rs->no_realtime) {
                static const char *const sched[] = { "sched_setscheduler", "sched_setparam", "sched_setattr" };
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(sched); i++)
                        r = errno_rule(ctx, EPERM, sched[i], 0, NULL);
        }
        if (r >= 0 && rs->no_suid_sgid) {
                static const struct {
                        const char *name;
                        int mode_arg, flags_arg; /* flags_arg -1: creates whatever the flags */
                } calls[] = {
                        { "chmod", 1, -1 },     { "fchmod", 1, -1 }, { "fchmodat", 2, -1 }, { "mkdir", 1, -1 },
                        { "mkdirat", 2, -1 },   { "mknod", 1, -1 },  { "mknodat", 2, -1 },  { "creat", 1, -1 },
                        { "open", 2, 1 },       { "openat", 3, 2 },
                };
                /* Each of S_ISUID and S_ISGID; for the opens, each of the
                 * flags that create a file (O_TMPFILE's own bit). */
                static const uint64_t creating[] = { O_CREAT, __O_TMPFILE };
                for (size_t i = 0; r >= 0 && i < ELEMENTSOF(calls); i++)
                        for (unsigned bit = 0; r >= 0 && bit < 2; bit++)
                                for (size_t k = 0; r >= 0 && k < (calls[i].flags_arg >= 0 ? 2U : 1U); k++) {
                                        struct scmp_arg_cmp cmp[2] = { MASKED((unsigned) calls[i].mode_arg,
                                                                              bit ? S_ISGID : S_ISUID) };
                                        unsigned n = 1;
                                        if (calls[i].flags_arg >= 0)
                                                cmp[n++] = MASKED((unsigned) calls[i].flags_arg, creating[k]);
                                        r = errno_rule(ctx, EPERM, calls[i].name, n, cmp);
                                }
                if (r >= 0)
                        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), __NR_fchmodat2, 0);
                if (r >= 0 && may_fsetid())
                        r = errno_rule(ctx, ENOSYS, "openat2", 0, NULL);
        }
        return r;
}

const SeccompRestrict seccomp_restrict_all = {
        .unix_sockets_only = true,
        .no_new_namespaces = true,
        .lock_personality = true,
        .no_write_execute = true,
        .no_realtime = true,
        .no_suid_sgid = true,
};

int seccomp_install_denylist(const char *const *names, SeccompViolation on_violation) {
        return seccomp_install_denylist_restricted(names, NULL, on_violation);
}

int seccomp_install_denylist_restricted(const char *const *names, const SeccompRestrict *restrictions,
                                        SeccompViolation on_violation) {
        _cleanup_(seccomp_releasep) scmp_filter_ctx ctx = NULL;
        uint32_t action = action_for(on_violation);
        int r;

        r = prepare(&ctx, SCMP_ACT_ALLOW, on_violation);
        if (r < 0)
                return r;
        for (const char *const *name = names; *name; name++) {
                int nr;

                if (needed_by_sanitizer(*name))
                        continue;
                nr = resolve(*name);
                if (nr < 0)
                        continue;
                r = seccomp_rule_add(ctx, action, nr, 0);
                if (r < 0)
                        return r;
        }
        if (restrictions) {
                r = add_restrictions(ctx, restrictions);
                if (r < 0)
                        return r;
        }
        return load(ctx, on_violation);
}
