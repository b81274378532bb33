/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dlopen-util.h"
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

int unit_is_running(sd_bus *bus, const char *unit, bool *ret_running) {
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
