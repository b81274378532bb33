/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <time.h>

#include "manager.h"
#include "unit-state.h"
#include "unit-watch.h"
#include "util.h"

#define SD_DEST "org.freedesktop.systemd1"

static int properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        UnitWatch *w = userdata;

        (void) m;
        (void) ret_error;
        w->changed = true;
        return 0;
}

static int unit_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        UnitWatch *w = userdata;
        const char *unit = NULL, *path = NULL;

        (void) ret_error;
        if (sym_sd_bus_message_read(m, "so", &unit, &path) >= 0 && streq(unit, w->unit))
                w->changed = true;
        return 0;
}

/* Looks at the unit now. */
static int look(UnitWatch *w, char **ret_error) {
        _cleanup_free_ char *state = NULL;
        int r;

        w->changed = false;
        r = manager_get_string(w->bus, w->path, "org.freedesktop.systemd1.Unit", "ActiveState", &state);
        if (r < 0) {
                /* Unloaded meanwhile (garbage-collected once inactive). */
                _cleanup_free_ char *path = NULL;
                r = manager_unit_path(w->bus, w->unit, false, &path, ret_error);
                if (r == -ENOENT) {
                        w->stopped = true;
                        return 0;
                }
                return r < 0 ? r : error_setf(ret_error, EIO, "cannot read the ActiveState of %s", w->unit);
        }
        w->stopped = !active_state_is_running(state);
        return 0;
}

int unit_watch_begin(UnitWatch *w, sd_bus *bus, const char *unit, char **ret_error) {
        _cleanup_(sd_lib_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        *w = (UnitWatch) { .bus = bus };
        w->unit = strdup(unit);
        if (!w->unit)
                return -ENOMEM;
        r = manager_unit_path(bus, unit, false, &w->path, ret_error);
        if (r == -ENOENT) {
                w->stopped = true; /* not even loaded */
                return 0;
        }
        if (r < 0)
                return r;
        /* The manager sends unit signals to subscribed clients only. */
        r = sym_sd_bus_match_signal(bus, &w->slot, SD_DEST, w->path, "org.freedesktop.DBus.Properties",
                                    "PropertiesChanged", properties_changed, w);
        if (r >= 0)
                /* floating: it goes with the bus */
                r = sym_sd_bus_match_signal(bus, NULL, SD_DEST, "/org/freedesktop/systemd1",
                                            "org.freedesktop.systemd1.Manager", "UnitRemoved", unit_removed, w);
        if (r < 0)
                return error_setf(ret_error, -r, "cannot watch %s: %s", unit, strerror(-r));
        r = sym_sd_bus_call_method(bus, SD_DEST, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                                   "Subscribe", &error, NULL, "");
        if (r < 0 && !sym_sd_bus_error_has_name(&error, "org.freedesktop.systemd1.AlreadySubscribed"))
                return error_setf(ret_error, -r, "cannot subscribe to the manager's signals: %s",
                                  error.message ?: strerror(-r));
        return look(w, ret_error);
}

int unit_watch_process(UnitWatch *w, char **ret_error) {
        int r;

        if (w->stopped)
                return 0;
        do {
                r = sym_sd_bus_process(w->bus, NULL);
                if (r < 0)
                        return error_setf(ret_error, -r, "lost the bus while watching %s: %s", w->unit,
                                          strerror(-r));
        } while (r > 0);
        return w->changed ? look(w, ret_error) : 0;
}

int unit_watch_poll_fd(UnitWatch *w, short *ret_events, int *ret_timeout_ms) {
        uint64_t t = UINT64_MAX;
        int fd = sym_sd_bus_get_fd(w->bus), ev = sym_sd_bus_get_events(w->bus);

        if (fd < 0)
                return fd;
        if (ev < 0)
                return ev;
        *ret_events = (short) ev;
        *ret_timeout_ms = -1;
        if (sym_sd_bus_get_timeout(w->bus, &t) >= 0 && t != UINT64_MAX) {
                uint64_t now = now_usec(CLOCK_MONOTONIC);
                *ret_timeout_ms = t > now ? (int) MIN((t - now + 999) / 1000, (uint64_t) INT32_MAX) : 0;
        }
        return fd;
}

void unit_watch_done(UnitWatch *w) {
        if (w->slot)
                sym_sd_bus_slot_unref(w->slot);
        free(w->unit);
        free(w->path);
        *w = (UnitWatch) {};
}
