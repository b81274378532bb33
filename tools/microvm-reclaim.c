/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-reclaim [--dry-run] [ID...] — run by microvm-reclaim.service at
 * boot (before microvms.target) and on demand.
 *
 * Finds what VMs left behind whose unit is not running — jails under the
 * chroot base, run dirs, cgroups below microvm.slice — and tears each VM
 * down with the same code as microvm-cleanup. Whether a unit runs is asked
 * of systemd over the bus, or, without a bus, read from its cgroup's
 * population. Never touches a running VM (the check and the teardown
 * happen under a lock that microvm-stage holds while it stages), and never
 * anything that is not ours (only names that are valid VM ids, in our
 * directories, in microvm.slice). */

#include <getopt.h>

#include "config-files.h"
#include "log.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "dm.h"
#include "storage.h"
#include "test-hook.h"
#include "tool.h"
#include "vm-reclaim.h"

static bool arg_dry_run = false;

static int reclaim_one(sd_bus *bus, const HostConfig *host, int run_fd, const ReclaimCandidate *c) {
        _cleanup_free_ char *error = NULL;
        ReclaimResult res;
        int r;

        if (!c->jail && !c->run_dir && !c->cgroup && !c->storage) {
                log_debug("%s: nothing of it found.", c->id);
                return 0;
        }
        r = reclaim_vm(bus, host, run_fd, c, arg_dry_run, &res, &error);
        if (r < 0 && error) {
                reclaim_result_done(&res);
                return log_error_errno(r, "%s", error);
        }
        test_hook("reclaim-reclaim-vm");
        if (res.running) {
                log_debug("%s: microvm@%s.service is running (asked %s); leaving it alone.", c->id, c->id, res.how);
                reclaim_result_done(&res);
                return 0;
        }
        if (res.starting) {
                log_info("%s: microvm@%s.service is starting (a process in its cgroup); leaving it alone.", c->id,
                         c->id);
                reclaim_result_done(&res);
                return 0;
        }
        if (res.plan_error)
                log_warning("%s: ignoring its launch plan: %s", c->id, res.plan_error);
        if (arg_dry_run) {
                printf("%s: would remove its %s (unit not running, per %s)\n", c->id, res.what, res.how);
                reclaim_result_done(&res);
                return r;
        }
        for (char **m = res.report.failed; m && *m; m++)
                log_error("%s: not removed: %s", c->id, *m);
        if (r >= 0)
                log_info("Reclaimed what VM %s left behind%s%s%s%s.", c->id, res.report.jail_removed ? ": jail" : "",
                         res.report.run_dir_removed ? ", run directory" : "",
                         res.report.n_cgroups_removed ? ", cgroups" : "", c->storage ? ", storage" : "");
        reclaim_result_done(&res);
        return r;
}

static void help(void) {
        printf("Usage: microvm-reclaim [--dry-run] [ID...]\n\n"
               "Remove what VMs whose unit is not running left behind: jails, run\n"
               "directories, cgroups, taps. Without IDs, every VM that left anything.\n\n"
               "  -h --help     Show this help\n"
               "     --version  Show the version\n"
               "  -n --dry-run  Only list what would be removed\n\n"
               "Run by microvm-reclaim.service at boot; see microvm@.service(8).\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "dry-run", no_argument, NULL, 'n' },
                {}
        };
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(unit_bus_closep) sd_bus *bus = NULL;
        _cleanup_free_ char *bus_error = NULL;
        _cleanup_close_ int run_fd = -EBADF;
        ReclaimScan cands = {}, found = {};
        bool any = false;
        int c, r, ret = 0;

        log_set_program_name("microvm-reclaim");
        log_parse_environment(false);
        while ((c = getopt_long(argc, argv, "hn", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case 'V':
                        printf("microvm-reclaim %s\n", PROJECT_VERSION);
                        return EXIT_SUCCESS;
                case 'n':
                        arg_dry_run = true;
                        break;
                default:
                        return EXIT_FAILURE;
                }

        r = tool_load_host_config(&host);
        if (r < 0)
                return tool_exit(r);

        /* A directory we could not look into fails the run (after
         * reclaiming what we found elsewhere). */
        ret = reclaim_scan(host, &found);
        for (char **m = found.warnings; m && *m; m++)
                log_warning("%s", *m);
        for (char **m = found.errors; m && *m; m++)
                log_error("%s", *m);
        if (ret == -ENOMEM)
                return tool_exit(log_oom());
        if (optind < argc) {
                /* Only these VMs, with what was found of them. */
                for (int i = optind; i < argc; i++) {
                        ReclaimCandidate *cand = reclaim_candidate(&cands, argv[i]);
                        if (!cand)
                                return tool_exit(log_error_errno(EINVAL, "\"%s\" is not a valid VM id.", argv[i]));
                        for (size_t j = 0; j < found.n; j++)
                                if (streq(found.items[j].id, cand->id))
                                        *cand = found.items[j];
                }
                for (size_t i = 0; i < cands.n; i++)
                        any |= cands.items[i].jail || cands.items[i].run_dir || cands.items[i].cgroup ||
                               cands.items[i].storage;
        } else {
                cands = found;
                found = (ReclaimScan) {};
                any = cands.n > 0;
        }

        r = unit_bus_open(&bus, &bus_error);
        if (r < 0) {
                log_notice("No system bus (%s): judging VMs by their cgroups.", strna(bus_error));
                bus = NULL;
        }
        /* The reclaim lock lives in the run directory: made if missing, so
         * that a start racing us (microvm-stage holds the lock shared from
         * before it builds anything) is always serialised with us. */
        if (any && !arg_dry_run) {
                _cleanup_free_ char *error = NULL;
                r = safe_root_open(host->run_dir, SAFE_ROOT_CREATE, 0700, &run_fd, &error);
                if (r < 0)
                        return tool_exit(log_error_errno(r, "Cannot use the run directory for the reclaim lock: %s",
                                                         error ?: strerror(-r)));
        }

        /* After the bus is connected: no more new sockets or exec. */
        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        for (size_t i = 0; i < cands.n; i++) {
                r = reclaim_one(bus, host, run_fd, &cands.items[i]);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        /* Loops of ours nothing is built on any more (their dm devices went
         * above, or a crash left them): after every VM's teardown. */
        if (!arg_dry_run) {
                _cleanup_strv_free_ char **failed = NULL;
                int loops, cookies;

                r = reclaim_host_leftovers(&loops, &cookies, &failed);
                for (char **m = failed; m && *m; m++)
                        log_error("Not removed: %s", *m);
                if (loops > 0)
                        log_info("Detached %d loop device(s) of ours that nothing used.", loops);
                if (cookies > 0)
                        log_info("Removed %d abandoned device-mapper udev cookie(s).", cookies);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (cands.n == 0)
                log_debug("Nothing to reclaim.");
        reclaim_scan_done(&cands);
        reclaim_scan_done(&found);
        return tool_exit(ret);
}
