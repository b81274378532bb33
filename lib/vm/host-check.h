/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* What microvm-stage would refuse on this host, checked without changing
 * anything, for `microvmctl validate` (which skips it with --offline):
 *  - the kernel, the initrd and every drive's backing file exist and are
 *    readable regular files (block devices for mode = block);
 *  - every NIC's bridge exists and is a bridge;
 *  - a fixed tap name is free, or a tap of the VM's own recorded uid;
 *  - the VM has a uid: its record, or room in uid_range for a new one
 *    (uid = N: not recorded for another VM).
 * Each finding is a problem naming the file, section, key and value, like
 * the validator's. Returns 0 (problems may have been added) or -ENOMEM. */

#include "config.h"
#include "problems.h"

/* The uid records of every VM in <state_dir>, read once for all VMs
 * checked in one run. */
typedef struct HostUidView {
        bool loaded;
        int error;              /* <0: state_dir could not be read (then no uid check) */
        char *error_message;
        struct UidOwner *owners;
        size_t n_owners;
} HostUidView;

void host_uid_view_done(HostUidView *v);

int vm_host_check(const HostConfig *h, const VmConfig *c, HostUidView *uids, Problems *problems);

/* Pure: is there a uid in [min, max] that no owner other than id holds?
 * (NSS and subordinate ranges are left to the allocation itself.) */
bool uid_range_has_room(uid_t min, uid_t max, const struct UidOwner *owners, size_t n, const char *id);
