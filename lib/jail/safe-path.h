/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The pure half of lib/jail/safe-fs: lexical checks on the paths and names that
 * safe-fs accepts, and the verdict on a stat of a directory we are asked to
 * trust. Nothing here touches the filesystem, so all of it is unit-tested
 * (tests/unit/test-safe-path.c) and fuzzable. Lexical checks are no
 * security boundary on their own (a checked name can still be a symlink
 * when it is opened); they only make sure that safe-fs never has to
 * interpret "..", "." or "//", so that its openat2() and component-walk
 * implementations mean exactly the same thing. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

/* One path component: 1..NAME_MAX bytes, no '/', not "." or "..". */
bool filename_valid(const char *s);

typedef enum RelPathProblem {
        RELPATH_OK,
        RELPATH_EMPTY,
        RELPATH_ABSOLUTE,
        RELPATH_TRAILING_SLASH,
        RELPATH_DOUBLE_SLASH,
        RELPATH_DOT,
        RELPATH_DOTDOT,
        RELPATH_COMPONENT_TOO_LONG,
        RELPATH_TOO_LONG,
        RELPATH_TOO_DEEP,
} RelPathProblem;

/* A relative path below a directory fd, as every safe-fs call takes it:
 * components separated by single '/', each filename_valid(), no leading or
 * trailing '/', shorter than PATH_MAX, at most RELPATH_DEPTH_MAX
 * components. */
#define RELPATH_DEPTH_MAX 64
RelPathProblem relative_path_check(const char *p);
static inline bool relative_path_valid(const char *p) {
        return relative_path_check(p) == RELPATH_OK;
}
const char *relative_path_problem_to_string(RelPathProblem p);

/* Iterates the components of a path (relative or absolute; empty components
 * from '//' are skipped). Returns the length of the next component and sets
 * *ret_start to it, or 0 at the end. *p is advanced past the component. */
size_t path_next_component(const char **p, const char **ret_start);

/* Number of components (as path_next_component() counts them). */
size_t path_n_components(const char *p);

/* For a valid relative path: the offset of its last component. 0 for a
 * single-component path; otherwise the parent is the first ret-1 bytes. */
size_t path_last_component_offset(const char *p);

typedef enum TrustedProblem {
        TRUSTED_OK,
        TRUSTED_SYMLINK,
        TRUSTED_NOT_DIRECTORY,
        TRUSTED_NOT_REGULAR,
        TRUSTED_NOT_ROOT_OWNED,
        TRUSTED_GROUP_WRITABLE,
        TRUSTED_WORLD_WRITABLE,
} TrustedProblem;

/* The verdict on one component of a path that root is asked to trust (a
 * chroot base, the state dir, a binary it will execute): it must be a
 * directory (or, with want_regular, for the last component, a regular
 * file) owned by uid 0 and writable by nobody else. Group-writable is
 * refused even for gid 0, and a sticky, world-writable directory such as
 * /tmp is refused too: the sticky bit stops others from deleting our
 * entries, but not from creating the next component before we do. */
TrustedProblem trusted_inode_check(const struct stat *st, bool want_regular);
const char *trusted_problem_to_string(TrustedProblem p);

/* Name of the temporary file safe-fs creates next to name when O_TMPFILE
 * is unavailable: ".#<name>.<16 hex digits>", truncated so that it always
 * fits NAME_MAX. buf must hold NAME_MAX + 1 bytes. Returns -EINVAL for an
 * invalid name. */
#define SAFE_TEMP_PREFIX ".#"
int safe_temp_name(const char *name, unsigned long long random, char *buf, size_t size);
/* Name under which safe_rm_rf_at() moves a too-deep subtree up to the top
 * of the tree it is removing. */
#define SAFE_RM_HOIST_PREFIX ".microvm-rm-"
