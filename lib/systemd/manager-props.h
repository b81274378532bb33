/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Many unit properties at once: pipelined Properties.Get calls (at most a
 * window of them in flight) instead of one round trip after another, for
 * the metrics scrape. Call sd_lib_load() first. */

#include "sd-lib.h"

typedef struct ManagerPropQuery {
        const char *path;       /* the unit's object path */
        const char *iface;      /* "org.freedesktop.systemd1.Service", ... */
        const char *property;
        char type;              /* 'u' or 't' */
        uint64_t *value;        /* set when the answer is one of type */
        bool *ok;               /* optional: true when it was */
} ManagerPropQuery;

/* Answers that fail leave their value alone. Waits at most until deadline
 * (CLOCK_MONOTONIC µs): -ETIMEDOUT past it, with what came in set. */
int manager_get_many(sd_bus *bus, ManagerPropQuery *q, size_t n, usec_t deadline, char **ret_error);
