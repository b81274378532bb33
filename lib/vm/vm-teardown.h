/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Tearing down everything a VM's start created, in dependency order:
 *   1. the processes: cgroup.kill of the unit's sub-cgroups, wait for
 *      them to drain, rmdir (never the unit cgroup itself);
 *   2. taps, then device-mapper devices (loops detach themselves);
 *   3. the jail (<chroot_base>/<exec>/<id>), with safe-fs removal: it may
 *      hold anything the VM planted;
 *   4. for ephemeral VMs, the disk state in <state_dir>/<id>/; for all,
 *      the temporary files a killed stage left there;
 *   5. the run dir (<run_dir>/<id>: plan, FIFO), only when all of the
 *      above went: the plan names what is left for the next attempt.
 * Shared by microvm-stage (reset before building), microvm-cleanup
 * (ExecStopPost=) and microvm-reclaim. Every step runs even when an earlier
 * one failed; every object that could not be removed is reported. A VM
 * that was never staged is a no-op. */

#include "config.h"
#include "plan.h"

typedef struct TeardownTarget {
        const char *id;
        const HostConfig *host;
        /* The plan of the run to undo; NULL when there is none (a stage that
         * died before writing it, or nothing ever staged): then the names
         * are derived from the host config and exec_name. */
        const Plan *plan;
        const char *exec_name;  /* used without a plan; NULL: every <chroot_base>/<*>/<id> */
        /* Processes: the unit cgroup (relative to the cgroup2 mount); NULL:
         * leave processes and cgroups alone. */
        const char *unit_cgroup;
        /* The unit cgroup's children are killed and removed, except this
         * one (".control" when we run there as ExecStopPost=, and for
         * reclaim; NULL when we run in the unit cgroup itself, as
         * ExecStartPre= does). The unit cgroup itself, and the processes
         * in it, are never touched: they are systemd's (the cgroup it
         * creates and spawns a start's first process into). */
        const char *keep_child;
        bool keep_run_dir;      /* stage keeps <run_dir>/<id> (it rewrites it) */
        /* dm devices still open are left to the kernel's deferred removal
         * (cleanup: the VMM may still be exiting) instead of being reported
         * and left (reclaim, stage's reset). */
        bool storage_deferred;
        bool remove_state;      /* drop <state_dir>/<id>/ disk state (ephemeral VMs) */
} TeardownTarget;

typedef struct TeardownReport {
        char **failed;          /* one message per object left behind */
        char **deferred;        /* dm devices left to the kernel's deferred removal */
        char **foreign;         /* objects the plan names that are not ours, left alone */
        unsigned n_cgroups_killed;
        unsigned n_cgroups_removed;
        bool jail_removed;
        bool run_dir_removed;
        bool state_kept_for_snapshot;   /* remove_state was asked, but a suspend snapshot holds the disks */
} TeardownReport;

/* Returns 0 when everything is gone, else the first error (and report
 * lists every object left). */
int vm_teardown(const TeardownTarget *t, TeardownReport *report);
void teardown_report_done(TeardownReport *r);

/* Reads <run_dir>/<id>/plan. -ENOENT when there is none. *ret_error (if
 * given) is set when the run dir cannot be trusted or the plan is invalid. */
int vm_plan_read(const HostConfig *host, const char *id, Plan **ret, char **ret_error);
/* The same below an already opened run dir. */
int vm_plan_read_at(int run_fd, const char *id, Plan **ret, char **ret_error);

/* The relative cgroup path of microvm@<id>.service as seen from our own
 * cgroup. When we run as one of its control processes, that is our cgroup
 * (systemd runs ExecStartPre= of a delegated unit in the unit cgroup
 * itself, before a main process exists) or its parent (ExecStop= and
 * ExecStopPost= run in its ".control" child): *ret_inside is true and
 * *ret_child (optional) names the child we run in, or NULL. Otherwise it
 * is <slice>/microvm@<id>.service below the root of our cgroup namespace,
 * and *ret_inside is false. */
int vm_unit_cgroup(const char *id, char **ret, bool *ret_inside, const char **ret_child);

/* The lock between microvm-stage (shared, for its whole run) and
 * microvm-reclaim (exclusive, while it checks that a VM's unit is not
 * running and tears it down): reclaim never removes what a stage that is
 * running right now builds. <run_dir>/.lock, created if missing. */
int vm_reclaim_lock(int run_fd, bool exclusive, int *ret_fd);
