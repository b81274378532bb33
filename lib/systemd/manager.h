/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Asking systemd's manager about units and acting on them over D-Bus, for
 * microvmctl (libsystemd through lib/systemd/sd-lib.h: call sd_lib_load()
 * first). Nothing here logs: -errno and a message in *ret_error. */

#include "sd-lib.h"

/* The local system bus (host NULL), or [user@]host's through ssh
 * (sd_bus_open_system_remote). */
int manager_open(const char *host, sd_bus **ret, char **ret_error);
/* Root only: the manager's private socket /run/systemd/private, which
 * systemctl uses as root too. Every call then goes straight to PID 1,
 * without the hop through the bus daemon (which doubles the cost of the
 * ~2 calls per running VM of a list). -errno when it cannot be used; the
 * caller then takes the system bus. In lib/systemd/manager-direct.c. */
int manager_open_direct(sd_bus **ret);

typedef struct ManagerUnit {
        char *name;             /* microvm@web1.service */
        char *load_state;
        char *active_state;
        char *sub_state;
        char *path;             /* its object path */
        /* Filled in by manager_unit_facts(): */
        uint32_t main_pid;
        uint64_t state_change_usec;     /* CLOCK_REALTIME µs, 0: unknown */
} ManagerUnit;

/* Every unit the manager has loaded whose name matches pattern (a glob,
 * e.g. "microvm@*.service"), one ListUnitsByPatterns call. */
int manager_list_units(sd_bus *bus, const char *pattern, ManagerUnit **ret, size_t *ret_n, char **ret_error);
/* The same in two halves, for a caller with other work to do meanwhile:
 * the call is queued at once (on a connection still authenticating, it goes
 * out when manager_kick() or the wait finds the manager's OK), and the wait
 * reads the answer and frees c, also on failure. The bus connects without
 * waiting: opened, asked and then left alone, it costs no idle round trip. */
typedef struct ManagerListCall ManagerListCall;
int manager_list_units_send(sd_bus *bus, const char *pattern, ManagerListCall **ret, char **ret_error);
int manager_list_units_wait(sd_bus *bus, ManagerListCall *c, ManagerUnit **ret, size_t *ret_n, char **ret_error);
/* Drops a call whose answer is no longer wanted. */
void manager_list_call_free(ManagerListCall *c);
/* Does what the connection can do without waiting (read what arrived,
 * write what is queued); 0 or -errno. */
int manager_kick(sd_bus *bus);
void manager_units_free(ManagerUnit *u, size_t n);

/* MainPID and StateChangeTimestamp of the units with want[i] set, asked
 * all at once (pipelined calls, at most a window of them in flight) rather
 * than one round trip after another. Units whose answer fails keep 0. */
int manager_unit_facts(sd_bus *bus, ManagerUnit *units, size_t n, const bool *want, char **ret_error);
/* The same in two halves, for a caller with other work to do while the
 * manager answers: send (at most window calls in flight; SIZE_MAX on the
 * manager's private socket, where no bus daemon limits pending replies),
 * then wait, which fills in the units (still at the same address) and
 * frees f, also on failure. */
typedef struct ManagerFacts ManagerFacts;
int manager_unit_facts_send(sd_bus *bus, ManagerUnit *units, size_t n, const bool *want, size_t window,
                            ManagerFacts **ret, char **ret_error);
int manager_unit_facts_wait(sd_bus *bus, ManagerFacts *f, char **ret_error);
void manager_facts_free(ManagerFacts *f);

/* One property of a unit by object path, 'u' or 't' typed. */
int manager_get_u64(sd_bus *bus, const char *path, const char *iface, const char *property, char type,
                    uint64_t *ret);
int manager_get_string(sd_bus *bus, const char *path, const char *iface, const char *property, char **ret);
/* The object path of unit (GetUnit; -ENOENT when not loaded), or of
 * unit loaded on demand (LoadUnit) with load. */
int manager_unit_path(sd_bus *bus, const char *unit, bool load, char **ret, char **ret_error);

/* method is StartUnit, StopUnit or RestartUnit: queues the job (mode
 * "replace") and waits until the manager says it is done. *ret_result is
 * the job's result ("done", "failed", "canceled", "timeout", "dependency",
 * "skipped", ...). */
int manager_unit_job(sd_bus *bus, const char *method, const char *unit, char **ret_result, char **ret_error);
