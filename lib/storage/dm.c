/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <libdevmapper.h>
#include <linux/dm-ioctl.h>
#include <limits.h>
#include <stdarg.h>
#include <sys/random.h>
#include <sys/sem.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <time.h>

#include "dlopen-util.h"
#include "util.h"
#include "dm.h"
#include "storage-util.h"

/* libdevmapper's log levels (lib/log/log.h in lvm2). */
#define DM_LOG_LEVEL_MASK 0x0f
#define DM_LOG_ERR 3

#define UDEV_CONTROL_SOCKET "/run/udev/control"

/* libdevmapper, loaded on first use (lib/basic/dlopen-util.h). */
#define LIBDEVMAPPER_SONAME "libdevmapper.so.1.02.1"
static void *libdevmapper;
static char *libdevmapper_error;
DLSYM_PROTOTYPE(dm_get_next_target);
DLSYM_PROTOTYPE(dm_lib_release);
DLSYM_PROTOTYPE(dm_log_with_errno_init);
DLSYM_PROTOTYPE(dm_mknodes);
DLSYM_PROTOTYPE(dm_task_add_target);
DLSYM_PROTOTYPE(dm_task_create);
DLSYM_PROTOTYPE(dm_task_destroy);
DLSYM_PROTOTYPE(dm_task_get_deps);
DLSYM_PROTOTYPE(dm_task_get_errno);
DLSYM_PROTOTYPE(dm_task_get_info);
DLSYM_PROTOTYPE(dm_task_get_message_response);
DLSYM_PROTOTYPE(dm_task_get_name);
DLSYM_PROTOTYPE(dm_task_get_names);
DLSYM_PROTOTYPE(dm_task_get_uuid);
DLSYM_PROTOTYPE(dm_task_get_versions);
DLSYM_PROTOTYPE(dm_task_retry_remove);
DLSYM_PROTOTYPE(dm_task_run);
DLSYM_PROTOTYPE(dm_task_set_cookie);
DLSYM_PROTOTYPE(dm_task_set_message);
DLSYM_PROTOTYPE(dm_task_set_name);
DLSYM_PROTOTYPE(dm_task_set_ro);
DLSYM_PROTOTYPE(dm_task_set_sector);
DLSYM_PROTOTYPE(dm_task_set_uuid);
DLSYM_PROTOTYPE(dm_udev_complete);
DLSYM_PROTOTYPE(dm_udev_get_sync_support);
DLSYM_PROTOTYPE(dm_udev_set_sync_support);
DLSYM_PROTOTYPE(dm_udev_wait);
DLSYM_PROTOTYPE(dm_udev_wait_immediate);
#if HAVE_DM_TASK_DEFERRED_REMOVE
DLSYM_PROTOTYPE(dm_task_deferred_remove);
#endif

static bool dm_initialized;
static DmUdevMode dm_udev_mode = DM_UDEV_AUTO;
static char dm_udev_notice_buf[256];
static usec_t dm_ioctl_usec_total;

/* What libdevmapper logged at error level during the current call, and
 * errno at the first such message (libdevmapper logs a failed ioctl right
 * after it; its own error code is lost when it cleans up, e.g. after a
 * failed table load inside DM_DEVICE_CREATE). */
static char dm_log_buf[1024];
static size_t dm_log_len;
static int dm_log_errno;

static inline void dm_task_destroyp(struct dm_task **t) {
        if (*t)
                sym_dm_task_destroy(*t);
}
#define _cleanup_dm_task_ _cleanup_(dm_task_destroyp)

static void dm_log_capture(int level, const char *file, int line, int dm_errno_or_class, const char *f, ...)
        _printf_(5, 6);
static void dm_log_capture(int level, const char *file, int line, int dm_errno_or_class, const char *f, ...) {
        int saved_errno = errno;
        char msg[512];
        va_list ap;
        int n;

        if ((level & DM_LOG_LEVEL_MASK) > DM_LOG_ERR)
                return;
        if (dm_log_errno == 0 && saved_errno > 0)
                dm_log_errno = saved_errno;
        va_start(ap, f);
        n = vsnprintf(msg, sizeof msg, f, ap);
        va_end(ap);
        if (n <= 0)
                return;
        n = snprintf(dm_log_buf + dm_log_len, sizeof dm_log_buf - dm_log_len, "%s%s", dm_log_len ? "; " : "", msg);
        if (n > 0)
                dm_log_len = MIN(dm_log_len + (size_t) n, sizeof dm_log_buf - 1);
}

static void dm_log_reset(void) {
        dm_log_len = 0;
        dm_log_buf[0] = '\0';
        dm_log_errno = 0;
}

/* " (what libdevmapper said)" or "". */
static const char *dm_log_suffix(char *buf, size_t size) {
        int n;

        if (dm_log_len == 0 || size < 4)
                return "";
        /* Truncation is fine: a long libdevmapper message is still useful. */
        n = snprintf(buf, size, " (%.*s)", (int) (size - 4), dm_log_buf);
        (void) n;
        return buf;
}

/* ---- udev ------------------------------------------------------------------ */

static bool udev_rules_installed(void) {
        static const char *const dirs[] = { "/etc/udev/rules.d", "/run/udev/rules.d", "/usr/lib/udev/rules.d",
                                            "/lib/udev/rules.d", "/usr/local/lib/udev/rules.d" };
        char p[128];

        /* Without the rule that runs "dmsetup udevcomplete", a cookie is
         * never completed: waiting for it would hang. */
        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                snprintf(p, sizeof p, "%s/95-dm-notify.rules", dirs[i]);
                if (access(p, F_OK) >= 0)
                        return true;
        }
        return false;
}

static bool udev_running(void) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        const char *e;
        struct stat st;

        e = getenv("DM_DISABLE_UDEV");
        if (e && *e)
                return false;
        if (lstat(UDEV_CONTROL_SOCKET, &st) < 0 || !S_ISSOCK(st.st_mode))
                return false;
        /* A socket file alone may be stale (a container with the host's
         * /run, a crashed udevd): someone must be listening on it. */
        fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return false;
        strcpy(sa.sun_path, UDEV_CONTROL_SOCKET);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS && errno != EAGAIN)
                return false;
        return udev_rules_installed();
}

static int dm_load(void) {
        if (libdevmapper)
                return 0;
        free(libdevmapper_error);
        libdevmapper_error = NULL;
        return dlopen_many(&libdevmapper, LIBDEVMAPPER_SONAME, &libdevmapper_error,
                           DLSYM_ARG(dm_get_next_target),
                           DLSYM_ARG(dm_lib_release),
                           DLSYM_ARG(dm_log_with_errno_init),
                           DLSYM_ARG(dm_mknodes),
                           DLSYM_ARG(dm_task_add_target),
                           DLSYM_ARG(dm_task_create),
                           DLSYM_ARG(dm_task_destroy),
                           DLSYM_ARG(dm_task_get_deps),
                           DLSYM_ARG(dm_task_get_errno),
                           DLSYM_ARG(dm_task_get_info),
                           DLSYM_ARG(dm_task_get_message_response),
                           DLSYM_ARG(dm_task_get_name),
                           DLSYM_ARG(dm_task_get_names),
                           DLSYM_ARG(dm_task_get_uuid),
                           DLSYM_ARG(dm_task_get_versions),
                           DLSYM_ARG(dm_task_retry_remove),
                           DLSYM_ARG(dm_task_run),
                           DLSYM_ARG(dm_task_set_cookie),
                           DLSYM_ARG(dm_task_set_message),
                           DLSYM_ARG(dm_task_set_name),
                           DLSYM_ARG(dm_task_set_ro),
                           DLSYM_ARG(dm_task_set_sector),
                           DLSYM_ARG(dm_task_set_uuid),
                           DLSYM_ARG(dm_udev_complete),
                           DLSYM_ARG(dm_udev_get_sync_support),
                           DLSYM_ARG(dm_udev_set_sync_support),
                           DLSYM_ARG(dm_udev_wait),
                           DLSYM_ARG(dm_udev_wait_immediate),
#if HAVE_DM_TASK_DEFERRED_REMOVE
                           DLSYM_ARG(dm_task_deferred_remove),
#endif
                           NULL);
}

/* Loads libdevmapper and sets it up; -ELIBACC/-ELIBBAD when it cannot be
 * loaded (dm_load_error() says why). */
static int dm_init(void) {
        int r;

        if (dm_initialized)
                return 0;
        r = dm_load();
        if (r < 0)
                return r;
        dm_initialized = true;
        sym_dm_log_with_errno_init(dm_log_capture);
        if (dm_udev_mode == DM_UDEV_AUTO)
                dm_udev_mode = udev_running() ? DM_UDEV_SYNC : DM_UDEV_NONE;
        sym_dm_udev_set_sync_support(dm_udev_mode == DM_UDEV_SYNC);
        /* libdevmapper has its own conditions (built with udev sync, SysV
         * semaphores, its view of udev): if it will not synchronise, we must
         * not tell it to leave the nodes to udev either. */
        if (dm_udev_mode == DM_UDEV_SYNC && !sym_dm_udev_get_sync_support()) {
                dm_udev_mode = DM_UDEV_NONE;
                sym_dm_udev_set_sync_support(0);
        }
        return 0;
}

const char *dm_load_error(void) {
        return libdevmapper_error;
}

void dm_set_udev_mode(DmUdevMode m) {
        dm_udev_mode = m;
        if (dm_initialized) {
                if (m == DM_UDEV_AUTO)
                        dm_udev_mode = udev_running() ? DM_UDEV_SYNC : DM_UDEV_NONE;
                sym_dm_udev_set_sync_support(dm_udev_mode == DM_UDEV_SYNC);
        }
}

DmUdevMode dm_get_udev_mode(void) {
        (void) dm_init(); /* unloaded: still "auto" */
        return dm_udev_mode;
}

const char *dm_udev_mode_to_string(DmUdevMode m) {
        switch (m) {
        case DM_UDEV_AUTO:
                return "auto";
        case DM_UDEV_SYNC:
                return "udev";
        case DM_UDEV_NONE:
                return "no udev";
        }
        return NULL;
}

const char *dm_udev_notice(void) {
        return dm_udev_notice_buf[0] ? dm_udev_notice_buf : NULL;
}

static int task_set_cookie(struct dm_task *t, uint32_t *cookie, uint16_t flags) {
        *cookie = 0;
        /* With udev, udev alone makes the nodes (the library fallback
         * would race it); without, the library does. */
        if (dm_udev_mode == DM_UDEV_SYNC)
                flags |= DM_UDEV_DISABLE_LIBRARY_FALLBACK;
        if (!sym_dm_task_set_cookie(t, cookie, flags))
                return -EIO;
        return 0;
}

/* libdevmapper's DM_COOKIE_MAGIC, the upper 16 bits of every cookie key. */
#define DM_COOKIE_KEY_MAGIC 0x0D4DU

union semun_compat {
        int val;
        struct semid_ds *buf;
        unsigned short *array;
        struct seminfo *info;
};

int dm_udev_cookies_reclaim(usec_t min_age) {
        union semun_compat arg;
        struct seminfo info;
        time_t now = time(NULL);
        int max, removed = 0;

        arg.info = &info;
        max = semctl(0, 0, SEM_INFO, arg);
        if (max < 0)
                return -errno;
        for (int i = 0; i <= max; i++) {
                struct semid_ds ds;
                time_t changed;
                int semid, val;

                arg.buf = &ds;
                semid = semctl(i, 0, SEM_STAT, arg);
                if (semid < 0)
                        continue;
                if (((uint32_t) ds.sem_perm.__key >> 16) != DM_COOKIE_KEY_MAGIC || ds.sem_nsems != 1 ||
                    ds.sem_perm.uid != 0)
                        continue;
                val = semctl(semid, 0, GETVAL);
                if (val != 0)
                        continue; /* udev has not completed it: not ours to judge */
                changed = MAX(ds.sem_otime, ds.sem_ctime);
                if (now < changed || (usec_t) (now - changed) * USEC_PER_SEC < min_age)
                        continue;
                if (semctl(semid, 0, IPC_RMID) >= 0)
                        removed++;
        }
        return removed;
}

static void wait_cookie(uint32_t cookie, const char *name) {
        usec_t deadline;
        int ready = 0;

        if (dm_udev_mode != DM_UDEV_SYNC || cookie == 0) {
                /* Runs libdevmapper's pending node operations. */
                (void) sym_dm_udev_wait(cookie);
                return;
        }
        deadline = now_usec(CLOCK_MONOTONIC) + DM_UDEV_WAIT_TIMEOUT;
        for (unsigned attempt = 0;; attempt++) {
                if (!sym_dm_udev_wait_immediate(cookie, &ready) || ready)
                        return;
                if (now_usec(CLOCK_MONOTONIC) >= deadline)
                        break;
                sleep_usec(backoff_delay(attempt, 500, 50 * USEC_PER_MSEC, random_u64()));
        }
        /* udev did not answer: complete the cookie ourselves (so that the
         * semaphore goes away) and stop waiting for udev from now on. */
        (void) sym_dm_udev_complete(cookie);
        (void) sym_dm_udev_wait(cookie);
        snprintf(dm_udev_notice_buf, sizeof dm_udev_notice_buf,
                 "udev did not confirm device-mapper device %s within %u s; continuing without udev synchronisation (is systemd-udevd processing events? are the dm udev rules installed?)",
                 name, (unsigned) (DM_UDEV_WAIT_TIMEOUT / USEC_PER_SEC));
        dm_udev_mode = DM_UDEV_NONE;
        sym_dm_udev_set_sync_support(0);
}

static int task_run(struct dm_task *t) {
        usec_t t0 = now_usec(CLOCK_MONOTONIC);
        int ok, e;

        dm_log_reset();
        errno = 0;
        ok = sym_dm_task_run(t);
        dm_ioctl_usec_total += now_usec(CLOCK_MONOTONIC) - t0;
        if (ok)
                return 0;
        e = sym_dm_task_get_errno(t);
        if (e <= 0)
                e = dm_log_errno;
        return e > 0 ? -e : -EIO;
}

/* A task of type on device name (NULL: none, a listing), run: *ret to
 * destroy either way. */
static int task_new_run(int type, const char *name, struct dm_task **ret) {
        int r = dm_init();

        if (r < 0)
                return r;
        *ret = sym_dm_task_create(type);
        if (!*ret || (name && !sym_dm_task_set_name(*ret, name)))
                return -ENOMEM;
        return task_run(*ret);
}

usec_t dm_kernel_usec(void) {
        return dm_ioctl_usec_total;
}

void dm_release(void) {
        if (dm_initialized)
                sym_dm_lib_release();
}

/* ---- availability --------------------------------------------------------- */

int dm_check_available(char **ret_error) {
        if (access("/dev/mapper/control", F_OK) >= 0 || access("/sys/class/misc/device-mapper", F_OK) >= 0)
                return 0;
        return error_setf(ret_error, ENODEV,
                         "The kernel has no device-mapper support (no /dev/mapper/control): load the module dm_mod (modprobe dm_mod)");
}

int dm_list_targets(char ***ret, size_t *ret_n) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        _cleanup_strv_free_ char **l = NULL;
        struct dm_versions *v, *last;
        size_t n = 0;
        int r;

        r = task_new_run(DM_DEVICE_LIST_VERSIONS, NULL, &t);
        if (r < 0)
                return r;
        v = sym_dm_task_get_versions(t);
        if (v)
                do {
                        last = v;
                        r = strv_push(&l, v->name);
                        if (r < 0)
                                return r;
                        n++;
                        v = (struct dm_versions *) ((char *) v + v->next);
                } while (last != v);
        if (!l) {
                l = calloc(1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        if (ret_n)
                *ret_n = n;
        return 0;
}

int dm_targets_check(const char *const *want, char **ret_error) {
        _cleanup_strv_free_ char **have = NULL;
        _cleanup_free_ char *msg = NULL;
        char buf[600];
        size_t n = 0;
        int r;

        r = dm_check_available(ret_error);
        if (r < 0)
                return r;
        r = dm_list_targets(&have, &n);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to list the kernel's device-mapper targets: %m%s",
                                 dm_log_suffix(buf, sizeof buf));
        r = dm_targets_missing(have, n, want, ret_error ? &msg : NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to compare device-mapper targets: %m");
        if (r > 0) {
                if (ret_error)
                        *ret_error = TAKE_PTR(msg);
                return -EOPNOTSUPP;
        }
        return 0;
}

/* ---- devices ----------------------------------------------------------------- */

int dm_create(const char *name, const char *uuid, const DmTarget *targets, size_t n_targets, DmCreateFlags flags,
              dev_t *ret_devnum, char **ret_error) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        struct dm_info info = {};
        uint32_t cookie = 0;
        char buf[1200];
        int r;

        r = dm_init();
        if (r < 0)
                return error_setf(ret_error, -r, "%s", strna(dm_load_error()));
        t = sym_dm_task_create(DM_DEVICE_CREATE);
        if (!t || !sym_dm_task_set_name(t, name) || (uuid && !sym_dm_task_set_uuid(t, uuid)))
                return error_setf(ret_error, ENOMEM, "Failed to prepare the creation of device-mapper device %s", name);
        if ((flags & DM_CREATE_READ_ONLY) && !sym_dm_task_set_ro(t))
                return error_setf(ret_error, ENOMEM, "Failed to prepare the creation of device-mapper device %s", name);
        for (size_t i = 0; i < n_targets; i++)
                if (!sym_dm_task_add_target(t, targets[i].start, targets[i].length, targets[i].type, targets[i].params))
                        return error_setf(ret_error, ENOMEM, "Failed to add a %s target to device-mapper device %s",
                                         targets[i].type, name);
        r = task_set_cookie(t, &cookie,
                            flags & DM_CREATE_NO_PROBE ? DM_UDEV_DISABLE_DISK_RULES_FLAG | DM_UDEV_DISABLE_OTHER_RULES_FLAG : 0);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to set up a udev cookie for device-mapper device %s", name);
        r = task_run(t);
        if (r >= 0 && (!sym_dm_task_get_info(t, &info) || !info.exists))
                r = -ENXIO;
        /* Also after a failure: libdevmapper completed the cookie itself,
         * and the wait releases its semaphore. */
        wait_cookie(cookie, name);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to create device-mapper device %s (%s %s): %m%s", name,
                                 n_targets > 0 ? targets[0].type : "no target", n_targets > 0 ? targets[0].params : "",
                                 dm_log_suffix(buf, sizeof buf));
        if (ret_devnum)
                *ret_devnum = makedev(info.major, info.minor);
        return 0;
}

int dm_open_device(const char *name, dev_t devnum, int flags, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        char path[PATH_MAX];
        struct stat st;

        snprintf(path, sizeof path, "/dev/dm-%u", minor(devnum));
        fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0 && errno == ENOENT && name) {
                /* /dev without devtmpfs: the node libdevmapper made. */
                snprintf(path, sizeof path, "/dev/mapper/%s", name);
                fd = open(path, flags | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
        }
        if (fd < 0)
                return error_setf(ret_error, errno, "Failed to open %s (device-mapper device %s): %m", path,
                                 strna(name));
        if (fstat(fd, &st) < 0)
                return error_setf(ret_error, errno, "Failed to stat %s: %m", path);
        if (!S_ISBLK(st.st_mode) || st.st_rdev != devnum) {
                char a[DEVNUM_STR_MAX], b[DEVNUM_STR_MAX];
                return error_setf(ret_error, ESTALE, "%s is %s%s, not device-mapper device %s (%s)", path,
                                 S_ISBLK(st.st_mode) ? "block device " : "not a block device",
                                 S_ISBLK(st.st_mode) ? format_devnum(st.st_rdev, a) : "", strna(name),
                                 format_devnum(devnum, b));
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void info_from_task(struct dm_task *t, const struct dm_info *i, DmInfo *ret) {
        const char *s;

        *ret = (DmInfo) {
                .exists = i->exists,
                .devnum = makedev(i->major, i->minor),
                .open_count = i->open_count,
                .target_count = i->target_count,
                .suspended = i->suspended,
                .live_table = i->live_table,
                .deferred_remove = i->deferred_remove,
        };
        s = sym_dm_task_get_name(t);
        snprintf(ret->name, sizeof ret->name, "%s", strempty(s));
        s = sym_dm_task_get_uuid(t);
        snprintf(ret->uuid, sizeof ret->uuid, "%s", strempty(s));
}

int dm_get_info(const char *name, const char *uuid, DmInfo *ret) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        struct dm_info i = {};
        int r;

        if (!!name == !!uuid)
                return -EINVAL;
        r = dm_init();
        if (r < 0)
                return r;
        t = sym_dm_task_create(DM_DEVICE_INFO);
        if (!t || (name && !sym_dm_task_set_name(t, name)) || (uuid && !sym_dm_task_set_uuid(t, uuid)))
                return -ENOMEM;
        r = task_run(t);
        if (r < 0)
                return r;
        if (!sym_dm_task_get_info(t, &i))
                return -EIO;
        if (!i.exists) {
                *ret = (DmInfo) {};
                return 0;
        }
        info_from_task(t, &i, ret);
        return 0;
}

static int get_single_target(int type, const char *name, char **ret_type, char **ret_params, uint64_t *ret_length) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        _cleanup_free_ char *ty = NULL, *pa = NULL;
        struct dm_info i = {};
        uint64_t start, length;
        char *target_type = NULL, *params = NULL;
        void *next;
        int r;

        r = task_new_run(type, name, &t);
        if (r < 0)
                return r;
        if (!sym_dm_task_get_info(t, &i) || !i.exists)
                return -ENXIO;
        next = sym_dm_get_next_target(t, NULL, &start, &length, &target_type, &params);
        if (!target_type)
                return -ENODATA;        /* no live table */
        if (next)
                return -E2BIG;
        ty = strdup(target_type);
        pa = strdup(strempty(params));
        if (!ty || !pa)
                return -ENOMEM;
        if (ret_type)
                *ret_type = TAKE_PTR(ty);
        if (ret_params)
                *ret_params = TAKE_PTR(pa);
        if (ret_length)
                *ret_length = length;
        return 0;
}

int dm_get_table(const char *name, char **ret_type, char **ret_params, uint64_t *ret_length) {
        return get_single_target(DM_DEVICE_TABLE, name, ret_type, ret_params, ret_length);
}

int dm_get_status(const char *name, char **ret_type, char **ret_status, uint64_t *ret_length) {
        return get_single_target(DM_DEVICE_STATUS, name, ret_type, ret_status, ret_length);
}

int dm_message(const char *name, const char *message, char **ret_response, char **ret_error) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        char buf[1200];
        const char *resp;
        int r;

        r = dm_init();
        if (r < 0)
                return error_setf(ret_error, -r, "%s", strna(dm_load_error()));
        t = sym_dm_task_create(DM_DEVICE_TARGET_MSG);
        if (!t || !sym_dm_task_set_name(t, name) || !sym_dm_task_set_sector(t, 0) || !sym_dm_task_set_message(t, message))
                return error_setf(ret_error, ENOMEM, "Failed to prepare message \"%s\" to %s", message, name);
        r = task_run(t);
        if (r < 0)
                return error_setf(ret_error, r, "Message \"%s\" to device-mapper device %s failed: %m%s", message, name,
                                 dm_log_suffix(buf, sizeof buf));
        if (ret_response) {
                resp = sym_dm_task_get_message_response(t);
                *ret_response = strdup(strempty(resp));
                if (!*ret_response)
                        return -ENOMEM;
        }
        return 0;
}

char *dm_holders_describe(dev_t devnum) {
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_free_ char *s = NULL;
        char path[PATH_MAX];
        struct dirent *de;
        size_t len = 0;

        snprintf(path, sizeof path, "/sys/dev/block/%u:%u/holders", major(devnum), minor(devnum));
        d = opendir(path);
        if (d)
                while ((de = readdir(d))) {
                        char name[160] = "", item[256], *grown;
                        _cleanup_close_ int fd = -EBADF;
                        int n;

                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof path, "/sys/block/%s/dm/name", de->d_name);
                        fd = open(path, O_RDONLY | O_CLOEXEC);
                        if (fd >= 0) {
                                ssize_t k = read(fd, name, sizeof name - 1);
                                if (k > 0) {
                                        name[k] = '\0';
                                        name[strcspn(name, "\n")] = '\0';
                                }
                        }
                        n = snprintf(item, sizeof item, "%s%s%s%s%s", len ? ", " : "", de->d_name, name[0] ? " (" : "",
                                     name, name[0] ? ")" : "");
                        if (n < 0)
                                continue;
                        grown = realloc(s, len + (size_t) n + 1);
                        if (!grown)
                                return NULL;
                        s = grown;
                        memcpy(s + len, item, (size_t) n + 1);
                        len += (size_t) n;
                }
        return s ? TAKE_PTR(s) : strdup("none");
}

static int remove_task(const char *uuid, const char *name, bool deferred, bool retry) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        uint32_t cookie = 0;
        int r;

        t = sym_dm_task_create(DM_DEVICE_REMOVE);
        if (!t || !sym_dm_task_set_uuid(t, uuid))
                return -ENOMEM;
        /* Retries EBUSY for a while (udev's blkid and the like open new
         * devices briefly): 25 × 200 ms inside libdevmapper. */
        if (retry && !sym_dm_task_retry_remove(t))
                return -ENOMEM;
        if (deferred) {
#if HAVE_DM_TASK_DEFERRED_REMOVE
                if (!sym_dm_task_deferred_remove(t))
                        return -ENOMEM;
#else
                return -EOPNOTSUPP;
#endif
        }
        r = task_set_cookie(t, &cookie, DM_UDEV_DISABLE_DISK_RULES_FLAG | DM_UDEV_DISABLE_OTHER_RULES_FLAG);
        if (r < 0)
                return r;
        r = task_run(t);
        wait_cookie(cookie, name);
        /* libdevmapper removes the /dev/mapper node it made only when the
         * device is removed by name; we remove by UUID. Without udev, drop
         * the stale node with a MKNODES of the name (it removes the node of
         * a device that no longer exists). With udev, udev removes it. */
        if (r >= 0 && !deferred && dm_udev_mode == DM_UDEV_NONE && name)
                (void) sym_dm_mknodes(name);
        return r;
}

static int busy_message(char **ret_message, int r, const DmInfo *i, const char *what) {
        _cleanup_free_ char *holders = dm_holders_describe(i->devnum);

        return error_setf(ret_message, r,
                         "device-mapper device %s (dm-%u, %u:%u) is still open (open count %d; holders: %s): %s",
                         i->name, minor(i->devnum), major(i->devnum), minor(i->devnum), i->open_count,
                         strna(holders), what);
}

int dm_remove(const char *uuid, DmRemoveFlags flags, char **ret_message) {
        DmInfo i = {};
        usec_t deadline;
        char buf[1200];
        int r;

        r = dm_init();
        if (r < 0)
                return error_setf(ret_message, -r, "%s", strna(dm_load_error()));
        r = dm_get_info(NULL, uuid, &i);
        if (r < 0)
                return error_setf(ret_message, r, "Failed to look up device-mapper device with UUID %s: %m", uuid);
        if (!i.exists)
                return DM_REMOVE_ABSENT;

        /* Give transient openers a moment before anything else. */
        deadline = now_usec(CLOCK_MONOTONIC) + DM_REMOVE_BUSY_WAIT;
        for (unsigned attempt = 0; i.open_count > 0 && now_usec(CLOCK_MONOTONIC) < deadline; attempt++) {
                sleep_usec(backoff_delay(attempt, 2 * USEC_PER_MSEC, 200 * USEC_PER_MSEC, random_u64()));
                r = dm_get_info(NULL, uuid, &i);
                if (r < 0)
                        return error_setf(ret_message, r, "Failed to look up device-mapper device with UUID %s: %m",
                                         uuid);
                if (!i.exists)
                        return DM_REMOVE_DONE;  /* someone else removed it (a deferred removal) */
        }

        if (i.open_count == 0) {
                r = remove_task(uuid, i.name, false, true);
                if (r >= 0)
                        return DM_REMOVE_DONE;
                if (r == -ENXIO)
                        return DM_REMOVE_DONE;
                if (r != -EBUSY)
                        return error_setf(ret_message, r, "Failed to remove device-mapper device %s: %m%s", i.name,
                                         dm_log_suffix(buf, sizeof buf));
                r = dm_get_info(NULL, uuid, &i);
                if (r < 0 || !i.exists)
                        return r < 0 ? r : DM_REMOVE_DONE;
        }

        if (!(flags & DM_REMOVE_DEFERRED))
                return busy_message(ret_message, EBUSY, &i, "not removed");
        r = remove_task(uuid, i.name, true, false);
        if (r < 0) {
                if (r == -EOPNOTSUPP)
                        return busy_message(ret_message, EBUSY, &i,
                                            "not removed (this libdevmapper has no deferred removal)");
                return error_setf(ret_message, r, "Failed to schedule the deferred removal of device-mapper device %s: %m%s",
                                 i.name, dm_log_suffix(buf, sizeof buf));
        }
        r = dm_get_info(NULL, uuid, &i);
        if (r >= 0 && !i.exists)
                return DM_REMOVE_DONE;  /* it was closed meanwhile: gone */
        busy_message(ret_message, EBUSY, &i,
                     "deferred removal scheduled, the kernel removes it when its last user closes it");
        return DM_REMOVE_SCHEDULED;
}

static void dm_device_clear(DmDevice *d) {
        free(d->name);
        free(d->uuid);
        free(d->deps);
        *d = (DmDevice) {};
}

void dm_devices_free(DmDevice *l, size_t n) {
        for (size_t i = 0; i < n; i++)
                dm_device_clear(&l[i]);
        free(l);
}

/* libdevmapper's dm_deps entries are the kernel's huge_encode_dev(). */
static dev_t decode_dep(uint64_t d) {
        return makedev((unsigned) ((d & 0xfff00) >> 8), (unsigned) ((d & 0xff) | ((d >> 12) & 0xfff00)));
}

/* Kernels >= 5.14 append event_nr, flags and the UUID to each entry of the
 * name list (after the name's NUL, 8-byte aligned): with it, devices that
 * are not ours need no ioctl of their own. NULL when the kernel did not
 * say (then the UUID is looked up per device). */
static const char *names_entry_uuid(const struct dm_names *n) {
        const char *p = n->name + strlen(n->name) + 1;
        uintptr_t a = ((uintptr_t) p + 7) & ~(uintptr_t) 7;
        uint32_t flags;

        /* The entry must be long enough to hold what follows the name. */
        if (n->next != 0 && (uintptr_t) n + n->next < a + 8)
                return NULL;
        memcpy(&flags, (const char *) a + 4, sizeof flags);
        if (!(flags & DM_NAME_LIST_FLAG_HAS_UUID))
                return NULL;
        return (const char *) a + 8;
}

static int fill_device(const char *name, const char *uuid_prefix, DmDevice *ret) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        struct dm_info i = {};
        struct dm_deps *deps;
        const char *uuid;
        int r;

        r = task_new_run(DM_DEVICE_DEPS, name, &t);
        if (r < 0)
                return r;
        if (!sym_dm_task_get_info(t, &i) || !i.exists)
                return -ENXIO;
        uuid = strempty(sym_dm_task_get_uuid(t));
        if (uuid_prefix && !startswith(uuid, uuid_prefix))
                return 0;
        *ret = (DmDevice) {
                .name = strdup(name),
                .uuid = strdup(uuid),
                .devnum = makedev(i.major, i.minor),
                .open_count = i.open_count,
                .deferred_remove = i.deferred_remove,
        };
        if (!ret->name || !ret->uuid)
                return -ENOMEM;
        deps = sym_dm_task_get_deps(t);
        if (deps && deps->count > 0) {
                ret->deps = calloc(deps->count, sizeof(dev_t));
                if (!ret->deps)
                        return -ENOMEM;
                for (uint32_t k = 0; k < deps->count; k++)
                        ret->deps[k] = decode_dep(deps->device[k]);
                ret->n_deps = deps->count;
        }
        return 1;
}

int dm_list(const char *uuid_prefix, DmDevice **ret, size_t *ret_n) {
        _cleanup_dm_task_ struct dm_task *t = NULL;
        _cleanup_free_ DmNode *nodes = NULL;
        _cleanup_free_ size_t *order = NULL;
        DmDevice *list = NULL, *sorted;
        struct dm_names *names;
        size_t n = 0;
        unsigned next = 0;
        int r;

        r = task_new_run(DM_DEVICE_LIST, NULL, &t);
        if (r < 0)
                return r;
        names = sym_dm_task_get_names(t);
        if (names && names->dev)
                do {
                        DmDevice d = {}, *grown;

                        const char *listed_uuid;

                        names = (struct dm_names *) ((char *) names + next);
                        listed_uuid = names_entry_uuid(names);
                        if (uuid_prefix && listed_uuid && !startswith(listed_uuid, uuid_prefix)) {
                                next = names->next;
                                continue;
                        }
                        r = fill_device(names->name, uuid_prefix, &d);
                        if (r == -ENXIO || r == 0) {
                                /* Gone since the listing, or not selected. */
                                dm_device_clear(&d);
                                next = names->next;
                                continue;
                        }
                        if (r < 0) {
                                dm_device_clear(&d);
                                dm_devices_free(list, n);
                                return r;
                        }
                        grown = realloc(list, (n + 1) * sizeof *list);
                        if (!grown) {
                                dm_device_clear(&d);
                                dm_devices_free(list, n);
                                return -ENOMEM;
                        }
                        list = grown;
                        list[n++] = d;
                        next = names->next;
                } while (next);

        if (n > 1) {
                nodes = calloc(n, sizeof *nodes);
                order = calloc(n, sizeof *order);
                sorted = calloc(n, sizeof *sorted);
                if (!nodes || !order || !sorted) {
                        free(sorted);
                        dm_devices_free(list, n);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n; i++)
                        nodes[i] = (DmNode) { list[i].devnum, list[i].deps, list[i].n_deps };
                dm_order_leaf_first(nodes, n, order);
                for (size_t i = 0; i < n; i++)
                        sorted[i] = list[order[i]];
                free(list);
                list = sorted;
        }
        *ret = list;
        *ret_n = n;
        return 0;
}
