/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "cgroup.h"
#include "dlopen-util.h"
#include "names.h"
#include "unit-state.h"
#include "util.h"

/* libsystemd, loaded on first use: only a tool run by hand (and reclaim)
 * asks the manager anything; inside a VM's unit nobody does. */
#define LIBSYSTEMD_SONAME "libsystemd.so.0"
static void *libsystemd;
DLSYM_PROTOTYPE(sd_bus_open_system);
DLSYM_PROTOTYPE(sd_bus_flush_close_unref);
DLSYM_PROTOTYPE(sd_bus_call_method);
DLSYM_PROTOTYPE(sd_bus_error_free);
DLSYM_PROTOTYPE(sd_bus_error_has_name);
DLSYM_PROTOTYPE(sd_bus_message_unref);
DLSYM_PROTOTYPE(sd_bus_message_read);
DLSYM_PROTOTYPE(sd_bus_get_property_string);

int unit_bus_open(sd_bus **ret, char **ret_error) {
        int r;

        r = dlopen_many(&libsystemd, LIBSYSTEMD_SONAME, ret_error,
                        DLSYM_ARG(sd_bus_open_system),
                        DLSYM_ARG(sd_bus_flush_close_unref),
                        DLSYM_ARG(sd_bus_call_method),
                        DLSYM_ARG(sd_bus_error_free),
                        DLSYM_ARG(sd_bus_error_has_name),
                        DLSYM_ARG(sd_bus_message_unref),
                        DLSYM_ARG(sd_bus_message_read),
                        DLSYM_ARG(sd_bus_get_property_string),
                        NULL);
        if (r < 0)
                return r;
        r = sym_sd_bus_open_system(ret);
        if (r < 0)
                return error_setf(ret_error, -r, "cannot connect to the system bus (%s)", strerror(-r));
        return 0;
}

sd_bus *unit_bus_close(sd_bus *bus) {
        if (bus)
                sym_sd_bus_flush_close_unref(bus);
        return NULL;
}

static void bus_error_freep(sd_bus_error *e) {
        sym_sd_bus_error_free(e);
}

static void bus_message_unrefp(sd_bus_message **m) {
        if (*m)
                sym_sd_bus_message_unref(*m);
}

bool active_state_is_running(const char *state) {
        /* Only these two mean no process of the unit runs or is about to. */
        return !streq(state, "inactive") && !streq(state, "failed");
}

static int ask_systemd(sd_bus *bus, const char *unit, bool *ret_running) {
        _cleanup_(bus_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *state = NULL;
        const char *path;
        int r;

        r = sym_sd_bus_call_method(bus, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                               "org.freedesktop.systemd1.Manager", "GetUnit", &error, &reply, "s", unit);
        if (r < 0) {
                if (sym_sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit")) {
                        *ret_running = false; /* not even loaded */
                        return 0;
                }
                return r;
        }
        r = sym_sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return r;
        r = sym_sd_bus_get_property_string(bus, "org.freedesktop.systemd1", path, "org.freedesktop.systemd1.Unit",
                                       "ActiveState", &error, &state);
        if (r < 0)
                return r;
        *ret_running = active_state_is_running(state);
        return 0;
}

int vm_unit_running(sd_bus *bus, const char *id, const char *unit_cgroup, UnitRunning *ret, const char **ret_how) {
        _cleanup_free_ char *unit = unit_name_for(id), *mount = NULL;
        _cleanup_close_ int fd = -EBADF;
        bool running;
        int r;

        if (!unit)
                return -ENOMEM;
        if (bus) {
                r = ask_systemd(bus, unit, &running);
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
