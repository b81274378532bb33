/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The impure half of vm-metrics.h: gathering the figures. Everything that can
 * wait (the bus, firecracker's API) is bounded by the scrape's deadline; a VM
 * whose figures cannot be read is reported with what could be. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "config-files.h"
#include "dm.h"
#include "manager.h"
#include "manager-props.h"
#include "names.h"
#include "parse-util.h"
#include "safe-fs.h"
#include "storage-util.h"
#include "util.h"
#include "vm-metrics.h"
#include "vm-metrics-fc.h"

static int cmp_vm(const void *a, const void *b) {
        return strcmp(((const VmMetrics *) a)->id, ((const VmMetrics *) b)->id);
}

static VmMetrics *vm_add(HostMetrics *h, size_t *allocated, const char *id) {
        for (size_t i = 0; i < h->n_vms; i++)
                if (streq(h->vms[i].id, id))
                        return &h->vms[i];
        if (!vm_id_valid(id) || greedy_realloc((void **) &h->vms, allocated, h->n_vms + 1, sizeof *h->vms) < 0)
                return NULL;
        VmMetrics *v = &h->vms[h->n_vms++];
        *v = (VmMetrics) {};
        snprintf(v->id, sizeof v->id, "%s", id);
        return v;
}

static void vm_load_config(const HostConfig *host, VmMetrics *v, uint64_t *configured) {
        _cleanup_vm_config_ VmConfig *c = NULL;
        Problems problems = {};

        if (vm_config_load(host, v->id, &c, &problems) >= 0 && c) {
                v->has_config = true;
                v->vcpus = c->vcpus;
                v->memory_bytes = c->memory;
                for (size_t i = 0; i < c->n_drives; i++)
                        (void) strv_push(&v->drives, c->drives[i].name);
                for (size_t i = 0; i < c->n_nics; i++)
                        (void) strv_push(&v->nics, c->nics[i].name);
                (*configured)++;
        }
        problems_done(&problems);
}

static int read_cg_file(int cg_fd, const char *name, char *buf, size_t size) {
        int n = read_small_file_at(cg_fd, name, O_NOFOLLOW, buf, size);
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = '\0';
        return n;
}

typedef struct Controllers {
        bool memory, io, pids;
} Controllers;

/* The controllers each VM's cgroup has: those the slice enables for its
 * children. Not known: try every file. */
static Controllers slice_controllers(int slice_fd) {
        char buf[512];
        Controllers c = {};

        if (read_cg_file(slice_fd, "cgroup.subtree_control", buf, sizeof buf) < 0)
                return (Controllers) { true, true, true };
        for (char *save = NULL, *w = strtok_r(buf, " \n", &save); w; w = strtok_r(NULL, " \n", &save)) {
                c.memory = c.memory || streq(w, "memory");
                c.io = c.io || streq(w, "io");
                c.pids = c.pids || streq(w, "pids");
        }
        return c;
}

/* slice_fd: microvm.slice in the cgroup2 mount (this tool never runs inside
 * a VM's unit, so each VM's cgroup is its unit's, right below). Only the
 * files of its controllers are asked for: a hundred VMs, four files each. */
static void vm_load_cgroup(int slice_fd, Controllers ctl, VmMetrics *v) {
        _cleanup_close_ int cg_fd = -EBADF;
        char buf[4096], unit[sizeof UNIT_PREFIX + VM_ID_MAX + sizeof ".service"];
        uint64_t x;

        snprintf(unit, sizeof unit, UNIT_PREFIX "%s.service", v->id);
        if (cgroup_open_child(slice_fd, unit, false, &cg_fd) < 0)
                return;
        /* cpu.stat's usage_usec is there with or without the cpu
         * controller; the others only with theirs. */
        if (read_cg_file(cg_fd, "cpu.stat", buf, sizeof buf) >= 0 && cgroup_stat_field(buf, "usage_usec", &x) >= 0) {
                v->has_cpu = true;
                v->cpu_usage_usec = x;
        }
        if (ctl.memory && read_cg_file(cg_fd, "memory.current", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_memory = true;
                v->memory_current = x;
        }
        /* Since Linux 5.19. */
        if (ctl.memory && read_cg_file(cg_fd, "memory.peak", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_memory_peak = true;
                v->memory_peak = x;
        }
        if (ctl.io && read_cg_file(cg_fd, "io.stat", buf, sizeof buf) >= 0) {
                v->has_io = true;
                (void) cgroup_io_stat_sum(buf, &v->io_rbytes, &v->io_wbytes, &v->io_rios, &v->io_wios);
        }
        if (ctl.pids && read_cg_file(cg_fd, "pids.current", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_pids = true;
                v->pids_current = x;
        }
}

int vm_metrics_lock_run_dir(const char *run_dir, const char *id) {
        _cleanup_close_ int run_fd = -EBADF, dir_fd = -EBADF;
        int r;

        r = safe_root_open(run_dir, 0, 0, &run_fd, NULL);
        if (r >= 0)
                r = safe_open_dir_at(run_fd, id, &dir_fd);
        if (r < 0)
                return r;
        while (flock(dir_fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        return TAKE_FD(dir_fd);
}

/* ---- host-wide ---- */

static void load_uids(const HostConfig *host, HostMetrics *h, VmMetrics *unused) {
        _cleanup_close_ int state_fd = -EBADF;
        DIR *d;
        uint64_t used = 0;

        (void) unused;
        h->uids_total = (uint64_t) host->uid_max - host->uid_min + 1;
        if (safe_root_open(host->state_dir, 0, 0, &state_fd, NULL) < 0) {
                /* No state dir yet: no VM has a uid. */
                h->has_uids = true;
                h->uids_free = h->uids_total;
                return;
        }
        int dfd = dup(state_fd);
        if (dfd < 0 || !(d = fdopendir(dfd))) {
                safe_close(dfd);
                return;
        }
        /* A uid is taken while a VM's record names it (uid-alloc.h); the
         * record's presence is enough here (a stat, not a read: one scrape
         * looks at every VM). */
        for (struct dirent *de; (de = readdir(d));) {
                char rel[sizeof de->d_name + sizeof STATE_UID_FILE + 1];
                struct stat st;
                if (!vm_id_valid(de->d_name))
                        continue;
                snprintf(rel, sizeof rel, "%s/" STATE_UID_FILE, de->d_name);
                if (fstatat(state_fd, rel, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISREG(st.st_mode))
                        used++;
        }
        closedir(d);
        h->has_uids = true;
        h->uids_free = used > h->uids_total ? 0 : h->uids_total - used;
}

static void load_pool(const HostConfig *host, HostMetrics *h) {
        _cleanup_free_ char *type = NULL, *status = NULL, *ttype = NULL, *params = NULL;
        uint64_t len;
        ThinPoolStatus ps;
        unsigned long long block_sectors = 0;

        if (!host->thin_pool.configured || !host->thin_pool.name)
                return;
        if (dm_check_available(NULL) < 0 || dm_get_status(host->thin_pool.name, &type, &status, &len) < 0 ||
            !streq_ptr(type, "thin-pool") || thin_pool_status_parse(status, &ps) < 0)
                return;
        /* Table: "<metadata dev> <data dev> <data block size> ..." in
         * sectors; metadata blocks are 4 KiB (dm-thin's fixed size). */
        if (dm_get_table(host->thin_pool.name, &ttype, &params, &len) < 0 ||
            sscanf(params, "%*s %*s %llu", &block_sectors) != 1)
                return;
        h->pool = strdup(host->thin_pool.name);
        h->pool_data_used = ps.used_data_blocks * block_sectors * 512;
        h->pool_data_size = ps.total_data_blocks * block_sectors * 512;
        h->pool_metadata_used = ps.used_metadata_blocks * 4096;
        h->pool_metadata_size = ps.total_metadata_blocks * 4096;
}

static void lap(HostMetrics *h, size_t collector, usec_t *t) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        h->collector_usec[collector] += now - *t;
        *t = now;
}

/* The VM id of a unit name microvm@ID.service into buf; false if it is
 * not one. */
static bool unit_vm_id(const char *unit, char buf[static VM_ID_MAX + 1]) {
        const char *id = startswith(unit, UNIT_PREFIX);
        size_t len = id ? strlen(id) : 0;

        if (!id || len <= 8 || len - 8 > VM_ID_MAX || !endswith(id, ".service"))
                return false;
        memcpy(buf, id, len - 8);
        buf[len - 8] = '\0';
        return true;
}

/* Among the first n VMs of h (sorted by id). */
static VmMetrics *find_vm(const HostMetrics *h, size_t n, const char *id) {
        VmMetrics key = {};

        snprintf(key.id, sizeof key.id, "%s", id);
        return n > 0 ? bsearch(&key, h->vms, n, sizeof *h->vms, cmp_vm) : NULL;
}

/* The VMs: those named, or every config, sorted by id. */
static int list_vms(HostMetrics *h, size_t *allocated, char *const *ids, size_t n_ids) {

        if (ids) {
                for (size_t i = 0; i < n_ids; i++)
                        if (!vm_add(h, allocated, ids[i]))
                                return -ENOMEM;
                qsort(h->vms, h->n_vms, sizeof *h->vms, cmp_vm);
        } else {
                VmConfigFile *files = NULL;
                size_t n_files = 0;
                /* Sorted and unique by name. */
                if (vm_config_enumerate(&files, &n_files) >= 0) {
                        for (size_t i = 0; i < n_files; i++) {
                                if (files[i].masked || !vm_id_valid(files[i].name))
                                        continue;
                                if (greedy_realloc((void **) &h->vms, allocated, h->n_vms + 1, sizeof *h->vms) < 0) {
                                        vm_config_files_free(files, n_files);
                                        return -ENOMEM;
                                }
                                h->vms[h->n_vms++] = (VmMetrics) {};
                                snprintf(h->vms[h->n_vms - 1].id, sizeof h->vms->id, "%s", files[i].name);
                        }
                        vm_config_files_free(files, n_files);
                }
        }
        return 0;
}

/* Each VM's unit's active state; unless only the named VMs are asked for,
 * also the VMs of loaded units without a config. */
static void merge_units(HostMetrics *h, size_t *allocated, bool named, const ManagerUnit *units, size_t n_units) {
        /* Units without a config (unique names: no VM twice) go after the
         * sorted ones, and are sorted in at the end. */
        size_t n_sorted = h->n_vms;
        for (size_t i = 0; i < n_units; i++) {
                char id[VM_ID_MAX + 1];
                if (!unit_vm_id(units[i].name, id))
                        continue;
                VmMetrics *v = find_vm(h, n_sorted, id);
                bool loaded = !streq(units[i].load_state, "not-found") || !streq(units[i].active_state, "inactive");
                if (!v && !named && loaded) {
                        if (!vm_id_valid(id) ||
                            greedy_realloc((void **) &h->vms, allocated, h->n_vms + 1, sizeof *h->vms) < 0)
                                continue;
                        v = &h->vms[h->n_vms++];
                        *v = (VmMetrics) {};
                        snprintf(v->id, sizeof v->id, "%s", id);
                }
                if (!v)
                        continue;
                free(v->active_state);
                v->active_state = strdup(units[i].active_state);
        }
        if (h->n_vms > n_sorted)
                qsort(h->vms, h->n_vms, sizeof *h->vms, cmp_vm);
}

/* Unit facts, one pipelined round for all. */
static int load_unit_props(sd_bus *bus, HostMetrics *h, const ManagerUnit *units, size_t n_units, usec_t deadline) {
        _cleanup_free_ ManagerPropQuery *q = calloc(2 * n_units + 1, sizeof *q);
        _cleanup_free_ bool *ok = calloc(2 * n_units + 1, sizeof *ok);
        _cleanup_free_ VmMetrics **vm_of = calloc(2 * n_units + 1, sizeof *vm_of);
        size_t nq = 0;

        if (!q || !ok || !vm_of)
                return -ENOMEM;
        for (size_t i = 0; i < n_units; i++) {
                char id[VM_ID_MAX + 1];
                VmMetrics *v = unit_vm_id(units[i].name, id) ? find_vm(h, h->n_vms, id) : NULL;
                if (!v)
                        continue;
                q[nq++] = (ManagerPropQuery) { units[i].path, "org.freedesktop.systemd1.Service",
                                               "ExecMainStartTimestamp", 't', &v->start_usec, NULL };
                vm_of[nq] = v;
                q[nq] = (ManagerPropQuery) { units[i].path, "org.freedesktop.systemd1.Service", "NRestarts", 'u',
                                             &v->restarts, &ok[nq] };
                nq++;
        }
        (void) manager_get_many(bus, q, nq, deadline, NULL);
        for (size_t j = 0; j < nq; j++)
                if (ok[j] && vm_of[j])
                        vm_of[j]->has_restarts = true;
        return 0;
}

int vm_metrics_collect(const HostConfig *host, sd_bus *bus, char *const *ids, size_t n_ids,
                       const MetricsOptions *opts, FcScrape *fc_begun, HostMetrics *ret, char **ret_error) {
        _cleanup_(fc_scrape_freep) FcScrape *fc = fc_begun;
        _cleanup_(host_metrics_done) HostMetrics h = {};
        _cleanup_free_ char *mount = NULL;
        _cleanup_close_ int slice_fd = -EBADF;
        ManagerUnit *units = NULL;
        size_t n_units = 0, allocated = 0;
        usec_t begin = now_usec(CLOCK_MONOTONIC), t = begin;
        int r;

        /* Firecracker's half first, unless the caller began it even
         * earlier: FlushMetrics to every VMM, their files read as they
         * answer, on a thread of its own (vm-metrics-fc.h), while the
         * manager, the configs and the cgroups are read here. The halves
         * fill different fields and collectors. */
        if (!fc) {
                r = fc_scrape_begin(host, ids, n_ids, opts, &fc);
                if (r < 0)
                        return r;
        }
        /* The manager lists the units while the configs are enumerated. */
        ManagerListCall *list_call = NULL;
        if (bus) {
                r = manager_list_units_send(bus, UNIT_PREFIX "*.service", &list_call, ret_error);
                if (r < 0)
                        return r;
                /* Out now if the handshake is done (the connection was
                 * opened before the request was read), not at the wait. */
                (void) manager_kick(bus);
        }
        r = list_vms(&h, &allocated, ids, n_ids);
        if (r < 0) {
                manager_list_call_free(list_call);
                return r;
        }
        if (bus) {
                r = manager_list_units_wait(bus, list_call, &units, &n_units, ret_error);
                if (r < 0)
                        return r;
        }
        merge_units(&h, &allocated, ids != NULL, units, n_units);
        lap(&h, 0, &t);

        for (size_t i = 0; i < h.n_vms; i++) {
                VmMetrics *v = &h.vms[i];
                vm_load_config(host, v, &h.vms_configured);
                if (v->active_state && (streq(v->active_state, "active") || streq(v->active_state, "activating") ||
                                        streq(v->active_state, "deactivating") || streq(v->active_state, "reloading")))
                        h.vms_running++;
                if (streq_ptr(v->active_state, "failed"))
                        h.vms_failed++;
        }
        lap(&h, 1, &t);

        if (cgroup2_find_mount(&mount) >= 0 && cgroup_open(mount, "/" UNIT_SLICE, &slice_fd) >= 0) {
                Controllers ctl = slice_controllers(slice_fd);
                for (size_t i = 0; i < h.n_vms; i++)
                        vm_load_cgroup(slice_fd, ctl, &h.vms[i]);
        }
        lap(&h, 2, &t);

        r = bus && n_units > 0 ? load_unit_props(bus, &h, units, n_units, opts->deadline) : 0;
        manager_units_free(units, n_units);
        if (r < 0)
                return r;
        lap(&h, 0, &t);

        /* Done here: the files of the VMMs that have answered, the rest of
         * the flush, and firecracker's figures into h. */
        fc_scrape_finish(fc, &h);
        t = now_usec(CLOCK_MONOTONIC);

        load_uids(host, &h, NULL);
        load_pool(host, &h);
        lap(&h, 5, &t);
        h.duration_usec = now_usec(CLOCK_MONOTONIC) - begin;
        *ret = h;
        h = (HostMetrics) {};
        return 0;
}
