/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure parts of the storage code: dm tables, status lines, the
 * thin-pool superblock check, sizes, records, thin id picking, target →
 * module names, leaf-first order, mountinfo, back-off, loop names. The
 * device-mapper side runs in the dmvm guest (tests/dmvm/test-storage.c). */

#include <criterion/criterion.h>
#include <sys/sysmacros.h>

#include "config.h"
#include "loop.h"
#include "names.h"
#include "plan.h"
#include "storage-util.h"
#include "storage.h"

#define DEV(a, b) makedev((a), (b))

Test(storage_util, devnum) {
        char buf[DEVNUM_STR_MAX];
        dev_t d;

        cr_assert_str_eq(format_devnum(DEV(253, 12), buf), "253:12");
        cr_assert_str_eq(format_devnum(DEV(7, 1048575), buf), "7:1048575");
        cr_assert_eq(parse_devnum("253:12", &d), 0);
        cr_assert_eq(d, DEV(253, 12));
        cr_assert_eq(parse_devnum("0:0", &d), 0);
        cr_assert_eq(parse_devnum("253", &d), -EINVAL);
        cr_assert_eq(parse_devnum(":12", &d), -EINVAL);
        cr_assert_eq(parse_devnum("253:", &d), -EINVAL);
        cr_assert_eq(parse_devnum("253:012", &d), -EINVAL);
        cr_assert_eq(parse_devnum("-1:2", &d), -EINVAL);
        cr_assert_eq(parse_devnum("4096:0", &d), -EINVAL);
        cr_assert_eq(parse_devnum("1:1048576", &d), -EINVAL);
        cr_assert_eq(parse_devnum("1:2 ", &d), -EINVAL);
}

Test(storage_util, tables) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        dev_t m, x, o;
        uint32_t bs, id;

        cr_assert_eq(dm_table_snapshot(DEV(7, 0), DEV(7, 1), true, 8, &a), 0);
        cr_assert_str_eq(a, "7:0 7:1 P 8");
        cr_assert_eq(dm_table_snapshot(DEV(7, 0), DEV(7, 1), false, 16, &b), 0);
        cr_assert_str_eq(b, "7:0 7:1 N 16");
        cr_assert_eq(dm_table_snapshot(DEV(7, 0), DEV(7, 1), false, 12, &e), -EINVAL);
        cr_assert_eq(dm_table_snapshot(DEV(7, 0), DEV(7, 1), false, 0, &e), -EINVAL);
        cr_assert_eq(dm_table_snapshot(0, DEV(7, 1), false, 8, &e), -EINVAL);

        cr_assert_eq(dm_table_thin_pool(DEV(7, 2), DEV(7, 3), 128, 0, &c), 0);
        cr_assert_str_eq(c, "7:2 7:3 128 0 0");
        cr_assert_eq(dm_table_thin_pool(DEV(7, 2), DEV(7, 3), 64, 0, &e), -EINVAL);
        cr_assert_eq(dm_table_thin_pool(DEV(7, 2), DEV(7, 3), 192, 0, &e), -EINVAL);
        cr_assert_eq(dm_table_thin_pool_parse("7:2 7:3 128 0 1 skip_block_zeroing", &m, &x, &bs), 0);
        cr_assert_eq(m, DEV(7, 2));
        cr_assert_eq(x, DEV(7, 3));
        cr_assert_eq(bs, 128);
        cr_assert_eq(dm_table_thin_pool_parse("7:2 7:3", &m, &x, &bs), -EINVAL);
        cr_assert_eq(dm_table_thin_pool_parse("7:2 x 128 0 0", &m, &x, &bs), -EINVAL);

        cr_assert_eq(dm_table_thin(DEV(253, 0), 7, DEV(7, 4), &d), 0);
        cr_assert_str_eq(d, "253:0 7 7:4");
        free(d);
        cr_assert_eq(dm_table_thin(DEV(253, 0), 7, 0, &d), 0);
        cr_assert_str_eq(d, "253:0 7");
        cr_assert_eq(dm_table_thin(DEV(253, 0), THIN_ID_MAX + 1, 0, &e), -EINVAL);
        cr_assert_eq(dm_table_thin_parse("253:0 7 7:4", &m, &id, &o), 0);
        cr_assert_eq(m, DEV(253, 0));
        cr_assert_eq(id, 7);
        cr_assert_eq(o, DEV(7, 4));
        cr_assert_eq(dm_table_thin_parse("253:0 7", &m, &id, &o), 0);
        cr_assert_eq(o, 0);
        cr_assert_eq(dm_table_thin_parse("253:0", &m, &id, &o), -EINVAL);
        cr_assert_eq(dm_table_thin_parse("253:0 16777216", &m, &id, &o), -EINVAL);
}

Test(storage_util, thin_pool_status) {
        ThinPoolStatus s;

        cr_assert_eq(thin_pool_status_parse("3 210/4161600 1/1638400 - rw discard_passdown queue_if_no_space - 1024", &s), 0);
        cr_assert_eq(s.transaction_id, 3);
        cr_assert_eq(s.used_metadata_blocks, 210);
        cr_assert_eq(s.total_metadata_blocks, 4161600);
        cr_assert_eq(s.used_data_blocks, 1);
        cr_assert_eq(s.total_data_blocks, 1638400);
        cr_assert_eq(s.mode, THIN_POOL_RW);
        cr_assert(!s.needs_check);
        cr_assert(!s.error_if_no_space);

        cr_assert_eq(thin_pool_status_parse("0 10/100 5/5 7 out_of_data_space no_discard_passdown error_if_no_space needs_check 1024", &s), 0);
        cr_assert_eq(s.mode, THIN_POOL_OUT_OF_DATA_SPACE);
        cr_assert(s.needs_check);
        cr_assert(s.error_if_no_space);
        cr_assert_eq(thin_pool_status_parse("0 10/100 5/5 - ro discard_passdown queue_if_no_space -", &s), 0);
        cr_assert_eq(s.mode, THIN_POOL_RO);
        cr_assert_eq(thin_pool_status_parse("Fail", &s), 0);
        cr_assert_eq(s.mode, THIN_POOL_FAIL);
        cr_assert_str_eq(thin_pool_mode_to_string(THIN_POOL_OUT_OF_DATA_SPACE), "out_of_data_space");

        cr_assert_eq(thin_pool_status_parse("", &s), -EINVAL);
        cr_assert_eq(thin_pool_status_parse("0 10/100 5/5 - xx discard_passdown", &s), -EINVAL);
        cr_assert_eq(thin_pool_status_parse("0 10-100 5/5 - rw discard_passdown", &s), -EINVAL);
        cr_assert_eq(thin_pool_status_parse("0 10/100 5/5", &s), -EINVAL);
}

Test(storage_util, snapshot_status) {
        SnapshotStatus s;

        cr_assert_eq(snapshot_status_parse("16/16384 16", &s), 0);
        cr_assert_eq(s.state, SNAPSHOT_VALID);
        cr_assert_eq(s.used_sectors, 16);
        cr_assert_eq(s.total_sectors, 16384);
        cr_assert_eq(s.metadata_sectors, 16);
        cr_assert_eq(snapshot_status_parse("Invalid", &s), 0);
        cr_assert_eq(s.state, SNAPSHOT_INVALID);
        cr_assert_eq(snapshot_status_parse("Overflow", &s), 0);
        cr_assert_eq(s.state, SNAPSHOT_OVERFLOW);
        cr_assert_eq(snapshot_status_parse("Merge failed", &s), 0);
        cr_assert_eq(s.state, SNAPSHOT_MERGE_FAILED);
        cr_assert_eq(snapshot_status_parse("16/x 16", &s), -EINVAL);
        cr_assert_eq(snapshot_status_parse("", &s), -EINVAL);
        cr_assert_eq(snapshot_status_parse("1 2 3", &s), -EINVAL);
}

Test(storage_util, crc32c) {
        /* The check value of CRC-32C, and chaining. */
        cr_assert_eq(crc32c(0, "123456789", 9), 0xe3069283U);
        cr_assert_eq(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283U);
        cr_assert_eq(crc32c(0, "", 0), 0);
}

/* A superblock as the kernel writes it for a fresh pool. */
static void make_superblock(uint8_t sb[static THIN_METADATA_BLOCK_SIZE], uint32_t data_block_sectors, uint32_t flags) {
        uint64_t magic = 27022010;

        memset(sb, 0, THIN_METADATA_BLOCK_SIZE);
        memcpy(sb + 4, &flags, 4);
        memcpy(sb + 32, &magic, 8);
        sb[40] = 2;                                     /* version */
        memcpy(sb + 336, &data_block_sectors, 4);
        sb[340] = 8;                                    /* metadata block size: 8 sectors */
        sb[344] = 0x40;                                 /* metadata_nr_blocks */
        thin_superblock_set_checksum(sb);
}

Test(storage_util, thin_superblock) {
        uint8_t sb[THIN_METADATA_BLOCK_SIZE];
        ThinSuperblock s;

        memset(sb, 0, sizeof sb);
        cr_assert_eq(thin_superblock_check(sb, 128, &s), THIN_SB_ZERO);

        make_superblock(sb, 128, 0);
        cr_assert_eq(thin_superblock_check(sb, 128, &s), THIN_SB_VALID);
        cr_assert_eq(s.version, 2);
        cr_assert_eq(s.data_block_sectors, 128);
        cr_assert_eq(s.metadata_blocks, 0x40);
        cr_assert_eq(thin_superblock_check(sb, 0, NULL), THIN_SB_VALID);
        cr_assert_eq(thin_superblock_check(sb, 256, &s), THIN_SB_DATA_BLOCK_SIZE_MISMATCH);
        cr_assert_eq(s.data_block_sectors, 128);

        /* Any flipped bit outside the checksum field breaks the checksum. */
        for (size_t off = 4; off < sizeof sb; off += 397) {
                sb[off] ^= 0x01;
                cr_assert_neq(thin_superblock_check(sb, 128, NULL), THIN_SB_VALID, "flip at %zu accepted", off);
                sb[off] ^= 0x01;
        }
        sb[0] ^= 0x80;
        cr_assert_eq(thin_superblock_check(sb, 128, NULL), THIN_SB_BAD_CHECKSUM);
        sb[0] ^= 0x80;
        sb[33] ^= 0x01;
        cr_assert_eq(thin_superblock_check(sb, 128, NULL), THIN_SB_BAD_MAGIC);
        sb[33] ^= 0x01;

        make_superblock(sb, 128, 1);
        cr_assert_eq(thin_superblock_check(sb, 128, &s), THIN_SB_NEEDS_CHECK);
        cr_assert(s.needs_check);

        make_superblock(sb, 128, 0);
        sb[40] = 3;
        thin_superblock_set_checksum(sb);
        cr_assert_eq(thin_superblock_check(sb, 128, NULL), THIN_SB_BAD_VERSION);
        make_superblock(sb, 128, 0);
        sb[340] = 16;
        thin_superblock_set_checksum(sb);
        cr_assert_eq(thin_superblock_check(sb, 128, NULL), THIN_SB_BAD_BLOCK_SIZE);
        make_superblock(sb, 128, 0);
        sb[8] = 1;
        thin_superblock_set_checksum(sb);
        cr_assert_eq(thin_superblock_check(sb, 128, NULL), THIN_SB_BAD_LOCATION);

        for (ThinSuperblockVerdict v = 0; v < _THIN_SB_VERDICT_MAX; v++)
                cr_assert_not_null(thin_sb_verdict_to_string(v));
}

Test(storage_util, sizes) {
        uint64_t g = UINT64_C(1) << 30;

        /* Transient: the base plus one chunk at most, whole chunks. */
        cr_assert_eq(snapshot_cow_default_size(4 * g, false, 8), 4 * g);
        cr_assert_eq(snapshot_cow_default_size(4 * g + 1, false, 8), 4 * g + 4096);
        /* Persistent: header + one metadata chunk per 256 data chunks + 1. */
        cr_assert_eq(snapshot_cow_default_size(4 * g, true, 8), 4 * g + (1 + 4096 + 1) * 4096);
        cr_assert_eq(snapshot_cow_default_size(4096, true, 8), 4 * 4096);
        cr_assert_eq(snapshot_cow_default_size(1, false, 0), 0);

        /* lvm2's estimate: 64 bytes per block, clamped, whole MiB. */
        cr_assert_eq(thin_metadata_default_size(100 * g, 64 * 1024), 100 * g / (64 * 1024) * 64);
        cr_assert_eq(thin_metadata_default_size(g, 64 * 1024), THIN_METADATA_DEFAULT_MIN_SIZE);
        cr_assert_eq(thin_metadata_default_size(2000 * g, 64 * 1024), 2000 * g / (64 * 1024) * 64);
        cr_assert_eq(thin_metadata_default_size(UINT64_C(1) << 50, 64 * 1024), THIN_METADATA_MAX_SIZE);
        cr_assert_eq(thin_metadata_default_size(100 * g, 0), thin_metadata_default_size(100 * g, DEFAULT_THIN_BLOCK_SIZE));
        cr_assert_eq(thin_metadata_default_size(3 * g, 64 * 1024) % (1 << 20), 0);

        cr_assert_eq(round_up_u64(1, 512), 512);
        cr_assert_eq(round_up_u64(512, 512), 512);
        cr_assert_eq(round_up_u64(0, 512), 0);
}

Test(storage_util, records) {
        StorageRecord r = {}, back;
        _cleanup_free_ char *text = NULL, *text2 = NULL;

        r = (StorageRecord) {
                .kind = STORAGE_RECORD_THIN,
                .size = 4294967296,
                .thin_id = 7,
                .base = { .ino = 1234, .size = 1048576, .mtime_sec = 1700000000, .mtime_nsec = 5 },
        };
        strcpy(r.pool, "microvm-pool");
        text = storage_record_format(&r);
        cr_assert_str_eq(text, "kind=thin\nthin_id=7\npool=microvm-pool\nsize=4294967296\nbase_ino=1234\nbase_size=1048576\nbase_mtime=1700000000.000000005\n");
        cr_assert_eq(storage_record_parse(text, strlen(text), &back), 0);
        cr_assert_eq(back.kind, STORAGE_RECORD_THIN);
        cr_assert_eq(back.thin_id, 7);
        cr_assert_str_eq(back.pool, "microvm-pool");
        cr_assert_eq(back.size, r.size);
        cr_assert(base_identity_equal(&back.base, &r.base));

        r = (StorageRecord) { .kind = STORAGE_RECORD_SNAPSHOT, .size = 8192, .base = { 1, 2, 3, 4 } };
        text2 = storage_record_format(&r);
        cr_assert_eq(storage_record_parse(text2, strlen(text2), &back), 0);
        cr_assert_eq(back.kind, STORAGE_RECORD_SNAPSHOT);
        cr_assert_eq(back.thin_id, 0);

        static const char *const bad[] = {
                "",
                "kind=thin\n",
                "kind=thin\nthin_id=7\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000",      /* no newline */
                "kind=thin\nthin_id=0\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",    /* id 0 */
                "kind=thin\nthin_id=16777216\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",              /* no id */
                "kind=snapshot\nthin_id=1\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\nthin_id=1\nthin_id=1\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\nthin_id=1\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.0\n",
                "kind=thin\nthin_id=1\npool=p\nsize=0\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\nthin_id=01\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\nthin_id=1\npool=a b\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=thin\nthin_id=1\npool=p\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\nextra=1\n",
                "kind=other\nsize=1\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
                "kind=snapshot\nsize=1\n\nbase_ino=1\nbase_size=1\nbase_mtime=1.000000000\n",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                cr_assert_eq(storage_record_parse(bad[i], strlen(bad[i]), &back), -EBADMSG, "accepted: %s", bad[i]);
        cr_assert_eq(storage_record_parse("kind=snapshot\0", 14, &back), -EBADMSG);
}

Test(storage_util, thin_id_pick) {
        uint32_t id;
        uint32_t taken[] = { 3, 1, 2, 5 };
        uint32_t dup[] = { 1, 1, 2 };

        cr_assert_eq(thin_id_pick(NULL, 0, &id), 0);
        cr_assert_eq(id, 1);
        cr_assert_eq(thin_id_pick(taken, ELEMENTSOF(taken), &id), 0);
        cr_assert_eq(id, 4);
        cr_assert_eq(thin_id_pick(dup, ELEMENTSOF(dup), &id), 0);
        cr_assert_eq(id, 3);
        /* Exhaustion. */
        {
                uint32_t *all = malloc(sizeof(uint32_t) * THIN_ID_MAX);
                cr_assert_not_null(all);
                for (uint32_t i = 0; i < THIN_ID_MAX; i++)
                        all[i] = THIN_ID_MAX - i;
                cr_assert_eq(thin_id_pick(all, THIN_ID_MAX, &id), -ENOSPC);
                free(all);
        }
}

Test(storage_util, block_claim) {
        char id[65], drive[17];

        cr_assert_eq(block_claim_parse("web1 data\n", 10, id, drive), 0);
        cr_assert_str_eq(id, "web1");
        cr_assert_str_eq(drive, "data");
        cr_assert_eq(block_claim_parse("web1 data", 9, id, drive), -EBADMSG);
        cr_assert_eq(block_claim_parse("Web1 data\n", 10, id, drive), -EBADMSG);
        cr_assert_eq(block_claim_parse("web1 da-ta\n", 11, id, drive), -EBADMSG);
        cr_assert_eq(block_claim_parse("web1\n", 5, id, drive), -EBADMSG);
        cr_assert_eq(block_claim_parse("\n", 1, id, drive), -EBADMSG);
}

Test(storage_util, targets) {
        char *have[] = { "striped", "linear", "snapshot", "thin", "error" };
        const char *const want_snap[] = { "snapshot", NULL };
        const char *const want_thin[] = { "snapshot", "thin-pool", "thin", NULL };
        const char *const want_odd[] = { "frobnicate", NULL };
        _cleanup_free_ char *msg = NULL, *msg2 = NULL;

        cr_assert_str_eq(dm_target_module("snapshot"), "dm_snapshot");
        cr_assert_str_eq(dm_target_module("thin-pool"), "dm_thin_pool");
        cr_assert_str_eq(dm_target_module("thin"), "dm_thin_pool");
        cr_assert_null(dm_target_module("frobnicate"));

        cr_assert_eq(dm_targets_missing(have, ELEMENTSOF(have), want_snap, &msg), 0);
        cr_assert_null(msg);
        cr_assert_eq(dm_targets_missing(have, ELEMENTSOF(have), want_thin, &msg), 1);
        cr_assert_str_eq(msg, "device-mapper target \"thin-pool\" is not available (load the kernel module dm_thin_pool: modprobe dm_thin_pool)");
        cr_assert_eq(dm_targets_missing(have, 0, want_thin, &msg2), 3);
        cr_assert(strstr(msg2, "\"snapshot\" is not available (load the kernel module dm_snapshot"), "%s", msg2);
        cr_assert(strstr(msg2, "; device-mapper target \"thin\""), "%s", msg2);
        cr_assert_eq(dm_targets_missing(have, ELEMENTSOF(have), want_odd, NULL), 1);
}

Test(storage_util, leaf_first) {
        /* pool(1) <- thin(2), loop(9) <- snap(3) <- stacked(4); lone(5) */
        dev_t d2[] = { DEV(253, 1), DEV(7, 9) }, d3[] = { DEV(7, 9) }, d4[] = { DEV(253, 3) };
        DmNode nodes[] = {
                { DEV(253, 1), NULL, 0 },
                { DEV(253, 2), d2, 2 },
                { DEV(253, 3), d3, 1 },
                { DEV(253, 4), d4, 1 },
                { DEV(253, 5), NULL, 0 },
        };
        size_t order[5], pos[5];

        dm_order_leaf_first(nodes, 5, order);
        for (size_t i = 0; i < 5; i++)
                pos[order[i]] = i;
        cr_assert_lt(pos[1], pos[0], "thin after its pool");
        cr_assert_lt(pos[3], pos[2], "stacked device after what it sits on");
        /* A permutation. */
        {
                bool seen[5] = {};
                for (size_t i = 0; i < 5; i++) {
                        cr_assert_lt(order[i], 5);
                        cr_assert(!seen[order[i]]);
                        seen[order[i]] = true;
                }
        }
        /* A cycle (impossible in dm) terminates. */
        {
                dev_t a[] = { DEV(1, 2) }, b[] = { DEV(1, 1) };
                DmNode cyc[] = { { DEV(1, 1), a, 1 }, { DEV(1, 2), b, 1 } };
                size_t o[2];
                dm_order_leaf_first(cyc, 2, o);
                cr_assert_neq(o[0], o[1]);
        }
}

Test(storage_util, mountinfo) {
        const char *mi =
                "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                "36 22 0:31 / /proc rw - proc proc rw\n"
                "40 22 7:3 / /mnt/with\\040space rw,relatime - ext2 /dev/loop3 ro\n"
                "41 22 253:12 /sub /srv/x rw - xfs /dev/mapper/vg-lv rw\n";
        _cleanup_free_ char *where = NULL, *w2 = NULL;

        cr_assert_eq(mountinfo_find_devnum(mi, DEV(8, 1), &where), 1);
        cr_assert_str_eq(where, "/");
        cr_assert_eq(mountinfo_find_devnum(mi, DEV(7, 3), &w2), 1);
        cr_assert_str_eq(w2, "/mnt/with space");
        cr_assert_eq(mountinfo_find_devnum(mi, DEV(253, 12), NULL), 1);
        cr_assert_eq(mountinfo_find_devnum(mi, DEV(8, 2), NULL), 0);
        cr_assert_eq(mountinfo_find_devnum(mi, DEV(7, 31), NULL), 0);   /* not a prefix match of 7:3 */
        cr_assert_eq(mountinfo_find_devnum(mi, DEV(0, 3), NULL), 0);
        cr_assert_eq(mountinfo_find_devnum("", DEV(8, 1), NULL), 0);
        cr_assert_eq(mountinfo_find_devnum("garbage\n", DEV(8, 1), NULL), -EBADMSG);
}

Test(storage_util, backoff) {
        for (unsigned a = 0; a < 40; a++)
                for (uint64_t rnd = 0; rnd < 2000; rnd += 37) {
                        usec_t d = backoff_delay(a, 1000, 50000, rnd);
                        usec_t full = MIN((usec_t) 1000 << MIN(a, 20), (usec_t) 50000);
                        cr_assert_geq(d, full / 2, "attempt %u: %llu", a, (unsigned long long) d);
                        cr_assert_leq(d, full, "attempt %u: %llu", a, (unsigned long long) d);
                }
        cr_assert_eq(backoff_delay(5, 0, 100, 7), 0);
}

Test(storage_util, loop_names) {
        char buf[64];
        unsigned n;

        loop_file_name_format("/var/lib/microvm/images/debian.ext4", buf);
        cr_assert_str_eq(buf, "microvm:/var/lib/microvm/images/debian.ext4");
        cr_assert(loop_file_name_is_ours(buf));
        cr_assert(!loop_file_name_is_ours("/var/lib/microvm/images/debian.ext4"));
        cr_assert(!loop_file_name_is_ours(""));
        /* Long paths are truncated to the kernel's 64 bytes, marker kept. */
        loop_file_name_format("/a/very/long/path/that/does/not/fit/into/the/kernel/field/at/all.img", buf);
        cr_assert_eq(strlen(buf), 63);
        cr_assert(loop_file_name_is_ours(buf));

        cr_assert_eq(loop_name_parse("loop0", &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_eq(loop_name_parse("loop127", &n), 0);
        cr_assert_eq(n, 127);
        cr_assert_eq(loop_name_parse("loop-control", &n), -EINVAL);
        cr_assert_eq(loop_name_parse("loop1p1", &n), -EINVAL);
        cr_assert_eq(loop_name_parse("loop", &n), -EINVAL);
        cr_assert_eq(loop_name_parse("loop01", &n), -EINVAL);
        cr_assert_eq(loop_name_parse("sda", &n), -EINVAL);
}

Test(storage_util, plan_dm_names) {
        DriveConfig d[] = {
                { .name = "root", .mode = DRIVE_MODE_SNAPSHOT },
                { .name = "data", .mode = DRIVE_MODE_THIN },
                { .name = "copy", .mode = DRIVE_MODE_FILE },
                { .name = "disk", .mode = DRIVE_MODE_BLOCK },
        };
        VmConfig c = { .id = "web1", .drives = d, .n_drives = ELEMENTSOF(d) };
        VmConfig none = { .id = "web2", .drives = d + 2, .n_drives = 2 };
        _cleanup_strv_free_ char **l = NULL, **e = NULL;

        cr_assert_eq(storage_plan_dm_names(&c, &l), 0);
        cr_assert_eq(strv_length(l), 2);
        cr_assert_str_eq(l[0], "microvm-web1-root");
        cr_assert_str_eq(l[1], "microvm-web1-data");
        cr_assert_eq(storage_plan_dm_names(&none, &e), 0);
        cr_assert_not_null(e);
        cr_assert_null(e[0]);
}
