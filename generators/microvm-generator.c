/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-generator: turns every VM config into a drop-in for its
 * microvm@<id>.service instance, and autostart VMs into wants of
 * microvms.target (systemd.generator(7), microvm-generator(8)).
 *
 * It runs at boot and on every daemon-reload, so it must be fast, must
 * write nowhere but its output directory, and must never fail the boot
 * for one bad file: bad configs are logged with the validator's messages
 * and skipped, everything valid is still written, and only then does the
 * exit status say that something was wrong. Before it reads a single
 * config byte it confines itself with a seccomp allowlist: no exec, no
 * sockets, no mounts, files only created new (O_EXCL), never rewritten. */

#include <fcntl.h>
#include <getopt.h>
#include <linux/limits.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "config-files.h"
#include "generator-core.h"
#include "log.h"
#include "names.h"
#include "parse-util.h"
#include "seccomp-util.h"
#include "unit-escape.h"

#ifndef SYSTEM_UNIT_DIR
#error "SYSTEM_UNIT_DIR must name the directory microvm@.service is installed to"
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
        /* lib/ini.c rewrites one memory file for every config it parses */
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
        /* glibc's qsort() asks for the physical memory size before sorting
         * more than 1 KiB (vm_config_enumerate(), from ~43 VMs on) */
        SECCOMP_ALLOW("sysinfo"),
};

static bool arg_as_manager = false;

static void help(void) {
        printf("%s [OPTIONS...] NORMAL-DIR [EARLY-DIR LATE-DIR]\n"
               "\n"
               "Generate systemd drop-ins for microVMs from their configuration files.\n"
               "Run by the service manager at boot and on daemon-reload; writes only\n"
               "into NORMAL-DIR.\n"
               "\n"
               "  -h --help     Show this help\n"
               "     --version  Show package version\n"
               "\n"
               "See the microvm-generator(8) man page for details.\n",
               GENERATOR_PROGRAM);
}

/* Returns 1 to go on with *ret_dest set, 0 to exit successfully, <0 on
 * bad usage. */
static int parse_argv(int argc, char *argv[], const char **ret_dest) {
        enum { ARG_VERSION = 0x100 };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {},
        };
        int c;

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("%s %s\n", GENERATOR_PROGRAM, PROJECT_VERSION);
                        return 0;
                default:
                        return -EINVAL;
                }

        if (argc - optind != 1 && argc - optind != 3)
                return log_error_errno(EINVAL, "Expected one or three output directories, got %d (see --help).",
                                       argc - optind);
        /* The manager passes three directories; tests and humans one. */
        arg_as_manager = argc - optind == 3;
        *ret_dest = argv[optind];
        return 1;
}

/* Test-only (tests/generator/test-seccomp.sh): try something the filter
 * forbids, right after confinement. Every action is harmless even without
 * a filter (a shell that exits 0, a socket, a new file in our own output
 * dir), so that the test sees clearly when the filter did not stop it. */
static void test_violation(int outfd) {
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
        } else if (streq(what, "ptrace")) {
                long r = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
                log_error("Test: ptrace() was not blocked (%ld).", r);
        } else
                log_error("Test: unknown violation \"%s\".", what);
        _exit(EXIT_FAILURE);
}

static int confine(void) {
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
        if (MICROVM_SANITIZER_BUILD) {
                memcpy(allow + n, seccomp_allow_sanitizer_runtime,
                       sizeof(SeccompAllow) * seccomp_allow_sanitizer_runtime_n);
                n += seccomp_allow_sanitizer_runtime_n;
        }
        return seccomp_install_allowlist(allow, n, SECCOMP_VIOLATION_TRAP);
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Directories created (or found) recently: every autostart VM links into
 * the same microvms.target.wants/, and one mkdirat() per VM that fails
 * with EEXIST is measurable at a thousand VMs. */
typedef struct DirCache {
        char dirs[4][PATH_MAX];
        unsigned next;
} DirCache;

static bool dir_cache_has(const DirCache *c, const char *dir) {
        for (size_t i = 0; i < ELEMENTSOF(c->dirs); i++)
                if (streq(c->dirs[i], dir))
                        return true;
        return false;
}

static void dir_cache_add(DirCache *c, const char *dir) {
        strcpy(c->dirs[c->next], dir);
        c->next = (c->next + 1) % ELEMENTSOF(c->dirs);
}

/* Creates one generated file below outfd: its directory (one level, ours
 * alone or shared with other VMs), then the file with O_EXCL, or the
 * symlink. Nothing existing is ever replaced. */
static int write_generated(int outfd, DirCache *cache, const GeneratedFile *f) {
        _cleanup_close_ int fd = -EBADF;
        const char *slash = strrchr(f->path, '/');
        int r;

        if (slash) {
                char dir[PATH_MAX];
                size_t n = (size_t) (slash - f->path);

                if (n == 0 || n >= sizeof dir)
                        return -EINVAL;
                memcpy(dir, f->path, n);
                dir[n] = '\0';
                if (!dir_cache_has(cache, dir)) {
                        if (mkdirat(outfd, dir, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        dir_cache_add(cache, dir);
                }
        }

        if (f->symlink)
                return RET_NERRNO(symlinkat(f->content, outfd, f->path));

        fd = openat(outfd, f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
        if (fd < 0)
                return -errno;
        r = write_all(fd, f->content, strlen(f->content));
        if (r < 0)
                return r;
        return RET_NERRNO(close(TAKE_FD(fd)));
}

/* For the log: control characters and bytes that are not UTF-8 as \xNN,
 * everything else (non-ASCII names included) as it is. A file name must
 * not be able to start a new, forged line in the kernel log. */
static char *escape_for_log(const char *s) {
        char *r = malloc(strlen(s) * 4 + 1), *t = r;

        if (!r)
                return NULL;
        for (const char *p = s; *p;) {
                unsigned char c = (unsigned char) *p;
                size_t l = utf8_char_length(p, SIZE_MAX);

                if (l == 0 || c < ' ' || c == 0x7f) {
                        t += sprintf(t, "\\x%02x", c);
                        p++;
                        continue;
                }
                memcpy(t, p, l);
                t += l;
                p += l;
        }
        *t = '\0';
        return r;
}

static void log_problems(const Problems *p) {
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *m = problem_format(&p->items[i]), *e = NULL;
                if (m)
                        e = escape_for_log(m);
                if (e)
                        log_error("%s", e);
                else
                        (void) log_oom();
        }
        if (p->oom)
                (void) log_oom();
}

static int generate_one(int outfd, DirCache *cache, const char *dest, const HostConfig *host,
                        const VmConfigFile *file) {
        _cleanup_(generated_files_done) GeneratedFiles out = {};
        _cleanup_(problems_done) Problems problems = {};
        _cleanup_vm_config_ VmConfig *c = NULL;
        _cleanup_free_ char *data = NULL, *path = NULL;
        const char *what = NULL;
        size_t size;
        int r, ret = 0;

        path = escape_for_log(file->path);
        if (!path)
                return log_oom();

        if (file->masked) {
                log_debug("%s is masked, not generating anything for it.", path);
                return 0;
        }

        r = config_read_file(file->path, &data, &size);
        if (r == -EPERM)
                return log_error_errno(r, "Skipping %s: it must be owned by root and not writable by group or others.",
                                       path);
        if (r < 0)
                return log_error_errno(r, "Skipping %s: failed to read it: %m", path);

        r = vm_config_parse(file->path, file->name, data, size, host, &c, &problems);
        if (r < 0) {
                log_problems(&problems);
                if (r == -ENOMEM)
                        return log_oom();
                return log_error_errno(r, "Skipping %s: fix the problem%s above and run \"systemctl daemon-reload\".",
                                       path, problems.n == 1 ? "" : "s");
        }

        r = generator_render_vm(c, host, SYSTEM_UNIT_DIR, &out, &what);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Skipping %s: its %s cannot be written into a unit file (control characters or invalid UTF-8).",
                                       path, strna(what));

        for (size_t i = 0; i < out.n; i++) {
                r = write_generated(outfd, cache, &out.items[i]);
                if (r < 0 && ret == 0)
                        ret = log_error_errno(r, "Failed to create %s/%s: %m", dest, out.items[i].path);
        }
        if (ret == 0)
                log_debug("Generated %s%s.service from %s%s.", UNIT_PREFIX, c->id, path,
                          c->autostart ? " (autostart)" : "");
        return ret;
}

static int generate(int outfd, const char *dest) {
        _cleanup_(problems_done) Problems problems = {};
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_free_ DirCache *cache = NULL;
        VmConfigFile *files = NULL;
        size_t n_files = 0;
        int r, ret = 0;

        r = host_config_load(&host, &problems);
        if (r < 0) {
                /* Every VM depends on the host config, and microvm-stage
                 * refuses to start any VM while it is invalid: generate
                 * nothing rather than units built on guessed defaults. */
                log_problems(&problems);
                if (r == -ENOMEM)
                        return log_oom();
                _cleanup_free_ char *path = escape_for_log(host_config_path());
                return log_error_errno(r, "Not generating any microVM units: the host config %s is invalid. "
                                       "Fix it and run \"systemctl daemon-reload\".", strna(path));
        }

        r = vm_config_enumerate(&files, &n_files);
        if (r < 0)
                return log_error_errno(r, "Failed to enumerate VM configs: %m");
        cache = calloc(1, sizeof *cache);
        if (!cache) {
                vm_config_files_free(files, n_files);
                return log_oom();
        }

        for (size_t i = 0; i < n_files; i++) {
                r = generate_one(outfd, cache, dest, host, &files[i]);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        vm_config_files_free(files, n_files);
        return ret;
}

int main(int argc, char *argv[]) {
        _cleanup_close_ int outfd = -EBADF;
        const char *dest = NULL;
        int r;

        log_set_program_name(GENERATOR_PROGRAM);
        r = parse_argv(argc, argv, &dest);
        if (r <= 0)
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;

        /* systemd ≥ 251 sets $SYSTEMD_SCOPE for generators; older managers
         * are recognized by the three directories and being PID 1's child. */
        if (arg_as_manager && !getenv("SYSTEMD_SCOPE") && !getenv("SYSTEMD_LOG_TARGET") && getppid() == 1)
                log_set_target(LOG_TARGET_KMSG);
        log_parse_environment(/* as_generator= */ true);
        /* Opens /dev/kmsg now: the filter below allows no more such opens. */
        log_open();

        outfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (outfd < 0) {
                log_error_errno(errno, "Failed to open output directory %s: %m", dest);
                return EXIT_FAILURE;
        }

        r = confine();
        if (r < 0)
                /* Without seccomp support in the kernel, still generate: a
                 * boot without VMs is worse than an unconfined generator. */
                log_warning_errno(r, "Failed to install the seccomp filter, continuing unconfined: %m");

        test_violation(outfd);

        r = generate(outfd, dest);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
