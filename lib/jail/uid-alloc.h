/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One uid (and a gid of the same number) per VM, from the host's
 * uid_range, stable across restarts.
 *
 * Scheme (this is what microvm.conf(5) documents):
 *  - The record of a VM's uid is <state_dir>/<id>/uid ("1000042\n",
 *    root-owned, written atomically). It is the source of truth: a uid is
 *    taken exactly while some VM's record names it.
 *  - <state_dir>/.uids/<uid> (a symlink to the id, only read) indexes the
 *    records, so that a restart checks one entry instead of reading every
 *    VM's record (uid-alloc.c says how it is kept in step; a new uid still
 *    reads every record, failing closed on a corrupt one).
 *  - All allocation happens under an exclusive flock(2) on
 *    <state_dir>/.lock, opened through the trusted state dir fd, so
 *    concurrent stages never hand out one uid twice.
 *  - A VM that has a record keeps its uid (a restart, a host reboot).
 *  - uid = auto, no record yet: the lowest uid in uid_range that no other
 *    VM's record names, that NSS (getpwuid/getgrgid) does not know as a
 *    user or group, and that no /etc/subuid or /etc/subgid range contains.
 *  - uid = N: N must be in uid_range, not recorded for another VM (the
 *    error names it), and unknown to NSS and outside subordinate ranges; if
 *    the VM had another uid recorded, the record is rewritten (and
 *    UidAllocation.previous says which uid its files still belong to).
 *  - A recorded uid that has since left uid_range, appeared in NSS, or is
 *    recorded twice is an error, never silently reassigned: files in
 *    state_dir/<id>/ belong to it.
 *  - The uid is released only with the VM's state: vm_state_remove() removes
 *    the record last, after everything else in state_dir/<id>/ is gone, so
 *    a uid is never handed to a new VM while files owned by it remain there.
 *
 * NSS: getpwuid_r()/getgrgid_r() may load NSS modules and talk to nscd,
 * sssd or systemd-userdbd over sockets. Allocation must therefore run in
 * the tool's normal host context: before its seccomp filter is installed
 * and outside any chroot or private mount namespace that hides /etc or the
 * daemons' sockets. A lookup that fails (rather than answering "no such
 * id") makes allocation fail: an unanswered lookup is never taken to mean
 * "free". */

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"
#include "safe-fs.h"

typedef struct UidAllocation {
        uid_t uid;
        gid_t gid;              /* == uid */
        bool created;           /* the record was written now (first start, or uid = N changed it) */
        uid_t previous;         /* uid recorded before a change, else UID_INVALID */
} UidAllocation;

/* Takes the allocation lock: flock(LOCK_EX) on <state_dir>/.lock (created
 * 0600 root if missing; must be a root-owned regular file with one link).
 * Blocks until it is ours. Close the returned fd to release it. */
int uid_alloc_lock(int state_fd, int *ret_lock_fd);

/* Allocates (or finds) the uid of VM id. state_fd comes from
 * safe_root_open(state_dir). wanted is UID_INVALID for uid = auto.
 * Creates <state_dir>/<id>/ (0700 root) when needed. On failure *ret_error
 * (optional) says why, naming the other VM or the record involved:
 *   -ERANGE  wanted (or the record) outside [uid_min, uid_max]
 *   -EBUSY   wanted is recorded for another VM
 *   -EEXIST  wanted is known to NSS or in a subordinate id range
 *   -ENOSPC  no free uid left in the range
 *   -EBADMSG a record in the state dir is corrupt (fail closed)
 *   -EIO     an NSS lookup failed */
int uid_allocate(int state_fd, const char *id, uid_t uid_min, uid_t uid_max, uid_t wanted, UidAllocation *ret,
                 char **ret_error);
/* The same, with the range from the host config and uid/uid_auto from the
 * VM config. */
int uid_allocate_for_vm(int state_fd, const HostConfig *h, const VmConfig *c, UidAllocation *ret,
                        char **ret_error);

/* Reads the record of VM id without locking (records are replaced
 * atomically). -ENOENT if there is none, -EBADMSG if it is corrupt. */
int uid_record_read(int state_fd, const char *id, uid_t *ret);

/* Removes the record of VM id under the lock. 0 if there was none. Prefer
 * vm_state_remove(), which never releases a uid while state remains. */
int uid_release(int state_fd, const char *id);

/* Removes <state_dir>/<id>/ under the allocation lock: first everything
 * but the uid record (safe_rm_rf_at), then — only if all of that went —
 * the record, then the directory. Returns 1 if removed, 0 if there was
 * nothing, or the first error with report (optional) listing what was
 * left; the uid then stays recorded. */
int vm_state_remove(int state_fd, const char *id, SafeRmReport *report);

/* ---- pure parts, unit-tested ------------------------------------------ */

/* "1000042\n" → 1000042. Exactly one decimal number without sign or
 * leading zeros, optionally followed by one newline; 0 and UID_INVALID are
 * refused. -EBADMSG otherwise. */
int uid_record_parse(const char *text, size_t size, uid_t *ret);

typedef struct UidOwner {
        uid_t uid;
        char id[VM_ID_MAX + 1];
} UidOwner;

/* Returns 1 if uid is known to someone else (a user, a group, a
 * subordinate range), 0 if not, -errno if that cannot be told. */
typedef int (*UidInUseFunc)(uid_t uid, void *userdata);

/* Picks the uid: wanted (UID_INVALID = auto) within [min, max], not in
 * taken[] (sorted by uid), not in use per in_use (may be NULL). For auto,
 * the lowest such uid. Errors as for uid_allocate(); for -EBUSY
 * *ret_owner (optional) points at the taken[] entry. */
int uid_pick(uid_t min, uid_t max, const UidOwner *taken, size_t n_taken, uid_t wanted, UidInUseFunc in_use,
             void *userdata, uid_t *ret, const UidOwner **ret_owner);

/* Sorts owners by uid (for uid_pick) and returns the first uid recorded
 * twice (UID_INVALID if none): two VMs sharing a uid are not isolated. */
uid_t uid_owners_sort(UidOwner *owners, size_t n);

/* /etc/subuid, /etc/subgid: "name:first:count" lines. Malformed lines are
 * skipped (as shadow-utils does). */
typedef struct SubidRange {
        uint64_t first;
        uint64_t count;
} SubidRange;
int subid_ranges_parse(const char *text, SubidRange **ret, size_t *ret_n);
bool subid_ranges_contain(const SubidRange *r, size_t n, uid_t uid);
