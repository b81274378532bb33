/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "util.h"
#include "dm.h"
#include "loop.h"
#include "names.h"
#include "parse-util.h"
#include "safe-fs.h"
#include "storage.h"
#include "uid-alloc.h"

#define RECORD_MAX 4096
/* How many ids the pool may refuse as taken before we give up. */
#define THIN_ID_ATTEMPTS 4096

static inline void *mfree(void *p) {
        free(p);
        return NULL;
}

/* Prefixes *error (a message from a lower layer) with context. */
static int wrap_error(char **ret_error, int r, char *inner, const char *format, ...) _printf_(4, 5);
static int wrap_error(char **ret_error, int r, char *inner, const char *format, ...) {
        _cleanup_free_ char *in = inner, *outer = NULL;
        va_list ap;

        if (!ret_error)
                return -abs(r);
        errno = abs(r);
        va_start(ap, format);
        if (vasprintf(&outer, format, ap) < 0)
                outer = NULL;
        va_end(ap);
        errno = abs(r);
        if (asprintf(ret_error, "%s: %s", strna(outer), in ?: strerror(abs(r))) < 0)
                *ret_error = NULL;
        return -abs(r);
}

void storage_report_done(StorageReport *r) {
        if (!r)
                return;
        strv_free(r->failed);
        strv_free(r->deferred);
        *r = (StorageReport) {};
}

usec_t storage_kernel_usec(void) {
        return dm_kernel_usec() + loop_kernel_usec();
}

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

/* ---- plan ------------------------------------------------------------------- */

static bool drive_uses_dm(const DriveConfig *d) {
        return d->mode == DRIVE_MODE_SNAPSHOT || d->mode == DRIVE_MODE_THIN;
}

int storage_plan_dm_names(const VmConfig *c, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        char name[128];
        int r;

        l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        /* Every drive's device is a leaf (nothing of a VM is stacked on
         * another of its devices): any order is leaf-first. */
        for (size_t i = 0; i < c->n_drives; i++) {
                if (!drive_uses_dm(&c->drives[i]))
                        continue;
                r = dm_name_for(c->id, c->drives[i].name, name);
                if (r < 0)
                        return r;
                r = strv_push(&l, name);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* ---- small file helpers --------------------------------------------------------- */

/* Opens the image of a snapshot or thin drive read-only. */
static int open_base(const DriveConfig *d, int *ret_fd, struct stat *ret_st, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        /* The path is the administrator's (validated: absolute,
         * normalized); it is only ever read. */
        fd = open(d->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return error_setf(ret_error, errno, "Drive %s: cannot open base image %s: %m", d->name, d->path);
        if (fstat(fd, &st) < 0)
                return error_setf(ret_error, errno, "Drive %s: cannot stat base image %s: %m", d->name, d->path);
        if (!S_ISREG(st.st_mode))
                return error_setf(ret_error, EBADFD,
                                 "Drive %s: base image %s is not a regular file (snapshot and thin drives take an image file; use mode = block for a device)",
                                 d->name, d->path);
        if (st.st_size < (off_t) SECTOR_SIZE)
                return error_setf(ret_error, EINVAL, "Drive %s: base image %s is smaller than one sector (%jd bytes)",
                                 d->name, d->path, (intmax_t) st.st_size);
        *ret_fd = TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

static int open_vm_dir(const char *state_dir, int state_fd, const char *id, int *ret_fd, char **ret_error) {
        int r = safe_open_dir_at(state_fd, id, ret_fd);
        if (r < 0)
                return error_setf(ret_error, r,
                                 "Cannot open the state directory of VM %s (%s/%s): %m (it is created with the VM's uid record; pass the state_dir root fd)",
                                 id, state_dir, id);
        return 0;
}

static int read_record(int dir_fd, const char *name, StorageRecord *ret) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = safe_read_file_at(dir_fd, name, RECORD_MAX, &text, &size);
        if (r < 0)
                return r;
        return storage_record_parse(text, size, ret);
}

static int write_record(int dir_fd, const char *name, const StorageRecord *rec) {
        _cleanup_free_ char *text = storage_record_format(rec);

        if (!text)
                return -ENOMEM;
        return safe_write_file_at(dir_fd, name, text, strlen(text), 0600, 0, 0, SAFE_WRITE_REPLACE | SAFE_WRITE_SYNC);
}

/* Creates dir_fd/name as a sparse root 0600 file of size bytes, built as
 * name.new and renamed into place: never a short file under the name. */
static int create_sparse(int dir_fd, const char *name, uint64_t size, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        char tmp[NAME_MAX + 1];
        int r;

        if ((size_t) snprintf(tmp, sizeof tmp, "%s.new", name) >= sizeof tmp)
                return -ENAMETOOLONG;
        if (unlinkat(dir_fd, tmp, 0) < 0 && errno != ENOENT)
                return -errno;
        r = safe_create_file_at(dir_fd, tmp, 0600, 0, 0, &fd);
        if (r < 0)
                return r;
        if (ftruncate(fd, (off_t) size) < 0) {
                r = -errno;
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if (renameat2(dir_fd, tmp, dir_fd, name, RENAME_NOREPLACE) < 0) {
                r = -errno;
                (void) unlinkat(dir_fd, tmp, 0);
                return r;
        }
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Opens an existing root-owned regular file of ours for writing. */
static int open_own_file(int dir_fd, const char *name, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = safe_open_at(dir_fd, name, O_RDWR, S_IFREG, &fd);
        if (r < 0)
                return r;
        r = safe_fd_verify(fd, S_IFREG, 0);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* true if any byte of the file is not zero (holes are zero). */
static int file_has_data(int fd) {
        uint8_t buf[65536];
        struct stat st;
        off_t off = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        while (off < st.st_size) {
                off_t data = lseek(fd, off, SEEK_DATA), hole;
                if (data < 0) {
                        if (errno == ENXIO)
                                return 0;
                        if (errno != EINVAL && errno != EOPNOTSUPP)
                                return -errno;
                        data = off;     /* no SEEK_DATA: read everything */
                        hole = st.st_size;
                } else {
                        hole = lseek(fd, data, SEEK_HOLE);
                        if (hole < 0)
                                hole = st.st_size;
                }
                for (off = data; off < hole;) {
                        ssize_t n = pread(fd, buf, (size_t) MIN((off_t) sizeof buf, hole - off), off);
                        if (n < 0)
                                return -errno;
                        if (n == 0)
                                break;
                        for (ssize_t i = 0; i < n; i++)
                                if (buf[i])
                                        return 1;
                        off += n;
                }
                off = MAX(off, hole);
        }
        return 0;
}

/* ---- dm helpers ----------------------------------------------------------------- */

/* Removes a leftover device of this drive (same UUID), not deferred. */
static int remove_leftover(const char *name, const char *uuid, char **ret_error) {
        _cleanup_free_ char *msg = NULL;
        DmInfo i = {};
        int r;

        r = dm_get_info(name, NULL, &i);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to look up device-mapper device %s: %m", name);
        if (i.exists && !streq(i.uuid, uuid))
                return error_setf(ret_error, EEXIST,
                                 "A device-mapper device named %s exists that is not ours (UUID \"%s\", expected %s): remove or rename it",
                                 name, i.uuid, uuid);
        r = dm_remove(uuid, 0, &msg);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(msg), "Failed to remove the leftover device %s of an earlier run",
                                  name);
        return 0;
}

/* Creates the drive's dm device and opens it. */
static int create_and_open(const char *name, const char *uuid, const DmTarget *t, int *ret_fd, dev_t *ret_devnum,
                           char **ret_error) {
        _cleanup_free_ char *err = NULL;
        dev_t devnum;
        int r;

        r = dm_create(name, uuid, t, 1, DM_CREATE_NO_PROBE, &devnum, &err);
        if (r < 0) {
                _cleanup_free_ char *hint = NULL;
                const char *const want[] = { t->type, NULL };
                /* The kernel may autoload a target on table load; only a
                 * failure says it is missing, and then we say which module. */
                if (dm_targets_check(want, &hint) == -EOPNOTSUPP) {
                        _cleanup_free_ char *both = NULL;
                        if (asprintf(&both, "%s; %s", strna(err), strna(hint)) >= 0) {
                                free(err);
                                err = TAKE_PTR(both);
                        }
                } else if (err && ret_error) {
                        _cleanup_free_ char *both = NULL;
                        if (asprintf(&both, "%s (the kernel log says why: journalctl -k)", err) >= 0) {
                                free(err);
                                err = TAKE_PTR(both);
                        }
                }
                if (ret_error)
                        *ret_error = TAKE_PTR(err);
                return r;
        }
        r = dm_open_device(name, devnum, O_RDONLY, ret_fd, ret_error);
        if (r < 0) {
                (void) dm_remove(uuid, 0, NULL);
                return r;
        }
        if (ret_devnum)
                *ret_devnum = devnum;
        return 0;
}

/* ---- snapshot ---------------------------------------------------------------------- */

static int prepare_snapshot(const HostConfig *h, const VmConfig *c, const DriveConfig *d, int state_fd, const char *name,
                            const char *uuid, int *ret_fd, char **ret_error) {
        const char *state_dir = h->state_dir;
        _cleanup_close_ int base_fd = -EBADF, vm_fd = -EBADF, drives_fd = -EBADF, cow_fd = -EBADF, lock_fd = -EBADF;
        _cleanup_(loop_device_done) LoopDevice base = LOOP_DEVICE_NULL, cow = LOOP_DEVICE_NULL;
        _cleanup_free_ char *err = NULL, *table = NULL;
        char cow_name[64], rec_name[64];
        struct stat base_st, cow_st;
        uint64_t cow_size;
        BaseIdentity id;
        int r;

        r = open_base(d, &base_fd, &base_st, ret_error);
        if (r < 0)
                return r;
        id = base_identity_from_stat(&base_st);
        cow_size = d->size ?: snapshot_cow_default_size((uint64_t) base_st.st_size, d->persistent, SNAPSHOT_CHUNK_SECTORS);
        cow_size = round_up_u64(cow_size, (uint64_t) SNAPSHOT_CHUNK_SECTORS * SECTOR_SIZE);

        r = open_vm_dir(state_dir, state_fd, c->id, &vm_fd, ret_error);
        if (r < 0)
                return r;
        r = safe_mkdir_at(vm_fd, STATE_DRIVES_DIR, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, &drives_fd);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: cannot create %s/%s/" STATE_DRIVES_DIR ": %m",
                                 d->name, state_dir, c->id);

        /* Under the loop lock from here: a leftover device of an earlier run
         * goes first (its removal may release a shared base loop), before
         * its CoW file is touched. */
        r = loop_lock(&lock_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s", d->name);
        r = remove_leftover(name, uuid, ret_error);
        if (r < 0)
                return r;

        snprintf(cow_name, sizeof cow_name, "%s%s", d->name, d->persistent ? STORAGE_COW_SUFFIX : STORAGE_COW_TMP_SUFFIX);
        snprintf(rec_name, sizeof rec_name, "%s" STORAGE_SNAPSHOT_RECORD_SUFFIX, d->name);

        if (d->persistent) {
                StorageRecord rec = {};

                r = open_own_file(drives_fd, cow_name, &cow_fd);
                if (r >= 0) {
                        r = read_record(drives_fd, rec_name, &rec);
                        if (r == -ENOENT)
                                return error_setf(ret_error, r,
                                                 "Drive %s: the copy-on-write file %s/%s/" STATE_DRIVES_DIR "/%s has no record of its base image (%s): remove the file to start with a fresh disk",
                                                 d->name, state_dir, c->id, cow_name, rec_name);
                        if (r < 0)
                                return error_setf(ret_error, r, "Drive %s: cannot read %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                                 d->name, state_dir, c->id, rec_name);
                        if (rec.kind != STORAGE_RECORD_SNAPSHOT || !base_identity_equal(&rec.base, &id))
                                return error_setf(ret_error, ESTALE,
                                                 "Drive %s: base image %s changed since the VM's persistent copy-on-write file was made from it (inode, size or modification time differ): the disk would mix two images. Restore the image, or remove %s/%s/" STATE_DRIVES_DIR "/%s for a fresh disk",
                                                 d->name, d->path, state_dir, c->id, cow_name);
                        if (fstat(cow_fd, &cow_st) < 0)
                                return error_setf(ret_error, errno, "Drive %s: cannot stat %s: %m", d->name, cow_name);
                        /* Grow when asked to, never shrink a store in use. */
                        if ((uint64_t) cow_st.st_size < cow_size && ftruncate(cow_fd, (off_t) cow_size) < 0)
                                return error_setf(ret_error, errno, "Drive %s: cannot grow %s to %" PRIu64 " bytes: %m",
                                                 d->name, cow_name, cow_size);
                } else if (r == -ENOENT) {
                        /* Record first, file second: a file without a
                         * record is never ours to trust. */
                        rec = (StorageRecord) { .kind = STORAGE_RECORD_SNAPSHOT, .size = cow_size, .base = id };
                        r = write_record(drives_fd, rec_name, &rec);
                        if (r < 0)
                                return error_setf(ret_error, r, "Drive %s: cannot write %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                                 d->name, state_dir, c->id, rec_name);
                        r = create_sparse(drives_fd, cow_name, cow_size, &cow_fd);
                        if (r < 0)
                                return error_setf(ret_error, r,
                                                 "Drive %s: cannot create the copy-on-write file %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                                 d->name, state_dir, c->id, cow_name);
                } else
                        return error_setf(ret_error, r, "Drive %s: cannot open %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                         d->name, state_dir, c->id, cow_name);
        } else {
                /* A fresh disk on every start. */
                if (unlinkat(drives_fd, cow_name, 0) < 0 && errno != ENOENT)
                        return error_setf(ret_error, errno, "Drive %s: cannot remove the old %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                         d->name, state_dir, c->id, cow_name);
                r = create_sparse(drives_fd, cow_name, cow_size, &cow_fd);
                if (r < 0)
                        return error_setf(ret_error, r,
                                         "Drive %s: cannot create the copy-on-write file %s/%s/" STATE_DRIVES_DIR "/%s: %m",
                                         d->name, state_dir, c->id, cow_name);
        }

        r = loop_attach_shared(lock_fd, base_fd, &base, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: base image %s", d->name, d->path);
        r = loop_attach(lock_fd, cow_fd, LOOP_ATTACH_DIRECT_IO, &cow, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: copy-on-write file", d->name);

        r = dm_table_snapshot(base.devnum, cow.devnum, d->persistent, SNAPSHOT_CHUNK_SECTORS, &table);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: cannot build the snapshot table: %m", d->name);
        {
                DmTarget t = { 0, base.size / SECTOR_SIZE, "snapshot", table };
                _cleanup_close_ int fd = -EBADF;
                _cleanup_free_ char *status = NULL;
                SnapshotStatus st = {};

                r = create_and_open(name, uuid, &t, &fd, NULL, ret_error);
                if (r < 0)
                        return r;
                /* A persistent store the kernel found invalid (it filled up,
                 * or an I/O error hit it) loads, but every I/O fails. */
                if (dm_get_status(name, NULL, &status, NULL) >= 0 && snapshot_status_parse(status, &st) >= 0 &&
                    st.state != SNAPSHOT_VALID) {
                        fd = safe_close(fd);
                        (void) dm_remove(uuid, 0, NULL);
                        return error_setf(ret_error, EIO,
                                         "Drive %s: the kernel reports the snapshot %s as \"%s\": its copy-on-write file %s/%s/" STATE_DRIVES_DIR "/%s filled up or failed and the disk's changes are lost; remove the file for a fresh disk",
                                         d->name, name, status, state_dir, c->id, cow_name);
                }
                *ret_fd = TAKE_FD(fd);
        }
        return 0;
}

/* ---- thin ---------------------------------------------------------------------------- */

/* Collects the thin ids of every VM's records (fail closed on a corrupt one). */
static int collect_thin_ids(const char *state_dir, int state_fd, uint32_t **ret, size_t *ret_n, char **ret_error) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ uint32_t *ids = NULL;
        size_t n = 0;
        struct dirent *de;
        int fd;

        fd = fcntl(state_fd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return error_setf(ret_error, errno, "Cannot read the state directory: %m");
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return error_setf(ret_error, errno, "Cannot read the state directory: %m");
        }
        rewinddir(d);
        while ((de = readdir(d))) {
                _cleanup_(closedirp) DIR *vd = NULL;
                _cleanup_close_ int vm_fd = -EBADF;
                struct dirent *ve;

                if (!vm_id_valid(de->d_name))
                        continue;
                if (safe_open_dir_at(state_fd, de->d_name, &vm_fd) < 0)
                        continue;
                vd = fdopendir(vm_fd);
                if (!vd)
                        return error_setf(ret_error, errno, "Cannot read %s/%s: %m", state_dir, de->d_name);
                vm_fd = -EBADF;
                while ((ve = readdir(vd))) {
                        StorageRecord rec;
                        uint32_t *grown;
                        int r;

                        if (!startswith(ve->d_name, STORAGE_THIN_RECORD_PREFIX))
                                continue;
                        r = read_record(dirfd(vd), ve->d_name, &rec);
                        if (r < 0 || rec.kind != STORAGE_RECORD_THIN)
                                return error_setf(ret_error, r < 0 ? r : -EBADMSG,
                                                 "Thin volume record %s/%s/%s is unreadable or corrupt (%m): refusing to allocate thin ids without knowing every one in use",
                                                 state_dir, de->d_name, ve->d_name);
                        grown = realloc(ids, (n + 1) * sizeof *ids);
                        if (!grown)
                                return -ENOMEM;
                        ids = grown;
                        ids[n++] = rec.thin_id;
                }
        }
        *ret = TAKE_PTR(ids);
        *ret_n = n;
        return 0;
}

/* The pool must be an active, healthy thin-pool. */
static int check_pool(const HostConfig *h, DmInfo *ret_pool, char **ret_error) {
        _cleanup_free_ char *type = NULL, *status = NULL;
        const char *pool = h->thin_pool.name;
        ThinPoolStatus st = {};
        DmInfo i = {};
        int r;

        if (!h->thin_pool.configured || !pool)
                return error_setf(ret_error, ENOENT, "The host config has no [thin_pool] section");
        r = dm_get_info(pool, NULL, &i);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot look up thin pool %s: %m", pool);
        if (!i.exists)
                return error_setf(ret_error, ENXIO,
                                 "Thin pool %s is not active: start microvm-pool.service (systemctl start microvm-pool.service; see microvm-pool.service(8))",
                                 pool);
        r = dm_get_status(pool, &type, &status, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot read the status of thin pool %s: %m", pool);
        if (!streq(type, "thin-pool"))
                return error_setf(ret_error, ENOTBLK, "Device-mapper device %s is not a thin pool (its target is %s)",
                                 pool, type);
        if (thin_pool_status_parse(status, &st) < 0)
                return error_setf(ret_error, EBADMSG, "Thin pool %s: cannot parse its status \"%s\"", pool, status);
        if (st.mode != THIN_POOL_RW || st.needs_check)
                return error_setf(ret_error, EROFS,
                                 "Thin pool %s is in %s mode%s: no volumes can be created or written; see microvm-pool.service(8) for recovery",
                                 pool, thin_pool_mode_to_string(st.mode), st.needs_check ? " and needs a metadata check" : "");
        *ret_pool = i;
        return 0;
}

static int prepare_thin(const HostConfig *h, const VmConfig *c, const DriveConfig *d, int state_fd, const char *name,
                        const char *uuid, int *ret_fd, char **ret_error) {
        const char *state_dir = h->state_dir;
        _cleanup_close_ int base_fd = -EBADF, vm_fd = -EBADF, state_lock = -EBADF, lock_fd = -EBADF;
        _cleanup_(loop_device_done) LoopDevice base = LOOP_DEVICE_NULL;
        _cleanup_free_ char *err = NULL, *table = NULL;
        const char *pool = h->thin_pool.name;
        char rec_name[64], msg[64];
        struct stat base_st;
        StorageRecord rec = {};
        uint64_t size;
        DmInfo pi = {};
        BaseIdentity id;
        int r;

        r = check_pool(h, &pi, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s", d->name);
        r = open_base(d, &base_fd, &base_st, ret_error);
        if (r < 0)
                return r;
        id = base_identity_from_stat(&base_st);
        size = round_up_u64(d->size ?: (uint64_t) base_st.st_size, SECTOR_SIZE);
        if (size < (uint64_t) base_st.st_size)
                return error_setf(ret_error, EINVAL,
                                 "Drive %s: size %" PRIu64 " is smaller than the base image %s (%jd bytes): the volume would cut the image off",
                                 d->name, d->size, d->path, (intmax_t) base_st.st_size);
        r = open_vm_dir(state_dir, state_fd, c->id, &vm_fd, ret_error);
        if (r < 0)
                return r;
        snprintf(rec_name, sizeof rec_name, STORAGE_THIN_RECORD_PREFIX "%s", d->name);

        /* Allocation and creation of the thin id, under the state lock. */
        r = uid_alloc_lock(state_fd, &state_lock);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: cannot take the lock %s/" STATE_LOCK_FILE ": %m", d->name, state_dir);
        r = read_record(vm_fd, rec_name, &rec);
        if (r >= 0) {
                if (rec.kind != STORAGE_RECORD_THIN)
                        return error_setf(ret_error, EBADMSG, "Drive %s: %s/%s/%s is not a thin volume record",
                                         d->name, state_dir, c->id, rec_name);
                if (!streq(rec.pool, pool))
                        return error_setf(ret_error, EXDEV,
                                         "Drive %s: its thin volume %" PRIu32 " lives in pool %s, but the host config now names pool %s",
                                         d->name, rec.thin_id, rec.pool, pool);
                if (!base_identity_equal(&rec.base, &id))
                        return error_setf(ret_error, ESTALE,
                                         "Drive %s: base image %s changed since thin volume %" PRIu32 " was made from it (inode, size or modification time differ): the volume's unwritten blocks would come from another image. Restore the image, or remove the VM's state for a fresh volume",
                                         d->name, d->path, rec.thin_id);
                if (size > rec.size) {
                        /* Growing a thin volume is only a longer table. */
                        rec.size = size;
                        r = write_record(vm_fd, rec_name, &rec);
                        if (r < 0)
                                return error_setf(ret_error, r, "Drive %s: cannot update %s/%s/%s: %m", d->name, state_dir,
                                                 c->id, rec_name);
                }
        } else if (r == -ENOENT) {
                _cleanup_free_ uint32_t *taken = NULL;
                size_t n = 0;
                bool created = false;

                r = collect_thin_ids(state_dir, state_fd, &taken, &n, ret_error);
                if (r < 0)
                        return r;
                for (unsigned attempt = 0; attempt < THIN_ID_ATTEMPTS && !created; attempt++) {
                        uint32_t tid, *grown;

                        r = thin_id_pick(taken, n, &tid);
                        if (r < 0)
                                return error_setf(ret_error, r, "Drive %s: no free thin device id left in pool %s", d->name,
                                                 pool);
                        snprintf(msg, sizeof msg, "create_thin %" PRIu32, tid);
                        err = mfree(err);
                        r = dm_message(pool, msg, NULL, &err);
                        if (r == -EEXIST) {
                                /* Someone else's volume (or one we leaked in a
                                 * crash): never touch it, take the next id. */
                                grown = realloc(taken, (n + 1) * sizeof *taken);
                                if (!grown)
                                        return -ENOMEM;
                                taken = grown;
                                taken[n++] = tid;
                                continue;
                        }
                        if (r < 0)
                                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: cannot create a thin volume in pool %s",
                                                  d->name, pool);
                        rec = (StorageRecord) { .kind = STORAGE_RECORD_THIN, .size = size, .thin_id = tid, .base = id };
                        snprintf(rec.pool, sizeof rec.pool, "%s", pool);
                        r = write_record(vm_fd, rec_name, &rec);
                        if (r < 0) {
                                snprintf(msg, sizeof msg, "delete %" PRIu32, tid);
                                (void) dm_message(pool, msg, NULL, NULL);
                                return error_setf(ret_error, r, "Drive %s: cannot write %s/%s/%s: %m", d->name, state_dir,
                                                 c->id, rec_name);
                        }
                        created = true;
                }
                if (!created)
                        return error_setf(ret_error, ENOSPC,
                                         "Drive %s: pool %s refused %u thin ids as taken; giving up", d->name, pool,
                                         THIN_ID_ATTEMPTS);
        } else
                return error_setf(ret_error, r, "Drive %s: cannot read %s/%s/%s: %m", d->name, state_dir, c->id, rec_name);
        state_lock = safe_close(state_lock);

        r = loop_lock(&lock_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s", d->name);
        r = remove_leftover(name, uuid, ret_error);
        if (r < 0)
                return r;
        r = loop_attach_shared(lock_fd, base_fd, &base, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: base image %s", d->name, d->path);
        r = dm_table_thin(pi.devnum, rec.thin_id, base.devnum, &table);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: cannot build the thin table: %m", d->name);
        {
                DmTarget t = { 0, rec.size / SECTOR_SIZE, "thin", table };
                r = create_and_open(name, uuid, &t, ret_fd, NULL, &err);
                if (r == -ENODATA)
                        return wrap_error(ret_error, r, TAKE_PTR(err),
                                          "Drive %s: pool %s has no thin volume %" PRIu32 " (recorded in %s/%s/%s; was the pool recreated?). Remove that record for a fresh volume",
                                          d->name, pool, rec.thin_id, state_dir, c->id, rec_name);
                if (r < 0)
                        return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: thin volume %" PRIu32 " of pool %s",
                                          d->name, rec.thin_id, pool);
        }
        return 0;
}

/* ---- block ------------------------------------------------------------------------------ */

/* A whole (procfs) file, NUL-terminated; NULL on failure. */
static char *read_full(const char *path) {
        _cleanup_free_ char *buf = NULL;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        size_t len = 0, cap = 0;

        if (fd < 0)
                return NULL;
        for (;;) {
                ssize_t n;
                if (cap - len < 4096) {
                        char *grown = realloc(buf, cap + 65536);
                        if (!grown)
                                return NULL;
                        buf = grown;
                        cap += 65536;
                }
                n = read(fd, buf + len, cap - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return NULL;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
        }
        buf[len] = '\0';
        return TAKE_PTR(buf);
}

/* The kernel's name of a block device ("sda1", "dm-3"). */
static int block_kernel_name(dev_t devnum, char *buf, size_t size) {
        char path[64], target[PATH_MAX];
        const char *slash;
        ssize_t n;

        snprintf(path, sizeof path, "/sys/dev/block/%u:%u", major(devnum), minor(devnum));
        n = readlink(path, target, sizeof target - 1);
        if (n < 0)
                return -errno;
        target[n] = '\0';
        slash = strrchr(target, '/');
        if ((size_t) snprintf(buf, size, "%s", slash ? slash + 1 : target) >= size)
                return -ENAMETOOLONG;
        return 0;
}

/* The devnums of a disk's partitions (sysfs subdirectories with a
 * "partition" file), including the disk itself first. */
static int block_with_partitions(dev_t devnum, dev_t **ret, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ dev_t *l = NULL;
        char path[PATH_MAX];
        struct dirent *de;
        size_t n = 1;

        l = malloc(sizeof *l);
        if (!l)
                return -ENOMEM;
        l[0] = devnum;
        snprintf(path, sizeof path, "/sys/dev/block/%u:%u", major(devnum), minor(devnum));
        d = opendir(path);
        if (d)
                while ((de = readdir(d))) {
                        char p[PATH_MAX], line[32];
                        dev_t part, *grown;

                        if (de->d_name[0] == '.')
                                continue;
                        if (snprintf(p, sizeof p, "%s/%s/partition", path, de->d_name) >= (int) sizeof p ||
                            access(p, F_OK) < 0)
                                continue;
                        if (snprintf(p, sizeof p, "%s/%s/dev", path, de->d_name) >= (int) sizeof p ||
                            read_one_line_file(p, line, sizeof line) < 0 || parse_devnum(line, &part) < 0)
                                continue;
                        grown = realloc(l, (n + 1) * sizeof *l);
                        if (!grown)
                                return -ENOMEM;
                        l = grown;
                        l[n++] = part;
                }
        *ret = TAKE_PTR(l);
        *ret_n = n;
        return 0;
}

static int claim_block(const HostConfig *h, const VmConfig *c, const DriveConfig *d, dev_t devnum,
                       const char *devname, char **ret_error) {
        _cleanup_close_ int run_fd = -EBADF;
        _cleanup_free_ char *err = NULL, *text = NULL, *content = NULL;
        char path[64], owner[VM_ID_MAX + 1], drive[DEVICE_NAME_MAX + 1];
        size_t size;
        int r;

        r = safe_root_open(h->run_dir, SAFE_ROOT_CREATE, 0755, &run_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Drive %s: run directory %s", d->name, h->run_dir);
        r = safe_mkdir_at(run_fd, STORAGE_RUN_DIR, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: cannot create %s/" STORAGE_RUN_DIR ": %m", d->name, h->run_dir);
        snprintf(path, sizeof path, STORAGE_RUN_DIR "/block-%u:%u", major(devnum), minor(devnum));
        if (asprintf(&content, "%s %s\n", c->id, d->name) < 0)
                return -ENOMEM;
        /* Exclusive creation is the claim: no lock needed. */
        r = safe_write_file_at(run_fd, path, content, strlen(content), 0600, 0, 0, 0);
        if (r >= 0)
                return 0;
        if (r != -EEXIST)
                return error_setf(ret_error, r, "Drive %s: cannot record the claim %s/%s: %m", d->name, h->run_dir, path);
        r = safe_read_file_at(run_fd, path, 256, &text, &size);
        if (r < 0 || block_claim_parse(text, size, owner, drive) < 0)
                return error_setf(ret_error, r < 0 ? r : -EBADMSG,
                                 "Drive %s: block device %s is claimed by %s/%s, which is unreadable (%m): remove it if no VM uses %s",
                                 d->name, devname, h->run_dir, path, devname);
        if (streq(owner, c->id) && streq(drive, d->name))
                return 0;       /* our own claim from an earlier run */
        if (streq(owner, c->id))
                return error_setf(ret_error, EBUSY, "Drive %s: block device %s is already drive %s of this VM", d->name,
                                 devname, drive);
        return error_setf(ret_error, EBUSY,
                         "Drive %s: block device %s is in use by VM %s (drive %s; claimed in %s/%s). If %s is not running, run microvm-cleanup %s (or microvm-reclaim)",
                         d->name, devname, owner, drive, h->run_dir, path, owner, owner);
}

static int prepare_block(const HostConfig *h, const VmConfig *c, const DriveConfig *d, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = -EBADF, canon_fd = -EBADF, excl = -EBADF;
        _cleanup_free_ char *real = NULL, *mountinfo = NULL;
        _cleanup_free_ dev_t *parts = NULL;
        char kname[128], devpath[160], path[PATH_MAX], line[160];
        size_t n_parts = 0;
        struct stat st;
        int r;

        real = realpath(d->path, NULL);
        if (!real)
                return error_setf(ret_error, errno, "Drive %s: cannot resolve %s: %m", d->name, d->path);
        fd = open(real, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0)
                return error_setf(ret_error, errno, "Drive %s: cannot open %s: %m", d->name, real);
        if (fstat(fd, &st) < 0)
                return error_setf(ret_error, errno, "Drive %s: cannot stat %s: %m", d->name, real);
        if (!S_ISBLK(st.st_mode))
                return error_setf(ret_error, ENOTBLK, "Drive %s: %s%s%s is not a block device", d->name, d->path,
                                 streq(real, d->path) ? "" : " → ", streq(real, d->path) ? "" : real);

        /* The canonical name: /dev/mapper/x and /dev/disk/by-* → the
         * kernel's own node, checked to be the same device. */
        r = block_kernel_name(st.st_rdev, kname, sizeof kname);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: %s (%u:%u) is not in /sys/dev/block: %m", d->name, real,
                                 major(st.st_rdev), minor(st.st_rdev));
        snprintf(devpath, sizeof devpath, "/dev/%s", kname);
        canon_fd = open(devpath, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (canon_fd >= 0) {
                struct stat cst;
                if (fstat(canon_fd, &cst) >= 0 && S_ISBLK(cst.st_mode) && cst.st_rdev == st.st_rdev) {
                        safe_close(fd);
                        fd = TAKE_FD(canon_fd);
                }
        }

        /* One of ours: another VM's disk, or a base/CoW loop. */
        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/dm/uuid", major(st.st_rdev), minor(st.st_rdev));
        if (read_one_line_file(path, line, sizeof line) >= 0 &&
            (startswith(line, DM_UUID_PREFIX) || startswith(line, DM_POOL_UUID_PREFIX)))
                return error_setf(ret_error, EBUSY,
                                 "Drive %s: %s (%s) is a device-mapper device of microvm (UUID %s), not a block device to pass through",
                                 d->name, d->path, devpath, line);
        {
                LoopInfo *loops = NULL;
                size_t n = 0;
                bool ours = false;
                if (loop_list(&loops, &n) >= 0) {
                        for (size_t i = 0; i < n; i++)
                                if (loops[i].devnum == st.st_rdev && loops[i].ours)
                                        ours = true;
                        loop_infos_free(loops, n);
                }
                if (ours)
                        return error_setf(ret_error, EBUSY,
                                         "Drive %s: %s (%s) is a loop device of microvm (a base image or copy-on-write file), not a block device to pass through",
                                         d->name, d->path, devpath);
        }

        /* Mounted (here), or anything stacked on it (dm, md, bcache, ...),
         * the device itself or any partition of it. */
        r = block_with_partitions(st.st_rdev, &parts, &n_parts);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: %m", d->name);
        mountinfo = read_full("/proc/self/mountinfo");
        if (!mountinfo)
                return error_setf(ret_error, EIO, "Drive %s: cannot read /proc/self/mountinfo to check whether %s is mounted",
                                 d->name, devpath);
        for (size_t i = 0; i < n_parts; i++) {
                _cleanup_free_ char *where = NULL;
                char pname[128] = "", holder[128] = "";
                size_t holders;

                if (block_kernel_name(parts[i], pname, sizeof pname) < 0)
                        snprintf(pname, sizeof pname, "%u:%u", major(parts[i]), minor(parts[i]));
                r = mountinfo_find_devnum(mountinfo, parts[i], &where);
                if (r > 0)
                        return error_setf(ret_error, EBUSY, "Drive %s: %s (/dev/%s) is mounted on %s: refusing to pass it to a VM",
                                         d->name, d->path, pname, strna(where));
                snprintf(path, sizeof path, "/sys/dev/block/%u:%u/holders", major(parts[i]), minor(parts[i]));
                holders = dir_count_entries(path, holder, sizeof holder);
                if (holders > 0)
                        return error_setf(ret_error, EBUSY,
                                         "Drive %s: %s (/dev/%s) is in use by %s%s (holders in sysfs): refusing to pass it to a VM",
                                         d->name, d->path, pname, holder, holders > 1 ? " and others" : "");
        }
        /* What the checks above cannot see (a mount in another namespace,
         * swap, a btrfs member, another exclusive opener): the kernel's own
         * exclusive claim. Released at once — firecracker opens the device
         * later, and an exclusive open cannot be kept across that. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        excl = open(path, O_RDONLY | O_EXCL | O_CLOEXEC | O_NOCTTY);
        if (excl < 0 && errno == EBUSY)
                return error_setf(ret_error, EBUSY,
                                 "Drive %s: %s (%s) is in use (the kernel refuses an exclusive open: mounted in another namespace, swap, RAID/LVM member or held by another program): refusing to pass it to a VM",
                                 d->name, d->path, devpath);
        excl = safe_close(excl);

        r = claim_block(h, c, d, st.st_rdev, devpath, ret_error);
        if (r < 0)
                return r;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- prepare ----------------------------------------------------------------------------- */

int storage_prepare_drive(const HostConfig *h, const VmConfig *c, const DriveConfig *d, int state_fd, uid_t uid,
                          int *ret_dev_fd, char **ret_dm_name, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *dm_name = NULL;
        char name[128], uuid[128];
        int r;

        if (!vm_id_valid(c->id) || !device_name_valid(d->name))
                return error_setf(ret_error, EINVAL, "Invalid VM id or drive name");
        switch (d->mode) {
        case DRIVE_MODE_SNAPSHOT:
        case DRIVE_MODE_THIN:
                r = dm_check_available(ret_error);
                if (r < 0)
                        return r;
                (void) dm_name_for(c->id, d->name, name);
                (void) dm_uuid_for(c->id, d->name, uuid);
                if (d->mode == DRIVE_MODE_SNAPSHOT)
                        r = prepare_snapshot(h, c, d, state_fd, name, uuid, &fd, ret_error);
                else
                        r = prepare_thin(h, c, d, state_fd, name, uuid, &fd, ret_error);
                dm_release();
                if (r < 0)
                        return r;
                dm_name = strdup(name);
                if (!dm_name)
                        return -ENOMEM;
                break;
        case DRIVE_MODE_BLOCK:
                r = prepare_block(h, c, d, &fd, ret_error);
                if (r < 0)
                        return r;
                break;
        default:
                return error_setf(ret_error, EINVAL, "Drive %s: mode %s is not a block storage mode", d->name,
                                 strna(drive_mode_to_string(d->mode)));
        }
        *ret_dev_fd = TAKE_FD(fd);
        if (ret_dm_name)
                *ret_dm_name = TAKE_PTR(dm_name);
        return 0;
}

/* ---- teardown ------------------------------------------------------------------------------ */

static void teardown_claims(const HostConfig *h, const char *id, StorageReport *report, int *first) {
        _cleanup_close_ int run_fd = -EBADF, dir_fd = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int r;

        if (safe_root_open(h->run_dir, 0, 0, &run_fd, NULL) < 0)
                return;
        r = safe_open_dir_at(run_fd, STORAGE_RUN_DIR, &dir_fd);
        if (r < 0)
                return;
        d = fdopendir(dir_fd);
        if (!d)
                return;
        dir_fd = -EBADF;
        while ((de = readdir(d))) {
                _cleanup_free_ char *text = NULL;
                char owner[VM_ID_MAX + 1], drive[DEVICE_NAME_MAX + 1];
                size_t size;

                if (!startswith(de->d_name, "block-"))
                        continue;
                if (safe_read_file_at(dirfd(d), de->d_name, 256, &text, &size) < 0 ||
                    block_claim_parse(text, size, owner, drive) < 0 || !streq(owner, id))
                        continue;
                if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT) {
                        r = -errno;
                        (void) strv_push_errorf(&report->failed, r, "block claim %s/" STORAGE_RUN_DIR "/%s: could not be removed (%m)",
                                   h->run_dir, de->d_name);
                        if (*first == 0)
                                *first = r;
                }
        }
}

static void teardown_dm(const char *id, char *const *dm_names, StorageTeardownFlags flags, StorageReport *report,
                        int *first, char ***ret_gone_or_kept) {
        _cleanup_close_ int lock_fd = -EBADF;
        char prefix[VM_ID_MAX + 16];
        _cleanup_free_ char *err = NULL;
        DmDevice *list = NULL;
        size_t n = 0;
        int r;

        if (dm_check_available(NULL) < 0)
                return;
        /* Under the loop lock: removing the last user of a shared base
         * loop lets it autoclear, which must not race a lookup of it. */
        r = loop_lock(&lock_fd, &err);
        if (r < 0) {
                (void) strv_push_errorf(&report->failed, r, "dm devices of %s: not removed, %s", id, strna(err));
                if (*first == 0)
                        *first = r;
                return;
        }

        /* Plan names first: a name that is not ours is reported, never removed. */
        for (char *const *p = dm_names; p && *p; p++) {
                char want_id[VM_ID_MAX + 1];
                DmInfo i = {};

                if (dm_get_info(*p, NULL, &i) < 0 || !i.exists)
                        continue;
                if (!dm_uuid_parse(i.uuid, want_id) || !streq(want_id, id)) {
                        (void) strv_push_errorf(&report->failed, EPERM,
                                   "device-mapper device %s: not removed, its UUID \"%s\" is not one of VM %s's", *p,
                                   i.uuid, id);
                        if (*first == 0)
                                *first = -EPERM;
                }
        }

        /* Narrowed by prefix (cheap: the kernel lists UUIDs), then exact:
         * "MICROVM-a-" is also a prefix of VM "a-b"'s UUIDs. */
        snprintf(prefix, sizeof prefix, DM_UUID_PREFIX "%s-", id);
        r = dm_list(prefix, &list, &n);
        if (r < 0) {
                (void) strv_push_errorf(&report->failed, r, "dm devices of %s: cannot list device-mapper devices (%m)", id);
                if (*first == 0)
                        *first = r;
                return;
        }
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *msg = NULL;
                char owner[VM_ID_MAX + 1];

                /* Exact: VM "a" never takes "ab"'s devices. */
                if (!dm_uuid_parse(list[i].uuid, owner) || !streq(owner, id))
                        continue;
                r = dm_remove(list[i].uuid, flags & STORAGE_TEARDOWN_DEFERRED ? DM_REMOVE_DEFERRED : 0, &msg);
                if (r == DM_REMOVE_DONE)
                        report->n_removed++;
                else if (r == DM_REMOVE_SCHEDULED) {
                        (void) strv_push(&report->deferred, msg ?: list[i].name);
                        (void) strv_push(ret_gone_or_kept, list[i].name);
                } else if (r < 0) {
                        if (msg)
                                (void) strv_push(&report->failed, msg);
                        else
                                (void) strv_push_errorf(&report->failed, r, "device-mapper device %s: could not be removed (%m)",
                                           list[i].name);
                        (void) strv_push(ret_gone_or_kept, list[i].name);
                        if (*first == 0)
                                *first = r;
                }
        }
        dm_devices_free(list, n);
        dm_release();
}

static void teardown_files(const HostConfig *h, int state_fd, const char *id, StorageTeardownFlags flags,
                           char *const *kept, StorageReport *report, int *first) {
        _cleanup_close_ int vm_fd = -EBADF, drives_fd = -EBADF, state_lock = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int r;

        if (safe_open_dir_at(state_fd, id, &vm_fd) < 0)
                return;         /* no state: nothing to do */

        /* Non-persistent CoW files: always. Persistent ones and the
         * records: with REMOVE_STATE. */
        if (safe_open_dir_at(vm_fd, STATE_DRIVES_DIR, &drives_fd) >= 0) {
                int dfd = fcntl(drives_fd, F_DUPFD_CLOEXEC, 3);
                d = dfd >= 0 ? fdopendir(dfd) : NULL;
                if (!d)
                        safe_close(dfd);
                while (d && (de = readdir(d))) {
                        bool tmp = endswith(de->d_name, STORAGE_COW_TMP_SUFFIX) ||
                                   endswith(de->d_name, STORAGE_COW_TMP_SUFFIX ".new");
                        bool state = endswith(de->d_name, STORAGE_COW_SUFFIX) ||
                                     endswith(de->d_name, STORAGE_COW_SUFFIX ".new") ||
                                     endswith(de->d_name, STORAGE_SNAPSHOT_RECORD_SUFFIX);
                        if (!tmp && !(state && (flags & STORAGE_TEARDOWN_REMOVE_STATE)))
                                continue;
                        /* Unlinking a file a deferred device still uses is
                         * fine: the loop keeps the inode until it goes. */
                        if (unlinkat(drives_fd, de->d_name, 0) < 0 && errno != ENOENT) {
                                r = -errno;
                                (void) strv_push_errorf(&report->failed, r, "%s/%s/" STATE_DRIVES_DIR "/%s: could not be removed (%m)",
                                           h->state_dir, id, de->d_name);
                                if (*first == 0)
                                        *first = r;
                        } else
                                report->n_deleted++;
                }
        }
        if (!(flags & STORAGE_TEARDOWN_REMOVE_STATE))
                return;

        /* Thin volumes: "delete" in the pool, then the record. */
        {
                _cleanup_(closedirp) DIR *vd = NULL;
                int vfd = fcntl(vm_fd, F_DUPFD_CLOEXEC, 3);

                vd = vfd >= 0 ? fdopendir(vfd) : NULL;
                if (!vd) {
                        safe_close(vfd);
                        return;
                }
                while ((de = readdir(vd))) {
                        _cleanup_free_ char *err = NULL;
                        const char *drive = startswith(de->d_name, STORAGE_THIN_RECORD_PREFIX);
                        char name[128], msg[64];
                        StorageRecord rec;

                        if (!drive || !device_name_valid(drive))
                                continue;
                        if (state_lock < 0) {
                                r = uid_alloc_lock(state_fd, &state_lock);
                                if (r < 0) {
                                        (void) strv_push_errorf(&report->failed, r, "thin volumes of %s: not deleted, cannot take the lock %s/" STATE_LOCK_FILE " (%m)",
                                                   id, h->state_dir);
                                        if (*first == 0)
                                                *first = r;
                                        return;
                                }
                        }
                        r = read_record(vm_fd, de->d_name, &rec);
                        if (r < 0 || rec.kind != STORAGE_RECORD_THIN) {
                                (void) strv_push_errorf(&report->failed, r < 0 ? r : -EBADMSG,
                                           "%s/%s/%s: unreadable thin volume record, volume not deleted (%m)", h->state_dir, id,
                                           de->d_name);
                                if (*first == 0)
                                        *first = r < 0 ? r : -EBADMSG;
                                continue;
                        }
                        if (dm_name_for(id, drive, name) >= 0 && strv_contains(kept, name)) {
                                (void) strv_push_errorf(&report->failed, EBUSY,
                                           "thin volume %" PRIu32 " of pool %s (drive %s): not deleted, its device %s is still open; remove the VM's state again once it is closed",
                                           rec.thin_id, rec.pool, drive, name);
                                if (*first == 0)
                                        *first = -EBUSY;
                                continue;
                        }
                        snprintf(msg, sizeof msg, "delete %" PRIu32, rec.thin_id);
                        r = dm_check_available(NULL);
                        if (r >= 0)
                                r = dm_message(rec.pool, msg, NULL, &err);
                        if (r == -ENXIO || r == -ENODEV) {
                                (void) strv_push_errorf(&report->failed, r,
                                           "thin volume %" PRIu32 " of pool %s (drive %s): not deleted, the pool is not active (start microvm-pool.service, then remove the VM's state again); record %s/%s/%s kept",
                                           rec.thin_id, rec.pool, drive, h->state_dir, id, de->d_name);
                                if (*first == 0)
                                        *first = r;
                                continue;
                        }
                        if (r < 0 && r != -ENODATA) {
                                (void) strv_push_errorf(&report->failed, r,
                                           "thin volume %" PRIu32 " of pool %s (drive %s): could not be deleted, record %s/%s/%s kept: %s",
                                           rec.thin_id, rec.pool, drive, h->state_dir, id, de->d_name,
                                           err ?: "the pool is not active?");
                                if (*first == 0)
                                        *first = r;
                                continue;
                        }
                        if (unlinkat(vm_fd, de->d_name, 0) < 0 && errno != ENOENT) {
                                r = -errno;
                                (void) strv_push_errorf(&report->failed, r, "%s/%s/%s: could not be removed (%m)", h->state_dir, id,
                                           de->d_name);
                                if (*first == 0)
                                        *first = r;
                                continue;
                        }
                        report->n_deleted++;
                }
        }
        dm_release();
}

int storage_teardown_vm(const HostConfig *h, int state_fd, const char *id, char *const *dm_names,
                        StorageTeardownFlags flags, StorageReport *report) {
        _cleanup_strv_free_ char **kept = NULL;
        int first = 0;

        if (!vm_id_valid(id))
                return -EINVAL;
        teardown_dm(id, dm_names, flags, report, &first, &kept);
        teardown_claims(h, id, report, &first);
        if (state_fd >= 0)
                teardown_files(h, state_fd, id, flags, kept, report, &first);
        return first;
}

/* ---- reclaim ----------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int list_claims(const HostConfig *h, char ***ids, char ***names) {
        _cleanup_close_ int run_fd = -EBADF, dir_fd = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;

        if (safe_root_open(h->run_dir, 0, 0, &run_fd, NULL) < 0 || safe_open_dir_at(run_fd, STORAGE_RUN_DIR, &dir_fd) < 0)
                return 0;
        d = fdopendir(dir_fd);
        if (!d)
                return -errno;
        dir_fd = -EBADF;
        while ((de = readdir(d))) {
                _cleanup_free_ char *text = NULL, *what = NULL;
                char owner[VM_ID_MAX + 1], drive[DEVICE_NAME_MAX + 1];
                size_t size;

                if (!startswith(de->d_name, "block-") ||
                    safe_read_file_at(dirfd(d), de->d_name, 256, &text, &size) < 0 ||
                    block_claim_parse(text, size, owner, drive) < 0)
                        continue;
                if (!strv_contains(*ids, owner) && strv_push(ids, owner) < 0)
                        return -ENOMEM;
                if (asprintf(&what, "%s/" STORAGE_RUN_DIR "/%s", h->run_dir, de->d_name) < 0 || strv_push(names, what) < 0)
                        return -ENOMEM;
        }
        return 0;
}

int storage_list_vm_ids(const HostConfig *h, char ***ret_ids, char ***ret_names) {
        _cleanup_strv_free_ char **ids = NULL, **names = NULL;
        DmDevice *list = NULL;
        size_t n = 0, n_ids;
        int r;

        ids = calloc(1, sizeof(char *));
        names = calloc(1, sizeof(char *));
        if (!ids || !names)
                return -ENOMEM;
        if (dm_check_available(NULL) >= 0) {
                r = dm_list(DM_UUID_PREFIX, &list, &n);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < n; i++) {
                        char owner[VM_ID_MAX + 1];

                        if (!dm_uuid_parse(list[i].uuid, owner))
                                continue;
                        if (!strv_contains(ids, owner) && strv_push(&ids, owner) < 0) {
                                dm_devices_free(list, n);
                                return -ENOMEM;
                        }
                        if (strv_push(&names, list[i].name) < 0) {
                                dm_devices_free(list, n);
                                return -ENOMEM;
                        }
                }
                dm_devices_free(list, n);
                dm_release();
        }
        if (h) {
                r = list_claims(h, &ids, &names);
                if (r < 0)
                        return r;
        }
        n_ids = strv_length(ids);
        if (n_ids > 1)
                qsort(ids, n_ids, sizeof(char *), cmp_str);
        *ret_ids = TAKE_PTR(ids);
        if (ret_names)
                *ret_names = TAKE_PTR(names);
        return 0;
}

int storage_reclaim_loops(StorageReport *report) {
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_free_ char *err = NULL;
        int r;

        r = loop_lock(&lock_fd, &err);
        if (r == -ENOENT || r == -ENODEV || r == -ENXIO)
                return 0;       /* no loop support: no loops */
        if (r < 0) {
                if (report)
                        (void) strv_push_errorf(&report->failed, r, "loop devices: not reclaimed, %s", strna(err));
                return r;
        }
        return loop_reclaim(lock_fd, report ? &report->failed : NULL);
}

/* ---- thin pool ---------------------------------------------------------------------------- */

void thin_pool_info_done(ThinPoolInfo *i) {
        if (!i)
                return;
        free(i->metadata_backing);
        free(i->data_backing);
        *i = (ThinPoolInfo) {};
}

static char *loop_backing_of(dev_t devnum) {
        char path[128], line[PATH_MAX];

        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/loop/backing_file", major(devnum), minor(devnum));
        if (read_one_line_file(path, line, sizeof line) < 0)
                return NULL;
        return strdup(line);
}

int thin_pool_query(const HostConfig *h, ThinPoolInfo *ret, char **ret_error) {
        _cleanup_free_ char *type = NULL, *params = NULL, *status = NULL;
        const ThinPoolConfig *t = &h->thin_pool;
        ThinPoolInfo info = { .managed = t->data != NULL };
        DmInfo i = {};
        int r;

        if (!t->configured)
                return error_setf(ret_error, ENOENT, "The host config has no [thin_pool] section");
        r = dm_check_available(ret_error);
        if (r < 0)
                return r;
        r = dm_get_info(t->name, NULL, &i);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot look up thin pool %s: %m", t->name);
        if (!i.exists) {
                *ret = info;
                return 0;
        }
        info.active = true;
        info.devnum = i.devnum;
        r = dm_get_table(t->name, &type, &params, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot read the table of %s: %m", t->name);
        if (!streq(type, "thin-pool"))
                return error_setf(ret_error, ENOTBLK, "Device-mapper device %s is not a thin pool (its target is %s)",
                                 t->name, type);
        if (dm_table_thin_pool_parse(params, &info.metadata_dev, &info.data_dev, &info.block_sectors) < 0)
                return error_setf(ret_error, EBADMSG, "Cannot parse the table of thin pool %s: \"%s\"", t->name, params);
        r = dm_get_status(t->name, NULL, &status, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot read the status of thin pool %s: %m", t->name);
        if (thin_pool_status_parse(status, &info.status) < 0)
                return error_setf(ret_error, EBADMSG, "Cannot parse the status of thin pool %s: \"%s\"", t->name, status);
        info.metadata_backing = loop_backing_of(info.metadata_dev);
        info.data_backing = loop_backing_of(info.data_dev);
        *ret = info;
        return 0;
}

/* Opens (creating with SAFE_ROOT_CREATE) the directory of a pool file. */
static int open_parent_dir(const char *path, int *ret_fd, const char **ret_name, char **ret_error) {
        _cleanup_free_ char *copy = strdup(path), *err = NULL;
        const char *slash = strrchr(path, '/');
        int r;

        if (!copy || !slash)
                return -ENOMEM;
        copy[slash - path] = '\0';
        /* The pool's files hold every thin volume: their directory must be
         * one only root can change. */
        r = safe_root_open(copy[0] ? copy : "/", SAFE_ROOT_CREATE, 0700, ret_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Directory of %s", path);
        *ret_name = slash + 1;
        return 0;
}

/* Is the file open at fd already attached to a loop? */
static int find_attached(int fd, char *buf, size_t size) {
        LoopInfo *l = NULL;
        size_t n = 0;
        struct stat st;
        int found = 0;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (loop_list(&l, &n) < 0)
                return 0;
        for (size_t i = 0; i < n && !found; i++)
                if (l[i].backing_dev == (uint64_t) st.st_dev && l[i].backing_ino == (uint64_t) st.st_ino) {
                        snprintf(buf, size, "/dev/loop%u", l[i].nr);
                        found = 1;
                }
        loop_infos_free(l, n);
        return found;
}

static int pool_lock(int dir_fd, const char *what, char **ret_error) {
        while (flock(dir_fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return error_setf(ret_error, errno, "Cannot lock the directory of %s: %m", what);
        return 0;
}

/* Opens the directory of the pool's metadata file, takes the pool lock on
 * it (one activation or deactivation at a time), then looks the pool up by
 * name. *ret_mdir holds the lock. */
static int pool_lock_and_look_up(const ThinPoolConfig *t, int *ret_mdir, const char **ret_mname, DmInfo *ret,
                                 char **ret_error) {
        int r;

        r = open_parent_dir(t->metadata, ret_mdir, ret_mname, ret_error);
        if (r < 0)
                return r;
        r = pool_lock(*ret_mdir, t->metadata, ret_error);
        if (r < 0)
                return r;
        r = dm_get_info(t->name, NULL, ret);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot look up thin pool %s: %m", t->name);
        return 0;
}

int thin_pool_activate(const HostConfig *h, ThinPoolInfo *ret_info, char **ret_error) {
        _cleanup_close_ int mdir = -EBADF, ddir = -EBADF, mfd = -EBADF, dfd = -EBADF, lock_fd = -EBADF;
        _cleanup_(loop_device_done) LoopDevice mloop = LOOP_DEVICE_NULL, dloop = LOOP_DEVICE_NULL;
        _cleanup_free_ char *err = NULL, *table = NULL, *status = NULL;
        const ThinPoolConfig *t = &h->thin_pool;
        const char *mname, *dname;
        uint8_t sb[THIN_METADATA_BLOCK_SIZE];
        ThinPoolInfo info = {};
        uint32_t block_sectors;
        char uuid[160], where[64];
        bool created_data = false, created_meta = false;
        struct stat mst, dst;
        DmInfo i = {};
        int r;

        if (!t->configured)
                return error_setf(ret_error, ENOENT, "The host config has no [thin_pool] section");
        r = dm_check_available(ret_error);
        if (r < 0)
                return r;
        snprintf(uuid, sizeof uuid, DM_POOL_UUID_PREFIX "%s", t->name);

        if (!t->data) {
                /* A pool someone else manages (LVM, ...): only check it. */
                r = thin_pool_query(h, &info, ret_error);
                if (r < 0)
                        return r;
                if (!info.active)
                        return error_setf(ret_error, ENXIO,
                                         "Thin pool %s does not exist: create it (e.g. lvcreate --type thin-pool), or give [thin_pool] data and metadata for a pool microvm manages",
                                         t->name);
                goto done;
        }

        block_sectors = (uint32_t) ((t->block_size ?: DEFAULT_THIN_BLOCK_SIZE) / SECTOR_SIZE);
        r = pool_lock_and_look_up(t, &mdir, &mname, &i, ret_error);
        if (r < 0)
                return r;
        r = open_parent_dir(t->data, &ddir, &dname, ret_error);
        if (r < 0)
                return r;
        if (i.exists) {
                if (!streq(i.uuid, uuid))
                        return error_setf(ret_error, EEXIST,
                                         "A device-mapper device named %s exists that microvm did not create from %s (UUID \"%s\"): refusing to use or replace it",
                                         t->name, t->metadata, i.uuid);
                r = thin_pool_query(h, &info, ret_error);
                if (r < 0)
                        return r;
                goto done;      /* already active: idempotent */
        }
        r = dm_get_info(NULL, uuid, &i);
        if (r >= 0 && i.exists)
                return error_setf(ret_error, EEXIST, "Thin pool %s is active under another name (%s): rename it back",
                                 t->name, i.name);

        /* The files. Metadata first: a crash between the two leaves fresh
         * metadata without data, which the next activation completes. */
        r = open_own_file(mdir, mname, &mfd);
        if (r == -ENOENT) {
                r = open_own_file(ddir, dname, &dfd);
                if (r >= 0 && file_has_data(dfd) != 0)
                        return error_setf(ret_error, ENOENT,
                                         "Thin pool %s: metadata file %s is missing but data file %s holds data: the pool's volumes would be lost. Restore the metadata (thin_repair), or remove the data file to start an empty pool",
                                         t->name, t->metadata, t->data);
                dfd = safe_close(dfd);
                r = create_sparse(mdir, mname, t->metadata_size ?: thin_metadata_default_size(t->data_size, t->block_size),
                                  &mfd);
                if (r < 0)
                        return error_setf(ret_error, r, "Thin pool %s: cannot create metadata file %s: %m", t->name,
                                         t->metadata);
                created_meta = true;
        } else if (r < 0)
                return error_setf(ret_error, r, "Thin pool %s: cannot open metadata file %s (it must be a root-owned regular file with one link): %m",
                                 t->name, t->metadata);
        r = open_own_file(ddir, dname, &dfd);
        if (r == -ENOENT) {
                r = create_sparse(ddir, dname, t->data_size, &dfd);
                if (r < 0)
                        return error_setf(ret_error, r, "Thin pool %s: cannot create data file %s: %m", t->name, t->data);
                created_data = true;
        } else if (r < 0)
                return error_setf(ret_error, r, "Thin pool %s: cannot open data file %s (it must be a root-owned regular file with one link): %m",
                                 t->name, t->data);
        if (fstat(mfd, &mst) < 0 || fstat(dfd, &dst) < 0)
                return error_setf(ret_error, errno, "Thin pool %s: cannot stat its files: %m", t->name);

        /* Never format existing metadata: only an all-zero superblock of a
         * file that holds nothing at all may be formatted by the kernel. */
        if (pread(mfd, sb, sizeof sb, 0) != (ssize_t) sizeof sb)
                return error_setf(ret_error, errno ?: EIO, "Thin pool %s: cannot read the superblock of %s (%jd bytes): %m",
                                 t->name, t->metadata, (intmax_t) mst.st_size);
        {
                ThinSuperblock s = {};
                ThinSuperblockVerdict v = thin_superblock_check(sb, block_sectors, &s);

                switch (v) {
                case THIN_SB_VALID:
                        break;
                case THIN_SB_ZERO:
                        r = file_has_data(mfd);
                        if (r != 0)
                                return error_setf(ret_error, r < 0 ? r : EUCLEAN,
                                                 "Thin pool %s: metadata file %s has an all-zero superblock but holds data: the kernel would format it and every thin volume would be lost. Refusing to activate; check it with thin_check, repair with thin_repair (see microvm-pool.service(8)), or remove the file and the data file to start an empty pool",
                                                 t->name, t->metadata);
                        break;
                case THIN_SB_DATA_BLOCK_SIZE_MISMATCH:
                        return error_setf(ret_error, EINVAL,
                                         "Thin pool %s: metadata file %s was formatted with a data block size of %" PRIu64 " bytes, but [thin_pool] block_size is %" PRIu64 ": set block_size = %" PRIu64 " (it cannot change for an existing pool)",
                                         t->name, t->metadata, (uint64_t) s.data_block_sectors * SECTOR_SIZE,
                                         (uint64_t) block_sectors * SECTOR_SIZE, (uint64_t) s.data_block_sectors * SECTOR_SIZE);
                default:
                        return error_setf(ret_error, EUCLEAN,
                                         "Thin pool %s: refusing to activate metadata file %s: %s. Check it with thin_check %s and repair it with thin_repair (see microvm-pool.service(8)); it is never reformatted automatically",
                                         t->name, t->metadata, thin_sb_verdict_to_string(v), t->metadata);
                }
        }

        /* Grow (never shrink) the files to the configured sizes. */
        if ((uint64_t) dst.st_size < t->data_size && ftruncate(dfd, (off_t) t->data_size) < 0)
                return error_setf(ret_error, errno, "Thin pool %s: cannot grow data file %s: %m", t->name, t->data);
        {
                uint64_t want = t->metadata_size ?: thin_metadata_default_size(t->data_size, t->block_size);
                if ((uint64_t) mst.st_size < want && ftruncate(mfd, (off_t) want) < 0)
                        return error_setf(ret_error, errno, "Thin pool %s: cannot grow metadata file %s: %m", t->name,
                                         t->metadata);
        }

        r = loop_lock(&lock_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Thin pool %s", t->name);
        /* Two pools on one metadata file would destroy each other. */
        if (find_attached(mfd, where, sizeof where) > 0)
                return error_setf(ret_error, EBUSY,
                                 "Thin pool %s: metadata file %s is already attached to %s: another pool (or program) uses it",
                                 t->name, t->metadata, where);
        if (find_attached(dfd, where, sizeof where) > 0)
                return error_setf(ret_error, EBUSY,
                                 "Thin pool %s: data file %s is already attached to %s: another pool (or program) uses it",
                                 t->name, t->data, where);
        r = loop_attach(lock_fd, mfd, LOOP_ATTACH_DIRECT_IO, &mloop, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Thin pool %s: metadata", t->name);
        r = loop_attach(lock_fd, dfd, LOOP_ATTACH_DIRECT_IO, &dloop, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Thin pool %s: data", t->name);
        r = dm_table_thin_pool(mloop.devnum, dloop.devnum, block_sectors, 0, &table);
        if (r < 0)
                return error_setf(ret_error, r, "Thin pool %s: cannot build its table: %m", t->name);
        {
                uint64_t len = dloop.size / SECTOR_SIZE / block_sectors * block_sectors;
                DmTarget tg = { 0, len, "thin-pool", table };

                if (len == 0)
                        return error_setf(ret_error, EINVAL, "Thin pool %s: data file %s is smaller than one block", t->name,
                                         t->data);
                r = dm_create(t->name, uuid, &tg, 1, DM_CREATE_NO_PROBE, NULL, &err);
                if (r < 0) {
                        _cleanup_free_ char *hint = NULL;
                        const char *const want[] = { "thin-pool", NULL };
                        if (dm_targets_check(want, &hint) == -EOPNOTSUPP)
                                return error_setf(ret_error, r, "Thin pool %s: %s; %s", t->name, strna(err), strna(hint));
                        return error_setf(ret_error, r,
                                         "Thin pool %s: the kernel refused to activate it: %s. The kernel log says why (journalctl -k); see microvm-pool.service(8)",
                                         t->name, strna(err));
                }
        }
        /* The kernel's own verdict on the metadata it just opened. */
        {
                ThinPoolStatus st = {};
                r = dm_get_status(t->name, NULL, &status, NULL);
                if (r < 0 || thin_pool_status_parse(status, &st) < 0 || st.mode != THIN_POOL_RW || st.needs_check) {
                        (void) dm_remove(uuid, 0, NULL);
                        return error_setf(ret_error, EUCLEAN,
                                         "Thin pool %s came up %s (status \"%s\"): deactivated again. Check the metadata with thin_check %s (see microvm-pool.service(8))",
                                         t->name, r < 0 ? "unreadable" : "unhealthy", strna(status), t->metadata);
                }
        }
        r = thin_pool_query(h, &info, ret_error);
        if (r < 0)
                return r;
done:
        info.created_data = created_data;
        info.created_metadata = created_meta;
        dm_release();
        if (ret_info)
                *ret_info = info;
        else
                thin_pool_info_done(&info);
        return 0;
}

int thin_pool_deactivate(const HostConfig *h, char **ret_error) {
        _cleanup_close_ int mdir = -EBADF, lock_fd = -EBADF;
        _cleanup_free_ char *msg = NULL, *err = NULL;
        const ThinPoolConfig *t = &h->thin_pool;
        const char *mname;
        char uuid[160];
        DmInfo i = {};
        int r;

        if (!t->configured || !t->data)
                return 0;       /* not ours to stop */
        if (dm_check_available(NULL) < 0)
                return 0;
        snprintf(uuid, sizeof uuid, DM_POOL_UUID_PREFIX "%s", t->name);
        r = pool_lock_and_look_up(t, &mdir, &mname, &i, ret_error);
        if (r < 0)
                return r;
        if (i.exists && !streq(i.uuid, uuid))
                return error_setf(ret_error, EPERM,
                                 "Device-mapper device %s was not created by microvm (UUID \"%s\"): not deactivating it",
                                 t->name, i.uuid);
        r = loop_lock(&lock_fd, &err);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(err), "Thin pool %s", t->name);
        r = dm_remove(uuid, 0, &msg);
        dm_release();
        if (r == -EBUSY)
                return wrap_error(ret_error, r, TAKE_PTR(msg), "Thin pool %s is in use by active thin volumes (stop the VMs first)",
                                  t->name);
        if (r < 0)
                return wrap_error(ret_error, r, TAKE_PTR(msg), "Thin pool %s", t->name);
        return 0;
}
