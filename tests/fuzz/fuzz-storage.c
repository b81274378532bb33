/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness over the storage parsers that read what the kernel or
 * an earlier run wrote: thin-pool and snapshot status lines, loaded dm
 * tables, storage records, block claims, major:minor, mountinfo.
 * Invariants: no crash or UB on any input; what parses renders back to
 * text that parses to the same values (tables, records, devnums). */

#include <sys/sysmacros.h>

#include "fuzz-util.h"
#include "storage-util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *s = fuzz_strndup(data, size), *t = NULL, *m = NULL;
        char buf[DEVNUM_STR_MAX], id[65], drive[17];
        ThinPoolStatus tps;
        SnapshotStatus ss;
        StorageRecord rec, rec2;
        dev_t a, b, a2, b2;
        uint32_t n, n2;

        (void) thin_pool_status_parse(s, &tps);
        (void) snapshot_status_parse(s, &ss);
        (void) block_claim_parse(s, size, id, drive);
        (void) mountinfo_find_devnum(s, makedev(253, 1), &m);
        free(m);

        if (parse_devnum(s, &a) == 0) {
                fuzz_check(parse_devnum(format_devnum(a, buf), &a2) == 0 && a == a2, "devnum %s", s);
        }
        if (dm_table_thin_pool_parse(s, &a, &b, &n) == 0) {
                fuzz_check(dm_table_thin_pool(a, b, n, 0, &t) == 0, "thin-pool table for \"%s\"", s);
                fuzz_check(dm_table_thin_pool_parse(t, &a2, &b2, &n2) == 0 && a == a2 && b == b2 && n == n2,
                           "thin-pool table round trip \"%s\" -> \"%s\"", s, t);
                free(t);
                t = NULL;
        }
        if (dm_table_thin_parse(s, &a, &n, &b) == 0) {
                fuzz_check(dm_table_thin(a, n, b, &t) == 0, "thin table for \"%s\"", s);
                fuzz_check(dm_table_thin_parse(t, &a2, &n2, &b2) == 0 && a == a2 && b == b2 && n == n2,
                           "thin table round trip \"%s\" -> \"%s\"", s, t);
                free(t);
                t = NULL;
        }
        if (storage_record_parse(s, size, &rec) == 0) {
                t = storage_record_format(&rec);
                fuzz_check(t && storage_record_parse(t, strlen(t), &rec2) == 0, "record does not parse back: %s",
                           t ?: "(null)");
                char *again = storage_record_format(&rec2);
                fuzz_check(again && streq(again, t), "record round trip:\n%s---\n%s", t, again ?: "(null)");
                free(again);
                free(t);
        }
        free(s);
        return 0;
}
