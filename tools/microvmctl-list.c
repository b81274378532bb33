/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl list: the table of VMs (tools/microvmctl-table.c) as text or
 * JSON, and the fields of a row that list and status
 * (tools/microvmctl-status.c) share. */

#include "log.h"
#include "microvmctl.h"
#include "uid-alloc.h"

const char *row_active(const VmRow *r) {
        return r->unit ? r->unit->active_state : "inactive";
}
const char *row_sub(const VmRow *r) {
        return r->unit ? r->unit->sub_state : "dead";
}

/* The fields list and status share. */
void row_json_common(FILE *f, const VmRow *r) {
        fputs("{\"id\":", f);
        json_string(f, r->id);
        fputs(",\"active_state\":", f);
        json_string(f, row_active(r));
        fputs(",\"sub_state\":", f);
        json_string(f, row_sub(r));
        json_bool(f, "loaded", r->unit != NULL);
        json_uint_or_null(f, "since_usec", r->unit && r->unit->state_change_usec, r->unit ? r->unit->state_change_usec : 0);
        json_uint_or_null(f, "vcpus", r->config, r->config ? r->config->vcpus : 0);
        json_uint_or_null(f, "memory_bytes", r->config, r->config ? r->config->memory : 0);
        json_uint_or_null(f, "uid", r->uid != UID_INVALID, r->uid);
        json_uint_or_null(f, "main_pid", r->unit && r->unit->main_pid, r->unit ? r->unit->main_pid : 0);
        json_bool(f, "autostart", r->config && r->config->autostart);
        json_bool(f, "config_changed", r->config_changed);
        json_bool(f, "orphan", r->orphan);
        json_bool(f, "masked", r->masked);
        json_bool(f, "valid", r->config && !r->invalid);
        fputs(",\"config_path\":", f);
        json_string(f, r->masked ? NULL : r->config_path);
        json_bool(f, "suspended", r->suspended);
        json_uint_or_null(f, "snapshot_bytes", r->suspended, r->snapshot_bytes);
        json_uint_or_null(f, "snapshot_usec", r->suspended, r->snapshot_usec);
}

int verb_list(int argc, char **argv) {
        _cleanup_(vm_table_done) VmTable t = {};
        int r;

        r = vm_table_load(&t, NULL, 0);
        if (r < 0)
                return r;

        if (arg_json) {
                fputc('[', stdout);
                for (size_t i = 0; i < t.n; i++) {
                        if (i > 0)
                                fputc(',', stdout);
                        fputc('\n', stdout);
                        row_json_common(stdout, &t.rows[i]);
                        fputc('}', stdout);
                }
                fputs("\n]\n", stdout);
                return fflush(stdout) == 0 ? 0 : log_error_errno(errno, "Failed to write the list: %m");
        }

        printf("%-20s %-22s %-23s %5s %7s %8s %8s %-9s %-7s %s\n", "ID", "STATE", "SINCE", "VCPUS", "MEMORY",
               "UID", "PID", "AUTOSTART", "CHANGED", "ORPHAN");
        for (size_t i = 0; i < t.n; i++) {
                const VmRow *row = &t.rows[i];
                char state[64], since[32], mem[32], uid[16], pid[16], vcpus[16];

                if (row->suspended && streq(row_active(row), "inactive")) {
                        char sz[32];
                        snprintf(state, sizeof state, "suspended (%s)", format_bytes_short(row->snapshot_bytes, sz));
                } else
                        snprintf(state, sizeof state, "%s/%s", row_active(row), row_sub(row));
                if (row->config) {
                        snprintf(vcpus, sizeof vcpus, "%" PRIu32, row->config->vcpus);
                        format_bytes_short(row->config->memory, mem);
                } else {
                        strcpy(vcpus, row->masked ? "masked" : row->invalid ? "invalid" : "-");
                        strcpy(mem, "-");
                }
                if (row->uid != UID_INVALID)
                        snprintf(uid, sizeof uid, "%u", (unsigned) row->uid);
                else
                        strcpy(uid, "-");
                if (row->unit && row->unit->main_pid)
                        snprintf(pid, sizeof pid, "%" PRIu32, row->unit->main_pid);
                else
                        strcpy(pid, "-");
                printf("%-20s %-22s %-23s %5s %7s %8s %8s %-9s %-7s %s\n", row->id, state,
                       format_timestamp(row->unit ? row->unit->state_change_usec : 0, since), vcpus, mem, uid, pid,
                       row->config ? yes_no(row->config->autostart) : "-", yes_no(row->config_changed),
                       yes_no(row->orphan));
        }
        if (arg_host)
                printf("\n(-H %s: configs, uids and plans of that host are not shown)\n", arg_host);
        return fflush(stdout) == 0 ? 0 : log_error_errno(errno, "Failed to write the list: %m");
}
