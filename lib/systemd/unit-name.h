/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* systemd's unit name escaping (systemd.unit(5), "String Escaping"), as
 * systemd-escape does it: '/' becomes '-', and '-', '\', a leading '.' and
 * every byte outside [a-zA-Z0-9:_.] become \xNN. Used for the .device unit
 * of a bridge (sys-subsystem-net-devices-<escaped>.device). */

#include "macro.h"

char *unit_name_escape(const char *s);
/* "sys-subsystem-net-devices-<escaped ifname>.device" */
char *unit_name_for_netdev(const char *ifname);
