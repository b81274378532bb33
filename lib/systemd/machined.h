/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Running VMs in systemd-machined (org.freedesktop.machine1), so that
 * "machinectl list/status/terminate" see them as they see systemd-vmspawn's
 * VMs. libsystemd is loaded on first use (dlopen), as in unit-state.c.
 * Nothing here logs: 1 done, 0 machined is not there (no bus, machined not
 * installed, not activatable, masked: *ret_error says which, for one debug
 * line), -errno failure with *ret_error. */

#include <sys/types.h>

#include "macro.h"

/* Pure: machined's rule for machine names (systemd's hostname_is_valid():
 * 1-64 bytes of [A-Za-z0-9.-], dot-separated labels neither starting nor
 * ending with "-", no empty label). Every valid VM id passes, so a VM's
 * machine name is its id. */
bool machine_name_valid(const char *name);

/* The microvm@ID.service that the machine of a VM belongs to. */
#define MACHINE_SERVICE "microvm"

typedef struct MachineRegistration {
        const char *name;       /* the VM id */
        const char *unit;       /* microvm@ID.service: what the leader's cgroup must name */
        pid_t leader;           /* firecracker */
        const char *root_directory;     /* the jail's root, or NULL */
        const int *ifindex;     /* the VM's taps in the host's network namespace */
        size_t n_ifindex;
} MachineRegistration;

/* RegisterMachineWithNetwork (class "vm", service MACHINE_SERVICE, no
 * machine id: firecracker gives the guest none). machined takes the unit
 * from the leader's cgroup. A registration of the same name left by an
 * earlier run of the same unit (a restart without its stop's unregister)
 * is replaced; one of another unit (a container of that name) is -EEXIST
 * and stays. Waits at most timeout_usec for machined (its activation
 * included). */
int machined_register(const MachineRegistration *m, uint64_t timeout_usec, char **ret_error);

/* UnregisterMachine of name, only when machined runs (never activates it
 * for this) and the machine belongs to unit: 1 unregistered, 0 nothing to
 * do. machined keeps the unit running. */
int machined_unregister(const char *name, const char *unit, uint64_t timeout_usec, char **ret_error);
