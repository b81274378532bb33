/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A running VM in systemd-machined (lib/systemd/machined.h): registered by
 * microvm-ready once firecracker runs, unregistered by microvm-cleanup.
 * The machine name is the VM id (every valid id is a valid machine name);
 * <run_dir>/<id>/machine records that this run registered it, so that a
 * stop only talks to machined when there is something to unregister (and
 * goes away with the run dir). Never logs; 1 done, 0 machined is not
 * there or there is nothing to do (*ret_error, when set, says why), -errno
 * failure with *ret_error. */

#include <sys/types.h>

#include "plan.h"

/* How long a start or a stop waits for machined at most. */
#define VM_MACHINE_TIMEOUT_USEC (5 * USEC_PER_SEC)

/* Registers the VM of plan, leader = firecracker's pid, with the jail's
 * root directory and, when its taps are in the host's network namespace,
 * their interface indices; then writes the record below run_fd. */
int vm_machine_register(const Plan *plan, int run_fd, pid_t leader, char **ret_error);

/* Unregisters the machine of VM id when this run registered it (its
 * record below run_dir) and it still belongs to microvm@<id>.service. */
int vm_machine_unregister(const char *run_dir, const char *id, char **ret_error);
