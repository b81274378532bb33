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
 * sockets, no mounts, files only created new (O_EXCL), never rewritten.
 * Hundreds of VMs are split over forked workers, one per CPU. */

#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "config-files.h"
#include "generator-core.h"
#include "generator-output.h"
#include "log.h"
#include "names.h"
#include "parse-util.h"
#include "seccomp-generator.h"
#include "unit-escape.h"
#include "util.h"

#ifndef SYSTEM_UNIT_DIR
#error "SYSTEM_UNIT_DIR must name the directory microvm@.service is installed to"
#endif

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


static void log_problems(const Problems *p) {
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *m = problem_format(&p->items[i]), *e = NULL;
                if (m)
                        e = utf8_escape_for_log(m);
                if (e)
                        log_error("%s", e);
                else
                        (void) log_oom();
        }
        if (p->oom)
                (void) log_oom();
}

static int keep_started(int outfd, DirCache *cache, const char *dest, const char *run_dir, const char *id) {
        _cleanup_free_ char *error = NULL;
        int r = generator_keep_started(outfd, cache, dest, run_dir, id, &error);

        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "%s", error ?: strerror(-r));
        return r;
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

        path = utf8_escape_for_log(file->path);
        if (!path)
                return log_oom();

        if (file->masked) {
                log_debug("%s is masked, not generating anything for it.", path);
                r = keep_started(outfd, cache, dest, host->run_dir, file->name);
                if (r > 0)
                        log_notice("microvm@%s.service keeps the settings it was started with until it stops "
                                   "(its config %s is masked).", file->name, path);
                return r < 0 ? r : 0;
        }

        r = config_read_file(file->path, &data, &size);
        if (r == -EPERM || r == -EACCES)
                r = log_error_errno(r, "Skipping %s: it is %s.", path, config_read_strerror(r));
        else if (r < 0)
                r = log_error_errno(r, "Skipping %s: failed to read it: %m", path);
        else {
                r = vm_config_parse(file->path, file->name, data, size, host, &c, &problems);
                if (r < 0) {
                        log_problems(&problems);
                        if (r == -ENOMEM)
                                return log_oom();
                        r = log_error_errno(r, "Skipping %s: fix the problem%s above and run \"systemctl daemon-reload\".",
                                            path, problems.n == 1 ? "" : "s");
                }
        }
        if (r >= 0) {
                r = generator_render_vm(c, host, SYSTEM_UNIT_DIR, &out, &what);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        r = log_error_errno(r, "Skipping %s: its %s cannot be written into a unit file (control characters or invalid UTF-8).",
                                            path, strna(what));
        }
        if (r >= 0) {
                r = generator_render_config_copy(c, dest, data, size, &out);
                if (r == -ENOMEM)
                        return log_oom();
                if (r < 0)
                        r = log_error_errno(r, "Skipping %s: the output directory %s cannot be named in a unit file "
                                            "(whitespace, quotes, %% or backslashes).", path, dest);
        }
        if (r < 0) {
                /* Nothing new for this VM; if it runs, it keeps what it has. */
                int k = keep_started(outfd, cache, dest, host->run_dir, file->name);
                if (k > 0)
                        log_error("microvm@%s.service keeps the settings it was started with until it stops.",
                                  file->name);
                return r;
        }

        for (size_t i = 0; i < out.n; i++) {
                r = generated_file_write(outfd, cache, &out.items[i]);
                if (r < 0 && ret == 0)
                        ret = log_error_errno(r, "Failed to create %s/%s: %m", dest, out.items[i].path);
        }
        if (ret == 0)
                log_debug("Generated %s%s.service from %s%s.", UNIT_PREFIX, c->id, path,
                          c->autostart ? " (autostart)" : "");
        return ret;
}

/* Running VMs whose config is gone (no file of that name in any config
 * directory) keep their start record's settings; with skip == NULL every
 * running VM does (the host config is invalid). */
static int keep_started_all(int outfd, const char *dest, const char *run_dir, const VmConfigFile *files,
                            size_t n_files, bool because_host) {
        _cleanup_free_ DirCache *cache = calloc(1, sizeof *cache);
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int r, ret = 0;

        if (!cache)
                return log_oom();
        d = opendir(run_dir);
        if (!d) {
                if (errno == ENOENT)
                        return 0;
                return log_error_errno(errno, "Failed to look for running VMs in %s: %m", run_dir);
        }
        while ((errno = 0, de = readdir(d))) {
                bool has_file = false;

                if (!vm_id_valid(de->d_name))
                        continue;
                for (size_t i = 0; i < n_files && !has_file; i++)
                        has_file = streq(files[i].name, de->d_name);
                if (has_file)
                        continue;
                r = keep_started(outfd, cache, dest, run_dir, de->d_name);
                if (r < 0 && ret == 0)
                        ret = r;
                if (r > 0) {
                        if (because_host)
                                log_error("microvm@%s.service keeps the settings it was started with until it "
                                          "stops.", de->d_name);
                        else
                                log_notice("microvm@%s.service keeps the settings it was started with until it "
                                           "stops (its config %s.conf was removed).", de->d_name, de->d_name);
                }
        }
        if (errno != 0)
                return log_error_errno(errno, "Failed to read %s: %m", run_dir);
        return ret;
}

/* Many VMs are split over worker processes, one per CPU this generator
 * may run on: the manager waits for every generator at boot and on every
 * daemon-reload, and reading and checking configs (a third of it in
 * iniparser) is most of our time. A worker is a fork (no exec), under the
 * same seccomp filter; it takes every k-th config, creates that VM's files
 * and logs that VM's problems, and its exit status joins ours. Each file is
 * created by exactly one process; the shared microvms.target.wants/ may be
 * created by any (mkdirat's EEXIST is expected). */
#define WORKER_FILES_MIN 128u
#define WORKERS_MAX 8u

static unsigned arg_workers = 0; /* 0: decide from CPUs and config count */
static unsigned arg_cpus = 1;    /* CPUs we may run on, asked before confinement */

static unsigned workers_for(size_t n_files) {
        size_t k = arg_workers;

        if (k == 0) /* one per CPU, each with enough configs to pay for its fork */
                k = MIN((size_t) arg_cpus, n_files / WORKER_FILES_MIN);
        k = MIN(k, (size_t) WORKERS_MAX);
        k = MIN(k, n_files); /* no idle workers */
        return (unsigned) MAX(k, (size_t) 1);
}

static int generate_share(int outfd, const char *dest, const HostConfig *host, const VmConfigFile *files,
                          size_t n_files, unsigned share, unsigned n_shares) {
        _cleanup_free_ DirCache *cache = calloc(1, sizeof *cache);
        int r, ret = 0;

        if (!cache)
                return log_oom();
        for (size_t i = share; i < n_files; i += n_shares) {
                r = generate_one(outfd, cache, dest, host, &files[i]);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        return ret;
}

static int wait_worker(pid_t pid, unsigned share) {
        int status;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return log_error_errno(errno, "Failed to wait for worker %u: %m", share);
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SUCCESS)
                return 0;
        if (WIFEXITED(status))
                /* It logged why (a bad config, or a seccomp violation). */
                return -EPROTO;
        return log_error_errno(EPROTO, "Worker %u was killed by signal %s.", share, strsignal(WTERMSIG(status)));
}

static int generate(int outfd, const char *dest) {
        _cleanup_(problems_done) Problems problems = {};
        _cleanup_host_config_ HostConfig *host = NULL, *partial = NULL;
        VmConfigFile *files = NULL;
        pid_t pids[WORKERS_MAX] = {}, parent = getpid();
        bool mine[WORKERS_MAX] = { true };
        size_t n_files = 0;
        unsigned k;
        int r, ret = 0;

        r = host_config_load_partial(&host, &partial, &problems);
        if (r < 0) {
                /* Every VM depends on the host config, and microvm-stage
                 * refuses to start any VM while it is invalid: generate
                 * nothing new rather than units built on guessed defaults.
                 * Running VMs keep what they were started with (found in
                 * the run_dir the file names, if it could be read). */
                log_problems(&problems);
                if (r == -ENOMEM)
                        return log_oom();
                _cleanup_free_ char *path = utf8_escape_for_log(host_config_path());
                log_error_errno(r, "Not generating any microVM units: the host config %s is invalid. "
                                "Fix it and run \"systemctl daemon-reload\".", strna(path));
                (void) keep_started_all(outfd, dest, partial ? partial->run_dir : DEFAULT_RUN_DIR, NULL, 0, true);
                return r;
        }

        r = vm_config_enumerate(&files, &n_files);
        if (r < 0)
                return log_error_errno(r, "Failed to enumerate VM configs: %m");

        k = workers_for(n_files);
        if (k > 1)
                log_debug("Generating %zu VMs in %u processes.", n_files, k);
        for (unsigned w = 1; w < k; w++) {
                pids[w] = fork();
                if (pids[w] == 0) {
                        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                                _exit(EXIT_FAILURE);
                        r = generate_share(outfd, dest, host, files, n_files, w, k);
                        vm_config_files_free(files, n_files);
                        host = host_config_free(host);
                        exit(r < 0 ? EXIT_FAILURE : EXIT_SUCCESS);
                }
                if (pids[w] < 0) {
                        log_warning_errno(errno, "Failed to start worker %u, doing its share here: %m", w);
                        mine[w] = true;
                }
        }
        for (unsigned w = 0; w < k; w++)
                if (mine[w]) {
                        r = generate_share(outfd, dest, host, files, n_files, w, k);
                        if (r < 0 && ret == 0)
                                ret = r;
                }
        for (unsigned w = 1; w < k; w++)
                if (!mine[w]) {
                        r = wait_worker(pids[w], w);
                        if (r < 0 && ret == 0)
                                ret = r;
                }
        r = keep_started_all(outfd, dest, host->run_dir, files, n_files, false);
        if (r < 0 && ret == 0)
                ret = r;
        vm_config_files_free(files, n_files);
        return ret;
}

int main(int argc, char *argv[]) {
        _cleanup_close_ int outfd = -EBADF;
        const char *dest = NULL, *e;
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
        cpu_set_t cpus;
        if (sched_getaffinity(0, sizeof cpus, &cpus) == 0)
                arg_cpus = (unsigned) MAX(CPU_COUNT(&cpus), 1);
        e = getenv("MICROVM_GENERATOR_WORKERS");
        if (!isempty(e)) {
                uint32_t k;

                if (parse_u32(e, &k) < 0 || k < 1 || k > WORKERS_MAX) {
                        _cleanup_free_ char *esc = utf8_escape_for_log(e);
                        log_warning("Ignoring MICROVM_GENERATOR_WORKERS=%s: not a number from 1 to %u.",
                                    strna(esc), WORKERS_MAX);
                } else
                        arg_workers = k;
        }

        /* Opens /dev/kmsg now: the filter below allows no more such opens. */
        log_open();

        outfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (outfd < 0) {
                log_error_errno(errno, "Failed to open output directory %s: %m", dest);
                return EXIT_FAILURE;
        }

        r = seccomp_confine_generator(MICROVM_SANITIZER_BUILD);
        if (r < 0)
                /* Without seccomp support in the kernel, still generate: a
                 * boot without VMs is worse than an unconfined generator. */
                log_warning_errno(r, "Failed to install the seccomp filter, continuing unconfined: %m");

        seccomp_generator_test_violation(outfd);

        r = generate(outfd, dest);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
