/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl sync: bring the running VMs in line with the configs —
 * start autostart VMs that are down, stop running VMs whose config was
 * removed or masked (orphans), and list (--restart-changed: restart one by
 * one) running VMs whose config changed since they started. --dry-run
 * prints the plan only. Every action is a job of the manager, waited for. */

#include "log.h"
#include "manager.h"
#include "microvmctl.h"
#include "names.h"

typedef enum SyncAction {
        SYNC_START,
        SYNC_STOP,
        SYNC_RESTART,
        SYNC_CHANGED,           /* listed only */
} SyncAction;

static int act(sd_bus *bus, const char *id, SyncAction a, const char *why) {
        static const char *const verb[] = { "start", "stop", "restart", "changed" };
        static const char *const method[] = { "StartUnit", "StopUnit", "RestartUnit", NULL };
        _cleanup_free_ char *unit = NULL, *result = NULL, *error = NULL;
        int r;

        printf("%s %s (%s)%s\n", verb[a], id, why, arg_dry_run && a != SYNC_CHANGED ? " [dry run]" : "");
        fflush(stdout);
        if (arg_dry_run || a == SYNC_CHANGED)
                return 0;
        if (asprintf(&unit, UNIT_PREFIX "%s.service", id) < 0)
                return log_oom();
        r = manager_unit_job(bus, method[a], unit, &result, &error);
        if (r < 0)
                return log_error_errno(r, "VM %s: %s failed: %s", id, verb[a], error ?: strerror(-r));
        if (!streq(result, "done"))
                return log_error_errno(EIO, "VM %s: %s failed: job %s (see microvmctl status %s).", id, verb[a], result,
                                       id);
        return 0;
}

int verb_sync(int argc, char **argv) {
        _cleanup_(vm_table_done) VmTable t = {};
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        size_t n_actions = 0;
        int r, ret = 0;

        if (arg_host)
                return log_error_errno(EOPNOTSUPP, "sync reads the configs of this host: it does not take -H.");
        r = vm_table_load(&t, NULL, 0);
        if (r < 0)
                return r;
        r = ctl_bus_open(&bus);
        if (r < 0)
                return r;

        /* Stops first: an orphan may hold what a VM to start needs. */
        for (size_t i = 0; i < t.n; i++) {
                const VmRow *row = &t.rows[i];
                if (!row->orphan)
                        continue;
                n_actions++;
                r = act(bus, row->id, SYNC_STOP, row->masked ? "config masked" : "config removed");
                if (r < 0 && ret == 0)
                        ret = r;
        }
        for (size_t i = 0; i < t.n; i++) {
                const VmRow *row = &t.rows[i];
                if (!row->config || row->invalid || row->masked || !row->config->autostart || unit_running(row->unit))
                        continue;
                n_actions++;
                r = act(bus, row->id, SYNC_START, row->unit && streq(row->unit->active_state, "failed") ?
                                                          "autostart, failed" : "autostart, down");
                if (r < 0 && ret == 0)
                        ret = r;
        }
        for (size_t i = 0; i < t.n; i++) {
                const VmRow *row = &t.rows[i];
                if (row->orphan || !row->config_changed || !unit_running(row->unit))
                        continue;
                n_actions++;
                if (row->invalid) {
                        /* A restart would fail: leave it running on what it started with. */
                        log_warning("VM %s: its config changed and does not validate now (see microvmctl validate %s); not restarted.",
                                    row->id, row->id);
                        r = act(bus, row->id, SYNC_CHANGED, "config changed, invalid now");
                } else
                        r = act(bus, row->id, arg_restart_changed ? SYNC_RESTART : SYNC_CHANGED,
                                arg_restart_changed ? "config changed" : "config changed; --restart-changed restarts it");
                if (r < 0 && ret == 0)
                        ret = r;
        }
        if (n_actions == 0)
                printf("Nothing to do: every autostart VM runs, no orphan, no changed config.\n");
        return ret;
}
