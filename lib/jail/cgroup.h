/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* cgroup v2 helpers: find the cgroup2 mount (/sys/fs/cgroup on a unified
 * host, /sys/fs/cgroup/unified on a hybrid one), find a process's cgroup,
 * move into a leaf, and tear a subtree down the way crun does: write
 * cgroup.kill, wait for "populated 0" in cgroup.events, rmdir deepest
 * first, retrying EBUSY with a bounded back-off. Paths are relative to the
 * cgroup2 root and start with '/'. */

#include <sys/types.h>

#include "macro.h"

#define CGROUP_CONTROL_LEAF ".control"  /* where systemd runs a delegated unit's control processes */
#define CGROUP_DEPTH_MAX 32

/* The cgroup2 mount point (first cgroup2 entry of /proc/self/mountinfo,
 * as the jailer picks the first of /proc/mounts). -ENOMEDIUM: none. */
int cgroup2_find_mount(char **ret);
/* Pure part of the above, for tests: parses mountinfo text. */
int cgroup2_mount_from_mountinfo(const char *text, char **ret);

/* The cgroup of pid (0: self), from the "0::" line of /proc/PID/cgroup. */
int cgroup_pid_path(pid_t pid, char **ret);
/* Pure part of the above: parses /proc/PID/cgroup text. */
int cgroup_path_from_proc(const char *text, char **ret);

/* Opens <mount><path> as an O_DIRECTORY fd. */
int cgroup_open(const char *mount, const char *path, int *ret_fd);

/* Whether the controller is in <mount><path>/cgroup.controllers, the
 * controllers the parent enabled for this cgroup (which it can only do
 * when its own parent did, up to the root). 1 yes, 0 no, -errno; *ret_list
 * (optional) gets the file's text, without the newline. */
int cgroup_has_controller(const char *mount, const char *path, const char *controller, char **ret_list);
/* Pure part of the above: is the word in a space-separated list? */
bool cgroup_controller_listed(const char *list, const char *controller);
/* Creates (or opens an existing) child cgroup of dir_fd. */
int cgroup_open_child(int dir_fd, const char *name, bool create, int *ret_fd);
/* Moves the calling process into the cgroup. */
int cgroup_enter(int cg_fd);
/* Reads the "populated" field of cgroup.events: 1, 0, or -errno. */
int cgroup_is_populated(int cg_fd);
/* Whether the cgroup itself (not its children) holds a process: 1, 0, or
 * -errno. */
int cgroup_has_own_processes(int cg_fd);

/* Kills every process in the cgroup and below (cgroup.kill; on kernels
 * before 5.14: freeze, SIGKILL what cgroup.procs lists, thaw). */
int cgroup_kill(int cg_fd);
/* Waits until the cgroup is unpopulated, at most timeout; -ETIMEDOUT. */
int cgroup_wait_unpopulated(int cg_fd, usec_t timeout);

typedef struct CgroupTeardown {
        unsigned killed;        /* cgroups that still had processes */
        unsigned removed;       /* cgroups removed */
        char *failed;           /* first cgroup that could not be removed (relative), or NULL */
        int error;              /* its error */
} CgroupTeardown;

/* Kills and removes every child cgroup of dir_fd (deepest first), except
 * one named skip (NULL: none): used on a unit's cgroup from its own
 * .control child. Runs every step; returns the first error. */
int cgroup_teardown_children(int dir_fd, const char *skip, usec_t timeout, CgroupTeardown *report);
void cgroup_teardown_done(CgroupTeardown *t);
