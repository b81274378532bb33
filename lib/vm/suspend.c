/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Suspend to disk and resume: see suspend.h. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "names.h"
#include "safe-fs.h"
#include "sha256.h"
#include "suspend.h"
#include "util.h"

#define RECORD_MAX (16 * 1024)

char *suspend_record_serialize(const SuspendRecord *r) {
        char *s = NULL;

        if (asprintf(&s,
                     "# microvm suspend record, written by microvm-stop. Do not edit.\n"
                     "FIRECRACKER_SHA256=%s\n"
                     "KERNEL_SHA256=%s\n"
                     "INITRD_SHA256=%s\n"
                     "CONFIG_DIGEST=%s\n"
                     "DRIVES=%s\n"
                     "MEMORY_BYTES=%" PRIu64 "\n"
                     "VMSTATE_BYTES=%" PRIu64 "\n"
                     "CREATED_USEC=%" PRIu64 "\n",
                     r->firecracker_sha256, r->kernel_sha256, r->initrd_sha256, r->config_digest, r->drives,
                     r->memory_bytes, r->vmstate_bytes, (uint64_t) r->created_usec) < 0)
                return NULL;
        return s;
}

static bool hex64_or_empty(const char *v, bool empty_ok) {
        size_t n = strlen(v);
        if (n == 0)
                return empty_ok;
        return n == 64 && strspn(v, "0123456789abcdef") == 64;
}

int suspend_record_parse(const char *text, size_t size, SuspendRecord *ret, char **ret_error) {
        SuspendRecord r = {};
        unsigned seen = 0;
        const char *p = text, *end = text + size;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t len = nl ? (size_t) (nl - p) : (size_t) (end - p);
                _cleanup_free_ char *line = strndup(p, len);
                char *eq, *v, *e;
                unsigned bit = 0;

                p += len + (nl ? 1 : 0);
                if (!line)
                        return -ENOMEM;
                if (line[0] == '#' || line[0] == '\0')
                        continue;
                eq = strchr(line, '=');
                if (!eq)
                        return error_setf(ret_error, -EINVAL, "suspend record: line \"%s\" is not KEY=VALUE", line);
                *eq = '\0';
                v = eq + 1;
#define HEX(key, field, empty_ok, b)                                                               \
        else if (streq(line, key)) {                                                               \
                if (!hex64_or_empty(v, empty_ok))                                                  \
                        return error_setf(ret_error, -EINVAL, "suspend record: %s is not a digest", key); \
                strcpy(r.field, v);                                                                \
                bit = b;                                                                           \
        }
#define NUM(key, field, b)                                                                         \
        else if (streq(line, key)) {                                                               \
                errno = 0;                                                                         \
                r.field = strtoull(v, &e, 10);                                                     \
                if (errno != 0 || e == v || *e)                                                    \
                        return error_setf(ret_error, -EINVAL, "suspend record: %s is not a number", key); \
                bit = b;                                                                           \
        }
                if (false) {
                }
                HEX("FIRECRACKER_SHA256", firecracker_sha256, false, 1)
                HEX("KERNEL_SHA256", kernel_sha256, false, 2)
                HEX("INITRD_SHA256", initrd_sha256, true, 4)
                HEX("CONFIG_DIGEST", config_digest, false, 8)
                else if (streq(line, "DRIVES")) {
                        if (strlen(v) >= sizeof r.drives)
                                return error_setf(ret_error, -EINVAL, "suspend record: DRIVES is too long");
                        strcpy(r.drives, v);
                        bit = 16;
                }
                NUM("MEMORY_BYTES", memory_bytes, 32)
                NUM("VMSTATE_BYTES", vmstate_bytes, 64)
                NUM("CREATED_USEC", created_usec, 128)
                else
                        return error_setf(ret_error, -EINVAL, "suspend record: unknown key %s", line);
#undef HEX
#undef NUM
                if (seen & bit)
                        return error_setf(ret_error, -EINVAL, "suspend record: %s given twice", line);
                seen |= bit;
        }
        if (seen != 255)
                return error_setf(ret_error, -EINVAL, "suspend record: incomplete (truncated?)");
        *ret = r;
        return 0;
}

const char *suspend_record_mismatch(const SuspendRecord *saved, const SuspendRecord *now) {
        if (!streq(saved->firecracker_sha256, now->firecracker_sha256))
                return "the firecracker binary changed";
        if (!streq(saved->kernel_sha256, now->kernel_sha256))
                return "the kernel changed";
        if (!streq(saved->initrd_sha256, now->initrd_sha256))
                return "the initrd changed";
        if (!streq(saved->config_digest, now->config_digest))
                return "the VM config changed";
        if (!streq(saved->drives, now->drives))
                return "a drive is not the one the snapshot was taken with";
        return NULL;
}

static int hash_fd(int fd, char out[65]) {
        Sha256 s;
        uint8_t d[SHA256_DIGEST_SIZE];
        static char buf[1 << 16];

        sha256_init(&s);
        for (;;) {
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                sha256_update(&s, buf, (size_t) n);
        }
        sha256_final(&s, d);
        sha256_hex(d, out);
        return 0;
}

static int hash_at(int dir_fd, const char *name, bool optional, char out[65]) {
        _cleanup_close_ int fd = -EBADF;
        int r = safe_open_at(dir_fd, name, O_RDONLY, S_IFREG, &fd);

        if (r == -ENOENT && optional) {
                out[0] = '\0';
                return 0;
        }
        if (r < 0)
                return r;
        return hash_fd(fd, out);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int suspend_identity(int jail_root_fd, const char *exec_file, const char *config_digest, SuspendRecord *ret,
                     char **ret_error) {
        _cleanup_close_ int fd = -EBADF, dfd = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_strv_free_ char **names = NULL;
        SuspendRecord r = {};
        struct dirent *de;
        size_t n = 0;
        int k;

        if (strlen(config_digest) != 64)
                return error_setf(ret_error, -EINVAL, "no config digest");
        strcpy(r.config_digest, config_digest);
        fd = open(exec_file, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || hash_fd(fd, r.firecracker_sha256) < 0)
                return error_setf(ret_error, -errno, "Cannot read %s: %m", exec_file);
        k = hash_at(jail_root_fd, JAIL_KERNEL, false, r.kernel_sha256);
        if (k < 0)
                return error_setf(ret_error, k, "Cannot read the jail's kernel: %m");
        k = hash_at(jail_root_fd, JAIL_INITRD, true, r.initrd_sha256);
        if (k < 0)
                return error_setf(ret_error, k, "Cannot read the jail's initrd: %m");

        dfd = fcntl(jail_root_fd, F_DUPFD_CLOEXEC, 3);
        if (dfd < 0 || !(d = fdopendir(dfd)))
                return error_setf(ret_error, -errno, "Cannot list the jail: %m");
        TAKE_FD(dfd);
        rewinddir(d);
        while ((de = readdir(d))) {
                struct stat st;
                char *line = NULL;

                if (!startswith(de->d_name, JAIL_DRIVE_PREFIX))
                        continue;
                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        return error_setf(ret_error, -errno, "Cannot stat the jail's %s: %m", de->d_name);
                if (S_ISREG(st.st_mode))
                        k = asprintf(&line, "%s file %" PRIu64 " %" PRIu64, de->d_name, (uint64_t) st.st_ino,
                                     (uint64_t) st.st_size);
                else
                        k = asprintf(&line, "%s %s", de->d_name, S_ISBLK(st.st_mode) ? "block" : "other");
                if (k < 0 || strv_push(&names, line) < 0) {
                        free(line);
                        return -ENOMEM;
                }
                free(line);
                n++;
        }
        if (n > 0)
                qsort(names, n, sizeof *names, cmp_str);
        for (size_t i = 0; i < n; i++) {
                size_t used = strlen(r.drives);
                if (used + strlen(names[i]) + 2 >= sizeof r.drives)
                        return error_setf(ret_error, -E2BIG, "too many drives to record");
                if (i > 0)
                        strcat(r.drives, ";");
                strcat(r.drives, names[i]);
        }
        *ret = r;
        return 0;
}

void suspend_abandon(int state_vm_fd, int jail_root_fd) {
        if (state_vm_fd >= 0)
                (void) safe_rm_rf_at(state_vm_fd, SUSPEND_NEW_DIR, 0, NULL, NULL);
        if (jail_root_fd >= 0)
                (void) safe_rm_rf_at(jail_root_fd, JAIL_SUSPEND_DIR, 0, NULL, NULL);
}

/* The jail's /suspend/, root-owned 0711: the VM's uid may open the files
 * linked there (their own mode says it may write them) but not replace or
 * add names. Whatever the VM planted at /suspend goes first. */
static int jail_suspend_dir(int jail_root_fd, int *ret_fd, char **ret_error) {
        int r;

        (void) safe_rm_rf_at(jail_root_fd, JAIL_SUSPEND_DIR, 0, NULL, NULL);
        r = safe_mkdir_at(jail_root_fd, JAIL_SUSPEND_DIR, 0711, 0, 0, 0, ret_fd);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot create /" JAIL_SUSPEND_DIR " in the jail: %m");
        return 0;
}

static int link_pair(int src_dir_fd, int jail_dir_fd, char **ret_error) {
        static const char *const files[] = { SUSPEND_VMSTATE, SUSPEND_MEMORY };

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_close_ int fd = -EBADF;
                int r = safe_open_at(src_dir_fd, files[i], O_PATH, S_IFREG, &fd);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot open the snapshot's %s: %m", files[i]);
                r = safe_link_at(fd, jail_dir_fd, files[i]);
                if (r == -EXDEV)
                        return error_setf(ret_error, r, "Cannot link the snapshot's %s into the jail: the state "
                                          "dir and the chroot base are on different filesystems", files[i]);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot link the snapshot's %s into the jail: %m", files[i]);
        }
        return 0;
}

int suspend_prepare(int state_vm_fd, int jail_root_fd, uid_t uid, gid_t gid, char **ret_error) {
        _cleanup_close_ int dir_fd = -EBADF, jail_fd = -EBADF;
        int r;

        suspend_abandon(state_vm_fd, jail_root_fd);
        /* Root-only: the memory file is the guest's RAM. */
        r = safe_mkdir_at(state_vm_fd, SUSPEND_NEW_DIR, 0700, 0, 0, 0, &dir_fd);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot create " SUSPEND_NEW_DIR "/ in the VM's state dir: %m");
        r = safe_create_file_at(dir_fd, SUSPEND_VMSTATE, 0600, uid, gid, NULL);
        if (r >= 0)
                r = safe_create_file_at(dir_fd, SUSPEND_MEMORY, 0600, uid, gid, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot create the snapshot files: %m");
        r = jail_suspend_dir(jail_root_fd, &jail_fd, ret_error);
        if (r < 0)
                return r;
        return link_pair(dir_fd, jail_fd, ret_error);
}

static int stat_sizes(int dir_fd, uint64_t *ret_vmstate, uint64_t *ret_memory) {
        struct stat a, b;

        if (fstatat(dir_fd, SUSPEND_VMSTATE, &a, AT_SYMLINK_NOFOLLOW) < 0 ||
            fstatat(dir_fd, SUSPEND_MEMORY, &b, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(a.st_mode) || !S_ISREG(b.st_mode))
                return -EBADF;
        *ret_vmstate = (uint64_t) a.st_size;
        *ret_memory = (uint64_t) b.st_size;
        return 0;
}

static int sync_file_at(int dir_fd, const char *name) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

int suspend_commit(int state_vm_fd, SuspendRecord *r, uint64_t memory_bytes, char **ret_error) {
        _cleanup_close_ int dir_fd = -EBADF;
        _cleanup_free_ char *text = NULL;
        int k;

        k = safe_open_dir_at(state_vm_fd, SUSPEND_NEW_DIR, &dir_fd);
        if (k < 0)
                return error_setf(ret_error, k, "Cannot open " SUSPEND_NEW_DIR "/: %m");
        k = stat_sizes(dir_fd, &r->vmstate_bytes, &r->memory_bytes);
        if (k < 0)
                return error_setf(ret_error, k, "The snapshot files are gone: %m");
        if (r->memory_bytes != memory_bytes)
                return error_setf(ret_error, -EBADMSG, "The memory file has %" PRIu64 " bytes, not the guest's %" PRIu64,
                                  r->memory_bytes, memory_bytes);
        if (r->vmstate_bytes == 0)
                return error_setf(ret_error, -EBADMSG, "The state file is empty");
        /* On disk before the record says they are whole. */
        k = sync_file_at(dir_fd, SUSPEND_MEMORY);
        if (k >= 0)
                k = sync_file_at(dir_fd, SUSPEND_VMSTATE);
        if (k < 0)
                return error_setf(ret_error, k, "Cannot sync the snapshot files: %m");
        r->created_usec = now_usec(CLOCK_REALTIME);
        text = suspend_record_serialize(r);
        if (!text)
                return -ENOMEM;
        k = safe_write_file_at(dir_fd, SUSPEND_RECORD, text, strlen(text), 0600, 0, 0, SAFE_WRITE_SYNC);
        if (k < 0)
                return error_setf(ret_error, k, "Cannot write the suspend record: %m");
        if (renameat2(state_vm_fd, SUSPEND_NEW_DIR, state_vm_fd, SUSPEND_DIR, RENAME_NOREPLACE) < 0)
                return error_setf(ret_error, -errno, "Cannot rename " SUSPEND_NEW_DIR "/ to " SUSPEND_DIR "/: %m");
        (void) fsync(state_vm_fd);
        return 0;
}

int suspend_read_record(int state_vm_fd, SuspendRecord *ret, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = safe_read_file_at(state_vm_fd, SUSPEND_DIR "/" SUSPEND_RECORD, RECORD_MAX, &text, &size);
        if (r == -ENOENT && faccessat(state_vm_fd, SUSPEND_DIR, F_OK, AT_SYMLINK_NOFOLLOW) >= 0)
                return error_setf(ret_error, -EBADMSG, "the snapshot has no record");
        if (r < 0)
                return r == -ENOENT ? r : error_setf(ret_error, r, "Cannot read the suspend record: %m");
        return suspend_record_parse(text, size, ret, ret_error);
}

const char *suspend_files_problem(int state_vm_fd, const SuspendRecord *r) {
        _cleanup_close_ int dir_fd = -EBADF;
        uint64_t v, m;

        if (safe_open_dir_at(state_vm_fd, SUSPEND_DIR, &dir_fd) < 0 || stat_sizes(dir_fd, &v, &m) < 0)
                return "a snapshot file is missing";
        if (v != r->vmstate_bytes || m != r->memory_bytes)
                return "a snapshot file is truncated or was changed";
        return NULL;
}

int suspend_move_aside(int state_vm_fd, const char *dir, char **ret_name) {
        _cleanup_free_ char *name = NULL;

        if (asprintf(&name, SUSPEND_INVALID_PREFIX "%" PRIu64, (uint64_t) now_usec(CLOCK_REALTIME)) < 0)
                return -ENOMEM;
        if (renameat2(state_vm_fd, dir, state_vm_fd, name, RENAME_NOREPLACE) < 0)
                return -errno;
        (void) fsync(state_vm_fd);
        if (ret_name)
                *ret_name = TAKE_PTR(name);
        return 0;
}

int suspend_link_into_jail(int state_vm_fd, int jail_root_fd, char **ret_error) {
        _cleanup_close_ int dir_fd = -EBADF, jail_fd = -EBADF;
        int r;

        r = safe_open_dir_at(state_vm_fd, SUSPEND_DIR, &dir_fd);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot open the snapshot: %m");
        r = jail_suspend_dir(jail_root_fd, &jail_fd, ret_error);
        if (r < 0)
                return r;
        return link_pair(dir_fd, jail_fd, ret_error);
}

int suspend_remove(int state_vm_fd, const char *dir) {
        int r = safe_rm_rf_at(state_vm_fd, dir, 0, NULL, NULL);
        if (r < 0)
                return r;
        (void) fsync(state_vm_fd);
        return 0;
}

bool suspend_exists(int state_vm_fd) {
        return faccessat(state_vm_fd, SUSPEND_DIR, F_OK, AT_SYMLINK_NOFOLLOW) >= 0 ||
               faccessat(state_vm_fd, SUSPEND_RESUMING_DIR, F_OK, AT_SYMLINK_NOFOLLOW) >= 0;
}
