/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl validate: the validator the generator and microvm-stage use,
 * plus, unless --offline, what microvm-stage would refuse on this host
 * (lib/vm/host-check.h). */

#include <sys/stat.h>

#include "config-files.h"
#include "host-check.h"
#include "log.h"
#include "names.h"
#include "microvmctl.h"
#include "vm-conflicts.h"

/* "web1" → the config found for it; "path/web1.conf" → that file. The
 * parsed config goes to *ret_config (optional) when it parses. */
static int validate_one(const HostConfig *host, HostUidView *uids, const char *arg, VmConfig **ret_config) {
        _cleanup_vm_config_ VmConfig *c = NULL;
        Problems problems = {};
        int r;

        if (strchr(arg, '/') || endswith(arg, ".conf")) {
                _cleanup_free_ char *data = NULL, *id = NULL;
                const char *base = strrchr(arg, '/') ? strrchr(arg, '/') + 1 : arg;
                const char *suffix = endswith(base, ".conf");
                size_t size;

                if (!suffix)
                        return log_error_errno(EINVAL, "%s: VM config files are named <id>.conf", arg);
                id = strndup(base, (size_t) (suffix - base));
                if (!id)
                        return log_oom();
                r = config_read_file(arg, &data, &size);
                if (r < 0)
                        return log_error_errno(r, "%s: cannot be used: %s", arg, config_read_strerror(r));
                r = vm_config_parse(arg, id, data, size, host, &c, &problems);
        } else
                r = vm_config_load(host, arg, &c, &problems);

        bool parsed = r >= 0;
        if (r >= 0 && !arg_offline && vm_host_check(host, c, uids, &problems) < 0)
                r = -ENOMEM;
        ctl_log_problems(&problems);
        if (r >= 0 && problems_any(&problems))
                r = -EINVAL;
        problems_done(&problems);
        if (r == -ENOMEM)
                return log_oom();
        if (r >= 0)
                printf("%s: ok\n", c->source_path);
        /* --all compares every config that parses, also one this host
         * cannot start yet. */
        if (parsed && ret_config)
                *ret_config = TAKE_PTR(c);
        return r;
}

/* What a drive's path names on this host (--offline: only its path). */
static DriveIdentity drive_identity(const DriveConfig *d) {
        struct stat st;

        if (arg_offline || stat(d->path, &st) < 0)
                return (DriveIdentity) {};
        if (S_ISBLK(st.st_mode))
                return (DriveIdentity) { .known = true, .dev = st.st_rdev };
        return (DriveIdentity) { .known = true, .dev = st.st_dev, .ino = st.st_ino };
}

/* --all: what two valid VMs must not share. */
static int check_conflicts(VmConfig **configs, size_t n) {
        _cleanup_free_ VmConflictInput *in = calloc(n + 1, sizeof *in);
        _cleanup_free_ StageNetwork *nets = calloc(n + 1, sizeof *nets);
        _cleanup_free_ DriveIdentity *ids = NULL;
        size_t n_ids = 0, k = 0, m = 0;
        Problems problems = {};
        int r;

        if (!in || !nets)
                return log_oom();
        for (size_t i = 0; i < n; i++)
                if (configs[i])
                        n_ids += configs[i]->n_drives;
        ids = calloc(n_ids + 1, sizeof *ids);
        if (!ids)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *error = NULL;

                if (!configs[i])
                        continue;
                in[m].vm = configs[i];
                if (stage_network_plan(configs[i], configs[i]->id, &nets[m], &error) >= 0)
                        in[m].net = &nets[m];
                else
                        log_warning("VM %s: NICs not compared with other VMs': %s", configs[i]->id, error);
                in[m].drives = &ids[k];
                for (size_t d = 0; d < configs[i]->n_drives; d++)
                        ids[k++] = drive_identity(&configs[i]->drives[d]);
                m++;
        }
        r = vm_conflicts_check(in, m, &problems);
        ctl_log_problems(&problems);
        problems_done(&problems);
        for (size_t i = 0; i < m; i++)
                stage_network_done(&nets[i]);
        if (r < 0)
                return log_oom();
        if (r > 0)
                return log_error_errno(EINVAL, "%d conflict%s between VMs.", r, r == 1 ? "" : "s");
        return 0;
}

/* The jailer names the jail, the default parent cgroup and the pid file
 * after the exec file's name, the basename of its canonical path; jailers
 * up to v1.12 also refuse a name without "firecracker". A warning: newer
 * jailers accept any name. */
static void warn_exec_name(const HostConfig *host) {
        _cleanup_free_ char *canonical = realpath(host->firecracker, NULL), *resolved = NULL;
        const char *name = exec_name_from_path(canonical ?: host->firecracker);

        if (exec_name_ok_for_old_jailers(name))
                return;
        if (canonical && !streq(canonical, host->firecracker) &&
            asprintf(&resolved, " (resolved to \"%s\")", canonical) < 0)
                resolved = NULL;
        log_warning("%s: [host] firecracker: \"%s\"%s has the file name \"%s\", without \"firecracker\": "
                    "jailers " JAILER_EXEC_NAME_RULE_VERSIONS " refuse it (\"Invalid filename. The filename of "
                    "`--exec-file` option must contain \"firecracker\"\"); v1.13.0 and later accept it. Rename "
                    "the binary (e.g. firecracker-v1.16.1) to run with an older jailer.",
                    host->source_path ?: host_config_path(), host->firecracker, strempty(resolved), name);
}

int verb_validate(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        HostUidView uids = {};
        int r, ret = 0;


        r = ctl_load_host(&host);
        if (r < 0)
                return r;
        warn_exec_name(host);

        if (argc > 0) {
                for (int i = 0; i < argc; i++) {
                        r = validate_one(host, &uids, argv[i], NULL);
                        if (r < 0 && ret == 0)
                                ret = r;
                }
                host_uid_view_done(&uids);
                return ret;
        }

        VmConfigFile *files = NULL;
        VmConfig **configs = NULL;
        size_t n = 0;
        r = vm_config_enumerate(&files, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list VM configs: %m");
        if (arg_all) {
                configs = calloc(n + 1, sizeof *configs);
                if (!configs) {
                        vm_config_files_free(files, n);
                        return log_oom();
                }
        }
        for (size_t i = 0; i < n; i++) {
                if (files[i].masked) {
                        printf("%s: masked\n", files[i].path);
                        continue;
                }
                r = validate_one(host, &uids, files[i].path, configs ? &configs[i] : NULL);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (configs) {
                /* files are sorted by name, so configs by id */
                r = check_conflicts(configs, n);
                if (r < 0 && ret == 0)
                        ret = r;
                for (size_t i = 0; i < n; i++)
                        vm_config_free(configs[i]);
                free(configs);
        }
        vm_config_files_free(files, n);
        host_uid_view_done(&uids);
        return ret;
}
