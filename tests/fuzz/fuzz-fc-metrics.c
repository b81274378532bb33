/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness: the bytes of a firecracker metrics file (written by
 * the VM's uid: untrusted) → fc_metrics_sum_feed(), and the running-sum file
 * (ours, but read back from /run) → fc_metrics_sum_parse().
 * Invariants: the feed consumes whole lines only (what is left has no
 * newline), counts every line as summed or bad, keeps its keys sorted,
 * unique and within the limits; a sum serializes to text that parses back
 * to the same serialization; feeding the same bytes in two pieces split at
 * a line boundary gives the same sums as in one. */

#include <inttypes.h>

#include "fc-metrics.h"
#include "fuzz-util.h"

static void check_sorted(const FcMetrics *m) {
        fuzz_check(m->n <= FC_METRICS_KEYS_MAX, "%zu keys", m->n);
        for (size_t i = 0; i < m->n; i++) {
                fuzz_check(strlen(m->items[i].key) < FC_METRICS_KEY_MAX, "key too long");
                fuzz_check(fc_metric_wanted(m->items[i].key), "unwanted key %s kept", m->items[i].key);
                if (i > 0)
                        fuzz_check(strcmp(m->items[i - 1].key, m->items[i].key) < 0, "keys not sorted and unique");
        }
}

static void round_trip(const FcMetricsSum *s) {
        FcMetricsSum back = {};
        char *text = fc_metrics_sum_serialize(s), *again;

        fuzz_check(text, "serialize failed");
        fuzz_check(fc_metrics_sum_parse(text, strlen(text), &back) == 0, "serialized sum does not parse:\n%s", text);
        again = fc_metrics_sum_serialize(&back);
        fuzz_check(again && streq(text, again), "round trip changed the sum");
        free(again);
        free(text);
        fc_metrics_sum_done(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *buf = (const char *) data;
        FcMetricsSum s = {}, parsed = {}, two = {};
        size_t used, nl = 0;

        used = fc_metrics_sum_feed(&s, buf, size);
        fuzz_check(used <= size && s.offset == used, "consumed %zu of %zu, offset %" PRIu64, used, size, s.offset);
        fuzz_check(!memchr(buf + used, '\n', size - used), "a complete line was left");
        for (size_t i = 0; i < used; i++)
                nl += buf[i] == '\n';
        fuzz_check(s.lines + s.bad_lines == nl, "%zu lines, %" PRIu64 " summed + %" PRIu64 " bad", nl, s.lines,
                   s.bad_lines);
        check_sorted(&s.totals);
        round_trip(&s);

        /* In two pieces, split after the first line. */
        const char *first = memchr(buf, '\n', used);
        if (first) {
                size_t k = (size_t) (first - buf) + 1;
                fc_metrics_sum_feed(&two, buf, k);
                fc_metrics_sum_feed(&two, buf + k, size - k);
                char *a = fc_metrics_sum_serialize(&s), *b = fc_metrics_sum_serialize(&two);
                fuzz_check(a && b && streq(a, b), "feeding in two pieces differs");
                free(a);
                free(b);
        }

        /* The same bytes as a sum file. */
        if (fc_metrics_sum_parse(buf, size, &parsed) == 0)
                round_trip(&parsed);

        fc_metrics_sum_done(&s);
        fc_metrics_sum_done(&two);
        fc_metrics_sum_done(&parsed);
        return 0;
}
