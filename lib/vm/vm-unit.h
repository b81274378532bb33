/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Whether a VM's unit is running, for microvm-reclaim and the tools run by
 * hand: asked of systemd over the system bus, with the cgroup's population
 * as the fallback when there is no bus (early boot, a container without
 * one). */

#include "unit-state.h"

typedef enum UnitRunning {
        UNIT_NOT_RUNNING,       /* inactive, failed, or not loaded */
        UNIT_RUNNING,           /* active, activating, deactivating, reloading, ... */
} UnitRunning;

/* bus may be NULL: then only the cgroup (relative to the cgroup2 mount) is
 * looked at. ret_how (optional) says what the answer is based on. */
int vm_unit_running(sd_bus *bus, const char *id, const char *unit_cgroup, UnitRunning *ret, const char **ret_how);

/* For a tool run by hand (not as a control process of the VM's unit):
 * refuses (-EBUSY) when microvm@<id>.service is running, so that nobody
 * removes a running VM's jail from under it. unit_cgroup as for
 * vm_unit_running(). The answer comes from systemd when there is a bus. */
int vm_unit_refuse_if_running(const char *id, const char *unit_cgroup, const char **ret_how);

/* Whether a start of the unit has begun: a process in the unit cgroup
 * itself or in its ".control" child, where systemd spawns a start's first
 * process (microvm-stage). 1, 0 (also when there is no such cgroup), or
 * -errno. unit_cgroup as for vm_unit_running(). */
int vm_unit_start_begun(const char *unit_cgroup);
