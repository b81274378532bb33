/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Whether a unit has stopped (ActiveState inactive or failed, or no longer
 * loaded), told by the manager's PropertiesChanged signals, for a caller
 * that polls the bus's fd beside its own (microvmctl logs -f
 * --until-stop). libsystemd through sd-lib.h: sd_lib_load() first. */

#include "sd-lib.h"

typedef struct UnitWatch {
        sd_bus *bus;            /* not owned */
        sd_bus_slot *slot;
        char *unit;
        char *path;             /* NULL: not loaded */
        bool changed;
        bool stopped;
} UnitWatch;

/* Subscribes first, then reads the state once: no change is missed. */
int unit_watch_begin(UnitWatch *w, sd_bus *bus, const char *unit, char **ret_error);
/* Dispatches what the bus has; then w->stopped tells. */
int unit_watch_process(UnitWatch *w, char **ret_error);
/* For poll(): the fd, its events, and the bus's timeout in ms (-1: none). */
int unit_watch_poll_fd(UnitWatch *w, short *ret_events, int *ret_timeout_ms);
void unit_watch_done(UnitWatch *w);
