/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>

#include <sys/stat.h>

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

Test(cgroup_parse, controller_listed) {
        cr_assert(cgroup_controller_listed("cpuset cpu io memory hugetlb pids\n", "cpuset"));
        cr_assert(cgroup_controller_listed("cpuset cpu io memory hugetlb pids\n", "pids"));
        cr_assert_not(cgroup_controller_listed("cpuset cpu io memory hugetlb pids\n", "cpus"));
        cr_assert_not(cgroup_controller_listed("hugetlb\n", "cpuset"));
        cr_assert_not(cgroup_controller_listed("", "cpuset"));
        cr_assert_not(cgroup_controller_listed("cpuset", ""));
}

/* stage_check_cgroup_controllers() on a tree of plain files standing in for
 * cgroupfs: the host's list at the root, the unit's at its path. */
#include "stage.h"

static void put(const char *dir, const char *sub, const char *text) {
        char path[512];
        FILE *f;

        snprintf(path, sizeof path, "%s%s", dir, sub);
        cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "%s: %m", path);
        strncat(path, "/cgroup.controllers", sizeof path - strlen(path) - 1);
        f = fopen(path, "we");
        cr_assert(f);
        fputs(text, f);
        fclose(f);
}

Test(cgroup_parse, stage_check_controllers) {
        char dir[] = "/tmp/test-cgroup-check-XXXXXX";
        VmConfig vm = { .id = "web1", .numa_node = 1 };
        char *values[] = { (char *) "cpuset.mems=1", NULL };
        Plan plan = { .cgroup = values };
        char *error = NULL;

        cr_assert(mkdtemp(dir));
        put(dir, "", "hugetlb\n");
        put(dir, "/microvm.slice", "");
        put(dir, "/microvm.slice/microvm@web1.service", "");
        cr_assert_eq(stage_check_cgroup_controllers(&vm, &plan, dir, "/microvm.slice/microvm@web1.service", &error),
                     -EOPNOTSUPP);
        cr_assert(strstr(error, "numa_node = 1 of web1 needs the cpuset controller of cgroup v2 (jailer --cgroup "
                                "cpuset.mems=1), which this host does not offer: "),
                  "%s", error);
        cr_assert(strstr(error, "/cgroup.controllers lists \"hugetlb\""), "%s", error);
        free(error);
        error = NULL;

        put(dir, "", "cpuset cpu io memory pids\n");
        put(dir, "/microvm.slice/microvm@web1.service", "cpu memory pids\n");
        cr_assert_eq(stage_check_cgroup_controllers(&vm, &plan, dir, "/microvm.slice/microvm@web1.service", &error),
                     -EPERM);
        cr_assert(strstr(error, "numa_node = 1 of web1 needs the cpuset controller, which systemd has not enabled "
                                "for the unit: "),
                  "%s", error);
        cr_assert(strstr(error, "/microvm.slice/microvm@web1.service/cgroup.controllers lists \"cpu memory pids\". "
                                "The jailer would enable it itself"),
                  "%s", error);
        free(error);
        error = NULL;
        /* Not running in the unit (by hand): only the host is checked. */
        cr_assert_eq(stage_check_cgroup_controllers(&vm, &plan, dir, NULL, &error), 0);

        put(dir, "/microvm.slice/microvm@web1.service", "cpuset cpu memory pids\n");
        cr_assert_eq(stage_check_cgroup_controllers(&vm, &plan, dir, "/microvm.slice/microvm@web1.service", &error),
                     0);
        /* No cgroup values, nothing to check. */
        plan.cgroup = NULL;
        put(dir, "", "\n");
        cr_assert_eq(stage_check_cgroup_controllers(&vm, &plan, dir, "/microvm.slice/microvm@web1.service", &error),
                     0);
        cr_assert_null(error);
        static const char *const tree[] = { "/microvm.slice/microvm@web1.service", "/microvm.slice", "" };
        for (size_t i = 0; i < ELEMENTSOF(tree); i++) {
                char path[512];
                snprintf(path, sizeof path, "%s%s/cgroup.controllers", dir, tree[i]);
                cr_assert_eq(unlink(path), 0, "%s: %m", path);
                snprintf(path, sizeof path, "%s%s", dir, tree[i]);
                cr_assert_eq(rmdir(path), 0, "%s: %m", path);
        }
}
