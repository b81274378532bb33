/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* libseccomp filters for our own processes, in two shapes:
 *
 *  - an allowlist (microvm-generator): every system call not listed is a
 *    violation; entries may constrain one argument with a masked
 *    comparison (e.g. openat() only read-only or with O_CREAT|O_EXCL);
 *  - a denylist (microvm-stage, microvm-cleanup, ...): everything is
 *    allowed except the listed calls; seccomp_deny_tools is the default
 *    set no tool of ours ever needs after it has parsed its inputs.
 *
 * Both use the native architecture only: a system call made through
 * another ABI (i386 int 0x80, x32) is a violation, too, so a denylist
 * cannot be sidestepped through a compat entry point.
 *
 * On a violation (SECCOMP_VIOLATION_TRAP) a SIGSYS handler logs one line
 * naming the call (log_signal_safe(), to the kernel log for a generator)
 * and exits with SECCOMP_VIOLATION_EXIT_STATUS; the offending call never
 * runs. SECCOMP_VIOLATION_KILL kills the process with SIGSYS without a
 * word from us (the audit log has it); SECCOMP_VIOLATION_ERRNO fails the
 * call with EPERM. Filters are inherited across fork and exec and cannot
 * be removed, but the SIGSYS handler is not: after an exec, a TRAP
 * violation kills the new program with SIGSYS and no log line. A filter
 * installed before exec'ing another program (the jailer) therefore must
 * not deny what that program needs (mount, pivot_root, ... for the
 * jailer). */

#include "macro.h"

typedef enum SeccompViolation {
        SECCOMP_VIOLATION_TRAP,
        SECCOMP_VIOLATION_KILL,
        SECCOMP_VIOLATION_ERRNO,
} SeccompViolation;

/* 128 + SIGSYS, what a shell reports for a process killed by SIGSYS. */
#define SECCOMP_VIOLATION_EXIT_STATUS 159

#define SECCOMP_ARG_NONE (-1)

typedef struct SeccompAllow {
        const char *name;       /* system call name as libseccomp knows it */
        int arg;                /* SECCOMP_ARG_NONE, or the argument index 0-5 */
        uint64_t mask;          /* allowed when (arg & mask) == value */
        uint64_t value;
} SeccompAllow;

#define SECCOMP_ALLOW(n) { .name = (n), .arg = SECCOMP_ARG_NONE }
#define SECCOMP_ALLOW_MASKED(n, a, m, v) { .name = (n), .arg = (a), .mask = (m), .value = (v) }
#define SECCOMP_ALLOW_EQ(n, a, v) { .name = (n), .arg = (a), .mask = UINT64_MAX, .value = (v) }

/* Several entries for one call are alternatives (any one allows). Names
 * this architecture does not have are skipped. Returns -EOPNOTSUPP when
 * the kernel refuses to load filters (EINVAL/ENOSYS: no
 * CONFIG_SECCOMP_FILTER), other -errno on failure. */
int seccomp_install_allowlist(const SeccompAllow *allow, size_t n, SeccompViolation on_violation);

/* What the ASan/LSan/UBSan runtimes need beyond a program's own calls
 * (LeakSanitizer's check at exit clones a tracer thread and uses ptrace;
 * reports read /proc/self/maps), to append to an allowlist in sanitizer
 * builds only, never in what is installed. */
extern const SeccompAllow seccomp_allow_sanitizer_runtime[];
extern const size_t seccomp_allow_sanitizer_runtime_n;

/* names: NULL-terminated. In an AddressSanitizer build (tests and CI
 * only, never installed) a denylist lets through the calls of
 * seccomp_allow_sanitizer_runtime[] it names (ptrace): LeakSanitizer's
 * check at exit needs them, and spins forever without them. */
int seccomp_install_denylist(const char *const *names, SeccompViolation on_violation);
/* Whether this is such a build. */
bool seccomp_sanitizer_build(void) _const_;

/* What systemd's RestrictAddressFamilies=AF_UNIX, RestrictNamespaces=,
 * LockPersonality=, MemoryDenyWriteExecute=, RestrictRealtime= and
 * RestrictSUIDSGID= add to a service, as rules in the one filter of a
 * denylist: systemd compiles one filter per option in every new service
 * process, milliseconds of each socket-activated scrape (microvm-metrics).
 * The calls fail with the errors systemd gives them; none traps. */
typedef struct SeccompRestrict {
        bool unix_sockets_only;         /* socket() of another family: EAFNOSUPPORT */
        bool no_new_namespaces;         /* clone() with a CLONE_NEW* flag: EPERM; clone3(): ENOSYS (its
                                         * flags cannot be seen; glibc then uses clone()) */
        bool lock_personality;          /* personality() other than the current one: EPERM */
        bool no_write_execute;          /* mmap() writable and executable, mprotect() and
                                         * pkey_mprotect() to executable, shmat() SHM_EXEC: EPERM */
        bool no_realtime;               /* sched_setscheduler(), sched_setparam(), sched_setattr(): EPERM */
        bool no_suid_sgid;              /* S_ISUID or S_ISGID through chmod(), fchmod(), fchmodat(),
                                         * open(), openat(), creat() with O_CREAT, mkdir(), mkdirat(),
                                         * mknod(), mknodat(): EPERM; fchmodat2(): ENOSYS; openat2()
                                         * (whose mode cannot be seen): ENOSYS only while the process may
                                         * have CAP_FSETID (below) */
} SeccompRestrict;

/* Every restriction above. */
extern const SeccompRestrict seccomp_restrict_all;

/* A denylist (names, as seccomp_install_denylist()) plus restrictions.
 * openat2() and no_suid_sgid: without CAP_FSETID in its permitted set, a
 * process cannot give a file it creates content and keep S_ISUID/S_ISGID
 * on it (the kernel clears both on its first write or truncate), and it
 * cannot chmod() them on; then openat2() stays allowed (RESOLVE_BENEATH is
 * what safe-fs.h builds on), where systemd's RestrictSUIDSGID= refuses it
 * outright. */
int seccomp_install_denylist_restricted(const char *const *names, const SeccompRestrict *restrictions,
                                        SeccompViolation on_violation);

/* Groups for denylists (NULL-terminated), and their union. */
extern const char *const seccomp_deny_exec[];           /* execve, execveat */
extern const char *const seccomp_deny_debug[];          /* ptrace, process_vm_*, perf, pidfd_getfd, ... */
extern const char *const seccomp_deny_mount[];          /* mount, umount2, pivot_root, the new mount API, chroot */
extern const char *const seccomp_deny_kernel[];         /* modules, kexec, bpf, keyrings, reboot, swap, clock, raw io, ... */
extern const char *const seccomp_deny_tools[];          /* all of the above */
/* seccomp_deny_tools and unshare, setns: for a process in a mount namespace
 * of its own making (mount-sandbox.h), which must stay in it. */
extern const char *const seccomp_deny_sandboxed[];

/* For tests: the name of system call nr on the native architecture as this
 * module resolved it, or NULL. */
const char *seccomp_known_name(int nr);
