/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The exposition (Prometheus text format 0.0.4), JSON and cgroup parsers. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"
#include "vm-metrics.h"

static char *render(const HostMetrics *h, int (*fn)(const HostMetrics *, FILE *)) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        cr_assert_eq(fn(h, f), 0);
        fclose(f);
        return out;
}

static void assert_has_all(const char *out, const char *const *want, size_t n) {
        for (size_t i = 0; i < n; i++)
                cr_assert_not_null(strstr(out, want[i]), "missing %s in:\n%s", want[i], out);
}

static void sample_vm(VmMetrics *v, const char *id) {
        static const char line[] =
                "{\"block_root\":{\"read_bytes\":4096,\"write_bytes\":512,\"read_count\":1,\"write_count\":2},"
                "\"block_evil\\\"}\":{\"read_bytes\":1},"
                "\"net_eth0\":{\"rx_bytes_count\":100,\"tx_bytes_count\":50,\"rx_packets_count\":1,\"tx_packets_count\":3,"
                "\"rx_fails\":0,\"tx_fails\":0,\"tx_malformed_frames\":1,\"tx_spoofed_mac_count\":2},"
                "\"get_api_requests\":{\"instance_info_count\":2,\"bad name\":1},"
                "\"put_api_requests\":{\"actions_count\":4,\"actions_fails\":1},"
                "\"vcpu\":{\"exit_io_in\":7,\"exit_io_out\":8,\"exit_mmio_read\":9,\"exit_mmio_write\":10,\"failures\":0}}\n";
        *v = (VmMetrics) {};
        snprintf(v->id, sizeof v->id, "%s", id);
        v->has_config = true;
        v->vcpus = 2;
        v->memory_bytes = 512ULL << 20;
        strv_push(&v->drives, "root");
        strv_push(&v->nics, "eth0");
        v->active_state = strdup("active");
        v->start_usec = 1765000000123456ULL;
        v->has_restarts = true;
        v->restarts = 3;
        v->has_cpu = true;
        v->cpu_usage_usec = 1500000;
        v->has_fc = true;
        v->fc_flushed = true;
        fc_metrics_sum_feed(&v->fc, line, sizeof line - 1);
}

Test(metrics_render, prometheus) {
        HostMetrics h = { .vms_configured = 2, .vms_running = 1, .has_uids = true, .uids_total = 10, .uids_free = 9,
                          .duration_usec = 1234 };
        h.vms = calloc(2, sizeof *h.vms);
        h.n_vms = 2;
        sample_vm(&h.vms[0], "web1");
        snprintf(h.vms[1].id, sizeof h.vms[1].id, "db1");
        h.vms[1].active_state = strdup("failed");
        char *out = render(&h, metrics_render_prometheus);

        static const char *const want[] = {
                "# HELP microvm_vms_running ",
                "# TYPE microvm_vms_running gauge\nmicrovm_vms_running 1\n",
                "microvm_uids_free 9\n",
                "microvm_up{id=\"web1\"} 1\n",
                "microvm_up{id=\"db1\"} 0\n",
                "microvm_unit_state{id=\"db1\",state=\"failed\"} 1\n",
                "microvm_unit_state{id=\"web1\",state=\"failed\"} 0\n",
                "microvm_start_time_seconds{id=\"web1\"} 1765000000.123456\n",
                "# TYPE microvm_restarts_total counter\nmicrovm_restarts_total{id=\"web1\"} 3\n",
                "microvm_vcpus{id=\"web1\"} 2\n",
                "microvm_memory_configured_bytes{id=\"web1\"} 536870912\n",
                "microvm_cpu_usage_seconds_total{id=\"web1\"} 1.500000\n",
                "microvm_vcpu_exits_total{id=\"web1\",reason=\"mmio_write\"} 10\n",
                "microvm_block_read_bytes_total{id=\"web1\",drive=\"root\"} 4096\n",
                "microvm_block_writes_total{id=\"web1\",drive=\"root\"} 2\n",
                "microvm_net_transmit_packets_total{id=\"web1\",nic=\"eth0\"} 3\n",
                "microvm_net_transmit_drops_total{id=\"web1\",nic=\"eth0\"} 3\n",
                "microvm_api_requests_total{id=\"web1\",method=\"put\",request=\"actions\"} 4\n",
                "microvm_api_request_failures_total{id=\"web1\",method=\"put\",request=\"actions\"} 1\n",
                "microvm_firecracker_flush_ok{id=\"web1\"} 1\n",
                "microvm_scrape_duration_seconds 0.001234\n",
        };
        assert_has_all(out, want, sizeof want / sizeof want[0]);
        /* Labels only from the config (a drive name forged into the file
         * by the VM's uid never becomes a series), request names checked. */
        cr_assert_null(strstr(out, "evil"), "%s", out);
        cr_assert_null(strstr(out, "bad name"), "%s", out);
        /* Nothing of the cgroup controllers that are not there. */
        cr_assert_null(strstr(out, "microvm_memory_current_bytes"), "%s", out);
        cr_assert_null(strstr(out, "microvm_thin_pool"), "%s", out);
        /* Each family's HELP and TYPE exactly once, before its samples. */
        for (const char *p = out; (p = strstr(p, "# TYPE ")); p++) {
                char name[128];
                cr_assert_eq(sscanf(p, "# TYPE %127s", name), 1);
                char *needle = NULL;
                cr_assert_geq(asprintf(&needle, "# TYPE %s ", name), 0);
                cr_assert_null(strstr(p + 1, needle), "%s twice", name);
                free(needle);
        }
        free(out);
        host_metrics_done(&h);
}

Test(metrics_render, json) {
        HostMetrics h = { .vms_configured = 1 };
        h.vms = calloc(1, sizeof *h.vms);
        h.n_vms = 1;
        sample_vm(&h.vms[0], "web1");
        char *out = render(&h, metrics_render_json);
        cr_assert_not_null(strstr(out, "{\"host\":{\"vms_configured\":1,"), "%s", out);
        cr_assert_not_null(strstr(out, "\"id\":\"web1\",\"active_state\":\"active\""), "%s", out);
        cr_assert_not_null(strstr(out, "\"block_root.read_bytes\":4096"), "%s", out);
        cr_assert_null(strstr(out, "evil"), "a key firecracker never writes is not kept: %s", out);
        free(out);
        out = render(&h, metrics_render_text);
        cr_assert_not_null(strstr(out, "web1: active, 3 restarts, 2 vCPUs, 512 MiB"), "%s", out);
        free(out);
        host_metrics_done(&h);
}

Test(metrics_render, cgroup_parsers) {
        uint64_t v, rb, wb, ri, wi;
        cr_assert_eq(cgroup_stat_field("usage_usec 12\nuser_usec 5\nsystem_usec 7\n", "user_usec", &v), 0);
        cr_assert_eq(v, 5);
        cr_assert_eq(cgroup_stat_field("usage_usec 12\n", "usage", &v), -ENOENT);
        cr_assert_eq(cgroup_stat_field("usage_usec x\n", "usage_usec", &v), -EBADMSG);
        cr_assert_eq(cgroup_io_stat_sum("8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n"
                                        "253:1 rbytes=5 wbytes=5 rios=1 wios=1\n",
                                        &rb, &wb, &ri, &wi),
                     0);
        cr_assert(rb == 15 && wb == 25 && ri == 2 && wi == 3);
}

/* Every family, every kind of sample, as Prometheus' own linter sees it
 * (promtool from Debian's prometheus package; skipped without it). */
Test(metrics_render, promtool_check_metrics) {
        HostMetrics h = { .vms_configured = 3, .vms_running = 2, .vms_failed = 1, .has_uids = true,
                          .uids_total = 65536, .uids_free = 65533, .pool = strdup("microvm-pool"),
                          .pool_data_used = 1 << 20, .pool_data_size = 1 << 30, .pool_metadata_used = 4096,
                          .pool_metadata_size = 1 << 22, .duration_usec = 4321 };
        char path[] = "/run/test-metrics-render.XXXXXX", cmd[128], *out = NULL;
        size_t len = 0;

        if (system("command -v promtool >/dev/null 2>&1") != 0)
                cr_skip_test("no promtool (Debian package prometheus)");
        h.vms = calloc(3, sizeof *h.vms);
        h.n_vms = 3;
        sample_vm(&h.vms[0], "web1");
        sample_vm(&h.vms[1], "db-1");
        h.vms[1].has_memory = h.vms[1].has_memory_peak = h.vms[1].has_io = h.vms[1].has_pids = true;
        h.vms[1].memory_current = 1 << 20;
        h.vms[1].memory_peak = 2 << 20;
        h.vms[1].io_rbytes = 7;
        h.vms[1].pids_current = 3;
        snprintf(h.vms[2].id, sizeof h.vms[2].id, "stopped");
        h.vms[2].active_state = strdup("failed");
        char *text = render(&h, metrics_render_prometheus);

        int fd = mkstemp(path);
        if (fd < 0) {
                strcpy(path, "/tmp/test-metrics-render.XXXXXX");
                fd = mkstemp(path);
        }
        cr_assert_geq(fd, 0);
        cr_assert_eq(write(fd, text, strlen(text)), (ssize_t) strlen(text));
        close(fd);
        snprintf(cmd, sizeof cmd, "promtool check metrics <%s 2>&1", path);
        FILE *p = popen(cmd, "r");
        cr_assert_not_null(p);
        FILE *o = open_memstream(&out, &len);
        for (int c; (c = fgetc(p)) != EOF;)
                fputc(c, o);
        fclose(o);
        int status = pclose(p);
        unlink(path);
        cr_assert_eq(status, 0, "promtool check metrics: %s\n%s", out, text);
        free(out);
        free(text);
        host_metrics_done(&h);
}

Test(metrics_render, label_escaping_and_numbers) {
        /* Backslash, double quote and newline in a label value are escaped
         * (0.0.4); numbers from 0 to UINT64_MAX are written whole. */
        HostMetrics h = { .has_uids = true, .uids_total = UINT64_MAX, .uids_free = 0, .duration_usec = 7 };
        h.pool = strdup("po\"ol\\x\ny");
        h.pool_data_used = 10;
        h.pool_data_size = 1000000;
        char *out = render(&h, metrics_render_prometheus);

        static const char *const want[] = {
                "microvm_uids 18446744073709551615\n",
                "microvm_uids_free 0\n",
                "{pool=\"po\\\"ol\\\\x\\ny\"} 10\n",
                "{pool=\"po\\\"ol\\\\x\\ny\"} 1000000\n",
                "microvm_scrape_duration_seconds 0.000007\n",
        };
        assert_has_all(out, want, sizeof want / sizeof want[0]);
        free(out);
        host_metrics_done(&h);
}
