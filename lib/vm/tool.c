/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <getopt.h>

#include "config-files.h"
#include "log.h"
#include "tool.h"

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
        if (reason)
                return log_error_errno(EINVAL, "\"%s\" is not a valid VM id: it %s.", argv[optind], reason);
        *ret_id = argv[optind];
        return 0;
}

static void log_problems(const Problems *p) {
        for (size_t i = 0; i < p->n; i++) {
                _cleanup_free_ char *m = problem_format(&p->items[i]);
                log_error("%s", m ?: "(out of memory)");
        }
}

int tool_load_host_config(HostConfig **ret) {
        Problems p = {};
        int r = host_config_load(ret, &p);

        log_problems(&p);
        problems_done(&p);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "Host config %s is not usable; fix it first (microvmctl validate).",
                                       host_config_path());
        return 0;
}

int tool_load_vm_config(const HostConfig *host, const char *id, VmConfig **ret) {
        Problems p = {};
        int r = vm_config_load(host, id, ret, &p);

        log_problems(&p);
        problems_done(&p);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "VM %s has no usable config; not starting it.", id);
        return 0;
}
