/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Device-mapper through libdevmapper (no dmsetup): create, message,
 * inspect, list and remove devices.
 *
 * udev. With udev running (its control socket /run/udev/control accepts
 * a connection and the dm rules that complete cookies, 95-dm-notify.rules,
 * are installed), create and remove carry a udev cookie with
 * DM_UDEV_DISABLE_LIBRARY_FALLBACK, as lvm2 and cryptsetup do: udev makes
 * the /dev/mapper links and we wait for it — but bounded
 * (DM_UDEV_WAIT_TIMEOUT, polling dm_udev_wait_immediate()); if udev does
 * not answer in time, the cookie is released, udev sync is switched off
 * for the rest of the process and dm_udev_notice() says so. Without udev
 * (containers, early boot, the dmvm test guest) udev sync is off
 * (dm_udev_set_sync_support(0)) and libdevmapper creates and removes the
 * /dev/mapper nodes itself: nothing ever waits for a udev that is not
 * there. We never need those nodes: devices are opened as /dev/dm-N from
 * the major:minor the kernel reports, and checked by st_rdev.
 * libdevmapper's own DM_DISABLE_UDEV=1 is honoured as "no udev".
 *
 * Logging. libdevmapper's log goes into a buffer, never to stderr; error
 * messages it produced during a failed call are appended to our
 * *ret_error ("... (device-mapper: reload ioctl on X failed: ...)").
 *
 * Removal (dm_remove) is by UUID — names can be reused by anyone, our
 * UUIDs (MICROVM-<id>-<drive>) cannot — and never touches a device whose
 * UUID differs. A device that is still open is waited for briefly
 * (DM_REMOVE_BUSY_WAIT, for transient openers such as udev's blkid or a
 * VMM that is just exiting), then removed with dm_task_retry_remove();
 * if it stays open, it is either handed to the kernel's deferred removal
 * (DM_REMOVE_DEFERRED: removed when its last opener closes it) or left
 * with -EBUSY; either way the message names the device, its open count
 * and its holders (/sys/block/dm-N/holders).
 *
 * Conventions: 0/positive on success, -errno on failure, ret_* written on
 * success only, *ret_error (optional) names the device and the cause.
 * Nothing here logs or runs a program. Not thread-safe (libdevmapper is
 * not). */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define DM_UDEV_WAIT_TIMEOUT (5 * USEC_PER_SEC)
#define DM_REMOVE_BUSY_WAIT (1 * USEC_PER_SEC)

typedef enum DmUdevMode {
        DM_UDEV_AUTO,           /* detect at first use */
        DM_UDEV_SYNC,           /* cookies, udev makes the nodes */
        DM_UDEV_NONE,           /* no udev: libdevmapper makes the nodes */
} DmUdevMode;

/* Overrides the detection; call before any other dm_* function. */
void dm_set_udev_mode(DmUdevMode m);
/* The mode in effect (SYNC or NONE), detecting it if needed. */
DmUdevMode dm_get_udev_mode(void);
const char *dm_udev_mode_to_string(DmUdevMode m) _const_;
/* NULL, or what happened to udev sync in this process ("udev did not
 * confirm ... within 5 s; continuing without udev"). */
const char *dm_udev_notice(void);

/* 0 if the kernel has device-mapper (/dev/mapper/control or the misc
 * device in sysfs), else -ENODEV with a message naming the module. */
int dm_check_available(char **ret_error);
/* libdevmapper is loaded on the first call that needs it; when it cannot
 * be, those calls fail with -ELIBACC (not installed) or -ELIBBAD (too old)
 * and this says why, naming the library. NULL before or after success. */
const char *dm_load_error(void);

/* Names of the targets the kernel has loaded (DM_DEVICE_LIST_VERSIONS). */
int dm_list_targets(char ***ret, size_t *ret_n);
/* -EOPNOTSUPP with a message naming each missing target's module
 * (dm_targets_missing()) if any of want[] (NULL-terminated) is not
 * loaded. Note that the kernel can also load a target module on demand
 * when a table uses it; lib/storage/storage therefore reports a missing target
 * only when the table load itself fails. */
int dm_targets_check(const char *const *want, char **ret_error);

typedef struct DmTarget {
        uint64_t start, length; /* sectors */
        const char *type;
        const char *params;
} DmTarget;

typedef enum DmCreateFlags {
        DM_CREATE_READ_ONLY = 1 << 0,
        /* The device's content is not the host's (a VM's disk): udev's disk
         * and other rules skip it (DM_UDEV_DISABLE_DISK_RULES_FLAG |
         * DM_UDEV_DISABLE_OTHER_RULES_FLAG) — no blkid probing of
         * guest-written data on the host, no /dev/disk/by-* links, no LVM
         * autoactivation of volume groups a guest made. /dev/mapper/<name>
         * is still created. */
        DM_CREATE_NO_PROBE = 1 << 1,
} DmCreateFlags;

/* Creates, loads and resumes a device with the given name, UUID and
 * table. *ret_devnum (optional) gets its major:minor. */
int dm_create(const char *name, const char *uuid, const DmTarget *targets, size_t n_targets, DmCreateFlags flags,
              dev_t *ret_devnum, char **ret_error);

/* Opens the device the kernel reports as devnum: /dev/dm-<minor> (or,
 * where /dev has no such node, /dev/mapper/<name> — a node, O_NOFOLLOW),
 * then checks that it is a block device with exactly that st_rdev
 * (-ESTALE otherwise). */
int dm_open_device(const char *name, dev_t devnum, int flags, int *ret_fd, char **ret_error);

typedef struct DmInfo {
        bool exists;
        dev_t devnum;
        int32_t open_count;
        int32_t target_count;
        bool suspended;
        bool live_table;
        bool deferred_remove;   /* a deferred removal is pending */
        char name[128];
        char uuid[129];
} DmInfo;

/* Looks a device up by name or by uuid (give exactly one). A missing
 * device is not an error: ret->exists = false. */
int dm_get_info(const char *name, const char *uuid, DmInfo *ret);

/* The single target of a device's live table (DM_DEVICE_TABLE) or its
 * status (DM_DEVICE_STATUS): type, params/status line, length in
 * sectors. -ENXIO if the device does not exist, -E2BIG if it has more
 * than one target. Outputs are optional. */
int dm_get_table(const char *name, char **ret_type, char **ret_params, uint64_t *ret_length);
int dm_get_status(const char *name, char **ret_type, char **ret_status, uint64_t *ret_length);

/* Sends a target message (sector 0), e.g. "create_thin 7" to a pool. The
 * kernel's errno is returned as is (-EEXIST, -ENODATA, ...).
 * ret_response is optional. */
int dm_message(const char *name, const char *message, char **ret_response, char **ret_error);

typedef enum DmRemoveFlags {
        DM_REMOVE_DEFERRED = 1 << 0,    /* still open after the wait: deferred removal */
} DmRemoveFlags;

typedef enum DmRemoveResult {
        DM_REMOVE_ABSENT = 0,           /* there was no such device */
        DM_REMOVE_DONE = 1,
        DM_REMOVE_SCHEDULED = 2,        /* deferred: the kernel removes it on last close */
} DmRemoveResult;

/* Removes the device with this UUID (see above). Returns a DmRemoveResult
 * or -errno; for DM_REMOVE_SCHEDULED and -EBUSY, *ret_message (optional)
 * says which device, who holds it and what happens now. */
int dm_remove(const char *uuid, DmRemoveFlags flags, char **ret_message);

typedef struct DmDevice {
        char *name;
        char *uuid;             /* "" when the device has none */
        dev_t devnum;
        int32_t open_count;
        bool deferred_remove;
        dev_t *deps;            /* devices it is built on */
        size_t n_deps;
} DmDevice;

/* libdevmapper's udev cookies are System V semaphores (key 0x0D4Dxxxx),
 * set up before a dm ioctl and removed by the caller's dm_udev_wait() once
 * udev has counted them down to 0. A process killed in between leaves its
 * semaphore behind (until the next boot clears System V IPC). This removes
 * the semaphores of cookies that udev completed (value 0) at least min_age
 * ago: their waiter, had it lived, would have removed them at once, so
 * nobody waits on them. Cookies udev has not completed are left alone.
 * Returns how many were removed. */
int dm_udev_cookies_reclaim(usec_t min_age);

/* Every dm device whose UUID starts with uuid_prefix (NULL: all), in safe
 * removal order (dm_order_leaf_first(): users before what they use). */
int dm_list(const char *uuid_prefix, DmDevice **ret, size_t *ret_n);
void dm_devices_free(DmDevice *l, size_t n);

/* "dm-4 (microvm-web1-root), loop7" from /sys/dev/block/M:m/holders;
 * "none" when empty. Newly allocated (NULL on OOM). */
char *dm_holders_describe(dev_t devnum);

/* Releases libdevmapper's cached control fd and pending node operations
 * (dm_lib_release()). Call at the end of a tool's dm work. */
void dm_release(void);

/* Wall time spent in dm ioctls by this process so far (benchmarks). */
usec_t dm_kernel_usec(void);
