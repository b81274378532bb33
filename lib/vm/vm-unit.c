/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cgroup.h"
#include "names.h"
#include "util.h"
#include "vm-unit.h"

int vm_unit_running(sd_bus *bus, const char *id, const char *unit_cgroup, UnitRunning *ret, const char **ret_how) {
        _cleanup_free_ char *unit = unit_name_for(id), *mount = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool running;
        int r;

        if (!unit)
                return -ENOMEM;
        if (bus) {
                r = unit_is_running(bus, unit, &running);
                if (r >= 0) {
                        *ret = running ? UNIT_RUNNING : UNIT_NOT_RUNNING;
                        if (ret_how)
                                *ret_how = "systemd";
                        return 0;
                }
        }
        /* No answer from systemd: a unit with processes in its cgroup runs. */
        if (ret_how)
                *ret_how = "cgroup";
        r = cgroup2_find_mount(&mount);
        if (r < 0)
                return r;
        r = cgroup_open(mount, unit_cgroup, &fd);
        if (r == -ENOENT) {
                *ret = UNIT_NOT_RUNNING;
                return 0;
        }
        if (r < 0)
                return r;
        r = cgroup_is_populated(fd);
        if (r < 0)
                return r;
        *ret = r > 0 ? UNIT_RUNNING : UNIT_NOT_RUNNING;
        return 0;
}

int vm_unit_refuse_if_running(const char *id, const char *unit_cgroup, const char **ret_how) {
        _cleanup_(unit_bus_closep) sd_bus *bus = NULL;
        UnitRunning running;
        int r;

        if (unit_bus_open(&bus, NULL) < 0)
                bus = NULL;
        r = vm_unit_running(bus, id, unit_cgroup, &running, ret_how);
        if (r < 0)
                return r;
        return running == UNIT_RUNNING ? -EBUSY : 0;
}

int vm_unit_start_begun(const char *unit_cgroup) {
        _cleanup_free_ char *mount = NULL;
        _cleanup_close_ int fd = -EBADF, control_fd = -EBADF;
        int r;

        r = cgroup2_find_mount(&mount);
        if (r < 0)
                return r;
        r = cgroup_open(mount, unit_cgroup, &fd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = cgroup_has_own_processes(fd);
        if (r != 0)
                return r;
        r = cgroup_open_child(fd, CGROUP_CONTROL_LEAF, false, &control_fd);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return cgroup_is_populated(control_fd);
}
