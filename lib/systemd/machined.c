/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <systemd/sd-bus.h>

#include "dlopen-util.h"
#include "machined.h"
#include "util.h"

#define MACHINED_DEST "org.freedesktop.machine1"
#define MACHINED_PATH "/org/freedesktop/machine1"
#define MACHINED_MANAGER "org.freedesktop.machine1.Manager"
#define MACHINED_MACHINE "org.freedesktop.machine1.Machine"

/* Linux's HOST_NAME_MAX, which machined's check uses. */
#define MACHINE_NAME_MAX 64

bool machine_name_valid(const char *name) {
        bool dot = true, hyphen = false; /* "dot": at the start of a label */
        size_t n = 0;

        if (!name || !*name)
                return false;
        for (const char *p = name; *p; p++, n++) {
                if (*p == '.') {
                        if (dot || hyphen)
                                return false;
                        dot = true;
                        hyphen = false;
                } else if (*p == '-') {
                        if (dot)
                                return false;
                        hyphen = true;
                } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')) {
                        dot = hyphen = false;
                } else
                        return false;
        }
        return !dot && !hyphen && n <= MACHINE_NAME_MAX;
}

static void *libsystemd;
DLSYM_PROTOTYPE(sd_bus_open_system);
DLSYM_PROTOTYPE(sd_bus_flush_close_unref);
DLSYM_PROTOTYPE(sd_bus_set_method_call_timeout);
DLSYM_PROTOTYPE(sd_bus_call_method);
DLSYM_PROTOTYPE(sd_bus_call);
DLSYM_PROTOTYPE(sd_bus_message_new_method_call);
DLSYM_PROTOTYPE(sd_bus_message_append);
DLSYM_PROTOTYPE(sd_bus_message_append_array);
DLSYM_PROTOTYPE(sd_bus_message_read);
DLSYM_PROTOTYPE(sd_bus_message_unref);
DLSYM_PROTOTYPE(sd_bus_get_property_string);
DLSYM_PROTOTYPE(sd_bus_error_free);
DLSYM_PROTOTYPE(sd_bus_error_has_name);

static void bus_closep(sd_bus **b) {
        if (*b)
                sym_sd_bus_flush_close_unref(*b);
}
static void message_unrefp(sd_bus_message **m) {
        if (*m)
                sym_sd_bus_message_unref(*m);
}
static void error_freep(sd_bus_error *e) {
        sym_sd_bus_error_free(e);
}

/* 1 with the bus, 0 when there is none (*ret_error says why), <0. */
static int bus_open(uint64_t timeout_usec, sd_bus **ret, char **ret_error) {
        int r;

        r = dlopen_many(&libsystemd, "libsystemd.so.0", ret_error,
                        DLSYM_ARG(sd_bus_open_system),
                        DLSYM_ARG(sd_bus_flush_close_unref),
                        DLSYM_ARG(sd_bus_set_method_call_timeout),
                        DLSYM_ARG(sd_bus_call_method),
                        DLSYM_ARG(sd_bus_call),
                        DLSYM_ARG(sd_bus_message_new_method_call),
                        DLSYM_ARG(sd_bus_message_append),
                        DLSYM_ARG(sd_bus_message_append_array),
                        DLSYM_ARG(sd_bus_message_read),
                        DLSYM_ARG(sd_bus_message_unref),
                        DLSYM_ARG(sd_bus_get_property_string),
                        DLSYM_ARG(sd_bus_error_free),
                        DLSYM_ARG(sd_bus_error_has_name),
                        NULL);
        if (r < 0)
                return 0; /* no libsystemd, hence no machined either */
        r = sym_sd_bus_open_system(ret);
        if (r < 0) {
                error_setf(ret_error, -r, "no system bus (%s)", strerror(-r));
                return 0;
        }
        (void) sym_sd_bus_set_method_call_timeout(*ret, timeout_usec);
        return 1;
}

/* Errors that mean "no machined here" rather than "machined said no": the
 * bus knows no such service or could not activate it (not installed,
 * masked, failed to start: dbus-daemon passes systemd's error on). */
static bool machined_is_absent(const sd_bus_error *e) {
        return e->name && (streq(e->name, "org.freedesktop.DBus.Error.ServiceUnknown") ||
                           streq(e->name, "org.freedesktop.DBus.Error.NameHasNoOwner") ||
                           startswith(e->name, "org.freedesktop.DBus.Error.Spawn.") ||
                           startswith(e->name, "org.freedesktop.systemd1."));
}

static int bus_failed(const sd_bus_error *e, int r, const char *what, char **ret_error) {
        return error_setf(ret_error, -r, "%s: %s", what, e->message ?: strerror(-r));
}

/* The unit machined has for machine name: 0 and *ret, or -ENOENT. */
static int machine_unit(sd_bus *bus, const char *name, char **ret, char **ret_error) {
        _cleanup_(error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        int r;

        r = sym_sd_bus_call_method(bus, MACHINED_DEST, MACHINED_PATH, MACHINED_MANAGER, "GetMachine", &error, &reply,
                                   "s", name);
        if (r < 0) {
                if (sym_sd_bus_error_has_name(&error, "org.freedesktop.machine1.NoSuchMachine"))
                        return -ENOENT;
                return bus_failed(&error, r, "GetMachine", ret_error);
        }
        r = sym_sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return error_setf(ret_error, -r, "GetMachine: unexpected reply (%s)", strerror(-r));
        r = sym_sd_bus_get_property_string(bus, MACHINED_DEST, path, MACHINED_MACHINE, "Unit", &error, ret);
        if (r < 0)
                return bus_failed(&error, r, "the machine's Unit property", ret_error);
        return 0;
}

static int unregister(sd_bus *bus, const char *name, char **ret_error) {
        _cleanup_(error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sym_sd_bus_call_method(bus, MACHINED_DEST, MACHINED_PATH, MACHINED_MANAGER, "UnregisterMachine", &error,
                                   NULL, "s", name);
        if (r < 0 && !sym_sd_bus_error_has_name(&error, "org.freedesktop.machine1.NoSuchMachine"))
                return bus_failed(&error, r, "UnregisterMachine", ret_error);
        return 1;
}

static int register_call(sd_bus *bus, const MachineRegistration *m, sd_bus_error *error) {
        _cleanup_(message_unrefp) sd_bus_message *call = NULL;
        int r;

        r = sym_sd_bus_message_new_method_call(bus, &call, MACHINED_DEST, MACHINED_PATH, MACHINED_MANAGER,
                                               "RegisterMachineWithNetwork");
        if (r < 0)
                return r;
        /* name, id (empty: none), service, class, leader, root directory */
        r = sym_sd_bus_message_append(call, "s", m->name);
        if (r >= 0)
                r = sym_sd_bus_message_append_array(call, 'y', NULL, 0);
        if (r >= 0)
                r = sym_sd_bus_message_append(call, "ssus", MACHINE_SERVICE, "vm", (uint32_t) m->leader,
                                              m->root_directory ?: "");
        if (r >= 0)
                r = sym_sd_bus_message_append_array(call, 'i', m->ifindex, m->n_ifindex * sizeof(int32_t));
        if (r < 0)
                return r;
        return sym_sd_bus_call(bus, call, 0, error, NULL);
}

int machined_register(const MachineRegistration *m, uint64_t timeout_usec, char **ret_error) {
        _cleanup_(bus_closep) sd_bus *bus = NULL;
        int r;

        if (!machine_name_valid(m->name))
                return error_setf(ret_error, EINVAL, "\"%s\" is not a valid machine name", m->name);
        if (m->leader <= 1)
                return error_setf(ret_error, EINVAL, "no leader process");
        r = bus_open(timeout_usec, &bus, ret_error);
        if (r <= 0)
                return r;

        for (int attempt = 0;; attempt++) {
                _cleanup_(error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
                _cleanup_free_ char *unit = NULL;

                r = register_call(bus, m, &error);
                if (r >= 0)
                        return 1;
                if (machined_is_absent(&error)) {
                        error_setf(ret_error, -r, "machined is not available (%s)", error.message ?: error.name);
                        return 0;
                }
                if (attempt > 0 || !sym_sd_bus_error_has_name(&error, "org.freedesktop.machine1.MachineExists"))
                        return bus_failed(&error, r, "RegisterMachineWithNetwork", ret_error);

                /* A machine of this name exists. Ours from an earlier run
                 * of the unit (its leader is gone): replace it. Anyone
                 * else's: leave it. */
                r = machine_unit(bus, m->name, &unit, ret_error);
                if (r == -ENOENT)
                        continue; /* gone meanwhile */
                if (r < 0)
                        return r;
                if (!streq(unit, m->unit))
                        return error_setf(ret_error, EEXIST, "a machine named %s is registered already, for %s",
                                          m->name, unit);
                r = unregister(bus, m->name, ret_error);
                if (r < 0)
                        return r;
        }
}

int machined_unregister(const char *name, const char *unit, uint64_t timeout_usec, char **ret_error) {
        _cleanup_(error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(bus_closep) sd_bus *bus = NULL;
        _cleanup_free_ char *owner_unit = NULL;
        int has_owner = 0, r;

        r = bus_open(timeout_usec, &bus, ret_error);
        if (r <= 0)
                return r;
        /* A machined that does not run knows no machine (it would load its
         * records when started, and drop those whose unit is inactive):
         * do not start it only to ask. */
        r = sym_sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                   "NameHasOwner", &error, &reply, "s", MACHINED_DEST);
        if (r < 0)
                return bus_failed(&error, r, "NameHasOwner", ret_error);
        r = sym_sd_bus_message_read(reply, "b", &has_owner);
        if (r < 0)
                return error_setf(ret_error, -r, "NameHasOwner: unexpected reply (%s)", strerror(-r));
        if (!has_owner)
                return 0;
        r = machine_unit(bus, name, &owner_unit, ret_error);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!streq(owner_unit, unit))
                return 0; /* someone else's machine of that name */
        return unregister(bus, name, ret_error);
}
