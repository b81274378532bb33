/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The launch plan: what microvm-stage decided, written to
 * <run_dir>/<id>/plan for microvm-launch (jailer argv inputs), microvm-stop
 * and microvm-cleanup. Cleanup and reclaim work from the plan, not from the
 * current config, so an edited or deleted config never strands a VM's
 * resources. Format: one "KEY=VALUE" per line, values C-escaped (no raw
 * newlines), unknown keys rejected, every key at most once except the list
 * keys (CGROUP, RLIMIT, TAP, DM, LOOP). Serializing and parsing are pure. */

#include <sys/types.h>

#include "config.h"
#include "util.h"

#define PLAN_VERSION 1
#define PLAN_LIST_MAX 64
#define PLAN_SIZE_MAX (64 * 1024)

typedef struct Plan {
        unsigned version;
        char id[VM_ID_MAX + 1];
        char *config_digest;    /* hex sha256 of the config file staged from */
        char *jailer;           /* path of the jailer binary (checked) */
        char *exec_file;        /* canonical path of firecracker */
        char *exec_name;        /* basename of exec_file */
        char *chroot_base;
        char *jail_dir;         /* <chroot_base>/<exec_name>/<id> */
        char *run_dir;          /* <run_dir>/<id> */
        char *state_dir;        /* <state_dir>/<id> */
        uid_t uid;
        gid_t gid;
        usec_t stop_timeout;
        bool ephemeral;
        char *config_file;      /* inside the jail, e.g. /vm-config.json */
        char *api_socket;       /* inside the jail, e.g. /run/firecracker.socket */
        char **cgroup;          /* jailer --cgroup values: "cpuset.cpus=0-3" */
        char **rlimit;          /* jailer --resource-limit values: "no-file=2048" */
        char *netns;            /* jailer --netns path, NULL: none */
        char *fc_log_level;     /* firecracker --level ("Warning"), NULL: its default (Info) */
        char **tap;             /* taps created for this VM (cleanup deletes them) */
        char **dm;              /* dm devices created for this VM, leaf first */
        /* Suspend and resume (suspend.h): */
        bool suspend;           /* on_host_shutdown = suspend (the config's or the host's) */
        char *suspend_blocker;  /* why this VM cannot be suspended after all, NULL: it can */
        usec_t suspend_timeout; /* for pause + snapshot create (the unit's TimeoutStopSec= holds it
                                 * only when suspend is set) */
        unsigned memory_mib;    /* guest memory: the memory file's size */
        bool resume;            /* stage found a valid snapshot: start firecracker without
                                 * --config-file, microvm-ready loads it */
} Plan;

Plan *plan_free(Plan *p);
static inline void plan_freep(Plan **p) {
        plan_free(*p);
}
#define _cleanup_plan_ _cleanup_(plan_freep)

/* Newly allocated text. */
char *plan_serialize(const Plan *p);
/* Pure parse; on failure returns -EINVAL and, if ret_error, a message
 * naming the line and the problem. */
int plan_parse(const char *text, size_t size, Plan **ret, char **ret_error);
