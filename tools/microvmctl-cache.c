/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl list's cache of what it shows of each config file (vcpus,
 * memory, autostart, uid, valid or not, the digest that "config changed"
 * compares), so that a list of 1000 configs reads 1000 inodes instead of
 * parsing and validating 1000 files (which was 85% of its time).
 *
 * <run_dir>/.list-cache, written and used only by root (the only user who
 * can write there, and the only one whose view of a config's validity it
 * records: config_read_file() refuses files not owned by root only for
 * root). An entry is used only when the file at that path is the very same
 * one: device, inode, size, mtime and ctime (nanoseconds) all equal. Any
 * write, truncation, rename over, chmod or chown of the file changes its
 * ctime, which no one can set back. The one way an edit could keep every
 * value is to land in the same timestamp tick as the state that was
 * recorded (file timestamps are coarse: a clock tick, or a second and more
 * on some file systems). So, as git does with its index, a file changed
 * less than CACHE_RACY_NSEC before the cache is written is not recorded:
 * any later change then gets a later ctime. The header names what else the
 * result depends on: the host config file (the same identity, or none)
 * and the microvmctl binary itself (another build may validate otherwise).
 * Whatever does not match is parsed as without a cache. tmpfiles.d clears
 * /run at boot; the file is a dotfile, which reclaim and gc never read. */

#include <fcntl.h>
#include <sys/stat.h>
#include <time.h>

#include "config-files.h"
#include "log.h"
#include "microvmctl.h"
#include "safe-fs.h"
#include "sha256.h"

#define CACHE_FILE ".list-cache"
#define CACHE_FORMAT "microvm-list-cache 1"
#define CACHE_MAX (64u << 20)
/* Larger than the coarsest timestamp granularity of the file systems that
 * configs live on (1 s; 2 s only for FAT). */
#define CACHE_RACY_NSEC (3 * 1000000000LL)

typedef struct FileKey {
        uint64_t dev, ino, size;
        int64_t mtime_ns, ctime_ns;
} FileKey;

typedef struct CacheEntry {
        const char *path;       /* into the cache file's text, or owned (see owned) */
        bool owned;
        FileKey key;
        bool valid, autostart, uid_auto;
        uint32_t vcpus, uid;
        uint64_t memory;
        uint8_t digest[SHA256_DIGEST_SIZE];
} CacheEntry;

struct ListCache {
        int run_fd;             /* borrowed */
        char *header;
        char *data;             /* the cache file's text: the old entries' paths point into it */
        CacheEntry *old;        /* from the file, sorted by path */
        size_t n_old, n_used;
        CacheEntry *now;        /* this run's, to write back */
        size_t n_now, allocated;
        bool dirty;
        int64_t write_ns;
        int dir_fd;             /* the directory of the last file looked at */
        char *dir;
};

static int64_t ts_ns(const struct timespec *t) {
        return (int64_t) t->tv_sec * 1000000000LL + t->tv_nsec;
}

static FileKey key_of(const struct stat *st) {
        return (FileKey) {
                .dev = st->st_dev, .ino = st->st_ino, .size = (uint64_t) st->st_size,
                .mtime_ns = ts_ns(&st->st_mtim), .ctime_ns = ts_ns(&st->st_ctim),
        };
}

static bool key_eq(const FileKey *a, const FileKey *b) {
        return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns &&
               a->ctime_ns == b->ctime_ns;
}

static int cmp_entry(const void *a, const void *b) {
        return strcmp(((const CacheEntry *) a)->path, ((const CacheEntry *) b)->path);
}

static void entries_free(CacheEntry *e, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (e[i].owned)
                        free((char *) e[i].path);
        free(e);
}

/* "<dev> <ino> <size> <mtime> <ctime>" of path, or "none" without one;
 * false when it cannot be trusted yet (changed within CACHE_RACY_NSEC of
 * now) or not read. */
static bool identity(const char *path, int64_t now_ns, char *buf, size_t size) {
        struct stat st;

        if (!path) {
                snprintf(buf, size, "none");
                return true;
        }
        if (stat(path, &st) < 0)
                return false;
        FileKey k = key_of(&st);
        if (now_ns - k.ctime_ns < CACHE_RACY_NSEC || now_ns - k.mtime_ns < CACHE_RACY_NSEC)
                return false;
        snprintf(buf, size, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIi64 " %" PRIi64, k.dev, k.ino, k.size,
                 k.mtime_ns, k.ctime_ns);
        return true;
}

static int unhex(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A decimal number followed by a space, at *p; moves past both. (The
 * cache is ours: a plain loop, not strtoull() with its locale and errno.) */
static bool take_u64(const char **p, uint64_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (*s < '0' || *s > '9')
                return false;
        for (; *s >= '0' && *s <= '9'; s++) {
                if (v > (UINT64_MAX - (uint64_t) (*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t) (*s - '0');
        }
        if (*s != ' ')
                return false;
        *p = s + 1;
        *ret = v;
        return true;
}

static bool take_i64(const char **p, int64_t *ret) {
        bool neg = **p == '-';
        uint64_t v;

        if (neg)
                (*p)++;
        if (!take_u64(p, &v) || v > (uint64_t) INT64_MAX)
                return false;
        *ret = neg ? -(int64_t) v : (int64_t) v;
        return true;
}

/* Parses one entry line (its path stays in line); false when malformed. */
static bool parse_entry(const char *line, CacheEntry *e) {
        const char *p = line;
        uint64_t v[12];
        int64_t t[2];

        for (size_t i = 0; i < ELEMENTSOF(v); i++)
                if (i == 3 || i == 4 ? !take_i64(&p, &t[i - 3]) : !take_u64(&p, &v[i]))
                        return false;
        *e = (CacheEntry) {
                .key = { v[0], v[1], v[2], t[0], t[1] },
                .valid = v[5], .vcpus = (uint32_t) v[6], .memory = v[7], .autostart = v[8],
                .uid_auto = v[9], .uid = (uint32_t) v[10], /* v[11]: reserved */
        };
        for (size_t i = 0; i < SHA256_DIGEST_SIZE; i++) {
                int hi = unhex(p[2 * i]), lo = hi < 0 ? -1 : unhex(p[2 * i + 1]);
                if (lo < 0)
                        return false;
                e->digest[i] = (uint8_t) (hi << 4 | lo);
        }
        p += 2 * SHA256_DIGEST_SIZE;
        if (p[0] != ' ' || p[1] != '/')
                return false;
        e->path = p + 1;
        return true;
}

ListCache *list_cache_begin(const HostConfig *host, int run_fd) {
        char host_id[128], exe_id[128];
        ListCache *c;
        size_t size, allocated = 0;
        struct timespec now;

        /* Root only: see above. */
        if (geteuid() != 0 || run_fd < 0 || !host)
                return NULL;
        clock_gettime(CLOCK_REALTIME, &now);
        if (!identity(host->source_path, ts_ns(&now), host_id, sizeof host_id) ||
            !identity("/proc/self/exe", ts_ns(&now), exe_id, sizeof exe_id))
                return NULL;
        c = calloc(1, sizeof *c);
        if (!c)
                return NULL;
        c->run_fd = run_fd;
        c->dir_fd = -EBADF;
        c->write_ns = ts_ns(&now);
        if (asprintf(&c->header, CACHE_FORMAT " host %s exe %s", host_id, exe_id) < 0) {
                free(c);
                return NULL;
        }

        if (safe_read_root_file_at(run_fd, CACHE_FILE, CACHE_MAX, &c->data, &size) < 0)
                return c;
        char *line = c->data, *nl = strchr(line, '\n');
        if (!nl || (size_t) (nl - line) != strlen(c->header) || memcmp(line, c->header, strlen(c->header)) != 0)
                return c; /* another host config or binary: start afresh */
        for (line = nl + 1; *line; line = nl + 1) {
                CacheEntry e;
                nl = strchr(line, '\n');
                if (!nl)
                        break;
                *nl = 0;
                if (!parse_entry(line, &e))
                        continue;
                if (greedy_realloc((void **) &c->old, &allocated, c->n_old + 1, sizeof *c->old) < 0)
                        break;
                c->old[c->n_old++] = e;
        }
        /* Written in the order of the list, which is by id: mostly sorted
         * by path already. */
        for (size_t i = 1; i < c->n_old; i++)
                if (strcmp(c->old[i - 1].path, c->old[i].path) > 0) {
                        qsort(c->old, c->n_old, sizeof *c->old, cmp_entry);
                        break;
                }
        return c;
}

static VmConfig *summary_config(const char *id, const CacheEntry *e) {
        VmConfig *v = calloc(1, sizeof *v);
        if (!v)
                return NULL;
        memcpy(v->id, id, strlen(id) + 1);
        v->vcpus = e->vcpus;
        v->memory = e->memory;
        v->autostart = e->autostart;
        v->uid_auto = e->uid_auto;
        v->uid = e->uid;
        v->numa_node = -1;
        memcpy(v->digest, e->digest, sizeof v->digest);
        return v;
}

/* An entry for the cache to write back; old: the entry it was found as
 * (its path is borrowed), or NULL. */
static void remember(ListCache *c, const char *path, const CacheEntry *old, const FileKey *key, const VmRow *row) {
        if (c->write_ns - key->ctime_ns < CACHE_RACY_NSEC || c->write_ns - key->mtime_ns < CACHE_RACY_NSEC)
                return; /* changed too recently to tell a later change apart */
        if (greedy_realloc((void **) &c->now, &c->allocated, c->n_now + 1, sizeof *c->now) < 0)
                return;
        CacheEntry *e = &c->now[c->n_now];
        *e = (CacheEntry) { .path = old ? old->path : strdup(path), .owned = !old, .key = *key,
                            .valid = row->config && !row->invalid };
        if (!e->path)
                return;
        if (row->config) {
                e->vcpus = row->config->vcpus;
                e->memory = row->config->memory;
                e->autostart = row->config->autostart;
                e->uid_auto = row->config->uid_auto;
                e->uid = row->config->uid;
                memcpy(e->digest, row->config->digest, sizeof e->digest);
        }
        c->n_now++;
}

/* stat() of path, relative to its directory's fd (kept for the next file
 * of the same directory): one component to resolve instead of all. */
static int stat_file(ListCache *c, const char *path, struct stat *st) {
        const char *slash = strrchr(path, '/');
        size_t len = slash ? (size_t) (slash - path) : 0;

        if (!slash || len == 0)
                return stat(path, st);
        if (!c->dir || strlen(c->dir) != len || memcmp(c->dir, path, len) != 0) {
                free(c->dir);
                c->dir = strndup(path, len);
                c->dir_fd = safe_close(c->dir_fd);
                if (c->dir)
                        c->dir_fd = open(c->dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        }
        if (c->dir_fd < 0)
                return stat(path, st);
        return fstatat(c->dir_fd, slash + 1, st, 0);
}

void list_cache_load_row(ListCache *c, VmRow *row, const HostConfig *host) {
        struct stat st;
        FileKey key;

        if (c && stat_file(c, row->config_path, &st) >= 0) {
                CacheEntry k = { .path = row->config_path }, *e;
                key = key_of(&st);
                e = c->old ? bsearch(&k, c->old, c->n_old, sizeof *c->old, cmp_entry) : NULL;
                if (e && key_eq(&e->key, &key)) {
                        if (e->valid) {
                                row->config = summary_config(row->id, e);
                                if (!row->config)
                                        goto parse; /* out of memory: as without a cache */
                        } else
                                row->invalid = true;
                        c->n_used++;
                        remember(c, row->config_path, e, &key, row);
                        return;
                }
        parse:
                c->dirty = true;
                row_load_config(row, host);
                remember(c, row->config_path, NULL, &key, row);
                return;
        }
        row_load_config(row, host);
}

void list_cache_end(ListCache *c) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        if (!c)
                return;
        /* Write back when anything was parsed, or entries are gone. */
        if (c->dirty || c->n_used != c->n_old) {
                f = open_memstream(&text, &len);
                if (f) {
                        fprintf(f, "%s\n", c->header);
                        for (size_t i = 0; i < c->n_now; i++) {
                                const CacheEntry *e = &c->now[i];
                                char hex[2 * SHA256_DIGEST_SIZE + 1];
                                sha256_hex(e->digest, hex);
                                fprintf(f, "%" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIi64 " %" PRIi64 " %d %" PRIu32
                                        " %" PRIu64 " %d %d %" PRIu32 " 0 %s %s\n",
                                        e->key.dev, e->key.ino, e->key.size, e->key.mtime_ns, e->key.ctime_ns,
                                        e->valid, e->vcpus, e->memory, e->autostart, e->uid_auto, e->uid, hex,
                                        e->path);
                        }
                        if (fclose(f) == 0) {
                                r = safe_write_file_at(c->run_fd, CACHE_FILE, text, len, 0600, 0, 0,
                                                       SAFE_WRITE_REPLACE);
                                if (r < 0)
                                        log_debug_errno(r, "Cannot write the list cache: %m");
                        }
                }
        }
        safe_close(c->dir_fd);
        free(c->dir);
        entries_free(c->old, c->n_old);
        entries_free(c->now, c->n_now);
        free(c->data);
        free(c->header);
        free(c);
}
