/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl status ID…: a VM's row (vm_table_load(), as list has it),
 * plus its paths, drives (mode, backing file, dm device and its loop
 * devices), NICs, vsock, the unit's memory, CPU and task figures and the
 * last console lines; as text or, with --json, one object per VM. */

#include <dirent.h>
#include <inttypes.h>

#include "config-files.h"
#include "log.h"
#include "manager.h"
#include "microvmctl.h"
#include "names.h"
#include "safe-fs.h"
#include "stage-plan.h"
#include "vm-teardown.h"

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

/* The loop devices under dm device name (its slaves in sysfs). */
static char **dm_loops(const char *dm_name, char *kname, size_t kname_size) {
        _cleanup_(closedirp) DIR *d = opendir("/sys/block");
        char **loops = NULL;
        struct dirent *de;

        kname[0] = 0;
        if (!d)
                return NULL;
        while ((de = readdir(d))) {
                char path[PATH_MAX], name[128];

                if (!startswith(de->d_name, "dm-"))
                        continue;
                snprintf(path, sizeof path, "/sys/block/%s/dm/name", de->d_name);
                if (read_one_line_file(path, name, sizeof name) < 0 || !streq(name, dm_name))
                        continue;
                snprintf(kname, kname_size, "/dev/%.32s", de->d_name);
                snprintf(path, sizeof path, "/sys/block/%s/slaves", de->d_name);
                _cleanup_(closedirp) DIR *s = opendir(path);
                struct dirent *se;
                while (s && (se = readdir(s)))
                        if (se->d_name[0] != '.' && strv_push(&loops, se->d_name) < 0)
                                break;
                break;
        }
        return loops;
}

/* The plan's jail, or where the next start puts it (<chroot_base>/<name
 * of the firecracker binary>/<id>; the plan has the canonical name). */
static char *jail_path(const VmRow *r, const HostConfig *host) {
        const char *exec;
        char *p;

        if (r->plan)
                return strdup(r->plan->jail_dir);
        if (!host)
                return NULL;
        exec = strrchr(host->firecracker, '/') ? strrchr(host->firecracker, '/') + 1 : host->firecracker;
        if (asprintf(&p, "%s/%s/%s", host->chroot_base, exec, r->id) < 0)
                return NULL;
        return p;
}

typedef struct UnitUsage {
        bool loaded;
        uint64_t memory_current, cpu_nsec, tasks_current, memory_max;
        char *result;
        char *invocation;
} UnitUsage;

static void unit_usage_load(sd_bus *bus, const VmRow *r, UnitUsage *u) {
        static const char service[] = "org.freedesktop.systemd1.Service";

        *u = (UnitUsage) { .memory_current = UINT64_MAX, .cpu_nsec = UINT64_MAX, .tasks_current = UINT64_MAX,
                           .memory_max = UINT64_MAX };
        if (!r->unit)
                return;
        u->loaded = true;
        (void) manager_get_u64(bus, r->unit->path, service, "MemoryCurrent", 't', &u->memory_current);
        (void) manager_get_u64(bus, r->unit->path, service, "CPUUsageNSec", 't', &u->cpu_nsec);
        (void) manager_get_u64(bus, r->unit->path, service, "TasksCurrent", 't', &u->tasks_current);
        (void) manager_get_u64(bus, r->unit->path, service, "MemoryMax", 't', &u->memory_max);
        (void) manager_get_string(bus, r->unit->path, service, "Result", &u->result);
}

static void status_text(const VmRow *r, const HostConfig *host, const UnitUsage *u, char **console) {
        char buf[32], buf2[32];
        _cleanup_free_ char *jail = NULL;

        printf("● %s - %s\n", r->id, r->config && r->config->description ? r->config->description : "microVM");
        printf("      State: %s/%s%s%s%s\n", row_active(r), row_sub(r), r->unit ? " since " : "",
               r->unit ? format_timestamp(r->unit->state_change_usec, buf) : "",
               r->unit ? "" : " (unit not loaded)");
        if (r->suspended)
                printf("  Suspended: snapshot of %s taken %s (%" PRIu64 " min ago); the next start resumes it\n",
                       format_bytes_short(r->snapshot_bytes, buf2), format_timestamp(r->snapshot_usec, buf),
                       (uint64_t) (now_usec(CLOCK_REALTIME) > r->snapshot_usec
                                           ? (now_usec(CLOCK_REALTIME) - r->snapshot_usec) / (60 * USEC_PER_SEC)
                                           : 0));
        if (u->result && !streq(u->result, "success"))
                printf("     Result: %s\n", u->result);
        printf("     Config: %s%s%s%s\n", r->masked ? "masked" : r->config_path ?: "none (orphan)",
               r->invalid ? " (invalid: see microvmctl validate)" : "", r->config_changed ? " (changed since start)" : "",
               r->orphan ? " (orphan: running without a config)" : "");
        jail = jail_path(r, host);
        if (jail)
                printf("       Jail: %s%s\n", jail, r->plan ? "" : " (when running)");
        if (r->unit && r->unit->main_pid)
                printf("   Main PID: %" PRIu32 "\n", r->unit->main_pid);
        if (r->uid != UID_INVALID)
                printf("        UID: %u\n", (unsigned) r->uid);
        if (r->config)
                printf("       vCPU: %" PRIu32 ", memory %s, autostart %s\n", r->config->vcpus,
                       format_bytes_short(r->config->memory, buf), yes_no(r->config->autostart));
        if (u->memory_current != UINT64_MAX)
                printf("     Memory: %s (max %s)\n", format_bytes_short(u->memory_current, buf),
                       u->memory_max == UINT64_MAX ? "infinity" : format_bytes_short(u->memory_max, buf2));
        if (u->cpu_nsec != UINT64_MAX)
                printf("        CPU: %" PRIu64 ".%03" PRIu64 "s\n", u->cpu_nsec / 1000000000, (u->cpu_nsec / 1000000) % 1000);
        if (u->tasks_current != UINT64_MAX)
                printf("      Tasks: %" PRIu64 "\n", u->tasks_current);
        if (r->config) {
                StageNetwork net = {};
                bool have_net = stage_network_plan(r->config, r->id, &net, NULL) >= 0;

                for (size_t i = 0; i < r->config->n_drives; i++) {
                        const DriveConfig *d = &r->config->drives[i];
                        char dm[128], kname[64] = "";
                        _cleanup_strv_free_ char **loops = NULL;

                        printf(i == 0 ? "     Drives: " : "             ");
                        printf("%s: %s %s%s%s", d->name, drive_mode_to_string(d->mode), d->path, d->root ? " (root)" : "",
                               d->read_only ? " (read-only)" : "");
                        if (r->plan && dm_name_for(r->id, d->name, dm) >= 0 && strv_contains(r->plan->dm, dm)) {
                                loops = dm_loops(dm, kname, sizeof kname);
                                printf(", dm %s%s%s", dm, *kname ? " " : "", kname);
                                for (char **l = loops; l && *l; l++)
                                        printf("%s/dev/%s", l == loops ? ", loops " : " ", *l);
                        }
                        putchar('\n');
                }
                for (size_t i = 0; i < r->config->n_nics; i++) {
                        const NicConfig *n = &r->config->nics[i];
                        printf(i == 0 ? "       NICs: " : "             ");
                        if (have_net)
                                printf("%s: tap %s, mac %02x:%02x:%02x:%02x:%02x:%02x, bridge %s\n", n->name, net.taps[i],
                                       net.macs[i][0], net.macs[i][1], net.macs[i][2], net.macs[i][3], net.macs[i][4],
                                       net.macs[i][5], n->bridge ?: "none");
                        else
                                printf("%s: bridge %s\n", n->name, n->bridge ?: "none");
                }
                if (r->config->has_vsock) {
                        if (!r->config->vsock_cid_auto)
                                printf("      vsock: cid %" PRIu32 "\n", r->config->vsock_cid);
                        else if (r->uid != UID_INVALID)
                                printf("      vsock: cid %u (auto: the uid)\n", (unsigned) r->uid);
                        else
                                printf("      vsock: cid auto (the uid, once allocated)\n");
                }
                stage_network_done(&net);
        }
        if (console) {
                printf("\n");
                for (char **l = console; *l; l++)
                        printf("%s\n", *l);
        }
}

static void status_json(const VmRow *r, const HostConfig *host, const UnitUsage *u, char **console, bool first) {
        _cleanup_free_ char *jail = NULL;
        FILE *f = stdout;

        if (!first)
                fputc(',', f);
        fputc('\n', f);
        row_json_common(f, r);
        jail = jail_path(r, host);
        fputs(",\"jail_path\":", f);
        json_string(f, jail);
        fputs(",\"result\":", f);
        json_string(f, u->result);
        json_uint_or_null(f, "memory_current_bytes", u->memory_current != UINT64_MAX, u->memory_current);
        json_uint_or_null(f, "cpu_usage_nsec", u->cpu_nsec != UINT64_MAX, u->cpu_nsec);
        json_uint_or_null(f, "tasks_current", u->tasks_current != UINT64_MAX, u->tasks_current);
        fputs(",\"drives\":[", f);
        for (size_t i = 0; r->config && i < r->config->n_drives; i++) {
                const DriveConfig *d = &r->config->drives[i];
                char dm[128], kname[64] = "";
                _cleanup_strv_free_ char **loops = NULL;
                bool has_dm = r->plan && dm_name_for(r->id, d->name, dm) >= 0 && strv_contains(r->plan->dm, dm);

                fprintf(f, "%s{\"name\":", i ? "," : "");
                json_string(f, d->name);
                fputs(",\"mode\":", f);
                json_string(f, drive_mode_to_string(d->mode));
                fputs(",\"path\":", f);
                json_string(f, d->path);
                json_bool(f, "root", d->root);
                json_bool(f, "read_only", d->read_only);
                if (has_dm)
                        loops = dm_loops(dm, kname, sizeof kname);
                fputs(",\"dm\":", f);
                json_string(f, has_dm ? dm : NULL);
                fputs(",\"loops\":[", f);
                for (char **l = loops; l && *l; l++) {
                        char dev[300];
                        snprintf(dev, sizeof dev, "/dev/%s", *l);
                        if (l != loops)
                                fputc(',', f);
                        json_string(f, dev);
                }
                fputs("]}", f);
        }
        fputs("],\"nics\":[", f);
        if (r->config) {
                StageNetwork net = {};
                bool have_net = stage_network_plan(r->config, r->id, &net, NULL) >= 0;
                for (size_t i = 0; i < r->config->n_nics; i++) {
                        const NicConfig *n = &r->config->nics[i];
                        char mac[18];

                        fprintf(f, "%s{\"name\":", i ? "," : "");
                        json_string(f, n->name);
                        fputs(",\"tap\":", f);
                        json_string(f, have_net ? net.taps[i] : NULL);
                        if (have_net)
                                snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", net.macs[i][0], net.macs[i][1],
                                         net.macs[i][2], net.macs[i][3], net.macs[i][4], net.macs[i][5]);
                        fputs(",\"mac\":", f);
                        json_string(f, have_net ? mac : NULL);
                        fputs(",\"bridge\":", f);
                        json_string(f, n->bridge);
                        fputc('}', f);
                }
                stage_network_done(&net);
        }
        fputc(']', f);
        bool cid_known = r->config && r->config->has_vsock && (!r->config->vsock_cid_auto || r->uid != UID_INVALID);
        json_uint_or_null(f, "vsock_cid", cid_known,
                          !cid_known ? 0 : r->config->vsock_cid_auto ? r->uid : r->config->vsock_cid);
        fputs(",\"console\":[", f);
        for (char **l = console; l && *l; l++) {
                if (l != console)
                        fputc(',', f);
                json_string(f, *l);
        }
        fputs("]}", f);
}

int verb_status(int argc, char **argv) {
        _cleanup_(vm_table_done) VmTable t = {};
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r, ret = 0;

        r = ctl_check_ids(argc, argv);
        if (r < 0)
                return r;
        r = vm_table_load(&t, argv, (size_t) argc);
        if (r < 0)
                return r;
        if (!arg_host) {
                r = ctl_load_host(&host);
                if (r < 0)
                        return r;
        }
        r = ctl_bus_open(&bus);
        if (r < 0)
                return r;

        if (arg_json)
                fputc('[', stdout);
        for (size_t i = 0; i < t.n; i++) {
                const VmRow *row = &t.rows[i];
                _cleanup_strv_free_ char **console = NULL;
                UnitUsage u;

                if (!row->config_path && !row->unit && !row->masked) {
                        log_error("VM %s: no config in the search path and no loaded unit %s%s.service.", row->id,
                                  UNIT_PREFIX, row->id);
                        ret = -ENOENT;
                        continue;
                }
                unit_usage_load(bus, row, &u);
                if (!arg_host)
                        (void) journal_last_lines(row->id, 10, 0, &console);
                if (arg_json)
                        status_json(row, host, &u, console, i == 0);
                else {
                        if (i > 0)
                                putchar('\n');
                        status_text(row, host, &u, console);
                }
                free(u.result);
                free(u.invocation);
        }
        if (arg_json)
                fputs("\n]\n", stdout);
        if (fflush(stdout) != 0)
                return log_error_errno(errno, "Failed to write the status: %m");
        return ret;
}
