/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl — the operator's command line. This first version validates
 * configuration files with exactly the validator the generator and the
 * staging tools use, so a config that passes here is one they accept. */

#include <getopt.h>

#include "config-files.h"
#include "names.h"
#include "log.h"

static const char *arg_host_config = NULL;

static void help(void) {
        printf("Usage: microvmctl [OPTIONS] COMMAND ...\n"
               "\n"
               "Manage Firecracker microVMs run as microvm@ID.service units.\n"
               "\n"
               "Commands:\n"
               "  validate [ID|FILE ...]  Check the host config and VM configs (all VMs in\n"
               "                          the config search path when none are named)\n"
               "\n"
               "Options:\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "     --host-config=FILE   Use FILE instead of %s\n"
               "\n"
               "See microvmctl(1) and microvm.conf(5).\n",
               HOST_CONFIG_PATH);
}

static int load_host(HostConfig **ret) {
        Problems problems = {};
        int r;

        if (arg_host_config)
                setenv("MICROVM_HOST_CONFIG", arg_host_config, 1);
        r = host_config_load(ret, &problems);
        problems_print(&problems, stderr);
        problems_done(&problems);
        if (r < 0 && r != -EINVAL)
                return log_error_errno(r, "Failed to load host config %s: %m", host_config_path());
        return r;
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

/* "web1" → the config found for it; "path/web1.conf" → that file. */
static int validate_one(const HostConfig *host, const char *arg) {
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

        problems_print(&problems, stderr);
        problems_done(&problems);
        if (r == -ENOMEM)
                return log_oom();
        if (r >= 0)
                printf("%s: ok\n", c->source_path);
        return r;
}

static int verb_validate(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        int r, ret = 0;

        r = load_host(&host);
        if (r < 0)
                return r;
        warn_exec_name(host);

        if (argc > 0) {
                for (int i = 0; i < argc; i++) {
                        r = validate_one(host, argv[i]);
                        if (r < 0 && ret == 0)
                                ret = r;
                }
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
                r = validate_one(host, files[i].path);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        vm_config_files_free(files, n);
        return ret;
}

int main(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_HOST_CONFIG };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "host-config", required_argument, NULL, ARG_HOST_CONFIG },
                {}
        };
        int c, r;

        log_set_program_name("microvmctl");
        log_parse_environment(false);

        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("microvmctl %s\n", PROJECT_VERSION);
                        return EXIT_SUCCESS;
                case ARG_HOST_CONFIG:
                        arg_host_config = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        if (optind >= argc) {
                log_error("Missing command (see --help).");
                return EXIT_FAILURE;
        }
        if (streq(argv[optind], "validate"))
                r = verb_validate(argc - optind - 1, argv + optind + 1);
        else {
                log_error("Unknown command \"%s\" (see --help).", argv[optind]);
                return EXIT_FAILURE;
        }
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
