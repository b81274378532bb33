/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What two VMs on one host must not share, for `microvmctl validate
 * --all`: a MAC, a tap name, a fixed uid (uid = N), a fixed vsock CID,
 * and a block device or image one of them writes in place (mode = block
 * without read_only; the other modes write to the VM's own copy or CoW
 * volume and only read the image). Pure: the caller supplies each VM's
 * taps and MACs (stage_network_plan()) and, where it can tell, the
 * identity of each drive's backing object. Each conflict is a problem on
 * the later VM (by id), naming its file, section and key, and the other
 * VM. */

#include <sys/types.h>

#include "config.h"
#include "problems.h"
#include "stage-plan.h"

typedef struct DriveIdentity {
        bool known;             /* false: compare the paths as written */
        dev_t dev;              /* st_rdev for a block device, else st_dev */
        ino_t ino;              /* 0 for a block device */
} DriveIdentity;

typedef struct VmConflictInput {
        const VmConfig *vm;
        const StageNetwork *net;        /* NULL: the NICs' names could not be derived */
        const DriveIdentity *drives;    /* per drive; NULL: paths only */
} VmConflictInput;

/* vms sorted by id. Returns the number of conflicts found (problems
 * added), or -ENOMEM. */
int vm_conflicts_check(const VmConflictInput *vms, size_t n, Problems *problems);
