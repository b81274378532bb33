/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Suspend to disk and resume (issue 16): a VM with on_host_shutdown =
 * suspend is paused and snapshotted by microvm-stop when the host shuts
 * down, and the next start loads the snapshot instead of booting.
 *
 * Where the files live. Firecracker runs chrooted as the VM's uid and
 * writes the snapshot relative to its jail, which cleanup removes. So
 * microvm-stop creates the files first in <state_dir>/<id>/suspend.new/
 * (vmstate and memory, VM uid, 0600, in a root-only 0700 directory) and
 * hardlinks them into the jail as /suspend/{vmstate,memory} (a root-owned
 * 0711 directory: firecracker may open the files but cannot replace the
 * names). Firecracker opens existing files with O_CREAT (and O_TRUNC for
 * the state) and writes through them into the same inodes; cleanup later
 * unlinks only the jail's names. The state dir and chroot base must be on
 * one filesystem (microvm.conf(5) says so already; otherwise the link
 * fails with EXDEV and the VM is stopped instead).
 *
 * What a snapshot is valid with: a record (<state_dir>/<id>/suspend/record,
 * root, 0600) written after a successful create, with the SHA-256 of the
 * firecracker binary, of the kernel and initrd in the jail, the VM config
 * digest, and the identity of every drive in the jail (a file's inode and
 * size; a block device's kind). suspend.new/ is renamed to suspend/ only
 * once the record is written: a half-made snapshot is never mistaken for
 * one.
 *
 * Resume: microvm-stage compares the record with the staged jail; when it
 * matches, it links the files into the jail and the plan says RESUME (the
 * jailer then starts firecracker without --config-file); otherwise it moves
 * suspend/ aside to suspend.invalid-<time>/ and the VM boots. microvm-ready
 * renames suspend/ to suspend.resuming/ before PUT /snapshot/load (a
 * snapshot that is being loaded is never loaded again), loads it paused,
 * deletes the files, and only then resumes the guest. */

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

#define SUSPEND_DIR "suspend"
#define SUSPEND_NEW_DIR "suspend.new"
#define SUSPEND_RESUMING_DIR "suspend.resuming"
#define SUSPEND_INVALID_PREFIX "suspend.invalid-"
#define SUSPEND_VMSTATE "vmstate"
#define SUSPEND_MEMORY "memory"
#define SUSPEND_RECORD "record"
/* Inside the jail (and firecracker's view of the paths). */
#define JAIL_SUSPEND_DIR "suspend"
#define JAIL_SUSPEND_VMSTATE "/" JAIL_SUSPEND_DIR "/" SUSPEND_VMSTATE
#define JAIL_SUSPEND_MEMORY "/" JAIL_SUSPEND_DIR "/" SUSPEND_MEMORY
/* In <run_dir>/<id>/: "microvmctl suspend" asks the next stop to suspend. */
#define RUN_SUSPEND_REQUEST "suspend-request"

#define SUSPEND_DRIVES_MAX 1024

typedef struct SuspendRecord {
        char firecracker_sha256[65];
        char kernel_sha256[65];
        char initrd_sha256[65];         /* "" without an initrd */
        char config_digest[65];
        char drives[SUSPEND_DRIVES_MAX]; /* "name kind ino size;..." sorted by name */
        uint64_t memory_bytes;
        uint64_t vmstate_bytes;
        usec_t created_usec;            /* CLOCK_REALTIME */
} SuspendRecord;

/* Pure: the record as "KEY=VALUE\n" lines, newly allocated. */
char *suspend_record_serialize(const SuspendRecord *r);
/* Pure: -EINVAL and a message for anything but a whole record. */
int suspend_record_parse(const char *text, size_t size, SuspendRecord *ret, char **ret_error);
/* Pure: NULL when now matches saved (sizes and time not compared), else a
 * static string naming the first difference ("the firecracker binary
 * changed", ...). */
const char *suspend_record_mismatch(const SuspendRecord *saved, const SuspendRecord *now);

/* What the staged jail is: digests of exec_file (the host's firecracker),
 * of the jail's kernel and initrd, config_digest, the jail's drive-*
 * entries. memory/vmstate sizes and time left 0. */
int suspend_identity(int jail_root_fd, const char *exec_file, const char *config_digest, SuspendRecord *ret,
                     char **ret_error);

/* microvm-stop, before PUT /snapshot/create: a fresh suspend.new/ with
 * empty vmstate and memory owned by uid:gid, 0600, linked into the jail's
 * root-owned /suspend/. */
int suspend_prepare(int state_vm_fd, int jail_root_fd, uid_t uid, gid_t gid, char **ret_error);
/* After a 204: checks the files (memory exactly memory_bytes, a non-empty
 * state), fills the sizes and time into *r, writes the record (fsync'd)
 * and renames suspend.new/ to suspend/ (replacing nothing: an existing
 * suspend/ is -EEXIST). */
int suspend_commit(int state_vm_fd, SuspendRecord *r, uint64_t memory_bytes, char **ret_error);
/* Removes suspend.new/ (a failed or interrupted create) and the jail's
 * /suspend/ names; idempotent. */
void suspend_abandon(int state_vm_fd, int jail_root_fd);

/* Reads <state_vm_fd>/suspend/record: 0, -ENOENT without a snapshot, or
 * another error with a message. */
int suspend_read_record(int state_vm_fd, SuspendRecord *ret, char **ret_error);
/* Checks that suspend/'s files are there with the recorded sizes (NULL) or
 * says what is wrong (static string). */
const char *suspend_files_problem(int state_vm_fd, const SuspendRecord *r);
/* Renames dir (suspend or suspend.resuming) to suspend.invalid-<time>;
 * *ret_name (optional) gets the new name. */
int suspend_move_aside(int state_vm_fd, const char *dir, char **ret_name);
/* Hardlinks suspend/{vmstate,memory} into the jail's /suspend/. */
int suspend_link_into_jail(int state_vm_fd, int jail_root_fd, char **ret_error);
/* Unlinks every file of dir and dir itself (the snapshot is used up or
 * discarded); idempotent. */
int suspend_remove(int state_vm_fd, const char *dir);

/* Whether a suspend snapshot (or one being resumed) holds the VM's disks:
 * its state must survive a stop and a start's reset. */
bool suspend_exists(int state_vm_fd);
