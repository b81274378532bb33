/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The figures microvm-metrics (the socket-activated Prometheus endpoint) and
 * `microvmctl metrics` report: per VM its unit, its cgroup, its config and
 * firecracker's own device counters; host-wide the VM counts, free uids and
 * the thin pool. vm_metrics_collect() gathers them (impure, bounded in time);
 * the render functions are pure and unit-tested. */

#include <stdio.h>

#include "config.h"
#include "fc-metrics.h"
#include "sd-lib.h"

typedef struct VmMetrics {
        char id[VM_ID_MAX + 1];
        /* config */
        bool has_config;
        uint32_t vcpus;
        uint64_t memory_bytes;
        char **drives;          /* drive names of the config (labels: only these) */
        char **nics;            /* NIC names of the config */
        /* unit (systemd) */
        char *active_state;     /* NULL: unit not loaded */
        uint64_t start_usec;    /* ExecMainStartTimestamp, CLOCK_REALTIME µs; 0: none */
        bool has_restarts;
        uint64_t restarts;      /* NRestarts */
        /* cgroup (only what the unit's cgroup.controllers offer) */
        bool has_cpu;
        uint64_t cpu_usage_usec;
        bool has_memory;
        uint64_t memory_current;
        bool has_memory_peak;
        uint64_t memory_peak;
        bool has_io;
        uint64_t io_rbytes, io_wbytes, io_rios, io_wios;
        bool has_pids;
        uint64_t pids_current;
        /* firecracker's metrics file, summed (fc-metrics.h) */
        bool has_fc;
        bool fc_flushed;        /* FlushMetrics answered within the timeout */
        FcMetricsSum fc;
} VmMetrics;

typedef struct HostMetrics {
        VmMetrics *vms;
        size_t n_vms;
        uint64_t vms_configured, vms_running, vms_failed;
        bool has_uids;
        uint64_t uids_total, uids_free;
        char *pool;             /* NULL: no thin pool configured or not active */
        uint64_t pool_data_used, pool_data_size, pool_metadata_used, pool_metadata_size;
        uint64_t duration_usec; /* the collection's own time */
        /* ... by part, in the order of metrics_collectors[] */
        uint64_t collector_usec[6];
} HostMetrics;

/* The parts of a collection, for microvm_scrape_collector_duration_seconds. */
extern const char *const metrics_collectors[6];

void host_metrics_done(HostMetrics *h);

typedef struct MetricsOptions {
        usec_t flush_timeout;   /* per VM, for FlushMetrics over the API socket; 0: no flush */
        usec_t deadline;        /* CLOCK_MONOTONIC: skip firecracker figures past it */
        bool write_sums;        /* store the running sums (root) */
} MetricsOptions;

/* Firecracker's half of a collection, begun before the rest (vm-metrics-fc.h). */
typedef struct FcScrape FcScrape;

/* ids NULL: every VM with a config or a loaded unit. bus may be NULL (then
 * no unit figures). fc: firecracker's half, begun with the same ids and
 * opts (taken over); NULL: begun here. Never fails for one VM: what cannot
 * be read is left out. */
int vm_metrics_collect(const HostConfig *host, sd_bus *bus, char *const *ids, size_t n_ids,
                       const MetricsOptions *opts, FcScrape *fc, HostMetrics *ret, char **ret_error);

/* Prometheus text exposition format 0.0.4 (pure). */
int metrics_render_prometheus(const HostMetrics *h, FILE *f);
/* One JSON document {"host": {...}, "vms": [{...}, ...]} (pure). */
int metrics_render_json(const HostMetrics *h, FILE *f);
/* For a person (pure). */
int metrics_render_text(const HostMetrics *h, FILE *f);

/* The lock between a scrape, which writes <run_dir>/<id>/fc-metrics.sum,
 * and the removal of that directory (vm_teardown()): flock(LOCK_EX) of the
 * directory itself, blocking (a scrape holds it for one VM's file, briefly).
 * The fd, or -errno (-ENOENT: no such directory, nothing to lock). */
int vm_metrics_lock_run_dir(const char *run_dir, const char *id);

/* Pure parsers of cgroup files, for the collector and the tests. */
int cgroup_stat_field(const char *text, const char *field, uint64_t *ret);
/* io.stat: the sum over devices of rbytes, wbytes, rios, wios. */
int cgroup_io_stat_sum(const char *text, uint64_t *ret_rbytes, uint64_t *ret_wbytes, uint64_t *ret_rios,
                       uint64_t *ret_wios);
