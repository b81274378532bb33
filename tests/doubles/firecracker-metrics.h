/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The firecracker double's metrics lines (firecracker-metrics.c). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FcdApiCounts {
        uint64_t get_instance_info, get_machine_cfg, get_vmm_version;
        uint64_t put_actions, put_actions_fails;
} FcdApiCounts;

typedef struct FcdDevices {
        const char *const *drives;
        const bool *read_only;
        size_t n_drives;
        const char *const *nics;
        size_t n_nics;
} FcdDevices;

/* An API request received (method "GET", "PUT", ...; path its first
 * segment), for {get,put}_api_requests. */
void fcd_metrics_count_request(const char *method, const char *path);
void fcd_metrics_count_action_failure(void);

/* One metrics line with the deltas since the previous one (elapsed_us), into
 * buf; its length, 0 if it does not fit. Resets the API deltas. */
size_t fcd_metrics_line(char *buf, size_t size, const FcdDevices *dev, uint64_t traffic_per_s, uint64_t elapsed_us,
                        uint64_t utc_ms, uint64_t startup_us);
