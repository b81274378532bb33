/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure half of vm-metrics.h: the Prometheus text exposition format
 * (https://prometheus.io/docs/instrumenting/exposition_formats/, 0.0.4),
 * JSON and text renderings, and the cgroup and dm status parsers. */
#include <inttypes.h>
#include <stdlib.h>

#include "fc-config.h"
#include "parse-util.h"
#include "util.h"
#include "vm-metrics.h"

const char *const metrics_collectors[6] = { "units", "configs", "cgroups", "flush", "firecracker", "host" };

void host_metrics_done(HostMetrics *h) {
        for (size_t i = 0; i < h->n_vms; i++) {
                VmMetrics *v = &h->vms[i];
                strv_free(v->drives);
                strv_free(v->nics);
                free(v->active_state);
                fc_metrics_sum_done(&v->fc);
        }
        free(h->vms);
        free(h->pool);
        *h = (HostMetrics) {};
}

/* ---- parsers ---- */

int cgroup_stat_field(const char *text, const char *field, uint64_t *ret) {
        size_t n = strlen(field);

        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                if (strncmp(l, field, n) != 0 || l[n] != ' ')
                        continue;
                char buf[32];
                size_t len = strcspn(l + n + 1, "\n");
                if (len == 0 || len >= sizeof buf)
                        return -EBADMSG;
                memcpy(buf, l + n + 1, len);
                buf[len] = '\0';
                return parse_u64(buf, ret) < 0 ? -EBADMSG : 0;
        }
        return -ENOENT;
}

int cgroup_io_stat_sum(const char *text, uint64_t *ret_rbytes, uint64_t *ret_wbytes, uint64_t *ret_rios,
                       uint64_t *ret_wios) {
        uint64_t sums[4] = {};
        static const char *const keys[4] = { "rbytes=", "wbytes=", "rios=", "wios=" };

        /* "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per line */
        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                const char *end = l + strcspn(l, "\n");
                for (const char *p = l; p < end;) {
                        size_t w = strcspn(p, " \n");
                        for (size_t k = 0; k < 4; k++) {
                                size_t kl = strlen(keys[k]);
                                if (w > kl && strncmp(p, keys[k], kl) == 0) {
                                        uint64_t v = strtoull(p + kl, NULL, 10);
                                        sums[k] = v > UINT64_MAX - sums[k] ? UINT64_MAX : sums[k] + v;
                                }
                        }
                        p += w;
                        p += strspn(p, " ");
                }
        }
        *ret_rbytes = sums[0];
        *ret_wbytes = sums[1];
        *ret_rios = sums[2];
        *ret_wios = sums[3];
        return 0;
}

/* ---- Prometheus ---- */

typedef struct Family {
        FILE *f;
        const char *name, *type, *help;
        bool started;
} Family;

/* Label values: backslash, double quote and newline escaped (0.0.4). A
 * scrape writes thousands of samples: runs of plain characters go out in
 * one call, numbers without printf. */
static void label_value(FILE *f, const char *s) {
        for (;;) {
                size_t n = strcspn(s, "\\\"\n");
                fwrite(s, 1, n, f);
                s += n;
                if (!*s)
                        return;
                fputs(*s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", f);
                s++;
        }
}

static void put_u64(FILE *f, uint64_t v) {
        char buf[20];
        size_t i = sizeof buf;

        do {
                buf[--i] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        fwrite(buf + i, 1, sizeof buf - i, f);
}

static void head(Family *fam) {
        if (fam->started)
                return;
        fprintf(fam->f, "# HELP %s %s\n# TYPE %s %s\n", fam->name, fam->help, fam->name, fam->type);
        fam->started = true;
}

/* labels: NULL-terminated name, value pairs. */
static void sample_labels(Family *fam, const char *const *labels) {
        head(fam);
        fputs(fam->name, fam->f);
        if (labels && labels[0]) {
                fputc('{', fam->f);
                for (size_t i = 0; labels[i]; i += 2) {
                        if (i > 0)
                                fputc(',', fam->f);
                        fputs(labels[i], fam->f);
                        fputs("=\"", fam->f);
                        label_value(fam->f, labels[i + 1]);
                        fputc('"', fam->f);
                }
                fputc('}', fam->f);
        }
        fputc(' ', fam->f);
}

static void sample_u64(Family *fam, const char *const *labels, uint64_t v) {
        sample_labels(fam, labels);
        put_u64(fam->f, v);
        fputc('\n', fam->f);
}

static void sample_usec_seconds(Family *fam, const char *const *labels, uint64_t usec) {
        char frac[16];

        sample_labels(fam, labels);
        put_u64(fam->f, usec / 1000000);
        snprintf(frac, sizeof frac, ".%06u\n", (unsigned) (usec % 1000000));
        fputs(frac, fam->f);
}

#define FAMILY(f, n, t, h) ((Family) { .f = (f), .name = "microvm_" n, .type = (t), .help = (h) })

static bool request_name_ok(const char *s) {
        size_t n = strlen(s);
        return n > 0 && n <= 32 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

/* Firecracker's per-device counters: one family over every VM and device. */
typedef struct DevCounter {
        const char *name, *help, *section, *field, *field2;
} DevCounter;

static const DevCounter block_counters[] = {
        { "block_read_bytes_total", "Bytes the guest read from the drive (firecracker block_<drive>.read_bytes).", "block_", "read_bytes" },
        { "block_written_bytes_total", "Bytes the guest wrote to the drive (firecracker block_<drive>.write_bytes).", "block_", "write_bytes" },
        { "block_reads_total", "Read requests of the guest on the drive (firecracker block_<drive>.read_count).", "block_", "read_count" },
        { "block_writes_total", "Write requests of the guest on the drive (firecracker block_<drive>.write_count).", "block_", "write_count" },
};

static const DevCounter net_counters[] = {
        { "net_receive_bytes_total", "Bytes the guest received on the NIC (firecracker net_<iface>.rx_bytes_count).", "net_", "rx_bytes_count" },
        { "net_transmit_bytes_total", "Bytes the guest sent on the NIC (firecracker net_<iface>.tx_bytes_count).", "net_", "tx_bytes_count" },
        { "net_receive_packets_total", "Packets the guest received on the NIC (firecracker net_<iface>.rx_packets_count).", "net_", "rx_packets_count" },
        { "net_transmit_packets_total", "Packets the guest sent on the NIC (firecracker net_<iface>.tx_packets_count).", "net_", "tx_packets_count" },
        { "net_receive_errors_total", "Frames the device failed to receive (firecracker net_<iface>.rx_fails).", "net_", "rx_fails" },
        { "net_transmit_errors_total", "Frames the device failed to send (firecracker net_<iface>.tx_fails).", "net_", "tx_fails" },
        { "net_transmit_drops_total", "Frames from the guest the device dropped: malformed or with a spoofed MAC (firecracker net_<iface>.tx_malformed_frames + tx_spoofed_mac_count).", "net_", "tx_malformed_frames", "tx_spoofed_mac_count" },
};

static void render_dev(FILE *f, const HostMetrics *h, const DevCounter *c, bool block) {
        Family fam = FAMILY(f, "", "counter", c->help);
        char name[96];

        snprintf(name, sizeof name, "microvm_%s", c->name);
        fam.name = name;
        for (size_t i = 0; i < h->n_vms; i++) {
                const VmMetrics *v = &h->vms[i];
                char *const *devs = block ? v->drives : v->nics;
                if (!v->has_fc || !devs)
                        continue;
                for (size_t d = 0; devs[d]; d++) {
                        char key[FC_METRICS_KEY_MAX];
                        uint64_t val, val2 = 0;
                        snprintf(key, sizeof key, "%s%s.%s", c->section, devs[d], c->field);
                        if (!fc_metrics_get(&v->fc.totals, key, &val))
                                continue;
                        if (c->field2) {
                                snprintf(key, sizeof key, "%s%s.%s", c->section, devs[d], c->field2);
                                (void) fc_metrics_get(&v->fc.totals, key, &val2);
                        }
                        const char *labels[] = { "id", v->id, block ? "drive" : "nic", devs[d], NULL };
                        sample_u64(&fam, labels, val > UINT64_MAX - val2 ? UINT64_MAX : val + val2);
                }
        }
}

static void render_api(FILE *f, const HostMetrics *h, bool fails) {
        Family fam = fails ? FAMILY(f, "api_request_failures_total", "counter",
                                    "API requests to firecracker that failed, by method and request (firecracker <method>_api_requests.<request>_fails).")
                           : FAMILY(f, "api_requests_total", "counter",
                                    "API requests firecracker served, by method and request (firecracker <method>_api_requests.<request>_count).");
        static const char *const methods[] = { "get", "put", "patch" };
        const char *suffix = fails ? "_fails" : "_count";

        for (size_t i = 0; i < h->n_vms; i++) {
                const VmMetrics *v = &h->vms[i];
                if (!v->has_fc)
                        continue;
                for (size_t m = 0; m < ELEMENTSOF(methods); m++) {
                        char prefix[32];
                        unsigned n = 0;
                        snprintf(prefix, sizeof prefix, "%s_api_requests.", methods[m]);
                        for (size_t k = 0; k < v->fc.totals.n && n < 64; k++) {
                                const char *key = v->fc.totals.items[k].key, *rest = startswith(key, prefix);
                                char req[40];
                                if (!rest || !endswith(rest, suffix) || strlen(rest) - strlen(suffix) >= sizeof req)
                                        continue;
                                memcpy(req, rest, strlen(rest) - strlen(suffix));
                                req[strlen(rest) - strlen(suffix)] = '\0';
                                /* The file is written by the VM's uid: only
                                 * names that look like firecracker's. */
                                if (!request_name_ok(req))
                                        continue;
                                /* Only requests this VMM has seen: most of
                                 * firecracker's ~50 kinds are never used,
                                 * and a series appears with its first. */
                                if (v->fc.totals.items[k].value == 0)
                                        continue;
                                const char *labels[] = { "id", v->id, "method", methods[m], "request", req, NULL };
                                sample_u64(&fam, labels, v->fc.totals.items[k].value);
                                n++;
                        }
                }
        }
}

static const char *const unit_states[] = { "active", "activating", "deactivating", "failed", "inactive",
                                           "reloading", "maintenance", "refreshing" };

int metrics_render_prometheus(const HostMetrics *h, FILE *f) {
        Family fam;

        fam = FAMILY(f, "vms_configured", "gauge", "VMs with a valid config file.");
        sample_u64(&fam, NULL, h->vms_configured);
        fam = FAMILY(f, "vms_running", "gauge", "VMs whose unit is active, activating, deactivating or reloading.");
        sample_u64(&fam, NULL, h->vms_running);
        fam = FAMILY(f, "vms_failed", "gauge", "VMs whose unit is in the failed state.");
        sample_u64(&fam, NULL, h->vms_failed);
        if (h->has_uids) {
                fam = FAMILY(f, "uids", "gauge", "Size of the host's uid_range.");
                sample_u64(&fam, NULL, h->uids_total);
                fam = FAMILY(f, "uids_free", "gauge", "uids of uid_range that no VM has a record for.");
                sample_u64(&fam, NULL, h->uids_free);
        }
        if (h->pool) {
                const char *l[] = { "pool", h->pool, NULL };
                fam = FAMILY(f, "thin_pool_data_used_bytes", "gauge", "Data space of the thin pool in use.");
                sample_u64(&fam, l, h->pool_data_used);
                fam = FAMILY(f, "thin_pool_data_size_bytes", "gauge", "Data space of the thin pool.");
                sample_u64(&fam, l, h->pool_data_size);
                fam = FAMILY(f, "thin_pool_metadata_used_bytes", "gauge", "Metadata space of the thin pool in use.");
                sample_u64(&fam, l, h->pool_metadata_used);
                fam = FAMILY(f, "thin_pool_metadata_size_bytes", "gauge", "Metadata space of the thin pool.");
                sample_u64(&fam, l, h->pool_metadata_size);
        }

        fam = FAMILY(f, "up", "gauge", "1 when the VM's unit is active (running), else 0.");
        for (size_t i = 0; i < h->n_vms; i++) {
                const char *l[] = { "id", h->vms[i].id, NULL };
                sample_u64(&fam, l, streq_ptr(h->vms[i].active_state, "active"));
        }
        fam = FAMILY(f, "unit_state", "gauge", "The VM unit's ActiveState: 1 for the current one.");
        for (size_t i = 0; i < h->n_vms; i++) {
                if (!h->vms[i].active_state)
                        continue;
                for (size_t s = 0; s < ELEMENTSOF(unit_states); s++) {
                        const char *l[] = { "id", h->vms[i].id, "state", unit_states[s], NULL };
                        sample_u64(&fam, l, streq(h->vms[i].active_state, unit_states[s]));
                }
        }
        fam = FAMILY(f, "start_time_seconds", "gauge", "When the VM's main process (the VMM) started, Unix time.");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].start_usec) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_usec_seconds(&fam, l, h->vms[i].start_usec);
                }
        fam = FAMILY(f, "restarts_total", "counter", "Automatic restarts of the VM's unit (NRestarts).");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_restarts) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, h->vms[i].restarts);
                }
        fam = FAMILY(f, "vcpus", "gauge", "vCPUs configured.");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_config) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, h->vms[i].vcpus);
                }
        fam = FAMILY(f, "memory_configured_bytes", "gauge", "Guest memory configured.");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_config) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, h->vms[i].memory_bytes);
                }

#define CG(field, cond, name, type, help)                                       \
        fam = FAMILY(f, name, type, help);                                      \
        for (size_t i = 0; i < h->n_vms; i++)                                   \
                if (h->vms[i].cond) {                                           \
                        const char *l[] = { "id", h->vms[i].id, NULL };         \
                        sample_u64(&fam, l, h->vms[i].field);                   \
                }
        fam = FAMILY(f, "cpu_usage_seconds_total", "counter", "CPU time of the VM's unit cgroup (cpu.stat usage_usec).");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_cpu) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_usec_seconds(&fam, l, h->vms[i].cpu_usage_usec);
                }
        CG(memory_current, has_memory, "memory_current_bytes", "gauge", "Memory of the VM's unit cgroup (memory.current).");
        CG(memory_peak, has_memory_peak, "memory_peak_bytes", "gauge", "Highest memory of the VM's unit cgroup (memory.peak).");
        CG(io_rbytes, has_io, "io_read_bytes_total", "counter", "Bytes the VM's unit cgroup read from block devices (io.stat rbytes).");
        CG(io_wbytes, has_io, "io_written_bytes_total", "counter", "Bytes the VM's unit cgroup wrote to block devices (io.stat wbytes).");
        CG(io_rios, has_io, "io_reads_total", "counter", "Read operations of the VM's unit cgroup (io.stat rios).");
        CG(io_wios, has_io, "io_writes_total", "counter", "Write operations of the VM's unit cgroup (io.stat wios).");
        CG(pids_current, has_pids, "pids", "gauge", "Tasks in the VM's unit cgroup (pids.current).");
#undef CG

        fam = FAMILY(f, "firecracker_metrics_lines_total", "counter", "Lines of firecracker's metrics file summed into the counters below.");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_fc) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, h->vms[i].fc.lines);
                }
        fam = FAMILY(f, "firecracker_flush_ok", "gauge", "1 when firecracker answered this scrape's FlushMetrics in time, else 0 (its figures are then those of its last flush).");
        for (size_t i = 0; i < h->n_vms; i++)
                if (h->vms[i].has_fc) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, h->vms[i].fc_flushed);
                }
        fam = FAMILY(f, "vcpu_exits_total", "counter", "vCPU exits to the VMM, by reason (firecracker vcpu.exit_<reason>).");
        for (size_t i = 0; i < h->n_vms; i++) {
                static const char *const reasons[] = { "io_in", "io_out", "mmio_read", "mmio_write" };
                if (!h->vms[i].has_fc)
                        continue;
                for (size_t r = 0; r < ELEMENTSOF(reasons); r++) {
                        char key[64];
                        uint64_t v;
                        snprintf(key, sizeof key, "vcpu.exit_%s", reasons[r]);
                        if (!fc_metrics_get(&h->vms[i].fc.totals, key, &v))
                                continue;
                        const char *l[] = { "id", h->vms[i].id, "reason", reasons[r], NULL };
                        sample_u64(&fam, l, v);
                }
        }
        fam = FAMILY(f, "vcpu_failures_total", "counter", "vCPU run failures (firecracker vcpu.failures).");
        for (size_t i = 0; i < h->n_vms; i++) {
                uint64_t v;
                if (h->vms[i].has_fc && fc_metrics_get(&h->vms[i].fc.totals, "vcpu.failures", &v)) {
                        const char *l[] = { "id", h->vms[i].id, NULL };
                        sample_u64(&fam, l, v);
                }
        }
        for (size_t c = 0; c < ELEMENTSOF(block_counters); c++)
                render_dev(f, h, &block_counters[c], true);
        for (size_t c = 0; c < ELEMENTSOF(net_counters); c++)
                render_dev(f, h, &net_counters[c], false);
        render_api(f, h, false);
        render_api(f, h, true);

        fam = FAMILY(f, "scrape_duration_seconds", "gauge", "Time this scrape took to collect the figures.");
        sample_usec_seconds(&fam, NULL, h->duration_usec);
        fam = FAMILY(f, "scrape_collector_duration_seconds", "gauge", "Time this scrape took for each part of the collection.");
        for (size_t c = 0; c < ELEMENTSOF(metrics_collectors); c++) {
                const char *l[] = { "collector", metrics_collectors[c], NULL };
                sample_usec_seconds(&fam, l, h->collector_usec[c]);
        }
        return ferror(f) ? -EIO : 0;
}

/* ---- JSON and text ---- */

/* Every key is always there, null when the figure is not known (the
 * convention of microvmctl's JSON, tests/microvmctl/schema.json). */
static void json_u64(FILE *f, const char *key, bool known, uint64_t v) {
        if (known)
                fprintf(f, ",\"%s\":%" PRIu64, key, v);
        else
                fprintf(f, ",\"%s\":null", key);
}

int metrics_render_json(const HostMetrics *h, FILE *f) {
        fprintf(f, "{\"host\":{\"vms_configured\":%" PRIu64, h->vms_configured);
        json_u64(f, "vms_running", true, h->vms_running);
        json_u64(f, "vms_failed", true, h->vms_failed);
        json_u64(f, "uids", h->has_uids, h->uids_total);
        json_u64(f, "uids_free", h->has_uids, h->uids_free);
        fputs(",\"thin_pool\":", f);
        if (h->pool)
                json_write_string(f, h->pool);
        else
                fputs("null", f);
        json_u64(f, "thin_pool_data_used_bytes", h->pool, h->pool_data_used);
        json_u64(f, "thin_pool_data_size_bytes", h->pool, h->pool_data_size);
        json_u64(f, "thin_pool_metadata_used_bytes", h->pool, h->pool_metadata_used);
        json_u64(f, "thin_pool_metadata_size_bytes", h->pool, h->pool_metadata_size);
        fputs("},\"vms\":[", f);
        for (size_t i = 0; i < h->n_vms; i++) {
                const VmMetrics *v = &h->vms[i];
                fputs(i ? ",{\"id\":" : "{\"id\":", f);
                json_write_string(f, v->id);
                fputs(",\"active_state\":", f);
                if (v->active_state)
                        json_write_string(f, v->active_state);
                else
                        fputs("null", f);
                json_u64(f, "start_time_usec", v->start_usec != 0, v->start_usec);
                json_u64(f, "restarts", v->has_restarts, v->restarts);
                json_u64(f, "vcpus", v->has_config, v->vcpus);
                json_u64(f, "memory_configured_bytes", v->has_config, v->memory_bytes);
                json_u64(f, "cpu_usage_usec", v->has_cpu, v->cpu_usage_usec);
                json_u64(f, "memory_current_bytes", v->has_memory, v->memory_current);
                json_u64(f, "memory_peak_bytes", v->has_memory_peak, v->memory_peak);
                json_u64(f, "io_read_bytes", v->has_io, v->io_rbytes);
                json_u64(f, "io_written_bytes", v->has_io, v->io_wbytes);
                json_u64(f, "io_reads", v->has_io, v->io_rios);
                json_u64(f, "io_writes", v->has_io, v->io_wios);
                json_u64(f, "pids", v->has_pids, v->pids_current);
                fputs(",\"firecracker_flush_ok\":", f);
                fputs(!v->has_fc ? "null" : v->fc_flushed ? "true" : "false", f);
                fputs(",\"firecracker\":", f);
                if (v->has_fc) {
                        /* Every summed counter, by firecracker's own name. */
                        fputc('{', f);
                        for (size_t k = 0; k < v->fc.totals.n; k++) {
                                fputs(k ? "," : "", f);
                                json_write_string(f, v->fc.totals.items[k].key);
                                fprintf(f, ":%" PRIu64, v->fc.totals.items[k].value);
                        }
                        fputc('}', f);
                } else
                        fputs("null", f);
                fputc('}', f);
        }
        fputs("]}\n", f);
        return ferror(f) ? -EIO : 0;
}

static void text_dev(FILE *f, const VmMetrics *v, const char *section, char *const *devs, const char *what,
                     const char *f1, const char *f2, const char *f3, const char *f4) {
        if (!devs)
                return;
        for (size_t d = 0; devs[d]; d++) {
                const char *fields[] = { f1, f2, f3, f4 };
                uint64_t vals[4] = {};
                bool any = false;
                for (size_t k = 0; k < 4; k++) {
                        char key[FC_METRICS_KEY_MAX];
                        snprintf(key, sizeof key, "%s%s.%s", section, devs[d], fields[k]);
                        any |= fc_metrics_get(&v->fc.totals, key, &vals[k]);
                }
                if (any)
                        fprintf(f, "  %s %-16s %" PRIu64 " / %" PRIu64 " bytes, %" PRIu64 " / %" PRIu64 " %s\n", what,
                                devs[d], vals[0], vals[1], vals[2], vals[3],
                                streq(what, "drive") ? "reads / writes" : "packets rx / tx");
        }
}

int metrics_render_text(const HostMetrics *h, FILE *f) {
        fprintf(f, "VMs: %" PRIu64 " configured, %" PRIu64 " running, %" PRIu64 " failed", h->vms_configured,
                h->vms_running, h->vms_failed);
        if (h->has_uids)
                fprintf(f, "; uids free: %" PRIu64 " of %" PRIu64, h->uids_free, h->uids_total);
        fputc('\n', f);
        if (h->pool)
                fprintf(f, "thin pool %s: data %" PRIu64 " of %" PRIu64 " bytes, metadata %" PRIu64 " of %" PRIu64 " bytes\n",
                        h->pool, h->pool_data_used, h->pool_data_size, h->pool_metadata_used, h->pool_metadata_size);
        for (size_t i = 0; i < h->n_vms; i++) {
                const VmMetrics *v = &h->vms[i];
                fprintf(f, "\n%s: %s", v->id, v->active_state ?: "not loaded");
                if (v->has_restarts)
                        fprintf(f, ", %" PRIu64 " restarts", v->restarts);
                if (v->has_config)
                        fprintf(f, ", %" PRIu32 " vCPUs, %" PRIu64 " MiB", v->vcpus, v->memory_bytes >> 20);
                fputc('\n', f);
                if (v->has_cpu)
                        fprintf(f, "  cpu      %" PRIu64 ".%06" PRIu64 " s\n", v->cpu_usage_usec / 1000000,
                                v->cpu_usage_usec % 1000000);
                if (v->has_memory)
                        fprintf(f, "  memory   %" PRIu64 " bytes%s", v->memory_current, v->has_memory_peak ? "" : "\n");
                if (v->has_memory && v->has_memory_peak)
                        fprintf(f, " (peak %" PRIu64 ")\n", v->memory_peak);
                if (v->has_io)
                        fprintf(f, "  io       %" PRIu64 " / %" PRIu64 " bytes read / written\n", v->io_rbytes, v->io_wbytes);
                if (v->has_pids)
                        fprintf(f, "  tasks    %" PRIu64 "\n", v->pids_current);
                if (v->has_fc) {
                        uint64_t e[4] = {};
                        (void) fc_metrics_get(&v->fc.totals, "vcpu.exit_io_in", &e[0]);
                        (void) fc_metrics_get(&v->fc.totals, "vcpu.exit_io_out", &e[1]);
                        (void) fc_metrics_get(&v->fc.totals, "vcpu.exit_mmio_read", &e[2]);
                        (void) fc_metrics_get(&v->fc.totals, "vcpu.exit_mmio_write", &e[3]);
                        fprintf(f, "  vcpu exits io in/out %" PRIu64 "/%" PRIu64 ", mmio read/write %" PRIu64 "/%" PRIu64 "%s\n",
                                e[0], e[1], e[2], e[3], v->fc_flushed ? "" : " (firecracker did not flush in time)");
                        text_dev(f, v, "block_", v->drives, "drive", "read_bytes", "write_bytes", "read_count",
                                 "write_count");
                        text_dev(f, v, "net_", v->nics, "nic  ", "rx_bytes_count", "tx_bytes_count", "rx_packets_count",
                                 "tx_packets_count");
                }
        }
        return ferror(f) ? -EIO : 0;
}
