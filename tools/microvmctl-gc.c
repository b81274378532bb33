/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl gc [--dry-run]: the reclaim logic of microvm-reclaim
 * (lib/vm/vm-reclaim.c) now, on this host: what VMs whose unit is not
 * running left behind (jails, run dirs, cgroups, taps, dm and loop
 * devices) is torn down, and each VM's line says what went. */

#include <unistd.h>

#include "dm.h"
#include "log.h"
#include "microvmctl.h"
#include "safe-fs.h"
#include "storage.h"
#include "unit-state.h"
#include "vm-reclaim.h"

int verb_gc(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(unit_bus_closep) sd_bus *bus = NULL;
        _cleanup_free_ char *bus_error = NULL;
        _cleanup_close_ int run_fd = -EBADF;
        ReclaimScan scan = {};
        size_t n_done = 0;
        int r, ret;

        if (geteuid() != 0)
                return log_error_errno(EPERM, "gc removes jails, devices and cgroups: run it as root.");
        r = ctl_load_host(&host);
        if (r < 0)
                return r;

        ret = reclaim_scan(host, &scan);
        for (char **m = scan.warnings; m && *m; m++)
                log_warning("%s", *m);
        for (char **m = scan.errors; m && *m; m++)
                log_error("%s", *m);
        if (ret == -ENOMEM) {
                reclaim_scan_done(&scan);
                return log_oom();
        }
        /* The running check asks systemd; without a bus, the cgroups. */
        r = unit_bus_open(&bus, &bus_error);
        if (r < 0) {
                log_notice("No system bus (%s): judging VMs by their cgroups.", strna(bus_error));
                bus = NULL;
        }
        r = safe_root_open(host->run_dir, 0, 0, &run_fd, NULL);
        if (r < 0 && r != -ENOENT)
                log_warning_errno(r, "Cannot open the run directory %s: %m", host->run_dir);

        for (size_t i = 0; i < scan.n; i++) {
                const ReclaimCandidate *c = &scan.items[i];
                _cleanup_free_ char *error = NULL;
                ReclaimResult res;

                r = reclaim_vm(bus, host, run_fd, c, arg_dry_run, &res, &error);
                if (r < 0 && error) {
                        log_error("%s", error);
                        if (ret == 0)
                                ret = r;
                        reclaim_result_done(&res);
                        continue;
                }
                if (res.running) {
                        log_debug("%s: microvm@%s.service is running (asked %s); left alone.", c->id, c->id, res.how);
                        reclaim_result_done(&res);
                        continue;
                }
                n_done++;
                if (res.plan_error)
                        log_warning("%s: ignoring its launch plan: %s", c->id, res.plan_error);
                if (arg_dry_run)
                        printf("%s: would remove its %s (unit not running, per %s)\n", c->id, res.what, res.how);
                else {
                        for (char **m = res.report.failed; m && *m; m++)
                                log_error("%s: not removed: %s", c->id, *m);
                        printf("%s: removed%s%s%s%s%s\n", c->id, res.report.jail_removed ? " jail," : "",
                               res.report.run_dir_removed ? " run directory," : "",
                               res.report.n_cgroups_removed ? " cgroups," : "", c->storage ? " storage," : "",
                               r < 0 ? " (not everything, see above)" : " (unit not running)");
                }
                if (r < 0 && ret == 0)
                        ret = r;
                reclaim_result_done(&res);
        }
        reclaim_scan_done(&scan);

        if (!arg_dry_run) {
                _cleanup_strv_free_ char **failed = NULL;
                int loops, cookies;

                r = reclaim_host_leftovers(&loops, &cookies, &failed);
                for (char **m = failed; m && *m; m++)
                        log_error("Not removed: %s", *m);
                if (loops > 0)
                        printf("Detached %d loop device(s) of ours that nothing used.\n", loops);
                if (cookies > 0)
                        printf("Removed %d abandoned device-mapper udev cookie(s).\n", cookies);
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (n_done == 0)
                printf("Nothing to reclaim.\n");
        return ret;
}
