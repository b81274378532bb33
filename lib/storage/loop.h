/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Loop devices for snapshot and thin drives and for the thin pool's files,
 * with ioctls only (no losetup).
 *
 * Attaching (loop_attach):
 *  - under the loop lock (flock(LOCK_EX) on /dev/loop-control, the lock
 *    systemd's loop-util takes too): LOOP_CTL_GET_FREE, open /dev/loopN,
 *    check that its st_rdev is the one /sys/block/loopN/dev names, then
 *    LOOP_CONFIGURE (atomic: backing file, flags, name in one ioctl). Where
 *    the kernel has no LOOP_CONFIGURE (EINVAL/ENOTTY, before 5.8), it falls
 *    back to LOOP_SET_FD + LOOP_SET_STATUS64. The choice is cached.
 *  - EBUSY (someone outside our lock took the free device first) is
 *    retried with a jittered exponential back-off, bounded
 *    (LOOP_ATTACH_ATTEMPTS).
 *  - Every loop we attach has LO_FLAGS_AUTOCLEAR: the kernel detaches it
 *    when its last opener closes it. A loop nobody holds therefore cannot
 *    leak: if a tool dies between attaching and building a dm device on
 *    top, the loop goes away with the tool's fd.
 *  - LOOP_ATTACH_READ_ONLY sets LO_FLAGS_READ_ONLY (pass an O_RDONLY
 *    backing fd: the kernel makes a loop on an O_RDONLY fd read-only
 *    anyway, and the legacy path can only do it that way).
 *    LOOP_ATTACH_DIRECT_IO asks for LO_FLAGS_DIRECT_IO (no second copy of
 *    the image in the page cache) if an O_DIRECT read of the backing file
 *    works (some filesystems, e.g. overlayfs over tmpfs before 6.6, let
 *    the loop enable direct I/O and then fail every read); if the kernel
 *    still cannot do it, it drops the flag, or refuses it (EINVAL on newer
 *    kernels) and we attach without it. LoopDevice.direct_io says what the
 *    kernel did.
 *  - lo_file_name is "microvm:" + the backing file's path (truncated to
 *    the kernel's 64 bytes): that marker is how loop_reclaim() recognises
 *    our loops and only ours. The full path is in
 *    /sys/block/loopN/loop/backing_file.
 *  - The attached device is opened (LoopDevice.fd) and checked with
 *    LOOP_GET_STATUS64: lo_number is N, lo_device/lo_inode are the
 *    st_dev/st_ino of the backing fd, the flags are what we asked for.
 *
 * Shared base images (loop_attach_shared): a base image used by many VMs
 * is attached once, read-only, and every snapshot/thin device of every VM
 * sits on that one loop. Refcounting is the kernel's open count, nothing
 * of ours: each dm device built on the loop holds it open; with AUTOCLEAR
 * the kernel detaches it when the last of them is removed. The lookup
 * (sysfs backing_file path as a first filter, then LOOP_GET_STATUS64
 * lo_device/lo_inode against the fstat of the image we opened, read-only,
 * autoclear, our marker, offset 0, no size limit, size == the file's) runs
 * under the loop lock and keeps the found loop open: from then on the
 * loop cannot be cleared under us, because we are one of its openers. The
 * caller must keep holding the lock and LoopDevice.fd until the dm device
 * that uses the loop exists (dm then holds it), and dm devices sitting on
 * shared loops must be removed under the same lock — lib/storage/storage does
 * both — so that a lookup never races the last user's removal.
 *
 * All functions return 0 (or a positive value) on success and -errno on
 * failure; ret_* is written on success only, *ret_error (when not NULL)
 * gets a message naming the object and the cause on failure. Nothing here
 * logs or runs a program. */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define LOOP_MARKER "microvm:"
#define LOOP_ATTACH_ATTEMPTS 64U
/* The same free device without a node in /dev this many times in a row:
 * no loop device is usable here (ENOSPC). */
#define LOOP_MISSING_NODE_ATTEMPTS 3U
/* How long loop_lock() waits for another holder of the lock. */
#define LOOP_LOCK_TIMEOUT (60 * USEC_PER_SEC)

typedef enum LoopAttachFlags {
        LOOP_ATTACH_READ_ONLY = 1 << 0,
        LOOP_ATTACH_DIRECT_IO = 1 << 1, /* try; fall back silently */
} LoopAttachFlags;

typedef struct LoopDevice {
        int fd;                 /* open /dev/loopN (O_RDONLY for read-only loops, else O_RDWR) */
        unsigned nr;            /* N */
        dev_t devnum;           /* st_rdev of /dev/loopN */
        uint64_t size;          /* bytes the device offers (BLKGETSIZE64) */
        bool read_only;
        bool direct_io;         /* the kernel accepted direct I/O */
        bool shared;            /* loop_attach_shared() found it attached already */
} LoopDevice;

#define LOOP_DEVICE_NULL ((LoopDevice) { .fd = -EBADF })

/* Closes the fd (the loop detaches itself if that was its last opener). */
void loop_device_done(LoopDevice *l);

/* Opens /dev/loop-control and takes flock(LOCK_EX) on it, waiting at most
 * LOOP_LOCK_TIMEOUT. The fd is both the lock and the control device: pass
 * it to the functions below; close it to unlock. */
int loop_lock(int *ret_lock_fd, char **ret_error);

/* Attaches a new loop device to the file (or block device) open at
 * backing_fd. lock_fd is loop_lock()'s fd, or -EBADF to take the lock for
 * the duration of this call. */
int loop_attach(int lock_fd, int backing_fd, LoopAttachFlags flags, LoopDevice *ret, char **ret_error);

/* Finds the loop of ours that already serves the regular file open at
 * backing_fd read-only (see above), or attaches one (read-only, direct I/O
 * tried). lock_fd must be loop_lock()'s fd: the lock must stay held until
 * the caller's dm device holds the loop. ret->shared tells which. */
int loop_attach_shared(int lock_fd, int backing_fd, LoopDevice *ret, char **ret_error);

/* Only the lookup: 1 and *ret if found, 0 if not. */
int loop_find_shared(int backing_fd, LoopDevice *ret);

typedef struct LoopInfo {
        unsigned nr;
        dev_t devnum;
        char *backing_file;     /* from sysfs: the full path, " (deleted)" appended by the kernel */
        char file_name[64];     /* lo_file_name */
        uint64_t backing_dev, backing_ino;
        uint32_t flags;         /* LO_FLAGS_* */
        bool ours;              /* lo_file_name has our marker */
        size_t n_holders;       /* entries in /sys/block/loopN/holders */
} LoopInfo;
void loop_infos_free(LoopInfo *l, size_t n);

/* Every bound loop device (sorted by N), ours or not. */
int loop_list(LoopInfo **ret, size_t *ret_n);

/* Detaches (LOOP_CLR_FD) every loop of ours that nothing is built on (no
 * holders) — what can only be left by a crash in the non-atomic legacy
 * attach, or by a process that still holds a loop open. The kernel defers
 * the detach of a loop that is still open until its last close (it sets
 * AUTOCLEAR), so an open loop is never yanked from its user. A loop that
 * is not ours (no marker) is never touched. lock_fd as for loop_attach().
 * Returns the number of loops detached; *ret_failed (optional,
 * NULL-terminated) lists what could not be detached. */
int loop_reclaim(int lock_fd, char ***ret_failed);

/* Test hook: use LOOP_SET_FD + LOOP_SET_STATUS64 as on kernels without
 * LOOP_CONFIGURE (true), or probe LOOP_CONFIGURE again (false). */
void loop_force_legacy(bool legacy);

/* Wall time spent in attach ioctls by this process so far (benchmarks). */
usec_t loop_kernel_usec(void);

/* ---- pure parts, unit-tested ------------------------------------------ */

/* lo_file_name for a backing file: "microvm:" + path, truncated to fit 64
 * bytes with its NUL. */
void loop_file_name_format(const char *path, char buf[static 64]);
bool loop_file_name_is_ours(const char *lo_file_name) _pure_;
/* "loop12" → 12; -EINVAL for anything else ("loop-control", "loop1p1"). */
int loop_name_parse(const char *name, unsigned *ret);
