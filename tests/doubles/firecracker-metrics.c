/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The firecracker double's metrics lines, in the real format (firecracker's
 * src/vmm/src/logger/metrics.rs and the block and net devices' metrics.rs):
 * one JSON object per line, written at start, every period (60 s in the real
 * one) and on FlushMetrics. The counters that are SharedIncMetric in the real
 * firecracker are deltas since the previous line, as there; the
 * SharedStoreMetric ones are absolute.
 *
 * Simplifications: only the sections and fields microvm reads and a few
 * others are written (the real line has several hundred); the "block" and
 * "net" aggregates are the sums of the devices; "traffic" is invented: with
 * fcdouble.traffic=N each drive and NIC moves N bytes per second (reads and
 * writes, rx and tx alike), with requests, packets and vCPU exits derived
 * from the bytes; without it the devices are idle and only the API counters
 * move. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "firecracker-metrics.h"

static FcdApiCounts api;

static const char *get_name(const char *path) {
        if (strcmp(path, "") == 0)
                return "instance_info_count";
        if (strcmp(path, "machine-config") == 0)
                return "machine_cfg_count";
        if (strcmp(path, "version") == 0)
                return "vmm_version_count";
        if (strcmp(path, "mmds") == 0)
                return "mmds_count";
        return NULL;
}

void fcd_metrics_count_request(const char *method, const char *path) {
        if (strcmp(method, "GET") == 0) {
                const char *n = get_name(path);
                if (n && strcmp(n, "instance_info_count") == 0)
                        api.get_instance_info++;
                else if (n && strcmp(n, "machine_cfg_count") == 0)
                        api.get_machine_cfg++;
                else if (n && strcmp(n, "vmm_version_count") == 0)
                        api.get_vmm_version++;
        } else if (strcmp(method, "PUT") == 0 && strcmp(path, "actions") == 0)
                api.put_actions++;
}

void fcd_metrics_count_action_failure(void) {
        api.put_actions_fails++;
}

/* Appends the line to buf (size bytes); returns its length, or 0 if it did
 * not fit. */
size_t fcd_metrics_line(char *buf, size_t size, const FcdDevices *dev, uint64_t traffic_per_s, uint64_t elapsed_us,
                        uint64_t utc_ms, uint64_t startup_us) {
        uint64_t bytes = traffic_per_s * elapsed_us / 1000000;
        uint64_t ops = (bytes + 4095) / 4096, packets = (bytes + 1499) / 1500;
        size_t n = 0;
        int k;

#define OUT(...)                                                                        \
        do {                                                                            \
                k = snprintf(buf + n, n < size ? size - n : 0, __VA_ARGS__);            \
                if (k < 0 || (size_t) k >= size - n)                                    \
                        return 0;                                                       \
                n += (size_t) k;                                                        \
        } while (0)

        OUT("{\"utc_timestamp_ms\":%" PRIu64 ",\"api_server\":{\"process_startup_time_us\":%" PRIu64
            ",\"process_startup_time_cpu_us\":0}",
            utc_ms, startup_us);
        for (size_t i = 0; i < dev->n_drives; i++)
                OUT(",\"block_%s\":{\"activate_fails\":0,\"cfg_fails\":0,\"no_avail_buffer\":0,\"event_fails\":0,"
                    "\"execute_fails\":0,\"invalid_reqs_count\":0,\"flush_count\":0,\"queue_event_count\":%" PRIu64
                    ",\"rate_limiter_event_count\":0,\"update_count\":0,\"update_fails\":0,\"read_bytes\":%" PRIu64
                    ",\"write_bytes\":%" PRIu64 ",\"read_count\":%" PRIu64 ",\"write_count\":%" PRIu64
                    ",\"read_agg\":{\"min_us\":0,\"max_us\":0,\"sum_us\":0},\"write_agg\":{\"min_us\":0,\"max_us\":0,"
                    "\"sum_us\":0},\"rate_limiter_throttled_events\":0,\"io_engine_throttled_events\":0,"
                    "\"remaining_reqs_count\":0}",
                    dev->drives[i], 2 * ops, bytes, dev->read_only[i] ? 0 : bytes, ops, dev->read_only[i] ? 0 : ops);
        OUT(",\"block\":{\"read_bytes\":%" PRIu64 ",\"write_bytes\":%" PRIu64 ",\"read_count\":%" PRIu64
            ",\"write_count\":%" PRIu64 "}",
            bytes * dev->n_drives, bytes * dev->n_drives, ops * dev->n_drives, ops * dev->n_drives);
        OUT(",\"deprecated_api\":{\"deprecated_http_api_calls\":0}");
        OUT(",\"get_api_requests\":{\"instance_info_count\":%" PRIu64 ",\"machine_cfg_count\":%" PRIu64
            ",\"mmds_count\":0,\"vmm_version_count\":%" PRIu64 ",\"hotplug_memory_count\":0}",
            api.get_instance_info, api.get_machine_cfg, api.get_vmm_version);
        OUT(",\"latencies_us\":{\"full_create_snapshot\":0,\"diff_create_snapshot\":0,\"load_snapshot\":0,"
            "\"pause_vm\":0,\"resume_vm\":0}");
        OUT(",\"logger\":{\"missed_metrics_count\":0,\"metrics_fails\":0,\"missed_log_count\":0,"
            "\"rate_limited_log_count\":0}");
        for (size_t i = 0; i < dev->n_nics; i++)
                OUT(",\"net_%s\":{\"activate_fails\":0,\"cfg_fails\":0,\"no_rx_avail_buffer\":0,\"no_tx_avail_buffer\":0,"
                    "\"event_fails\":0,\"rx_queue_event_count\":%" PRIu64 ",\"rx_event_rate_limiter_count\":0,"
                    "\"rx_rate_limiter_throttled\":0,\"rx_tap_event_count\":%" PRIu64 ",\"rx_bytes_count\":%" PRIu64
                    ",\"rx_packets_count\":%" PRIu64 ",\"rx_fails\":0,\"rx_count\":%" PRIu64
                    ",\"tap_read_fails\":0,\"tap_write_fails\":0,\"tap_write_agg\":{\"min_us\":0,\"max_us\":0,"
                    "\"sum_us\":0},\"tx_bytes_count\":%" PRIu64 ",\"tx_malformed_frames\":0,\"tx_fails\":0,"
                    "\"tx_count\":%" PRIu64 ",\"tx_packets_count\":%" PRIu64 ",\"tx_queue_event_count\":%" PRIu64
                    ",\"tx_rate_limiter_event_count\":0,\"tx_rate_limiter_throttled\":0,\"tx_spoofed_mac_count\":0,"
                    "\"tx_remaining_reqs_count\":0}",
                    dev->nics[i], packets, packets, bytes, packets, packets, bytes, packets, packets, packets);
        OUT(",\"net\":{\"rx_bytes_count\":%" PRIu64 ",\"tx_bytes_count\":%" PRIu64 "}", bytes * dev->n_nics,
            bytes * dev->n_nics);
        OUT(",\"patch_api_requests\":{\"drive_count\":0,\"drive_fails\":0,\"network_count\":0,\"network_fails\":0,"
            "\"machine_cfg_count\":0,\"machine_cfg_fails\":0,\"mmds_count\":0,\"mmds_fails\":0}");
        OUT(",\"put_api_requests\":{\"actions_count\":%" PRIu64 ",\"actions_fails\":%" PRIu64
            ",\"boot_source_count\":0,\"boot_source_fails\":0,\"drive_count\":0,\"drive_fails\":0,"
            "\"logger_count\":0,\"logger_fails\":0,\"machine_cfg_count\":0,\"machine_cfg_fails\":0,"
            "\"metrics_count\":0,\"metrics_fails\":0,\"network_count\":0,\"network_fails\":0}",
            api.put_actions, api.put_actions_fails);
        OUT(",\"seccomp\":{\"num_faults\":0}");
        /* vCPU exits: one MMIO exit per block request or packet, port I/O
         * for the serial console (a few a second). */
        OUT(",\"vcpu\":{\"exit_io_in\":%" PRIu64 ",\"exit_io_out\":%" PRIu64 ",\"exit_mmio_read\":%" PRIu64
            ",\"exit_mmio_write\":%" PRIu64 ",\"failures\":0,\"kvmclock_ctrl_fails\":0,"
            "\"exit_io_in_agg\":{\"min_us\":0,\"max_us\":0,\"sum_us\":0},"
            "\"exit_io_out_agg\":{\"min_us\":0,\"max_us\":0,\"sum_us\":0},"
            "\"exit_mmio_read_agg\":{\"min_us\":0,\"max_us\":0,\"sum_us\":0},"
            "\"exit_mmio_write_agg\":{\"min_us\":0,\"max_us\":0,\"sum_us\":0}}",
            elapsed_us / 200000, elapsed_us / 100000, ops * dev->n_drives + packets * dev->n_nics,
            ops * dev->n_drives + packets * dev->n_nics);
        OUT(",\"vmm\":{\"panic_count\":0},\"signals\":{\"sigbus\":0,\"sigsegv\":0,\"sigxfsz\":0,\"sigxcpu\":0,"
            "\"sigpipe\":0,\"sighup\":0,\"sigill\":0},\"interrupts\":{\"triggers\":0,\"config_updates\":0}}\n");
#undef OUT
        /* Serializing resets the SharedIncMetric counters. */
        api = (FcdApiCounts) {};
        return n;
}
