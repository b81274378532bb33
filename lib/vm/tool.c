/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config-files.h"
#include "names.h"
#include "safe-fs.h"
#include "log.h"
#include "tool.h"
#include "uid-alloc.h"

static bool invalid_id_is_error = true;

void tool_invalid_id_is_not_an_error(void) {
        invalid_id_is_error = false;
}

int tool_begin(int argc, char **argv, const char *name, const char *summary, const char **ret_id) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        const char *reason;
        int c;

        log_set_program_name(name);
        log_parse_environment(false);

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        printf("Usage: %s [--help|--version] ID\n\n%s\n\n"
                               "This tool is run by microvm@ID.service; see microvm@.service(8).\n",
                               name, summary);
                        return 1;
                case 'V':
                        printf("%s %s\n", name, PROJECT_VERSION);
                        return 1;
                default:
                        return -EINVAL;
                }

        if (optind != argc - 1)
                return log_error_errno(EINVAL, "Expected exactly one argument, the VM id (see --help).");
        reason = vm_id_invalid_reason(argv[optind]);
        if (reason) {
                (void) log_full_errno(invalid_id_is_error ? LOG_ERR : LOG_NOTICE, EBADR,
                                      "\"%s\" is not a valid VM id: it %s.", argv[optind], reason);
                return -EBADR;
        }
        *ret_id = argv[optind];
        return 0;
}

static void log_problems(const Problems *p) {
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *m = problem_format(&p->items[i]);
                log_error("%s", m ?: "(out of memory)");
        }
}

/* The summary line repeats the first problem: it is the last error, the
 * one "systemctl status" shows as the unit's StatusText. */
static char *first_problem(const Problems *p) {
        char *m = p->n > 0 ? problem_format(&p->items[0]) : NULL, *s = NULL;

        if (m && asprintf(&s, " (%s%s)", m, p->n > 1 ? ", and more above" : "") < 0)
                s = NULL;
        free(m);
        return s;
}

int tool_load_host_config(HostConfig **ret) {
        _cleanup_free_ char *first = NULL;
        Problems p = {};
        int r = host_config_load(ret, &p);

        log_problems(&p);
        first = first_problem(&p);
        problems_done(&p);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Host config %s is not usable%s; fix it first (microvmctl validate).",
                                       host_config_path(), strempty(first));
        return 0;
}

int tool_load_vm_config(const HostConfig *host, const char *id, VmConfig **ret) {
        _cleanup_free_ char *first = NULL;
        Problems p = {};
        int r = vm_config_load(host, id, ret, &p);

        log_problems(&p);
        first = first_problem(&p);
        problems_done(&p);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "VM %s has no usable config%s; not starting it.", id, strempty(first));
        return 0;
}

static int load_generated_copy(const HostConfig *host, const char *id, const char *want, const char *copy,
                               VmConfig **ret, char **ret_data, size_t *ret_size) {
        _cleanup_free_ char *data = NULL, *disk = NULL, *disk_data = NULL;
        _cleanup_vm_config_ VmConfig *c = NULL;
        uint8_t digest[SHA256_DIGEST_SIZE];
        char have[2 * SHA256_DIGEST_SIZE + 1];
        size_t size, disk_size;
        Problems p = {};
        int r;

        r = config_read_file(copy, &data, &size);
        if (r < 0)
                return log_error_errno(r, "The configuration microvm@%s.service was generated from, %s, cannot be "
                                       "used: %s. Run \"systemctl daemon-reload\".", id, copy,
                                       config_read_strerror(r));
        sha256(data, size, digest);
        sha256_hex(digest, have);
        if (!streq(have, want))
                return log_error_errno(ESTALE, "%s is not the configuration microvm@%s.service was generated from "
                                       "(its digest differs). Run \"systemctl daemon-reload\".", copy, id);

        /* Messages and SourcePath name the file the admin edits. */
        r = vm_config_find(id, &disk);
        if (r == -ENOMEM)
                return log_oom();
        r = vm_config_parse(disk ?: copy, id, data, size, host, &c, &p);
        log_problems(&p);
        problems_done(&p);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "The configuration microvm@%s.service was generated from (%s) is not "
                                       "valid here; not starting it.", id, copy);

        if (!disk)
                log_notice("The config of %s is gone from the config directories; starting with the configuration "
                           "microvm@%s.service was generated from (\"systemctl daemon-reload\" applies the removal).",
                           id, id);
        else if (config_read_file(disk, &disk_data, &disk_size) < 0 || disk_size != size ||
                 memcmp(disk_data, data, size) != 0)
                log_notice("%s differs from the configuration microvm@%s.service was generated from; starting with "
                           "the generated one (\"systemctl daemon-reload\" applies the file on disk).", disk, id);

        *ret = TAKE_PTR(c);
        if (ret_data) {
                *ret_data = TAKE_PTR(data);
                *ret_size = size;
        }
        return 0;
}

int tool_load_vm_config_for_unit(const HostConfig *host, const char *id, VmConfig **ret, char **ret_copy,
                                 size_t *ret_copy_size) {
        const char *want = getenv("MICROVM_CONFIG_DIGEST"), *copy = getenv("MICROVM_CONFIG_COPY");
        char have[2 * SHA256_DIGEST_SIZE + 1];
        _cleanup_vm_config_ VmConfig *c = NULL;
        int r;

        if (ret_copy) {
                *ret_copy = NULL;
                *ret_copy_size = 0;
        }
        if (!isempty(want) && !isempty(copy))
                return load_generated_copy(host, id, want, copy, ret, ret_copy, ret_copy_size);

        r = tool_load_vm_config(host, id, &c);
        if (r < 0)
                return r;
        if (!isempty(want)) {
                sha256_hex(c->digest, have);
                if (!streq(want, have))
                        return log_error_errno(ESTALE,
                                               "%s changed since the unit was generated: run \"systemctl daemon-reload\" "
                                               "first, then start microvm@%s again.",
                                               c->source_path, id);
        }
        *ret = TAKE_PTR(c);
        return 0;
}

bool tool_stage_completed(int run_fd, const char *id) {
        _cleanup_free_ char *rel = NULL, *data = NULL;
        const char *inv = getenv("INVOCATION_ID");
        size_t size;

        if (asprintf(&rel, "%s/" RUN_STAGED_FILE, id) < 0)
                return false;
        if (safe_read_file_at(run_fd, rel, 256, &data, &size) < 0)
                return false;
        return isempty(inv) || (size == strlen(inv) && memcmp(data, inv, size) == 0);
}

bool tool_start_refusal_is_final(const char *id) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_vm_config_ VmConfig *vm = NULL;
        int level = log_get_max_level(), r;

        log_set_max_level(-1);
        r = tool_load_host_config(&host);
        if (r >= 0)
                r = tool_load_vm_config_for_unit(host, id, &vm, NULL, NULL);
        log_set_max_level(level);
        return r < 0 && r != -ENOMEM;
}

static int pidfd_open_compat(pid_t pid) {
#if HAVE_SYS_PIDFD_OPEN
        return (int) syscall(SYS_pidfd_open, pid, 0);
#else
        errno = ENOSYS;
        return -1;
#endif
}

int tool_open_main_pid(int *ret_pidfd, pid_t *ret_pid) {
        const char *e = getenv("MAINPID");
        long pid;
        char *end;
        int fd;

        if (isempty(e))
                return -ESRCH;
        errno = 0;
        pid = strtol(e, &end, 10);
        if (errno || *end || pid <= 1)
                return -EINVAL;
        fd = pidfd_open_compat((pid_t) pid);
        if (fd < 0)
                return -errno;
        *ret_pidfd = fd;
        *ret_pid = (pid_t) pid;
        return 0;
}

void tool_log_teardown_report(const TeardownReport *rep, const char *id) {
        for (char **m = rep->failed; m && *m; m++)
                log_error("Not removed: %s", *m);
        for (char **m = rep->deferred; m && *m; m++)
                log_warning("Removal deferred until its last user closes it: %s", *m);
        for (char **m = rep->foreign; m && *m; m++)
                log_notice("%s", *m);
        if (rep->n_cgroups_killed > 0)
                log_notice("Killed processes left in %u cgroup(s) of %s.", rep->n_cgroups_killed, id);
}

int tool_give_back_uid(int state_fd, const HostConfig *host, const char *id, uid_t uid) {
        SafeRmReport srep = {};
        int r;

        if (uid == UID_INVALID)
                (void) uid_record_read(state_fd, id, &uid);
        r = vm_state_remove(state_fd, id, &srep);
        if (r < 0) {
                _cleanup_free_ char *what = safe_rm_report_format(&srep, host->state_dir);
                log_error_errno(r, "Cannot give back uid %u of %s with its state directory %s/%s: %s",
                                (unsigned) uid, id, host->state_dir, id, what ?: strerror(-r));
        } else if (r > 0)
                log_info("Gave back uid %u: %s never ran.", (unsigned) uid, id);
        safe_rm_report_done(&srep);
        return r < 0 ? r : 0;
}
