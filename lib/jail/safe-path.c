/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <limits.h>

#include "macro.h"
#include "safe-path.h"

bool filename_valid(const char *s) {
        size_t l;

        if (isempty(s))
                return false;
        if (streq(s, ".") || streq(s, ".."))
                return false;
        l = strlen(s);
        if (l > NAME_MAX)
                return false;
        return !memchr(s, '/', l);
}

RelPathProblem relative_path_check(const char *p) {
        size_t depth = 0;

        if (isempty(p))
                return RELPATH_EMPTY;
        if (p[0] == '/')
                return RELPATH_ABSOLUTE;
        if (strlen(p) >= PATH_MAX)
                return RELPATH_TOO_LONG;

        for (const char *c = p;;) {
                const char *e = strchrnul(c, '/');
                size_t l = (size_t) (e - c);

                if (l == 0)
                        return *e ? RELPATH_DOUBLE_SLASH : RELPATH_TRAILING_SLASH;
                if (l == 1 && c[0] == '.')
                        return RELPATH_DOT;
                if (l == 2 && c[0] == '.' && c[1] == '.')
                        return RELPATH_DOTDOT;
                if (l > NAME_MAX)
                        return RELPATH_COMPONENT_TOO_LONG;
                if (++depth > RELPATH_DEPTH_MAX)
                        return RELPATH_TOO_DEEP;
                if (!*e)
                        return RELPATH_OK;
                c = e + 1;
        }
}

const char *relative_path_problem_to_string(RelPathProblem p) {
        switch (p) {
        case RELPATH_OK:
                return "valid";
        case RELPATH_EMPTY:
                return "is empty";
        case RELPATH_ABSOLUTE:
                return "is absolute (expected a path below a directory)";
        case RELPATH_TRAILING_SLASH:
                return "ends in '/'";
        case RELPATH_DOUBLE_SLASH:
                return "contains '//'";
        case RELPATH_DOT:
                return "contains a '.' component";
        case RELPATH_DOTDOT:
                return "contains a '..' component";
        case RELPATH_COMPONENT_TOO_LONG:
                return "has a component longer than NAME_MAX";
        case RELPATH_TOO_LONG:
                return "is longer than PATH_MAX";
        case RELPATH_TOO_DEEP:
                return "has too many components";
        }
        return "is invalid";
}

size_t path_next_component(const char **p, const char **ret_start) {
        const char *s = *p, *e;

        while (*s == '/')
                s++;
        e = strchrnul(s, '/');
        *ret_start = s;
        *p = e;
        return (size_t) (e - s);
}

size_t path_n_components(const char *p) {
        const char *c;
        size_t n = 0;

        while (path_next_component(&p, &c) > 0)
                n++;
        return n;
}

size_t path_last_component_offset(const char *p) {
        const char *slash = strrchr(p, '/');
        return slash ? (size_t) (slash - p) + 1 : 0;
}

TrustedProblem trusted_inode_check(const struct stat *st, bool want_regular) {
        if (S_ISLNK(st->st_mode))
                return TRUSTED_SYMLINK;
        if (want_regular ? !S_ISREG(st->st_mode) : !S_ISDIR(st->st_mode))
                return want_regular ? TRUSTED_NOT_REGULAR : TRUSTED_NOT_DIRECTORY;
        if (st->st_uid != 0)
                return TRUSTED_NOT_ROOT_OWNED;
        if (st->st_mode & S_IWOTH)
                return TRUSTED_WORLD_WRITABLE;
        if (st->st_mode & S_IWGRP)
                return TRUSTED_GROUP_WRITABLE;
        return TRUSTED_OK;
}

const char *trusted_problem_to_string(TrustedProblem p) {
        switch (p) {
        case TRUSTED_OK:
                return "trusted";
        case TRUSTED_SYMLINK:
                return "is a symlink (symlinks are never followed on a trusted path: use the real path)";
        case TRUSTED_NOT_DIRECTORY:
                return "is not a directory";
        case TRUSTED_NOT_REGULAR:
                return "is not a regular file";
        case TRUSTED_NOT_ROOT_OWNED:
                return "is not owned by root";
        case TRUSTED_GROUP_WRITABLE:
                return "is group-writable";
        case TRUSTED_WORLD_WRITABLE:
                return "is world-writable";
        }
        return "is not trusted";
}

int safe_temp_name(const char *name, unsigned long long random, char *buf, size_t size) {
        /* ".#" + name + "." + 16 hex digits; the name is cut so the whole
         * fits NAME_MAX. Only used inside directories we write to as root,
         * next to name, and never read back by name. */
        size_t keep;
        int n;

        if (!filename_valid(name) || size < NAME_MAX + 1)
                return -EINVAL;
        keep = MIN(strlen(name), (size_t) NAME_MAX - STRLEN(SAFE_TEMP_PREFIX) - 1 - 16);
        n = snprintf(buf, size, SAFE_TEMP_PREFIX "%.*s.%016llx", (int) keep, name, random);
        if (n < 0 || (size_t) n > NAME_MAX)
                return -EINVAL;
        return 0;
}
