/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What microvm-stage decides before it creates anything: each NIC's tap
 * name and MAC, and the launch plan that names everything it will create
 * (so that a SIGKILL at any later point leaves only what the plan names). */

#include <stdint.h>
#include <sys/types.h>

#include "config.h"
#include "names.h"
#include "plan.h"

typedef struct StageNetwork {
        char **taps;            /* per NIC, in config order */
        uint8_t (*macs)[6];     /* per NIC */
} StageNetwork;

void stage_network_done(StageNetwork *n);

/* Tap names (tap = auto: derived from id and NIC name) and MACs (mac =
 * auto: derived from /etc/machine-id, the id and the NIC name). */
int stage_network_plan(const VmConfig *vm, const char *id, StageNetwork *ret, char **ret_error);

typedef struct StagePlanInput {
        const HostConfig *host;
        const VmConfig *vm;
        const VmPaths *paths;
        const char *id;
        const char *exec_file;  /* canonical firecracker path */
        const char *exec_name;
        uid_t uid;
        gid_t gid;
        char *const *taps;
} StagePlanInput;

/* The launch plan for one start: -ENOMEM is the only error. */
int stage_plan_build(const StagePlanInput *in, Plan **ret);
