/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The reclaim logic of microvm-reclaim (at boot) and `microvmctl gc` (on
 * demand): find what VMs left behind — jails under the chroot base, run
 * dirs, cgroups below microvm.slice, dm devices of ours — and tear down,
 * with vm_teardown(), every VM whose unit is not running. Only names that
 * are valid VM ids, in our directories, in microvm.slice are candidates.
 * Nothing here logs: messages go into the scan and result structures. */

#include "config.h"
#include "vm-teardown.h"
#include "vm-unit.h"

typedef struct ReclaimCandidate {
        char id[VM_ID_MAX + 1];
        bool jail, run_dir, cgroup, storage;
} ReclaimCandidate;

typedef struct ReclaimScan {
        ReclaimCandidate *items;
        size_t n;
        char **warnings;        /* things seen and left alone (a symlink: not ours) */
        char **errors;          /* directories not looked into, and why */
} ReclaimScan;

/* The candidate for id, added if new; NULL for an invalid id or on OOM. */
ReclaimCandidate *reclaim_candidate(ReclaimScan *s, const char *id);
/* Every VM that left something. Returns the first error of a directory
 * that could not be looked into (after scanning everything else; the
 * messages are in s->errors), or -ENOMEM. */
int reclaim_scan(const HostConfig *host, ReclaimScan *s);
void reclaim_scan_done(ReclaimScan *s);

typedef struct ReclaimResult {
        bool running;           /* the unit runs: left alone */
        bool starting;          /* a start has begun (a process in its cgroup): left alone */
        const char *how;        /* what the running check was based on */
        char *plan_error;       /* the plan was unusable: torn down by names */
        char *what;             /* dry run: "jail, run directory and cgroup" */
        TeardownReport report;  /* not a dry run: what went, what was left */
} ReclaimResult;

/* One candidate: under the exclusive reclaim lock (run_fd, -EBADF: none),
 * asks whether its unit runs (bus may be NULL: the cgroup's population)
 * and, unless it does, tears it down (dry_run: says what it would remove).
 * Returns 0, or the teardown's first error (r->report lists each object
 * left); -errno with *ret_error when the lock or the running check failed. */
int reclaim_vm(sd_bus *bus, const HostConfig *host, int run_fd, const ReclaimCandidate *c, bool dry_run,
               ReclaimResult *r, char **ret_error);
void reclaim_result_done(ReclaimResult *r);

/* After every VM's teardown: detaches loops of ours that nothing uses and
 * removes abandoned device-mapper udev cookies. *ret_loops and
 * *ret_cookies: how many; *ret_failed: what could not be removed. Returns
 * the loops' first error, else 0. */
int reclaim_host_leftovers(int *ret_loops, int *ret_cookies, char ***ret_failed);
