/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A read-only view of the file system for the calling process, made by the
 * process itself in a few system calls: what systemd's ProtectSystem=strict
 * with ReadWritePaths=, ProtectKernelTunables=, ProtectControlGroups=,
 * ProtectHome= and PrivateTmp= give a service, for a short-lived root
 * process that pays for its sandbox on every start (microvm-metrics: one
 * per scrape). systemd builds those views mount by mount and reads the mount
 * table between steps: 20-30 ms per start on a nested-virtualisation host,
 * against well under a millisecond here.
 *
 * In a new mount namespace (all mounts slaves of the host's: nothing done
 * here is seen outside, mounts made later on the host still arrive):
 *  - every mount is set read-only and nosuid, recursively, in one
 *    mount_setattr(2): /, /proc (and /proc/sys), /sys (and the cgroup
 *    tree), /run, /tmp, ...; a root process with CAP_DAC_OVERRIDE can then
 *    write no file (sysctl, cgroup attribute, unit file) outside
 *  - the writable trees: clones taken before (open_tree(2)), put back on
 *    top (move_mount(2)); a path that does not exist is skipped
 *  - the hidden directories: an empty read-only tmpfs on top, unless a
 *    writable tree lies inside (it would be hidden too); one that does not
 *    exist is skipped.
 * Device nodes, and the AF_UNIX sockets of journald, the bus and the VMMs,
 * still open and connect on read-only mounts.
 *
 * It holds only as long as the process cannot make mounts again: deny the
 * mount calls (seccomp_deny_mount) and unshare/setns right after. Needs
 * CAP_SYS_ADMIN and Linux 5.12 (mount_setattr); -ENOSYS before that. On
 * failure the process is in an unknown state of the above and must exit. */

#include "macro.h"

/* writable, hidden: NULL-terminated absolute paths (either may be NULL).
 * ret_error (optional): what failed, naming the path. */
int mount_sandbox_read_only(const char *const *writable, const char *const *hidden, char **ret_error);
