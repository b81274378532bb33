/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure half of safe-fs: which paths and names it accepts, and which
 * directories root may trust. */

#include <criterion/criterion.h>
#include <limits.h>

#include "safe-fs.h"
#include "safe-path.h"

Test(safe_path, filename_valid) {
        char longname[NAME_MAX + 2];

        cr_assert(filename_valid("vmlinux"));
        cr_assert(filename_valid(".lock"));
        cr_assert(filename_valid("..."));
        cr_assert(filename_valid("a b"));
        cr_assert_not(filename_valid(NULL));
        cr_assert_not(filename_valid(""));
        cr_assert_not(filename_valid("."));
        cr_assert_not(filename_valid(".."));
        cr_assert_not(filename_valid("a/b"));
        cr_assert_not(filename_valid("/"));

        memset(longname, 'x', NAME_MAX);
        longname[NAME_MAX] = '\0';
        cr_assert(filename_valid(longname));
        longname[NAME_MAX] = 'x';
        longname[NAME_MAX + 1] = '\0';
        cr_assert_not(filename_valid(longname));
}

Test(safe_path, relative_path_check) {
        static const struct {
                const char *path;
                RelPathProblem want;
        } cases[] = {
                { "root", RELPATH_OK },
                { "root/run", RELPATH_OK },
                { "firecracker/web1/root/run/firecracker.socket", RELPATH_OK },
                { ".lock", RELPATH_OK },
                { "a/..b/c..", RELPATH_OK },
                { "", RELPATH_EMPTY },
                { "/etc", RELPATH_ABSOLUTE },
                { "/", RELPATH_ABSOLUTE },
                { "root/", RELPATH_TRAILING_SLASH },
                { "root//run", RELPATH_DOUBLE_SLASH },
                { ".", RELPATH_DOT },
                { "./root", RELPATH_DOT },
                { "root/.", RELPATH_DOT },
                { "root/./run", RELPATH_DOT },
                { "..", RELPATH_DOTDOT },
                { "../etc", RELPATH_DOTDOT },
                { "root/../../etc", RELPATH_DOTDOT },
                { "root/..", RELPATH_DOTDOT },
        };

        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                cr_expect_eq(relative_path_check(cases[i].path), cases[i].want, "%s: got %s", cases[i].path,
                             relative_path_problem_to_string(relative_path_check(cases[i].path)));
        cr_assert_not(relative_path_valid(NULL));
}

Test(safe_path, relative_path_limits) {
        char *p;
        size_t n;

        /* A component longer than NAME_MAX */
        p = malloc(NAME_MAX + 3);
        memset(p, 'a', NAME_MAX + 1);
        p[NAME_MAX + 1] = '\0';
        cr_assert_eq(relative_path_check(p), RELPATH_COMPONENT_TOO_LONG);
        free(p);

        /* Too many components */
        n = (RELPATH_DEPTH_MAX + 1) * 2;
        p = malloc(n);
        for (size_t i = 0; i < n; i += 2) {
                p[i] = 'd';
                p[i + 1] = '/';
        }
        p[n - 1] = '\0';
        cr_assert_eq(relative_path_check(p), RELPATH_TOO_DEEP);
        p[(RELPATH_DEPTH_MAX * 2) - 1] = '\0';
        cr_assert_eq(relative_path_check(p), RELPATH_OK);
        free(p);

        /* Longer than PATH_MAX */
        p = malloc(PATH_MAX + 1);
        memset(p, 'a', PATH_MAX);
        p[PATH_MAX] = '\0';
        cr_assert_eq(relative_path_check(p), RELPATH_TOO_LONG);
        free(p);

        for (int i = RELPATH_OK; i <= RELPATH_TOO_DEEP; i++)
                cr_assert_not_null(relative_path_problem_to_string((RelPathProblem) i));
}

Test(safe_path, components) {
        const char *p = "//srv/jailer//firecracker/", *c;
        size_t l;

        l = path_next_component(&p, &c);
        cr_assert_eq(l, 3);
        cr_assert(strncmp(c, "srv", l) == 0);
        l = path_next_component(&p, &c);
        cr_assert_eq(l, 6);
        cr_assert(strncmp(c, "jailer", l) == 0);
        l = path_next_component(&p, &c);
        cr_assert_eq(l, 11);
        cr_assert(strncmp(c, "firecracker", l) == 0);
        cr_assert_eq(path_next_component(&p, &c), 0);
        cr_assert_eq(path_next_component(&p, &c), 0);

        cr_assert_eq(path_n_components("/"), 0);
        cr_assert_eq(path_n_components(""), 0);
        cr_assert_eq(path_n_components("a"), 1);
        cr_assert_eq(path_n_components("/var/lib/microvm"), 3);

        cr_assert_eq(path_last_component_offset("root"), 0);
        cr_assert_eq(path_last_component_offset("root/run"), 5);
        p = "root/run/firecracker.socket";
        cr_assert_str_eq(&p[path_last_component_offset(p)], "firecracker.socket");
}

static struct stat st_of(mode_t mode, uid_t uid, gid_t gid) {
        struct stat st = {
                .st_mode = mode,
                .st_uid = uid,
                .st_gid = gid,
        };
        return st;
}

Test(safe_path, trusted_inode_check) {
        struct stat st;

        st = st_of(S_IFDIR | 0755, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_OK);
        st = st_of(S_IFDIR | 0700, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_OK);
        /* a sticky dir nobody else can write is fine ... */
        st = st_of(S_IFDIR | 01755, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_OK);
        /* ... /tmp is not */
        st = st_of(S_IFDIR | 01777, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_WORLD_WRITABLE);
        st = st_of(S_IFDIR | 0775, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_GROUP_WRITABLE);
        st = st_of(S_IFDIR | 0775, 0, 1000);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_GROUP_WRITABLE);
        st = st_of(S_IFDIR | 0757, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_WORLD_WRITABLE);
        st = st_of(S_IFDIR | 0755, 1000, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_NOT_ROOT_OWNED);
        st = st_of(S_IFLNK | 0777, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_SYMLINK);
        cr_assert_eq(trusted_inode_check(&st, true), TRUSTED_SYMLINK);
        st = st_of(S_IFREG | 0755, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_NOT_DIRECTORY);
        cr_assert_eq(trusted_inode_check(&st, true), TRUSTED_OK);
        st = st_of(S_IFREG | 0775, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, true), TRUSTED_GROUP_WRITABLE);
        st = st_of(S_IFDIR | 0755, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, true), TRUSTED_NOT_REGULAR);
        st = st_of(S_IFIFO | 0600, 0, 0);
        cr_assert_eq(trusted_inode_check(&st, false), TRUSTED_NOT_DIRECTORY);

        for (int i = TRUSTED_OK; i <= TRUSTED_WORLD_WRITABLE; i++)
                cr_assert_not_null(trusted_problem_to_string((TrustedProblem) i));
}

Test(safe_path, temp_name) {
        char buf[NAME_MAX + 1], longname[NAME_MAX + 1];

        cr_assert_eq(safe_temp_name("vm-config.json", 0x1234abcdULL, buf, sizeof buf), 0);
        cr_assert_str_eq(buf, ".#vm-config.json.000000001234abcd");
        cr_assert(filename_valid(buf));

        memset(longname, 'n', NAME_MAX);
        longname[NAME_MAX] = '\0';
        cr_assert_eq(safe_temp_name(longname, ~0ULL, buf, sizeof buf), 0);
        cr_assert_eq(strlen(buf), NAME_MAX);
        cr_assert(filename_valid(buf));
        cr_assert(strncmp(buf, SAFE_TEMP_PREFIX, 2) == 0);

        cr_assert_eq(safe_temp_name("a/b", 1, buf, sizeof buf), -EINVAL);
        cr_assert_eq(safe_temp_name("..", 1, buf, sizeof buf), -EINVAL);
        cr_assert_eq(safe_temp_name("a", 1, buf, 10), -EINVAL);
}

Test(safe_path, copy_method_names) {
        cr_assert_str_eq(safe_copy_method_to_string(SAFE_COPY_REFLINK), "reflink");
        cr_assert_str_eq(safe_copy_method_to_string(SAFE_COPY_SPARSE), "sparse copy");
        cr_assert_str_eq(safe_copy_method_to_string(SAFE_COPY_FULL), "full copy");
        cr_assert_null(safe_copy_method_to_string(_SAFE_COPY_METHOD_MAX));
}

/* No privilege needed for these: argument checks happen before any I/O. */
Test(safe_path, api_rejects_bad_paths) {
        int fd = -1;

        cr_assert_eq(safe_open_at(AT_FDCWD, "../etc/passwd", O_RDONLY, S_IFREG, &fd), -EINVAL);
        cr_assert_eq(safe_open_at(AT_FDCWD, "/etc/passwd", O_RDONLY, S_IFREG, &fd), -EINVAL);
        cr_assert_eq(safe_open_at(AT_FDCWD, "a//b", O_RDONLY, S_IFREG, &fd), -EINVAL);
        cr_assert_eq(safe_open_at(AT_FDCWD, "x", O_RDONLY | O_CREAT, S_IFREG, &fd), -EINVAL);
        cr_assert_eq(safe_open_at(AT_FDCWD, "x", O_RDONLY, 0, &fd), -EINVAL);
        cr_assert_eq(safe_mkdir_at(AT_FDCWD, "a/../b", 0755, 0, 0, 0, NULL), -EINVAL);
        cr_assert_eq(safe_mkdir_at(AT_FDCWD, "a", 04755, 0, 0, 0, NULL), -EINVAL);
        cr_assert_eq(safe_rm_rf_at(AT_FDCWD, "..", 0, NULL, NULL), -EINVAL);
        cr_assert_eq(safe_rm_rf_at(AT_FDCWD, "/", 0, NULL, NULL), -EINVAL);
        cr_assert_eq(safe_write_file_at(AT_FDCWD, "a/", "x", 1, 0644, 0, 0, 0), -EINVAL);
        cr_assert_eq(fd, -1);
}

Test(safe_path, root_open_rejects_relative) {
        _cleanup_free_ char *err = NULL;
        int fd = -1;

        cr_assert_eq(safe_root_open("srv/jailer", 0, 0, &fd, &err), -EINVAL);
        cr_assert_not_null(err);
        cr_assert(strstr(err, "srv/jailer"));
        free(err);
        err = NULL;
        cr_assert_eq(safe_root_open("/srv/../etc", 0, 0, &fd, &err), -EINVAL);
        cr_assert_not_null(err);
        free(err);
        err = NULL;
        cr_assert_eq(safe_root_open("/srv/jailer/", 0, 0, &fd, &err), -EINVAL);
        cr_assert_eq(fd, -1);
}

Test(safe_path, rm_report_format) {
        SafeRmReport r = {};
        char *s;

        cr_assert_null(safe_rm_report_format(&r, "x"));
        r.refused = calloc(2, sizeof(SafeRmRefusal));
        r.refused[0] = (SafeRmRefusal) { .path = strdup("vm1/root/mnt"), .error = -EXDEV, .reason = "mount point, not crossed" };
        r.refused[1] = (SafeRmRefusal) { .path = strdup("vm1/root/x"), .error = -EPERM, .reason = "cannot unlink" };
        r.n_refused = 2;
        r.n_dropped = 3;
        s = safe_rm_report_format(&r, "/srv/jailer/firecracker");
        cr_assert_not_null(s);
        cr_assert(strstr(s, "/srv/jailer/firecracker/vm1/root/mnt: mount point, not crossed"), "%s", s);
        cr_assert(strstr(s, "vm1/root/x: cannot unlink: Operation not permitted"), "%s", s);
        cr_assert_null(strstr(s, "cross-device"), "%s", s);
        cr_assert(strstr(s, "and 3 more"), "%s", s);
        cr_assert_neq(s[strlen(s) - 1], '\n');
        free(s);
        safe_rm_report_done(&r);
        cr_assert_eq(r.n_refused, 0);
        cr_assert_null(r.refused);
}
