/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl validate: the validator the generator and microvm-stage use,
 * plus, unless --offline, what microvm-stage would refuse on this host
 * (lib/vm/host-check.h). */

#include "config-files.h"
#include "host-check.h"
#include "log.h"
#include "microvmctl.h"

/* "web1" → the config found for it; "path/web1.conf" → that file. */
static int validate_one(const HostConfig *host, HostUidView *uids, const char *arg) {
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
        return r;
}

int verb_validate(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        HostUidView uids = {};
        int r, ret = 0;

        r = ctl_load_host(&host);
        if (r < 0)
                return r;

        if (argc > 0) {
                for (int i = 0; i < argc; i++) {
                        r = validate_one(host, &uids, argv[i]);
                        if (r < 0 && ret == 0)
                                ret = r;
                }
                host_uid_view_done(&uids);
                return ret;
        }

        VmConfigFile *files = NULL;
        size_t n = 0;
        r = vm_config_enumerate(&files, &n);
        if (r < 0)
                return log_error_errno(r, "Failed to list VM configs: %m");
        for (size_t i = 0; i < n; i++) {
                if (files[i].masked) {
                        printf("%s: masked\n", files[i].path);
                        continue;
                }
                r = validate_one(host, &uids, files[i].path);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        vm_config_files_free(files, n);
        host_uid_view_done(&uids);
        return ret;
}
