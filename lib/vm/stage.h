/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The steps of microvm-stage that create things: the files it puts into a
 * jail (kernel, initrd, drives), device nodes, taps, the launch plan and
 * the console FIFO. The administrator's files (paths from the config, symlinks allowed
 * there) are opened, checked to be regular files and never chowned or
 * chmodded; everything below the jail and the state directory is made
 * fd-relative through lib/jail/safe-fs. Errors: -errno and a message
 * naming the file and the cause in *ret_error (optional). */

#include <sys/types.h>

#include "config.h"
#include "plan.h"
#include "stage-plan.h"
#include "safe-fs.h"

/* Kernels, initrds and read-only images on another filesystem than the
 * chroot base are copied up to this size; beyond it, copying on every start
 * would be slow and huge, and we say so instead. */
#define COPY_ACROSS_FS_MAX (256ULL << 20)

typedef struct StageTarget {
        const char *id;
        const HostConfig *host;
        const VmConfig *vm;
        int state_fd;                   /* <state_dir> */
        int run_fd;                     /* <run_dir> */
        int jail_fd;                    /* <chroot_base>/<exec>/<id>/root */
        int vm_state_fd;                /* <state_dir>/<id> */
        const char *state_dir;          /* <state_dir>/<id>, for messages */
        const char *jail_root;          /* the jail's path, for messages */
        uid_t uid;                      /* the VM's uid and gid */
        gid_t gid;
        uid_t previous_uid;             /* the uid before a uid = N change, else (uid_t) -1 */
        gid_t console_gid;              /* the host's console_group, (gid_t) -1: none */
} StageTarget;

/* A file firecracker only reads (kernel, initrd, read-only drive), as
 * <name> in the jail: a hardlink of the administrator's file when the VM's
 * uid can read it and it is on the jail's filesystem; else a VM-owned copy
 * (0400), when small enough. Returns 0 for a hardlink, 1 for a copy
 * (*ret_method, optional, says how it was made). */
int stage_readonly_file(const StageTarget *t, const char *path, const char *what, const char *name,
                        SafeCopyMethod *ret_method, char **ret_error);

/* A writable file drive: the VM's own copy in <state_dir>/<id>/drives/,
 * made on the first start (returns 1, *ret_method says how), kept across
 * restarts (returns 0), hardlinked into the jail as <jail_name>. */
int stage_file_drive(const StageTarget *t, const DriveConfig *d, const char *jail_name,
                     SafeCopyMethod *ret_method, char **ret_error);

/* A snapshot, thin or block drive: the block device lib/storage/storage
 * makes, entering the jail as <jail_name>, a node made from the fd of the
 * device it opened (never from a name or a number), owned by the VM's uid,
 * 0600. */
int stage_block_drive(const StageTarget *t, const DriveConfig *d, const char *jail_name, char **ret_error);

/* One tap per NIC (names from the plan), owned by the VM's uid. */
int stage_taps(const StageTarget *t, char *const *taps, char **ret_error);

/* <run_dir>/<id>/console.in, the serial input FIFO; an existing one is
 * kept (microvm-launch may hold it open across a restart). Mode 0600
 * root:root, or, with a console group, 0620 root:<group> in a 0710
 * root:<group> <run_dir>/<id> (set again on every start, so a changed
 * console_group applies to a kept FIFO too). */
int stage_console_fifo(const StageTarget *t, char **ret_error);

/* <run_dir>/<id>/plan, replaced atomically. */
int stage_plan_write(const StageTarget *t, const Plan *plan, char **ret_error);

/* After the jail is built: a snapshot of a suspended run (issue 16) in
 * <state_dir>/<id>/suspend/. 1: valid for this jail, plan->resume is set
 * and the plan rewritten, *ret_note says so (info); 0: none, or an invalid
 * one moved aside and the VM boots, *ret_note then says why (a warning);
 * -errno with *ret_error: this start must fail (an ephemeral VM whose disks
 * were kept for a snapshot that cannot be resumed). */
int stage_resume(const StageTarget *t, Plan *plan, char **ret_note, char **ret_error);

/* systemd's ProtectSystem=full keeps /usr, /etc, /boot and /efi read-only
 * for the jailer, which must create <chroot_base>/<exec>/<id>/root/dev and
 * friends: -EROFS, naming the directory, when chroot_base lies below one. */
/* Every bridge a NIC is on exists and is a bridge (sysfs): checked before
 * anything is built, so that the error names the bridge at once. With or
 * without udev (the unit has no dependency on the bridge's .device unit,
 * which never appears without udev). */
int stage_check_bridges(const VmConfig *vm, char **ret_error);

int stage_check_chroot_base(const HostConfig *host, char **ret_error);

/* The controllers the plan's jailer --cgroup values need (numa_node:
 * cpuset) must already be enabled for the unit's cgroup by systemd (the
 * generator renders AllowedMemoryNodes= for that): the jailer writes
 * "+<controller>" into cgroup.subtree_control of every ancestor from the
 * cgroup root down to its parent, and only then are the writes above the
 * unit's delegated subtree no-ops. unit_cgroup: the unit's cgroup path
 * (below mount), or NULL when not running in it (then only the host is
 * checked). -EOPNOTSUPP when the host's cgroup v2 lacks the controller,
 * -EPERM when systemd has not enabled it for the unit; the message names
 * the controller, the file, the config key and what to do. */
int stage_check_cgroup_controllers(const VmConfig *vm, const Plan *plan, const char *mount, const char *unit_cgroup,
                                   char **ret_error);

/* In the jail: run/ (where firecracker binds its sockets, owned by the
 * VM's uid) and firecracker's --config-file (root-owned, read-only for the
 * VM, which only reads it). */
int stage_jail_run_dir_and_config(const StageTarget *t, const StageNetwork *net, char **ret_error);

/* The jailer and firecracker are root-owned regular files no one else can
 * write, in directories likewise (lib/jail/binary.h); *ret_exec_file: the
 * canonical path of firecracker, whose file name names the jail. */
int stage_check_binaries(const HostConfig *host, char **ret_exec_file, char **ret_error);

/* The state dir (0700), the run dir (0711, as tmpfiles.d makes it: names
 * not listable, a console_group member may pass to its VM's FIFO) and
 * <chroot_base>/<exec_name> (0711: others may traverse to their own jail,
 * not list the VMs), created if missing, each opened without following a
 * symlink or trusting a directory others can write. */
int stage_open_roots(const HostConfig *host, const char *exec_name, int *ret_state_fd, int *ret_run_fd,
                     int *ret_exec_fd, char **ret_error);

/* The gid of the host's console_group, (gid_t) -1 without one; -ENOENT
 * with a message when the group does not exist. */
int stage_console_gid(const HostConfig *host, gid_t *ret_gid, char **ret_error);

/* What this start uses, kept in <run_dir>/<id>/ until cleanup removes the
 * directory: the generated drop-in beside config_copy_path (the
 * generator's copy of the config, MICROVM_CONFIG_COPY) and that copy. A
 * daemon-reload that cannot generate the VM's units any more (its config
 * became invalid or was removed, the host config does not parse) emits
 * these instead, so the running VM keeps its limits (microvm-generator(8)).
 * Nothing without a copy (run by hand). */
int stage_save_start_record(const StageTarget *t, const char *config_copy_path, const char *config_copy,
                            size_t config_copy_size, char **ret_error);

/* <run_dir>/<id>/staged with the start's invocation id: the proof that
 * this start was staged completely, which microvm-launch checks. */
int stage_mark_staged(const StageTarget *t, const char *invocation_id, char **ret_error);

/* Everything stage_readonly_file(), stage_file_drive() and
 * stage_block_drive() put into the jail for this VM: kernel, initrd, each
 * drive as drive-<name>. *ret_notes gets a line for each copy made ("Drive
 * data: made the VM's own copy of ... (reflink)"), also on failure. */
int stage_jail_files(const StageTarget *t, char ***ret_notes, char **ret_error);

/* Before a start, whatever an earlier run of the VM left (the launch plan
 * names it; an ephemeral VM's disk state too) is torn down. Run from inside
 * the unit, what runs in its cgroup is killed; run by hand, a running unit
 * is refused (-EBUSY) and no process is touched. *ret_removed: something
 * was removed; *ret_left: what was not (one line each); *ret_warning: an
 * old plan that was ignored. */
int stage_reset(const HostConfig *host, const VmConfig *vm, const char *id, const char *exec_name, bool *ret_removed,
                char ***ret_left, char **ret_warning, char **ret_error);
