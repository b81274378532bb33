/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>

#include "cgroup.h"

Test(cgroup_parse, mountinfo_hybrid_and_unified) {
        char *m = NULL;
        const char *hybrid =
                "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw\n";
        cr_assert_eq(cgroup2_mount_from_mountinfo(hybrid, &m), 0);
        cr_assert_str_eq(m, "/sys/fs/cgroup/unified");
        free(m);
        const char *unified = "25 20 0:23 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
                              "99 25 0:23 / /other rw - cgroup2 cgroup2 rw\n";
        cr_assert_eq(cgroup2_mount_from_mountinfo(unified, &m), 0);
        cr_assert_str_eq(m, "/sys/fs/cgroup");
        free(m);
        cr_assert_eq(cgroup2_mount_from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n", &m), -ENOMEDIUM);
        cr_assert_eq(cgroup2_mount_from_mountinfo("", &m), -ENOMEDIUM);
        /* an escaped space in the mount point */
        cr_assert_eq(cgroup2_mount_from_mountinfo("7 1 0:9 / /a\\040b rw - cgroup2 none rw\n", &m), 0);
        cr_assert_str_eq(m, "/a b");
        free(m);
        /* "cgroup2" in another field must not match */
        cr_assert_eq(cgroup2_mount_from_mountinfo("7 1 0:9 / /cgroup2 rw - tmpfs cgroup2 rw\n", &m), -ENOMEDIUM);
}

Test(cgroup_parse, proc_cgroup) {
        char *p = NULL;
        cr_assert_eq(cgroup_path_from_proc("12:pids:/user.slice\n1:name=systemd:/x\n0::/microvm.slice/microvm@web1.service\n", &p), 0);
        cr_assert_str_eq(p, "/microvm.slice/microvm@web1.service");
        free(p);
        cr_assert_eq(cgroup_path_from_proc("0::/\n", &p), 0);
        cr_assert_str_eq(p, "/");
        free(p);
        cr_assert_eq(cgroup_path_from_proc("1:cpu:/x\n", &p), -ENOMEDIUM);
        cr_assert_eq(cgroup_path_from_proc("0::relative\n", &p), -EINVAL);
}
