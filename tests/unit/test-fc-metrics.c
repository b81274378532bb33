/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Firecracker's metrics lines: parsing, delta summing, the sum file. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "fc-metrics.h"

/* A line in the real format (shortened): sections of counters, latency
 * aggregates one level deeper, the optional "id" and "properties". */
static const char line1[] =
        "{\"utc_timestamp_ms\":1541591155180,\"id\":\"web1\",\"properties\":{\"k\":\"v\"},"
        "\"api_server\":{\"process_startup_time_us\":900,\"process_startup_time_cpu_us\":0},"
        "\"block_root\":{\"read_bytes\":4096,\"write_bytes\":512,\"read_count\":1,\"write_count\":1,"
        "\"read_agg\":{\"min_us\":3,\"max_us\":9,\"sum_us\":12}},"
        "\"block\":{\"read_bytes\":4096},"
        "\"get_api_requests\":{\"instance_info_count\":2},"
        "\"net_eth0\":{\"rx_bytes_count\":100,\"tx_bytes_count\":50,\"rx_packets_count\":1},"
        "\"vcpu\":{\"exit_io_in\":7,\"exit_mmio_read\":3},"
        "\"signals\":{\"sigbus\":0,\"sigpipe\":1}}\n";

static uint64_t get(const FcMetrics *m, const char *key) {
        uint64_t v = UINT64_MAX;
        cr_assert(fc_metrics_get(m, key, &v), "missing %s", key);
        return v;
}

Test(fc_metrics, parse_real_line) {
        FcMetrics m = {};
        cr_assert_eq(fc_metrics_line_parse(line1, sizeof line1 - 1, &m), 0);
        cr_assert_eq(get(&m, "block_root.read_bytes"), 4096);
        cr_assert_eq(get(&m, "block_root.read_agg.sum_us"), 12);
        cr_assert_eq(get(&m, "net_eth0.tx_bytes_count"), 50);
        cr_assert_eq(get(&m, "vcpu.exit_io_in"), 7);
        cr_assert_eq(get(&m, "utc_timestamp_ms"), 1541591155180ULL);
        uint64_t v;
        cr_assert_not(fc_metrics_get(&m, "id", &v), "strings are not counters");
        cr_assert_not(fc_metrics_get(&m, "properties.k", &v));
        for (size_t i = 1; i < m.n; i++)
                cr_assert_lt(strcmp(m.items[i - 1].key, m.items[i].key), 0, "sorted and unique");
        fc_metrics_done(&m);
}

Test(fc_metrics, refuses_garbage) {
        static const char *const bad[] = {
                "", "[]", "{", "{\"a\":}", "{\"a\":1,}", "{\"a\":1} x", "{\"a\" 1}", "{\"a\":\"unterminated}",
                "{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":1}}}", "nul\0", "{\"a\":tru}",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                FcMetrics m = {};
                cr_assert_lt(fc_metrics_line_parse(bad[i], strlen(bad[i]), &m), 0, "accepted: %s", bad[i]);
        }
}

Test(fc_metrics, skips_non_counters_and_deep_objects) {
        /* Negative, fractional, huge numbers, booleans, null, arrays and
         * objects past the depth limit are skipped, not errors. */
        static const char l[] = "{\"a\":{\"neg\":-1,\"frac\":1.5,\"exp\":1e3,\"big\":99999999999999999999,"
                                "\"t\":true,\"n\":null,\"arr\":[1,{\"x\":2}],\"ok\":5,"
                                "\"deep\":{\"deeper\":{\"deepest\":1}},"
                                "\"sp ace\":1,\"new\\nline\":2,\"\":3,\"d.ot\":4,\"q\\\"\":{\"x\":5}}}";
        FcMetrics m = {};
        uint64_t v;
        cr_assert_eq(fc_metrics_line_parse(l, sizeof l - 1, &m), 0);
        cr_assert_eq(m.n, 1, "only a.ok: %zu", m.n);
        cr_assert_eq(get(&m, "a.ok"), 5);
        cr_assert_not(fc_metrics_get(&m, "a.deep.deeper.deepest", &v));
        fc_metrics_done(&m);
}

Test(fc_metrics, store_or_delta) {
        cr_assert(fc_metric_is_store("api_server.process_startup_time_us"));
        cr_assert(fc_metric_is_store("block_root.read_agg.max_us"));
        cr_assert(fc_metric_is_store("signals.sigbus"));
        cr_assert_not(fc_metric_is_store("signals.sigpipe"));
        cr_assert_not(fc_metric_is_store("block_root.read_agg.sum_us"));
        cr_assert_not(fc_metric_is_store("vcpu.exit_io_in"));
        cr_assert_not(fc_metric_is_store("net_eth0.rx_bytes_count"));
}

Test(fc_metrics, sums_deltas_over_lines) {
        /* Each line holds what happened since the previous one. */
        static const char text[] = "{\"vcpu\":{\"exit_io_in\":7},\"api_server\":{\"process_startup_time_us\":900}}\n"
                                   "\0\0\0" /* a punched hole reads as zeros */
                                   "{\"vcpu\":{\"exit_io_in\":3,\"exit_io_out\":1},\"api_server\":{\"process_startup_time_us\":950}}\n"
                                   "not json\n"
                                   "{\"vcpu\":{\"exit_io_in\":100}";     /* partial: left for later */
        FcMetricsSum s = {};
        size_t used = fc_metrics_sum_feed(&s, text, sizeof text - 1);
        cr_assert_eq(used, s.offset);
        cr_assert_eq(s.lines, 2);
        cr_assert_eq(s.bad_lines, 1);
        cr_assert_eq(get(&s.totals, "vcpu.exit_io_in"), 10);
        cr_assert_eq(get(&s.totals, "vcpu.exit_io_out"), 1);
        uint64_t v;
        cr_assert_not(fc_metrics_get(&s.totals, "api_server.process_startup_time_us", &v), "not a counter we keep");
        cr_assert_str_eq(text + used, "{\"vcpu\":{\"exit_io_in\":100}");
        /* The rest of the partial line arrives. */
        static const char more[] = "{\"vcpu\":{\"exit_io_in\":100}}\n";
        fc_metrics_sum_feed(&s, more, sizeof more - 1);
        cr_assert_eq(get(&s.totals, "vcpu.exit_io_in"), 110);
        fc_metrics_sum_done(&s);
}

Test(fc_metrics, saturates) {
        static const char text[] = "{\"vcpu\":{\"failures\":18446744073709551615}}\n{\"vcpu\":{\"failures\":5}}\n";
        FcMetricsSum s = {};
        fc_metrics_sum_feed(&s, text, sizeof text - 1);
        cr_assert_eq(get(&s.totals, "vcpu.failures"), UINT64_MAX);
        fc_metrics_sum_done(&s);
}

Test(fc_metrics, sum_file_round_trip) {
        FcMetricsSum s = { .dev = 2049, .ino = 77, .lines = 0 }, back = {};
        fc_metrics_sum_feed(&s, line1, sizeof line1 - 1);
        char *text = fc_metrics_sum_serialize(&s);
        cr_assert_not_null(text);
        cr_assert_eq(fc_metrics_sum_parse(text, strlen(text), &back), 0, "%s", text);
        cr_assert_eq(back.dev, 2049);
        cr_assert_eq(back.ino, 77);
        cr_assert_eq(back.offset, sizeof line1 - 1);
        cr_assert_eq(back.lines, 1);
        cr_assert_eq(back.totals.n, s.totals.n);
        cr_assert_eq(get(&back.totals, "net_eth0.rx_bytes_count"), 100);
        free(text);
        fc_metrics_sum_done(&s);
        fc_metrics_sum_done(&back);
}

Test(fc_metrics, sum_file_refuses_garbage) {
        static const char *const bad[] = {
                "", "microvm-fc-metrics 2\n", "microvm-fc-metrics 1\ndev 1\n",
                "microvm-fc-metrics 1\ndev 1\nino 2\noffset 3\nlines 4\nbad_lines x\n",
                "microvm-fc-metrics 1\ndev 1\nino 2\noffset 3\nlines 4\nbad_lines 0\nb 1\na 2\n",
                "microvm-fc-metrics 1\nino 1\ndev 2\noffset 3\nlines 4\nbad_lines 0\n",
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                FcMetricsSum s = {};
                cr_assert_lt(fc_metrics_sum_parse(bad[i], strlen(bad[i]), &s), 0, "accepted: %s", bad[i]);
        }
}

Test(fc_metrics, accumulate_replaces_absolute_values) {
        static const char l1[] = "{\"api_server\":{\"process_startup_time_us\":900},\"vcpu\":{\"exit_io_in\":2}}";
        static const char l2[] = "{\"api_server\":{\"process_startup_time_us\":950},\"vcpu\":{\"exit_io_in\":3,\"exit_io_out\":1}}";
        FcMetrics sum = {}, a = {}, b = {};
        cr_assert_eq(fc_metrics_line_parse(l1, sizeof l1 - 1, &a), 0);
        cr_assert_eq(fc_metrics_line_parse(l2, sizeof l2 - 1, &b), 0);
        cr_assert_eq(fc_metrics_accumulate(&sum, &a), 0);
        cr_assert_eq(fc_metrics_accumulate(&sum, &b), 0);
        cr_assert_eq(get(&sum, "api_server.process_startup_time_us"), 950);
        cr_assert_eq(get(&sum, "vcpu.exit_io_in"), 5);
        cr_assert_eq(get(&sum, "vcpu.exit_io_out"), 1);
        fc_metrics_done(&sum);
        fc_metrics_done(&a);
        fc_metrics_done(&b);
}

Test(fc_metrics, wanted_keys) {
        cr_assert(fc_metric_wanted("vcpu.exit_io_in"));
        cr_assert(fc_metric_wanted("block_root.read_bytes"));
        cr_assert(fc_metric_wanted("net_eth0.rx_bytes_count"));
        cr_assert(fc_metric_wanted("put_api_requests.actions_count"));
        cr_assert_not(fc_metric_wanted("block_root.read_agg.sum_us"));
        cr_assert_not(fc_metric_wanted("api_server.process_startup_time_us"));
        cr_assert_not(fc_metric_wanted("mmds.rx_count"));
        cr_assert_not(fc_metric_wanted("utc_timestamp_ms"));
}

Test(fc_metrics, feed_keeps_exactly_the_wanted_keys_of_a_line) {
        /* The feed skips what no figure is made of without reading it into
         * keys; what it keeps is what a full parse has of the wanted keys. */
        FcMetrics all = {};
        FcMetricsSum s = {};
        size_t wanted = 0;

        cr_assert_eq(fc_metrics_line_parse(line1, sizeof line1 - 1, &all), 0);
        cr_assert_eq(fc_metrics_sum_feed(&s, line1, sizeof line1 - 1), sizeof line1 - 1);
        cr_assert_eq(s.lines, 1);
        for (size_t i = 0; i < all.n; i++) {
                uint64_t v;
                if (!fc_metric_wanted(all.items[i].key)) {
                        cr_assert_not(fc_metrics_get(&s.totals, all.items[i].key, &v), "kept %s", all.items[i].key);
                        continue;
                }
                wanted++;
                cr_assert_eq(get(&s.totals, all.items[i].key), all.items[i].value, "%s", all.items[i].key);
        }
        cr_assert_eq(s.totals.n, wanted);
        cr_assert_eq(wanted, 10, "block_root 4, get_api_requests 1, net_eth0 3, vcpu 2: %zu", wanted);
        fc_metrics_done(&all);
        fc_metrics_sum_done(&s);
}

Test(fc_metrics, feed_skips_unwanted_sections_unread) {
        /* More counters in sections no figure is made of than a line may
         * have keys: the line is still summed (and still has to be JSON). */
        char *line = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&line, &len);
        cr_assert(f);
        fputs("{\"mmds\":{", f);
        for (unsigned i = 0; i < FC_METRICS_KEYS_MAX + 10; i++)
                fprintf(f, "%s\"c%u\":%u", i ? "," : "", i, i);
        fputs("},\"vcpu\":{\"exit_io_in\":7}}\n", f);
        cr_assert_eq(fclose(f), 0);

        FcMetricsSum s = {};
        FcMetrics all = {};
        cr_assert_lt(fc_metrics_line_parse(line, len - 1, &all), 0, "a full parse has too many keys");
        fc_metrics_sum_feed(&s, line, len);
        cr_assert_eq(s.lines, 1);
        cr_assert_eq(s.bad_lines, 0);
        cr_assert_eq(get(&s.totals, "vcpu.exit_io_in"), 7);
        cr_assert_eq(s.totals.n, 1);
        fc_metrics_sum_done(&s);

        /* Broken JSON in a skipped section still makes the line bad. */
        static const char bad[] = "{\"mmds\":{\"a\":1,},\"vcpu\":{\"exit_io_in\":7}}\n";
        fc_metrics_sum_feed(&s, bad, sizeof bad - 1);
        cr_assert_eq(s.lines, 0);
        cr_assert_eq(s.bad_lines, 1);
        fc_metrics_sum_done(&s);
        free(line);
}
