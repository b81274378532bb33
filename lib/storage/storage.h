/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Block storage of snapshot, thin and block drives, and the host's thin
 * pool: what microvm-stage, microvm-cleanup, microvm-reclaim and
 * microvm-pool call. Built on lib/storage/loop and lib/storage/dm; no programs are run.
 *
 * ---- What a drive becomes ------------------------------------------------
 *
 * snapshot  dm device microvm-<id>-<drive> (UUID MICROVM-<id>-<drive>),
 *           table "snapshot <base loop> <cow loop> P|N 8" (4 KiB chunks):
 *             base  the image `path`, on a read-only loop shared by every
 *                   VM using it (lib/storage/loop: loop_attach_shared);
 *             cow   <state_dir>/<id>/drives/<drive>.cow (persistent = yes:
 *                   kept across restarts, exception store on disk, "P") or
 *                   <drive>.cow-tmp (persistent = no: recreated empty on
 *                   every start, removed at teardown, "N"); sparse, root
 *                   0600, on its own loop; size = `size`, default
 *                   snapshot_cow_default_size() (the guest can rewrite the
 *                   whole base). A persistent CoW records the identity of
 *                   its base in <drive>.snapshot; a changed base is refused
 *                   (its unwritten blocks would come from another image).
 * thin      dm device microvm-<id>-<drive>, table "thin <pool> <thin id>
 *           <base loop>": a thin volume of the host pool ([thin_pool]
 *           name) whose unwritten blocks come from the base image (external
 *           origin, the same shared read-only loop). The thin id is
 *           allocated once, under the lock <state_dir>/.lock (the uid
 *           allocation lock), as the lowest id no VM's record names and the
 *           pool does not know ("create_thin" fails with EEXIST for an id
 *           someone else made: the next one is tried), and recorded in
 *           <state_dir>/<id>/thin-<drive> with the size and the base's
 *           identity. The volume is kept across restarts and deleted
 *           ("delete <id>" to the pool) only when the VM's state is removed
 *           (STORAGE_TEARDOWN_REMOVE_STATE). The record lies outside
 *           drives/ on purpose: removing drives/ alone never orphans a
 *           volume in the pool. A crash between "create_thin" and writing
 *           the record leaks one empty, never-activated id (harmless).
 *           The pool must be active (microvm-pool.service); stage never
 *           activates it itself (it may be down for a metadata repair).
 * block     `path` canonicalized (realpath, must be a block device; the
 *           kernel name from sysfs, /dev/mapper/x → /dev/dm-N) and checked:
 *           not mounted (/proc/self/mountinfo, the device and its
 *           partitions), no holders (dm, md, ... in sysfs), not claimed by
 *           the kernel (a transient O_EXCL open: mounts in other
 *           namespaces, swap, md, btrfs — released at once, since
 *           firecracker must open the device later and an exclusive open
 *           cannot be handed over), not a device of ours (a MICROVM- dm
 *           device or a loop of ours) and not in use by another VM: a claim
 *           <run_dir>/.storage/block-<major>:<minor> ("<id> <drive>") is
 *           created exclusively; it names the VM that has the device until
 *           that VM's teardown removes it (run_dir is a tmpfs: a reboot
 *           clears claims).
 *
 * In every mode the caller gets an fd of the block device, opened by us
 * (/dev/dm-N checked by st_rdev for dm devices), and makes the jail's node
 * from it — never from a name or a number:
 *     safe_mknod_at(jail_root_fd, "drive-<name>", dev_fd, 0600, uid, gid)
 *
 * ---- How the tools use it -----------------------------------------------
 *
 * microvm-stage ID (after uid_allocate(), which creates state_dir/<id>/):
 *     storage_plan_dm_names(vm, &plan->dm);     // into the plan BEFORE creating
 *     for each drive with mode snapshot, thin or block:
 *             storage_prepare_drive(host, vm, d, state_fd, uid, &dev_fd, NULL, &error);
 *             safe_mknod_at(jail_root_fd, JAIL_DRIVE_PREFIX "<name>", dev_fd, 0600, uid, gid);
 *             close(dev_fd);
 *     and firecracker's drive path_on_host is "/" JAIL_DRIVE_PREFIX "<name>".
 *   Its reset (what an earlier run left) is the cleanup call below; a
 *   leftover device of a drive is also removed by storage_prepare_drive().
 *   Loops need no plan entry: they detach themselves.
 * microvm-cleanup ID (after the VM's processes are gone):
 *     storage_teardown_vm(host, state_fd, id, plan ? plan->dm : NULL,
 *                         STORAGE_TEARDOWN_DEFERRED |
 *                         (ephemeral ? STORAGE_TEARDOWN_REMOVE_STATE : 0), &report);
 *   log report.failed as errors (exit non-zero), report.deferred as
 *   warnings (the devices go when their last user closes them).
 * microvm-reclaim:
 *     storage_list_vm_ids(host, &ids, &names);   // ids with leftovers; names for --dry-run
 *     for each id whose unit is not active:
 *             storage_teardown_vm(host, state_fd, id, plan_or_NULL, 0, &report);
 *     storage_reclaim_loops(&report);            // once, after the VMs
 *   (no DEFERRED: a device still open is reported, never pulled away.)
 * Removing a VM's state for good (state_dir/<id>/, vm_state_remove()):
 *     storage_teardown_vm(..., STORAGE_TEARDOWN_REMOVE_STATE, ...) first —
 *   it deletes the thin volumes from the pool; removing the records alone
 *   would leak them. Never call it while holding <state_dir>/.lock
 *   (uid_alloc_lock()): it takes that lock itself to delete thin volumes.
 * Stages of different VMs may run concurrently; calls for one VM must not
 * (systemd runs one start or stop of a unit at a time).
 *
 * ---- Locks and order ---------------------------------------------------
 *
 *  - <state_dir>/.lock (uid_alloc_lock): thin id allocation and deletion.
 *  - the thin pool's lock: flock on the directory of [thin_pool] metadata.
 *  - the loop lock (flock on /dev/loop-control, loop_lock()): held from the
 *    lookup of a shared base loop until the dm device on it exists, and
 *    while dm devices are removed, so that the last user's removal (which
 *    lets the base loop autoclear) never races a new user's lookup.
 * Taken in this order, never the other way round.
 *
 * ---- Errors ------------------------------------------------------------
 *
 * 0/positive on success, -errno on failure, ret_* written on success only.
 * *ret_error (optional) gets one message naming the drive, the object
 * (file, device, pool) and the cause, with what to do where that is not
 * obvious. Nothing here logs; the tools log once, at the boundary. */

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "storage-util.h"

/* In <state_dir>/<id>/ */
#define STORAGE_THIN_RECORD_PREFIX "thin-"      /* thin-<drive> */
/* In <state_dir>/<id>/drives/ */
#define STORAGE_COW_SUFFIX ".cow"               /* persistent CoW */
#define STORAGE_COW_TMP_SUFFIX ".cow-tmp"       /* CoW of persistent = no */
#define STORAGE_SNAPSHOT_RECORD_SUFFIX ".snapshot"
/* In <run_dir>/ */
#define STORAGE_RUN_DIR ".storage"              /* block-<major>:<minor> claims */
/* dm UUID of a pool microvm created: never MICROVM-..., so that nothing
 * that sweeps our VM devices can ever take the pool along. */
#define DM_POOL_UUID_PREFIX "MICROVMPOOL-"

/* ---- staging -------------------------------------------------------------- */

/* The dm devices the drives of c will have, in removal order (leaf
 * first), for the plan's DM list: write it into the plan BEFORE calling
 * storage_prepare_drive(), so that whatever a SIGKILL interrupts, the
 * next cleanup knows the names. Pure. *ret is NULL-terminated (an empty
 * list when no drive uses device-mapper). */
int storage_plan_dm_names(const VmConfig *c, char ***ret);

/* Makes the block device of one snapshot, thin or block drive (see
 * above); -EINVAL for a file drive. Idempotent: a dm device of this drive
 * left over from an earlier run (same UUID) is removed first (not
 * deferred: -EBUSY if it is open), so a start after a crash works.
 *
 *   state_fd   the trusted root fd of state_dir (safe_root_open(), the fd
 *              uid_allocate() takes), NOT state_dir/<id>: thin ids are
 *              allocated across all VMs. <state_dir>/<id>/ must exist
 *              (uid_allocate() creates it).
 *   uid        the VM's uid (only used in messages: backing files stay
 *              root-owned, the jail node is chowned by the caller).
 *   ret_dev_fd an O_RDONLY fd of the device, for safe_mknod_at(); close it
 *              after the mknod (the device stays: dm holds the loops).
 *   ret_dm_name (optional) the dm name (NULL for block drives): the
 *              name storage_plan_dm_names() predicted.
 *
 * Before this, the caller has taken no storage lock; it takes and drops
 * the ones it needs itself. Needs root. Call it before installing a
 * seccomp filter that denies socket()/connect() (udev detection connects
 * to /run/udev/control once per process) — the default tool denylist is
 * fine. */
int storage_prepare_drive(const HostConfig *h, const VmConfig *c, const DriveConfig *d, int state_fd, uid_t uid,
                          int *ret_dev_fd, char **ret_dm_name, char **ret_error);

/* ---- teardown ---------------------------------------------------------- */

typedef enum StorageTeardownFlags {
        /* A device still open after a short wait is handed to the kernel's
         * deferred removal (cleanup: the VMM may still be exiting) instead
         * of being left (reclaim: never pull a device from under a user). */
        STORAGE_TEARDOWN_DEFERRED = 1 << 0,
        /* Also remove the drives' state: delete thin volumes from the pool
         * and their records, persistent CoW files and their records (an
         * ephemeral VM's stop, or the removal of the VM). Without it only
         * runtime objects and non-persistent CoW files go. */
        STORAGE_TEARDOWN_REMOVE_STATE = 1 << 1,
} StorageTeardownFlags;

typedef struct StorageReport {
        char **failed;          /* objects left behind, one message each (NULL-terminated or NULL) */
        char **deferred;        /* devices left to the kernel's deferred removal, one message each */
        unsigned n_removed;     /* dm devices removed (deferred ones not counted) */
        unsigned n_deleted;     /* thin volumes deleted from the pool, state files removed */
} StorageReport;
void storage_report_done(StorageReport *r);

/* Removes VM id's dm devices — the names in dm_names (the plan's DM list;
 * NULL when there is no plan) and, in any case, every dm device whose
 * UUID is exactly MICROVM-<id>-<drive> — leaf first, under the loop lock;
 * a name from the plan whose device has another UUID is left alone and
 * reported. Loops need no step of their own: they autoclear once the dm
 * devices on them are gone (a shared base loop when its last user goes).
 * Then the VM's block claims, its non-persistent CoW files, and with
 * STORAGE_TEARDOWN_REMOVE_STATE its thin volumes (only once their device
 * is gone: a deferred one keeps its volume and record, reported) and
 * persistent CoW files with their records.
 *
 * state_fd is the state_dir root fd, or -EBADF to leave files alone (dm
 * devices and claims are still removed). Runs every step; returns 0 when
 * nothing was left (deferred removals are not failures: they are listed in
 * report->deferred), else the first error, with report->failed listing
 * every object left. A VM that has nothing is a no-op. On a host without
 * device-mapper the dm part is skipped (nothing can exist). */
int storage_teardown_vm(const HostConfig *h, int state_fd, const char *id, char *const *dm_names,
                        StorageTeardownFlags flags, StorageReport *report);

/* ---- reclaim ---------------------------------------------------------------- */

/* The VM ids that own storage objects that outlive a crash of their VM:
 * dm devices (UUID MICROVM-<id>-<drive>; the pool's MICROVMPOOL- UUID is
 * never included) and block claims in <run_dir>/.storage (h may be NULL
 * to skip those). Sorted, each once. ret_names (optional) gets every such
 * dm device name, in removal order, and every claim file, for --dry-run.
 * NULL-terminated lists; empty when there is nothing (or no
 * device-mapper). */
int storage_list_vm_ids(const HostConfig *h, char ***ret_ids, char ***ret_names);

/* Detaches loops of ours nothing is built on (loop_reclaim()): run once
 * per reclaim, after the VMs' teardowns. Returns how many were detached;
 * report->failed lists the ones that could not be. */
int storage_reclaim_loops(StorageReport *report);

/* ---- thin pool ------------------------------------------------------------- */

typedef struct ThinPoolInfo {
        bool active;
        bool managed;           /* data/metadata configured: microvm creates and owns it */
        dev_t devnum;
        ThinPoolStatus status;
        uint32_t block_sectors;
        dev_t metadata_dev, data_dev;
        char *metadata_backing; /* backing files of the loops, when they are loops */
        char *data_backing;
        bool created_data;      /* thin_pool_activate() created the files now */
        bool created_metadata;
} ThinPoolInfo;
void thin_pool_info_done(ThinPoolInfo *i);

/* Activates the pool of h->thin_pool (idempotent: an active pool that is
 * ours is fine). For a pool given by name only, just checks that an active
 * thin-pool of that name exists. For a managed pool (data + metadata):
 * under the pool lock, creates missing files sparse (data_size;
 * metadata_size or thin_metadata_default_size(); a missing metadata file
 * next to an existing data file is refused: the volumes would be lost),
 * grows the data file to data_size, refuses metadata it cannot trust —
 * thin_superblock_check() must say VALID, or ZERO for a file that holds no
 * data at all (a file we just created: only then does the kernel format
 * it; existing metadata is never zeroed or formatted) — attaches both files
 * to loops (read-write, direct I/O tried) and creates the pool (UUID
 * DM_POOL_UUID_PREFIX<name>, block_size, block zeroing on). After
 * creation the kernel's own verdict is checked too: a pool that comes up
 * read-only, failed or needs_check is removed again and refused.
 * ret_info (optional) describes the result. */
int thin_pool_activate(const HostConfig *h, ThinPoolInfo *ret_info, char **ret_error);

/* Removes the pool's dm device (its loops autoclear). Only a managed pool
 * (our UUID); a pool given by name only is never touched (returns 0).
 * -EBUSY with the holders named while thin volumes are active. */
int thin_pool_deactivate(const HostConfig *h, char **ret_error);

/* Fills *ret (always, ret->active says whether the pool is there). */
int thin_pool_query(const HostConfig *h, ThinPoolInfo *ret, char **ret_error);

/* Kernel time spent in dm and loop ioctls by this process (benchmarks). */
usec_t storage_kernel_usec(void);
