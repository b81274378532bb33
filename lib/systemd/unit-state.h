/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A unit's state, asked of the service manager over the system bus. */

#include <systemd/sd-bus.h>

#include "macro.h"

/* The system bus, with libsystemd loaded on first use (only runs that ask
 * the manager pay for loading it): 0, or -errno with the reason (no
 * library, no bus) in *ret_error (optional). */
int unit_bus_open(sd_bus **ret, char **ret_error);
sd_bus *unit_bus_close(sd_bus *bus);
static inline void unit_bus_closep(sd_bus **bus) {
        *bus = unit_bus_close(*bus);
}

/* Pure: does an ActiveState value mean "leave it alone"? */
bool active_state_is_running(const char *state);

/* Whether the unit (a full unit name) runs or is about to: 0 and
 * *ret_running (false also when the unit is not loaded), or -errno when
 * the manager did not answer. */
int unit_is_running(sd_bus *bus, const char *unit, bool *ret_running);
