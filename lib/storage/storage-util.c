/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>
#include <stdio.h>
#include <sys/sysmacros.h>

#include "config.h"
#include "parse-util.h"
#include "storage-util.h"

char *format_devnum(dev_t d, char buf[static DEVNUM_STR_MAX]) {
        snprintf(buf, DEVNUM_STR_MAX, "%u:%u", major(d), minor(d));
        return buf;
}

int parse_devnum(const char *s, dev_t *ret) {
        const char *colon = strchr(s, ':');
        char maj[16];
        uint32_t a, b;
        size_t n;

        if (!colon)
                return -EINVAL;
        n = (size_t) (colon - s);
        if (n == 0 || n >= sizeof maj)
                return -EINVAL;
        memcpy(maj, s, n);
        maj[n] = '\0';
        if (parse_u32(maj, &a) < 0 || parse_u32(colon + 1, &b) < 0)
                return -EINVAL;
        /* The kernel's limits: 12-bit major, 20-bit minor. */
        if (a >= (1U << 12) || b >= (1U << 20))
                return -EINVAL;
        *ret = makedev(a, b);
        return 0;
}

/* ---- tables ---------------------------------------------------------------- */

int dm_table_snapshot(dev_t origin, dev_t cow, bool persistent, uint32_t chunk_sectors, char **ret) {
        char o[DEVNUM_STR_MAX], c[DEVNUM_STR_MAX];

        /* dm-snapshot wants a power-of-two chunk size. */
        if (chunk_sectors == 0 || (chunk_sectors & (chunk_sectors - 1)) != 0 || origin == 0 || cow == 0)
                return -EINVAL;
        if (asprintf(ret, "%s %s %c %" PRIu32, format_devnum(origin, o), format_devnum(cow, c), persistent ? 'P' : 'N',
                     chunk_sectors) < 0)
                return -ENOMEM;
        return 0;
}

/* What dm-thin accepts, for the tables we render and the ones we read back
 * alike: block sizes of 64 KiB .. 1 GiB, a multiple of 64 KiB (128
 * sectors), and real devices. */
static bool thin_pool_table_valid(dev_t metadata, dev_t data, uint32_t block_sectors) {
        return block_sectors >= 128 && block_sectors <= (1U << 21) && block_sectors % 128 == 0 && metadata != 0 &&
               data != 0;
}

int dm_table_thin_pool(dev_t metadata, dev_t data, uint32_t block_sectors, uint64_t low_water_blocks, char **ret) {
        char m[DEVNUM_STR_MAX], d[DEVNUM_STR_MAX];

        if (!thin_pool_table_valid(metadata, data, block_sectors))
                return -EINVAL;
        if (asprintf(ret, "%s %s %" PRIu32 " %" PRIu64 " 0", format_devnum(metadata, m), format_devnum(data, d),
                     block_sectors, low_water_blocks) < 0)
                return -ENOMEM;
        return 0;
}

int dm_table_thin(dev_t pool, uint32_t thin_id, dev_t external_origin, char **ret) {
        char p[DEVNUM_STR_MAX], o[DEVNUM_STR_MAX];
        int k;

        if (pool == 0 || thin_id > THIN_ID_MAX)
                return -EINVAL;
        if (external_origin != 0)
                k = asprintf(ret, "%s %" PRIu32 " %s", format_devnum(pool, p), thin_id,
                             format_devnum(external_origin, o));
        else
                k = asprintf(ret, "%s %" PRIu32, format_devnum(pool, p), thin_id);
        return k < 0 ? -ENOMEM : 0;
}

/* Splits s at spaces into at most max words (copies into buf). */
static size_t split_words(const char *s, char *buf, size_t bufsize, char **words, size_t max) {
        size_t n = 0;
        char *p;

        if (snprintf(buf, bufsize, "%s", s) >= (int) bufsize)
                return SIZE_MAX;
        p = buf;
        while (*p) {
                while (*p == ' ' || *p == '\n' || *p == '\t')
                        *p++ = '\0';
                if (!*p)
                        break;
                if (n == max)
                        return SIZE_MAX;
                words[n++] = p;
                while (*p && *p != ' ' && *p != '\n' && *p != '\t')
                        p++;
        }
        return n;
}

int dm_table_thin_pool_parse(const char *params, dev_t *ret_metadata, dev_t *ret_data, uint32_t *ret_block_sectors) {
        char buf[512], *w[32];
        size_t n = split_words(params, buf, sizeof buf, w, ELEMENTSOF(w));
        dev_t m, d;
        uint32_t bs;

        if (n == SIZE_MAX || n < 4)
                return -EINVAL;
        if (parse_devnum(w[0], &m) < 0 || parse_devnum(w[1], &d) < 0 || parse_u32(w[2], &bs) < 0 ||
            !thin_pool_table_valid(m, d, bs))
                return -EINVAL;
        if (ret_metadata)
                *ret_metadata = m;
        if (ret_data)
                *ret_data = d;
        if (ret_block_sectors)
                *ret_block_sectors = bs;
        return 0;
}

int dm_table_thin_parse(const char *params, dev_t *ret_pool, uint32_t *ret_thin_id, dev_t *ret_origin) {
        char buf[256], *w[4];
        size_t n = split_words(params, buf, sizeof buf, w, ELEMENTSOF(w));
        dev_t p, o = 0;
        uint32_t id;

        if (n == SIZE_MAX || n < 2 || n > 3)
                return -EINVAL;
        if (parse_devnum(w[0], &p) < 0 || p == 0 || parse_u32(w[1], &id) < 0 || id > THIN_ID_MAX)
                return -EINVAL;
        if (n == 3 && parse_devnum(w[2], &o) < 0)
                return -EINVAL;
        if (ret_pool)
                *ret_pool = p;
        if (ret_thin_id)
                *ret_thin_id = id;
        if (ret_origin)
                *ret_origin = o;
        return 0;
}

/* ---- status ---------------------------------------------------------------- */

static const char *const thin_pool_mode_table[_THIN_POOL_MODE_MAX] = {
        [THIN_POOL_RW] = "rw",
        [THIN_POOL_RO] = "ro",
        [THIN_POOL_OUT_OF_DATA_SPACE] = "out_of_data_space",
        [THIN_POOL_FAIL] = "Fail",
};

const char *thin_pool_mode_to_string(ThinPoolMode m) {
        return m >= 0 && m < _THIN_POOL_MODE_MAX ? thin_pool_mode_table[m] : NULL;
}

static int parse_fraction(const char *s, uint64_t *ret_a, uint64_t *ret_b) {
        const char *slash = strchr(s, '/');
        char a[32];
        size_t n;

        if (!slash)
                return -EINVAL;
        n = (size_t) (slash - s);
        if (n == 0 || n >= sizeof a)
                return -EINVAL;
        memcpy(a, s, n);
        a[n] = '\0';
        if (parse_u64(a, ret_a) < 0 || parse_u64(slash + 1, ret_b) < 0)
                return -EINVAL;
        return 0;
}

int thin_pool_status_parse(const char *s, ThinPoolStatus *ret) {
        char buf[512], *w[24];
        size_t n = split_words(s, buf, sizeof buf, w, ELEMENTSOF(w));
        ThinPoolStatus st = {};

        if (n == SIZE_MAX || n == 0)
                return -EINVAL;
        if (n == 1 && streq(w[0], "Fail")) {
                *ret = (ThinPoolStatus) { .mode = THIN_POOL_FAIL };
                return 0;
        }
        if (n < 6)
                return -EINVAL;
        if (parse_u64(w[0], &st.transaction_id) < 0 ||
            parse_fraction(w[1], &st.used_metadata_blocks, &st.total_metadata_blocks) < 0 ||
            parse_fraction(w[2], &st.used_data_blocks, &st.total_data_blocks) < 0)
                return -EINVAL;
        /* w[3]: held metadata root, a number or "-". */
        if (streq(w[4], "rw"))
                st.mode = THIN_POOL_RW;
        else if (streq(w[4], "ro"))
                st.mode = THIN_POOL_RO;
        else if (streq(w[4], "out_of_data_space"))
                st.mode = THIN_POOL_OUT_OF_DATA_SPACE;
        else
                return -EINVAL;
        for (size_t i = 5; i < n; i++) {
                if (streq(w[i], "needs_check"))
                        st.needs_check = true;
                else if (streq(w[i], "error_if_no_space"))
                        st.error_if_no_space = true;
        }
        *ret = st;
        return 0;
}

int snapshot_status_parse(const char *s, SnapshotStatus *ret) {
        char buf[128], *w[4];
        size_t n = split_words(s, buf, sizeof buf, w, ELEMENTSOF(w));
        SnapshotStatus st = {};

        if (n == SIZE_MAX || n == 0)
                return -EINVAL;
        if (n == 1 && streq(w[0], "Invalid"))
                st.state = SNAPSHOT_INVALID;
        else if (n == 1 && streq(w[0], "Overflow"))
                st.state = SNAPSHOT_OVERFLOW;
        else if (n == 2 && streq(w[0], "Merge") && streq(w[1], "failed"))
                st.state = SNAPSHOT_MERGE_FAILED;
        else if (n == 2) {
                if (parse_fraction(w[0], &st.used_sectors, &st.total_sectors) < 0 ||
                    parse_u64(w[1], &st.metadata_sectors) < 0)
                        return -EINVAL;
                st.state = SNAPSHOT_VALID;
        } else
                return -EINVAL;
        *ret = st;
        return 0;
}

/* ---- thin-pool metadata superblock ------------------------------------------ */

#define THIN_SUPERBLOCK_MAGIC UINT64_C(27022010)
#define THIN_SUPERBLOCK_CSUM_XOR UINT32_C(160774)
#define THIN_VERSION_MIN 1U
#define THIN_VERSION_MAX 2U
#define THIN_METADATA_NEEDS_CHECK_FLAG (1U << 0)

/* Offsets in struct thin_disk_superblock (packed, little endian). */
#define SB_CSUM 0
#define SB_FLAGS 4
#define SB_BLOCKNR 8
#define SB_MAGIC 32
#define SB_VERSION 40
#define SB_TRANS_ID 48
#define SB_DATA_BLOCK_SIZE 336
#define SB_METADATA_BLOCK_SIZE 340
#define SB_METADATA_NR_BLOCKS 344

static uint32_t crc32c_table[256];

static void crc32c_init(void) {
        /* Reflected Castagnoli polynomial. Filled on first use; the values
         * never change, so a race between two threads writes the same. */
        for (uint32_t i = 0; i < 256; i++) {
                uint32_t c = i;
                for (int k = 0; k < 8; k++)
                        c = c & 1 ? (c >> 1) ^ 0x82F63B78U : c >> 1;
                crc32c_table[i] = c;
        }
}

uint32_t crc32c(uint32_t crc, const void *data, size_t len) {
        const uint8_t *p = data;

        if (crc32c_table[1] == 0)
                crc32c_init();
        crc = ~crc;
        for (size_t i = 0; i < len; i++)
                crc = crc32c_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
        return ~crc;
}

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t le64(const uint8_t *p) {
        return (uint64_t) le32(p) | (uint64_t) le32(p + 4) << 32;
}

/* The kernel's dm_bm_checksum(): crc32c(~0, ...) without the final
 * inversion (the kernel's crc32c() does not invert), xor'ed with a
 * per-structure constant. */
static uint32_t superblock_checksum(const uint8_t *block) {
        return ~crc32c(0, block + 4, THIN_METADATA_BLOCK_SIZE - 4) ^ THIN_SUPERBLOCK_CSUM_XOR;
}

void thin_superblock_set_checksum(uint8_t block[static THIN_METADATA_BLOCK_SIZE]) {
        uint32_t c = superblock_checksum(block);

        for (int i = 0; i < 4; i++)
                block[SB_CSUM + i] = (uint8_t) (c >> (8 * i));
}

static const char *const thin_sb_verdict_table[_THIN_SB_VERDICT_MAX] = {
        [THIN_SB_VALID] = "valid",
        [THIN_SB_ZERO] = "unformatted (all zeros)",
        [THIN_SB_BAD_MAGIC] = "not thin-pool metadata (no thin-pool superblock magic)",
        [THIN_SB_BAD_CHECKSUM] = "superblock checksum mismatch (metadata damaged)",
        [THIN_SB_BAD_LOCATION] = "superblock names another block as its location (metadata damaged)",
        [THIN_SB_BAD_VERSION] = "unsupported metadata version",
        [THIN_SB_BAD_BLOCK_SIZE] = "metadata block size is not 4 KiB (metadata damaged)",
        [THIN_SB_NEEDS_CHECK] = "the kernel flagged the metadata as needing a check (needs_check)",
        [THIN_SB_DATA_BLOCK_SIZE_MISMATCH] = "formatted with another data block size",
};

const char *thin_sb_verdict_to_string(ThinSuperblockVerdict v) {
        return v >= 0 && v < _THIN_SB_VERDICT_MAX ? thin_sb_verdict_table[v] : NULL;
}

ThinSuperblockVerdict thin_superblock_check(const uint8_t block[static THIN_METADATA_BLOCK_SIZE],
                                            uint32_t want_block_sectors, ThinSuperblock *ret) {
        ThinSuperblock sb = {};
        bool zero = true;

        for (size_t i = 0; i < THIN_METADATA_BLOCK_SIZE && zero; i++)
                zero = block[i] == 0;
        if (zero)
                return THIN_SB_ZERO;
        if (le64(block + SB_MAGIC) != THIN_SUPERBLOCK_MAGIC)
                return THIN_SB_BAD_MAGIC;
        if (le32(block + SB_CSUM) != superblock_checksum(block))
                return THIN_SB_BAD_CHECKSUM;
        if (le64(block + SB_BLOCKNR) != 0)
                return THIN_SB_BAD_LOCATION;
        sb.version = le32(block + SB_VERSION);
        if (sb.version < THIN_VERSION_MIN || sb.version > THIN_VERSION_MAX)
                return THIN_SB_BAD_VERSION;
        if (le32(block + SB_METADATA_BLOCK_SIZE) != THIN_METADATA_BLOCK_SIZE / SECTOR_SIZE)
                return THIN_SB_BAD_BLOCK_SIZE;
        sb.flags = le32(block + SB_FLAGS);
        sb.transaction_id = le64(block + SB_TRANS_ID);
        sb.data_block_sectors = le32(block + SB_DATA_BLOCK_SIZE);
        sb.metadata_blocks = le64(block + SB_METADATA_NR_BLOCKS);
        sb.needs_check = sb.flags & THIN_METADATA_NEEDS_CHECK_FLAG;
        if (ret)
                *ret = sb;
        if (sb.needs_check)
                return THIN_SB_NEEDS_CHECK;
        if (want_block_sectors != 0 && sb.data_block_sectors != want_block_sectors)
                return THIN_SB_DATA_BLOCK_SIZE_MISMATCH;
        return THIN_SB_VALID;
}

/* ---- sizes ------------------------------------------------------------------ */

uint64_t snapshot_cow_default_size(uint64_t base_size, bool persistent, uint32_t chunk_sectors) {
        uint64_t chunk = (uint64_t) chunk_sectors * SECTOR_SIZE, chunks, meta = 0;

        if (chunk == 0)
                return 0;
        chunks = (base_size + chunk - 1) / chunk;
        if (persistent) {
                /* Header chunk + one metadata chunk per chunk/16 exceptions
                 * (each area is followed by the data chunks it maps), plus
                 * one spare metadata chunk for the area being filled. */
                uint64_t per_area = chunk / 16;
                meta = 1 + (chunks + per_area - 1) / per_area + 1;
        }
        return (chunks + meta) * chunk;
}

uint64_t thin_metadata_default_size(uint64_t data_size, uint64_t block_size) {
        uint64_t blocks, size;

        if (block_size == 0)
                block_size = DEFAULT_THIN_BLOCK_SIZE;
        blocks = (data_size + block_size - 1) / block_size;
        size = blocks > THIN_METADATA_MAX_SIZE / 64 ? THIN_METADATA_MAX_SIZE : blocks * 64;
        size = round_up_u64(size, UINT64_C(1) << 20);
        return MIN(MAX(size, THIN_METADATA_DEFAULT_MIN_SIZE), THIN_METADATA_MAX_SIZE);
}

/* ---- records ---------------------------------------------------------------- */

BaseIdentity base_identity_from_stat(const struct stat *st) {
        return (BaseIdentity) {
                .ino = (uint64_t) st->st_ino,
                .size = (uint64_t) st->st_size,
                .mtime_sec = (int64_t) st->st_mtim.tv_sec,
                .mtime_nsec = (uint32_t) st->st_mtim.tv_nsec,
        };
}

bool base_identity_equal(const BaseIdentity *a, const BaseIdentity *b) {
        return a->ino == b->ino && a->size == b->size && a->mtime_sec == b->mtime_sec &&
               a->mtime_nsec == b->mtime_nsec;
}

static const char *const record_kind_table[_STORAGE_RECORD_KIND_MAX] = {
        [STORAGE_RECORD_SNAPSHOT] = "snapshot",
        [STORAGE_RECORD_THIN] = "thin",
};

char *storage_record_format(const StorageRecord *r) {
        char *s = NULL, thin[192] = "";

        if (r->kind < 0 || r->kind >= _STORAGE_RECORD_KIND_MAX)
                return NULL;
        if (r->kind == STORAGE_RECORD_THIN)
                snprintf(thin, sizeof thin, "thin_id=%" PRIu32 "\npool=%s\n", r->thin_id, r->pool);
        if (asprintf(&s,
                     "kind=%s\n"
                     "%s"
                     "size=%" PRIu64 "\n"
                     "base_ino=%" PRIu64 "\n"
                     "base_size=%" PRIu64 "\n"
                     "base_mtime=%" PRIi64 ".%09" PRIu32 "\n",
                     record_kind_table[r->kind], thin, r->size, r->base.ino, r->base.size, r->base.mtime_sec,
                     r->base.mtime_nsec) < 0)
                return NULL;
        return s;
}

static int parse_mtime(const char *v, int64_t *ret_sec, uint32_t *ret_nsec) {
        const char *dot = strchr(v, '.');
        char sec[24];
        uint64_t s, ns;
        size_t n;

        if (!dot || strlen(dot + 1) != 9)
                return -EINVAL;
        n = (size_t) (dot - v);
        if (n == 0 || n >= sizeof sec)
                return -EINVAL;
        memcpy(sec, v, n);
        sec[n] = '\0';
        if (parse_u64(sec, &s) < 0 || s > INT64_MAX)
                return -EINVAL;
        /* Nine digits, leading zeros allowed here (a fraction). */
        ns = 0;
        for (const char *p = dot + 1; *p; p++) {
                if (*p < '0' || *p > '9')
                        return -EINVAL;
                ns = ns * 10 + (uint64_t) (*p - '0');
        }
        *ret_sec = (int64_t) s;
        *ret_nsec = (uint32_t) ns;
        return 0;
}

static bool pool_name_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n >= 128)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] <= ' ' || s[i] >= 127 || s[i] == '/')
                        return false;
        return true;
}

int storage_record_parse(const char *text, size_t size, StorageRecord *ret) {
        enum { K_KIND, K_THIN_ID, K_POOL, K_SIZE, K_INO, K_BSIZE, K_MTIME, _K_MAX };
        static const char *const keys[_K_MAX] = { "kind", "thin_id", "pool", "size", "base_ino", "base_size",
                                                  "base_mtime" };
        StorageRecord r = {};
        bool seen[_K_MAX] = {};
        const char *p = text, *end = text + size;

        if (size == 0 || memchr(text, '\0', size) || text[size - 1] != '\n')
                return -EBADMSG;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p)), *eq;
                char line[256], *value;
                size_t n = (size_t) (nl - p);
                int k = -1;
                uint64_t v = 0;

                if (n == 0 || n >= sizeof line)
                        return -EBADMSG;
                memcpy(line, p, n);
                line[n] = '\0';
                p = nl + 1;
                eq = strchr(line, '=');
                if (!eq)
                        return -EBADMSG;
                value = line + (eq - line) + 1;
                line[eq - line] = '\0';
                for (int i = 0; i < _K_MAX; i++)
                        if (streq(line, keys[i]))
                                k = i;
                if (k < 0 || seen[k])
                        return -EBADMSG;
                seen[k] = true;
                switch (k) {
                case K_KIND:
                        if (streq(value, "snapshot"))
                                r.kind = STORAGE_RECORD_SNAPSHOT;
                        else if (streq(value, "thin"))
                                r.kind = STORAGE_RECORD_THIN;
                        else
                                return -EBADMSG;
                        break;
                case K_POOL:
                        if (!pool_name_valid(value))
                                return -EBADMSG;
                        snprintf(r.pool, sizeof r.pool, "%s", value);
                        break;
                case K_MTIME:
                        if (parse_mtime(value, &r.base.mtime_sec, &r.base.mtime_nsec) < 0)
                                return -EBADMSG;
                        break;
                default:
                        if (parse_u64(value, &v) < 0)
                                return -EBADMSG;
                        if (k == K_THIN_ID) {
                                if (v < THIN_ID_MIN || v > THIN_ID_MAX)
                                        return -EBADMSG;
                                r.thin_id = (uint32_t) v;
                        } else if (k == K_SIZE) {
                                if (v == 0)
                                        return -EBADMSG;
                                r.size = v;
                        } else if (k == K_INO)
                                r.base.ino = v;
                        else
                                r.base.size = v;
                }
        }
        if (!seen[K_KIND] || !seen[K_SIZE] || !seen[K_INO] || !seen[K_BSIZE] || !seen[K_MTIME])
                return -EBADMSG;
        if ((r.kind == STORAGE_RECORD_THIN) != seen[K_THIN_ID] || seen[K_THIN_ID] != seen[K_POOL])
                return -EBADMSG;
        *ret = r;
        return 0;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

int thin_id_pick(const uint32_t *taken, size_t n_taken, uint32_t *ret) {
        _cleanup_free_ uint32_t *s = NULL;
        uint32_t want = THIN_ID_MIN;

        if (n_taken > 0) {
                s = malloc(n_taken * sizeof *s);
                if (!s)
                        return -ENOMEM;
                memcpy(s, taken, n_taken * sizeof *s);
                qsort(s, n_taken, sizeof *s, cmp_u32);
        }
        for (size_t i = 0; i < n_taken; i++) {
                if (s[i] < want)
                        continue;
                if (s[i] > want)
                        break;
                want++;
        }
        if (want > THIN_ID_MAX)
                return -ENOSPC;
        *ret = want;
        return 0;
}

/* ---- block claims ------------------------------------------------------------ */

int block_claim_parse(const char *text, size_t size, char ret_id[static 65], char ret_drive[static 17]) {
        char buf[128], *sp;

        if (size == 0 || size >= sizeof buf || memchr(text, '\0', size) || text[size - 1] != '\n')
                return -EBADMSG;
        memcpy(buf, text, size - 1);
        buf[size - 1] = '\0';
        sp = strchr(buf, ' ');
        if (!sp)
                return -EBADMSG;
        *sp = '\0';
        if (!vm_id_valid(buf) || !device_name_valid(sp + 1))
                return -EBADMSG;
        strcpy(ret_id, buf);
        strcpy(ret_drive, sp + 1);
        return 0;
}

/* ---- dm targets --------------------------------------------------------------- */

const char *dm_target_module(const char *target) {
        static const struct {
                const char *target, *module;
        } table[] = {
                { "snapshot", "dm_snapshot" },
                { "snapshot-origin", "dm_snapshot" },
                { "thin-pool", "dm_thin_pool" },
                { "thin", "dm_thin_pool" },
                { "linear", "dm_mod" },
                { "error", "dm_mod" },
                { "zero", "dm_zero" },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (streq(table[i].target, target))
                        return table[i].module;
        return NULL;
}

int dm_targets_missing(char *const *have, size_t n_have, const char *const *want, char **ret_message) {
        _cleanup_free_ char *msg = NULL;
        size_t len = 0;
        int missing = 0;

        for (const char *const *w = want; *w; w++) {
                bool found = false;
                const char *module;
                char *m;
                int k;

                for (size_t i = 0; i < n_have && !found; i++)
                        found = streq(have[i], *w);
                if (found)
                        continue;
                missing++;
                if (!ret_message)
                        continue;
                module = dm_target_module(*w);
                if (module)
                        k = asprintf(&m, "%sdevice-mapper target \"%s\" is not available (load the kernel module %s: modprobe %s)",
                                     msg ? "; " : "", *w, module, module);
                else
                        k = asprintf(&m, "%sdevice-mapper target \"%s\" is not available", msg ? "; " : "", *w);
                if (k < 0)
                        return -ENOMEM;
                {
                        char *n = realloc(msg, len + (size_t) k + 1);
                        if (!n) {
                                free(m);
                                return -ENOMEM;
                        }
                        memcpy(n + len, m, (size_t) k + 1);
                        len += (size_t) k;
                        msg = n;
                        free(m);
                }
        }
        if (ret_message && missing > 0)
                *ret_message = TAKE_PTR(msg);
        return missing;
}

/* ---- dependency order ----------------------------------------------------------- */

void dm_order_leaf_first(const DmNode *nodes, size_t n, size_t *order) {
        _cleanup_free_ bool *done = calloc(n, sizeof(bool));
        size_t k = 0;

        if (!done) {
                /* No memory for the bookkeeping: fall back to the given order
                 * (removal then retries the busy ones). */
                for (size_t i = 0; i < n; i++)
                        order[i] = i;
                return;
        }
        /* Kahn's algorithm on "i is needed by j" edges, O(n^2 * deps):
         * the lists are small (the devices of one host). */
        while (k < n) {
                bool progress = false;

                for (size_t i = 0; i < n; i++) {
                        bool needed = false;

                        if (done[i])
                                continue;
                        /* Is i still used by some device not yet emitted? */
                        for (size_t j = 0; j < n && !needed; j++) {
                                if (j == i || done[j])
                                        continue;
                                for (size_t d = 0; d < nodes[j].n_deps && !needed; d++)
                                        needed = nodes[j].deps[d] == nodes[i].devnum;
                        }
                        if (needed)
                                continue;
                        done[i] = true;
                        order[k++] = i;
                        progress = true;
                }
                if (!progress)
                        /* A cycle (impossible in dm): emit the lowest index. */
                        for (size_t i = 0; i < n; i++)
                                if (!done[i]) {
                                        done[i] = true;
                                        order[k++] = i;
                                        break;
                                }
        }
}

/* ---- mountinfo --------------------------------------------------------------- */

static char *unescape_octal(const char *s, size_t n) {
        char *r = malloc(n + 1), *o = r;

        if (!r)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
                    s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
                        *o++ = (char) ((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
                        i += 3;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        return r;
}

int mountinfo_find_devnum(const char *text, dev_t devnum, char **ret_mount_point) {
        char want[DEVNUM_STR_MAX];
        const char *p = text;

        format_devnum(devnum, want);
        while (*p) {
                const char *eol = strchrnul(p, '\n'), *f[5];
                const char *q = p;
                size_t nf = 0;

                /* "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw" */
                while (q < eol && nf < 5) {
                        while (q < eol && *q == ' ')
                                q++;
                        if (q >= eol)
                                break;
                        f[nf++] = q;
                        while (q < eol && *q != ' ')
                                q++;
                }
                if (q == p && eol == p) {
                        p = *eol ? eol + 1 : eol;
                        continue;
                }
                if (nf < 5)
                        return -EBADMSG;
                if ((size_t) (strchrnul(f[2], ' ') - f[2]) == strlen(want) && strncmp(f[2], want, strlen(want)) == 0) {
                        if (ret_mount_point) {
                                const char *e = f[4];
                                while (e < eol && *e != ' ')
                                        e++;
                                *ret_mount_point = unescape_octal(f[4], (size_t) (e - f[4]));
                                if (!*ret_mount_point)
                                        return -ENOMEM;
                        }
                        return 1;
                }
                p = *eol ? eol + 1 : eol;
        }
        return 0;
}

/* ---- back-off --------------------------------------------------------------- */

usec_t backoff_delay(unsigned attempt, usec_t base, usec_t cap, uint64_t random) {
        usec_t d = base;

        for (unsigned i = 0; i < attempt && d < cap; i++)
                d *= 2;
        d = MIN(d, cap);
        if (d < 2)
                return d;
        return d / 2 + random % (d - d / 2 + 1);
}
