/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The pure half of the storage code (lib/storage/loop, lib/storage/dm, lib/storage/storage): dm
 * table strings, status parsers, the thin-pool metadata superblock check,
 * default sizes, the on-disk records of snapshot and thin drives, thin
 * device id picking, dm target → kernel module names, leaf-first ordering
 * of stacked dm devices, mountinfo lookup, retry back-off. Nothing here
 * does I/O: all of it is unit-tested in tests/unit/test-storage-util.c.
 *
 * Conventions as elsewhere: 0/positive on success, -errno on failure,
 * ret_* written only on success. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "macro.h"

#define SECTOR_SIZE 512U

/* dm-snapshot chunk: 4 KiB, lvm2's default and the guest filesystems'
 * block size (no read-modify-write of a bigger chunk on every 4K write). */
#define SNAPSHOT_CHUNK_SECTORS 8U

/* dm-thin device ids are 24 bits wide; 0 is left unused. */
#define THIN_ID_MIN 1U
#define THIN_ID_MAX ((1U << 24) - 1)

/* The thin-pool metadata device: 4 KiB blocks, at most this much is used
 * (DM_SM_METADATA_MAX_SECTORS in the kernel: 255 * 2^14 blocks). */
#define THIN_METADATA_BLOCK_SIZE 4096U
#define THIN_METADATA_MAX_SIZE (UINT64_C(255) * (UINT64_C(1) << 14) * THIN_METADATA_BLOCK_SIZE)
#define THIN_METADATA_MIN_SIZE (UINT64_C(2) << 20)
/* The default never goes below this: the file is sparse (unused metadata
 * costs nothing), and a pool whose metadata runs full goes read-only. */
#define THIN_METADATA_DEFAULT_MIN_SIZE (UINT64_C(64) << 20)

/* "253:12" */
#define DEVNUM_STR_MAX 24
char *format_devnum(dev_t d, char buf[static DEVNUM_STR_MAX]);
/* "253:12" → dev_t; strict decimal, -EINVAL otherwise. */
int parse_devnum(const char *s, dev_t *ret);

/* ---- dm tables (the params part of "start length type params") -------- */

/* "<origin> <cow> P|N <chunk>": persistent keeps the exception store on the
 * CoW device (it survives a restart), transient keeps it in memory. */
int dm_table_snapshot(dev_t origin, dev_t cow, bool persistent, uint32_t chunk_sectors, char **ret);
/* "<metadata> <data> <block sectors> <low water mark> 0": no features —
 * in particular block zeroing stays on, so that a newly provisioned block
 * never shows another VM's deleted data. */
int dm_table_thin_pool(dev_t metadata, dev_t data, uint32_t block_sectors, uint64_t low_water_blocks, char **ret);
/* "<pool> <id> [<external origin>]" (external_origin 0: none). */
int dm_table_thin(dev_t pool, uint32_t thin_id, dev_t external_origin, char **ret);
/* Parses the params of a loaded thin-pool table back. */
int dm_table_thin_pool_parse(const char *params, dev_t *ret_metadata, dev_t *ret_data, uint32_t *ret_block_sectors);
/* Parses the params of a loaded thin table back ("<pool> <id> [<origin>]"). */
int dm_table_thin_parse(const char *params, dev_t *ret_pool, uint32_t *ret_thin_id, dev_t *ret_origin);

/* ---- status lines ------------------------------------------------------ */

typedef enum ThinPoolMode {
        THIN_POOL_RW,
        THIN_POOL_RO,                   /* metadata trouble: the kernel refuses writes */
        THIN_POOL_OUT_OF_DATA_SPACE,
        THIN_POOL_FAIL,                 /* "Fail": the pool is unusable */
        _THIN_POOL_MODE_MAX,
} ThinPoolMode;
const char *thin_pool_mode_to_string(ThinPoolMode m) _const_;

typedef struct ThinPoolStatus {
        uint64_t transaction_id;
        uint64_t used_metadata_blocks, total_metadata_blocks;   /* 4 KiB blocks */
        uint64_t used_data_blocks, total_data_blocks;           /* pool blocks */
        ThinPoolMode mode;
        bool needs_check;
        bool error_if_no_space;
} ThinPoolStatus;
/* The kernel's thin-pool status: "<trans id> <used meta>/<total meta>
 * <used data>/<total data> <held root> ro|rw|out_of_data_space
 * [no_]discard_passdown error|queue_if_no_space needs_check|- ..." or
 * "Fail". Trailing fields newer kernels add are ignored. */
int thin_pool_status_parse(const char *s, ThinPoolStatus *ret);

typedef enum SnapshotState {
        SNAPSHOT_VALID,
        SNAPSHOT_INVALID,       /* the kernel dropped it (I/O error, or the CoW filled up) */
        SNAPSHOT_OVERFLOW,      /* the CoW store is full */
        SNAPSHOT_MERGE_FAILED,
} SnapshotState;
typedef struct SnapshotStatus {
        SnapshotState state;
        uint64_t used_sectors, total_sectors, metadata_sectors;
} SnapshotStatus;
/* "<used>/<total> <metadata>", "Invalid", "Overflow", "Merge failed". */
int snapshot_status_parse(const char *s, SnapshotStatus *ret);

/* ---- thin-pool metadata superblock ------------------------------------ */

/* CRC-32C (Castagnoli) as usually defined: crc32c(0, "123456789", 9) ==
 * 0xe3069283; chainable (pass the previous result as crc). */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

typedef struct ThinSuperblock {
        uint32_t version;
        uint32_t flags;
        uint64_t transaction_id;
        uint32_t data_block_sectors;
        uint64_t metadata_blocks;
        bool needs_check;
} ThinSuperblock;

typedef enum ThinSuperblockVerdict {
        THIN_SB_VALID,          /* a pool's metadata the kernel can open */
        THIN_SB_ZERO,           /* all zeros: unformatted (the kernel would format it) */
        THIN_SB_BAD_MAGIC,      /* not thin-pool metadata at all */
        THIN_SB_BAD_CHECKSUM,
        THIN_SB_BAD_LOCATION,   /* blocknr != 0 */
        THIN_SB_BAD_VERSION,
        THIN_SB_BAD_BLOCK_SIZE, /* metadata block size is not 4 KiB */
        THIN_SB_NEEDS_CHECK,    /* the kernel flagged it: run thin_check */
        THIN_SB_DATA_BLOCK_SIZE_MISMATCH,       /* formatted with another block_size */
        _THIN_SB_VERDICT_MAX,
} ThinSuperblockVerdict;
/* What is wrong, for messages ("checksum mismatch (metadata damaged)"). */
const char *thin_sb_verdict_to_string(ThinSuperblockVerdict v) _const_;

/* Examines the first THIN_METADATA_BLOCK_SIZE bytes of a metadata device
 * (the layout of struct thin_disk_superblock, dm-thin-metadata.c).
 * want_block_sectors (0: any) is the configured data block size. Returns
 * the verdict; *ret (optional) is filled for VALID, NEEDS_CHECK and
 * DATA_BLOCK_SIZE_MISMATCH. */
ThinSuperblockVerdict thin_superblock_check(const uint8_t block[static THIN_METADATA_BLOCK_SIZE],
                                            uint32_t want_block_sectors, ThinSuperblock *ret);
/* Test helper and documentation of the checksum: writes the csum field of
 * a superblock block (crc32c over bytes 4..4095, seeded and xor'ed as the
 * kernel does). */
void thin_superblock_set_checksum(uint8_t block[static THIN_METADATA_BLOCK_SIZE]);

/* ---- sizes ------------------------------------------------------------- */

static inline uint64_t round_up_u64(uint64_t v, uint64_t m) {
        return m == 0 ? v : (v + m - 1) / m * m;
}

/* Default CoW size of a snapshot drive: room for the guest to rewrite
 * every chunk of the base, plus (persistent) the on-disk exception store:
 * one 16-byte entry per chunk, a header chunk and one metadata chunk per
 * chunk_size/16 exceptions. Rounded up to a whole chunk. */
uint64_t snapshot_cow_default_size(uint64_t base_size, bool persistent, uint32_t chunk_sectors);
/* Default thin-pool metadata size, as lvm2 estimates it: 64 bytes per data
 * block, clamped to [THIN_METADATA_DEFAULT_MIN_SIZE, THIN_METADATA_MAX_SIZE]
 * and rounded up to 1 MiB. The file is sparse: unused metadata costs
 * nothing. */
uint64_t thin_metadata_default_size(uint64_t data_size, uint64_t block_size);

/* ---- records of snapshot and thin drives ------------------------------- */

/* The identity of a base image at the time a persistent CoW or thin
 * volume was made from it: if it changes, the volume's unwritten blocks
 * would silently come from another image. st_dev is left out on purpose
 * (it may differ across reboots for the same filesystem). */
typedef struct BaseIdentity {
        uint64_t ino;
        uint64_t size;
        int64_t mtime_sec;
        uint32_t mtime_nsec;
} BaseIdentity;
BaseIdentity base_identity_from_stat(const struct stat *st);
bool base_identity_equal(const BaseIdentity *a, const BaseIdentity *b) _pure_;

typedef enum StorageRecordKind {
        STORAGE_RECORD_SNAPSHOT,        /* <state_dir>/<id>/drives/<drive>.snapshot */
        STORAGE_RECORD_THIN,            /* <state_dir>/<id>/thin-<drive> */
        _STORAGE_RECORD_KIND_MAX,
} StorageRecordKind;

typedef struct StorageRecord {
        StorageRecordKind kind;
        uint64_t size;                  /* CoW size (snapshot), virtual size (thin), bytes */
        uint32_t thin_id;               /* thin only */
        char pool[128];                 /* thin only: the pool's dm name */
        BaseIdentity base;
} StorageRecord;

/* "kind=thin\nthin_id=7\nsize=4294967296\npool=microvm-pool\n
 *  base_ino=..\nbase_size=..\nbase_mtime=SEC.NSEC\n". Strict: every key
 * exactly once (thin_id and pool only for thin), known keys only, strict
 * decimal numbers, thin_id within [THIN_ID_MIN, THIN_ID_MAX]. -EBADMSG
 * otherwise. */
int storage_record_parse(const char *text, size_t size, StorageRecord *ret);
char *storage_record_format(const StorageRecord *r);

/* Lowest id in [THIN_ID_MIN, THIN_ID_MAX] not in taken[] (any order).
 * -ENOSPC when all are taken. */
int thin_id_pick(const uint32_t *taken, size_t n_taken, uint32_t *ret);

/* ---- block claims ------------------------------------------------------ */

/* A block passthrough claim, <run_dir>/.storage/block-<major>:<minor>:
 * "<id> <drive>\n". */
int block_claim_parse(const char *text, size_t size, char ret_id[static 65], char ret_drive[static 17]);

/* ---- dm targets -------------------------------------------------------- */

/* The kernel module that provides a dm target ("snapshot" → "dm_snapshot",
 * "thin"/"thin-pool" → "dm_thin_pool"); NULL for unknown targets. */
const char *dm_target_module(const char *target) _pure_;
/* want[] (NULL-terminated) minus have[] (n names the kernel lists). Returns
 * the number missing; if any and ret_message is not NULL, a message naming
 * each missing target and the module to load, e.g.
 *   device-mapper target "thin-pool" is not available (load the kernel module dm_thin_pool: modprobe dm_thin_pool) */
int dm_targets_missing(char *const *have, size_t n_have, const char *const *want, char **ret_message);

/* ---- dependency order --------------------------------------------------- */

typedef struct DmNode {
        dev_t devnum;
        const dev_t *deps;      /* devices this one is built on */
        size_t n_deps;
} DmNode;
/* Writes into order[] (n entries) the indexes of nodes so that every
 * device comes before the devices it depends on (a snapshot before its
 * origin, a thin volume before its pool): safe removal order. Dependency
 * cycles cannot exist in dm, but are broken deterministically (by index)
 * rather than looped on. */
void dm_order_leaf_first(const DmNode *nodes, size_t n, size_t *order);

/* ---- mountinfo ---------------------------------------------------------- */

/* Finds a mount of devnum in /proc/self/mountinfo text (field 3,
 * "major:minor"). Returns 1 and the mount point (unescaped) in
 * *ret_mount_point (optional), 0 if not mounted, -EBADMSG on garbage. */
int mountinfo_find_devnum(const char *text, dev_t devnum, char **ret_mount_point);

/* ---- retry back-off ----------------------------------------------------- */

/* Exponential back-off with jitter for attempt (0-based): a uniformly
 * random delay in [d/2, d] with d = min(base << attempt, cap). random is
 * any random 64-bit value. */
usec_t backoff_delay(unsigned attempt, usec_t base, usec_t cap, uint64_t random);
