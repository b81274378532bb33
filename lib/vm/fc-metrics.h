/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Firecracker's own metrics (pure).
 *
 * What firecracker does (src/vmm/src/logger/metrics.rs, vmm_config/metrics.rs,
 * src/firecracker/src/metrics.rs): the `metrics` {"metrics_path": P} of its
 * config opens P with O_CREAT|O_RDWR|O_NONBLOCK (no O_APPEND, no O_TRUNC: it
 * writes from offset 0 on, through its own file offset) and writes one JSON
 * object per line: at start, every 60 s, and on PUT /actions FlushMetrics.
 * The object is {"utc_timestamp_ms": N, "api_server": {...}, "block_<drive>":
 * {...}, "block": {...}, "net_<iface>": {...}, "vcpu": {...}, ...}: sections
 * of unsigned counters, some holding latency aggregates one level deeper
 * ("read_agg": {"min_us","max_us","sum_us"}).
 *
 * Most counters (SharedIncMetric) are DELTAS: each line holds what happened
 * since the previous line, and serializing resets them. A few
 * (SharedStoreMetric) are absolute values. So a monotonic total is the sum of
 * every line's delta since firecracker started: FcMetricsSum keeps that sum
 * with the file offset it has read up to, and the scrape (lib/vm/vm-metrics.c)
 * stores it in the VM's run directory between scrapes.
 *
 * The file is written by the VM's uid: every byte of it is untrusted. Lines
 * are bounded, parsing never recurses deeper than FC_METRICS_DEPTH_MAX, and a
 * malformed line is skipped (and counted), never fatal. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "macro.h"

#define FC_METRICS_DEPTH_MAX 3
#define FC_METRICS_LINE_MAX (256U * 1024U)
#define FC_METRICS_KEY_MAX 128
#define FC_METRICS_KEYS_MAX 4096

typedef struct FcMetric {
        char *key;              /* "section.field" or "section.agg.field" */
        uint64_t value;
} FcMetric;

/* Sorted by key (strcmp), keys unique. */
typedef struct FcMetrics {
        FcMetric *items;
        size_t n;
        size_t allocated;
} FcMetrics;

void fc_metrics_done(FcMetrics *m);

/* One line (without or with its '\n') into its flattened unsigned-integer
 * members; strings, booleans, nulls, negative or fractional numbers and
 * arrays are skipped (they are not counters). -EBADMSG for anything that is
 * not one JSON object, -E2BIG past the limits above. */
int fc_metrics_line_parse(const char *line, size_t size, FcMetrics *ret);

/* Whether key is an absolute value (SharedStoreMetric) rather than a delta. */
bool fc_metric_is_store(const char *key);

/* Whether the running sum keeps key: the counters microvm reports (vcpu.*,
 * block_<drive>.*, net_<iface>.*, <method>_api_requests.*), not the latency
 * aggregates, absolute values or other sections, which would only make every
 * scrape read and write more. */
bool fc_metric_wanted(const char *key);

/* Adds line's deltas to sum (saturating) and replaces its absolute values. */
int fc_metrics_accumulate(FcMetrics *sum, const FcMetrics *line);

/* The value of key; false when absent. */
bool fc_metrics_get(const FcMetrics *m, const char *key, uint64_t *ret);

typedef struct FcMetricsSum {
        uint64_t dev, ino;      /* the metrics file these sums are of */
        uint64_t offset;        /* bytes of it consumed (whole lines) */
        uint64_t lines;         /* lines summed */
        uint64_t bad_lines;     /* lines skipped as malformed */
        FcMetrics totals;
} FcMetricsSum;

void fc_metrics_sum_done(FcMetricsSum *s);

/* Consumes the complete lines at the start of buf (the bytes of the file
 * from s->offset on), summing their fc_metric_wanted() keys, advancing
 * s->offset past them; a trailing partial line
 * is left for the next time. NUL bytes before a line (a punched hole reads
 * as zeros) are skipped. Returns the bytes consumed. */
size_t fc_metrics_sum_feed(FcMetricsSum *s, const char *buf, size_t size);

/* The sum file's text ("microvm-fc-metrics 1\n" then "dev N", "ino N",
 * "offset N", "lines N", "bad_lines N", then "key value" lines), and back.
 * -EBADMSG for anything else. */
char *fc_metrics_sum_serialize(const FcMetricsSum *s);
int fc_metrics_sum_parse(const char *text, size_t size, FcMetricsSum *ret);
