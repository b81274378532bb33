/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Tap devices for VM NICs, through tun and socket ioctls (no ip(8)). A tap
 * is created persistent, owned by the VM's uid:gid so that firecracker can
 * attach to it after dropping privileges, with the flags firecracker opens
 * it with (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR: the kernel refuses to attach
 * with other flags), optionally with an MTU and on a bridge, and up. */

#include <sys/types.h>

#include "macro.h"

#define TAP_FLAGS_FIRECRACKER_DESC "tap, no packet info, vnet header"

typedef struct TapInfo {
        bool exists;
        bool is_tap;            /* a tun/tap device (has tun_flags) */
        uid_t owner;            /* (uid_t) -1: none */
        gid_t group;
} TapInfo;

/* Looks at /sys/class/net/<name>. */
int tap_inspect(const char *name, TapInfo *ret);

/* Creates the tap (or adopts an existing one that is a tap owned by uid),
 * sets owner, group, MTU (0: leave), bridge (NULL: none) and brings it up. */
int tap_create(const char *name, uid_t uid, gid_t gid, uint32_t mtu, const char *bridge);

/* Deletes a tap. 0 if it did not exist. Refuses (-EPERM) an interface that
 * is not a tap, or a tap not owned by expected_uid ((uid_t) -1: any). */
int tap_delete(const char *name, uid_t expected_uid);
