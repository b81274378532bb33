/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The API side of suspend and resume (the files: suspend.h). Nothing here
 * logs: 0, or -errno with the reason in *ret_reason (one line, for the
 * journal). */

#include "plan.h"

/* microvm-stop: pause the guest, PUT /snapshot/create into the jail's
 * /suspend/ (which is <state_dir>/<id>/suspend.new/), then commit the
 * record. Gives up at deadline (CLOCK_MONOTONIC). On failure the guest is
 * resumed again and nothing of the snapshot is left, so the caller can
 * stop it gracefully. *ret_bytes: the memory file's size. */
int vm_suspend(const Plan *plan, usec_t deadline, uint64_t *ret_bytes, char **ret_reason);

/* microvm-stage, after the jail is built: whether <state_dir>/<id>/suspend/
 * holds a snapshot valid for this jail. 1: yes, and its files are linked
 * into the jail; 0: none there; -errno: an invalid one, moved aside to the
 * name in *ret_aside (when it could be), the reason in *ret_reason. Also
 * removes what an interrupted suspend left (suspend.new/). */
int vm_resume_prepare(const Plan *plan, int state_vm_fd, int jail_root_fd, char **ret_reason, char **ret_aside);

/* microvm-ready, once the API socket answers "Not started": rename
 * suspend/ to suspend.resuming/, PUT /snapshot/load (paused), remove the
 * snapshot's files, PATCH /vm Resumed. On a failed load the snapshot is
 * moved aside (*ret_aside) and the VMM exits (a failed restore is fatal to
 * firecracker): the start fails and the restart policy boots the VM. */
int vm_resume_load(const Plan *plan, int sock, usec_t deadline, char **ret_reason, char **ret_aside);
