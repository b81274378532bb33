/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Whether a process of a VM's uid has ever run, so that a first start that
 * fails before firecracker ran gives its new uid back (issue 12: "a start
 * that fails before the VM ever ran must not reserve a uid forever").
 *
 * Only firecracker runs as the VM's uid, exec'd by the jailer right after
 * setuid (JAILER-CONTRACT.md, step 9). The proof is a marker in the VM's
 * state directory that moves one way:
 *
 *   <state_dir>/<id>/unlaunched   written with a brand-new uid record,
 *                                 before it (uid_allocate()): the jailer
 *                                 has never been exec'd for this VM.
 *   <state_dir>/<id>/launching    microvm-launch renames the marker to this
 *                                 (and syncs) before it execs the jailer;
 *                                 a failed rename refuses the launch.
 *   (neither)                     the VM may have run: its uid and state
 *                                 are kept for good.
 *
 * "launching" is settled back to "unlaunched" only on proof that the
 * jailer never got as far as firecracker: the jailer chowns the jail root
 * to the VM's uid (step 6) before it drops privileges and execs (step 9),
 * and microvm-stage creates the root as root:root; a jail root that still
 * exists and is owned by 0:0 proves step 9 was never reached. A missing or
 * chowned jail root, or no way to look, removes the marker: the uid stays.
 * Settling happens before the jail is torn down (microvm-cleanup, and
 * microvm-stage before it resets an earlier run's jail), so a torn-down
 * jail is never mistaken for an untouched one. */

#include <stdbool.h>

/* microvm-launch, right before exec'ing the jailer: "unlaunched" becomes
 * "launching", durably. 1 if it did, 0 if there was no marker (the VM has
 * run before, or its uid was not new), -errno otherwise (then do not
 * launch: the proof would lie). */
int vm_first_run_launching(int state_fd, const char *id);

/* Settles a "launching" marker as described above; exec_fd is
 * <chroot_base>/<exec-name> (-EBADF if unknown: then the uid is kept).
 * *ret_never_ran (optional): whether the "unlaunched" marker is there
 * afterwards, i.e. no process of the VM's uid ever ran. 1 if a "launching"
 * marker was settled back to "unlaunched", 0 otherwise, -errno on error. */
int vm_first_run_settle(int state_fd, int exec_fd, const char *id, bool *ret_never_ran);

/* The same for microvm-cleanup, from paths: state_dir, chroot_base and the
 * exec name (NULL if unknown). A missing state dir or jail is no error. */
int vm_first_run_settle_at(const char *state_dir, const char *chroot_base, const char *exec_name, const char *id,
                           bool *ret_never_ran);
