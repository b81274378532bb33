/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* firecracker's config JSON and the jailer's argv: golden outputs. */

#include <criterion/criterion.h>

#include "fc-config.h"
#include "jailer-argv.h"

static VmConfig *parse(const char *text) {
        HostConfig *h;
        VmConfig *c = NULL;
        Problems p = {};
        cr_assert_eq(host_config_new_default(&h), 0);
        int r = vm_config_parse("web1.conf", "web1", text, strlen(text), h, &c, &p);
        if (r < 0)
                problems_print(&p, stderr);
        cr_assert_eq(r, 0);
        host_config_free(h);
        return c;
}

Test(fc_config, full) {
        VmConfig *c = parse("[vm]\nvcpus = 2\nmemory = 1G\nkernel = /k\ninitrd = /i\n"
                            "cmdline = 'console=ttyS0 reboot=k init=/bin/sh -c \"echo\t1\"'\n"
                            "[drive.root]\nmode = snapshot\npath = /b\nroot = yes\ncache = writeback\nio_engine = async\n"
                            "[drive.data]\npath = /d\nread_only = yes\n"
                            "[net.eth0]\n[vsock]\n");
        const char *taps[] = { "web1-eth0" };
        const uint8_t macs[][6] = { { 0x02, 0xab, 0, 1, 2, 3 } };
        FcRuntime rt = { .taps = taps, .macs = macs, .vsock_cid = 1000001 };
        char *json = fc_config_render(c, &rt);
        cr_assert_str_eq(json,
                         "{\n"
                         "  \"boot-source\": {\n"
                         "    \"kernel_image_path\": \"/vmlinux\",\n"
                         "    \"initrd_path\": \"/initrd\",\n"
                         "    \"boot_args\": \"console=ttyS0 reboot=k init=/bin/sh -c \\\"echo\\t1\\\"\"\n"
                         "  },\n"
                         "  \"drives\": [\n"
                         "    {\n"
                         "      \"drive_id\": \"root\",\n"
                         "      \"path_on_host\": \"/drive-root\",\n"
                         "      \"is_root_device\": true,\n"
                         "      \"is_read_only\": false,\n"
                         "      \"cache_type\": \"Writeback\",\n"
                         "      \"io_engine\": \"Async\"\n"
                         "    },\n"
                         "    {\n"
                         "      \"drive_id\": \"data\",\n"
                         "      \"path_on_host\": \"/drive-data\",\n"
                         "      \"is_root_device\": false,\n"
                         "      \"is_read_only\": true,\n"
                         "      \"cache_type\": \"Unsafe\",\n"
                         "      \"io_engine\": \"Sync\"\n"
                         "    }\n"
                         "  ],\n"
                         "  \"machine-config\": {\n"
                         "    \"vcpu_count\": 2,\n"
                         "    \"mem_size_mib\": 1024,\n"
                         "    \"smt\": false\n"
                         "  },\n"
                         "  \"network-interfaces\": [\n"
                         "    {\n"
                         "      \"iface_id\": \"eth0\",\n"
                         "      \"host_dev_name\": \"web1-eth0\",\n"
                         "      \"guest_mac\": \"02:ab:00:01:02:03\"\n"
                         "    }\n"
                         "  ],\n"
                         "  \"vsock\": {\n"
                         "    \"guest_cid\": 1000001,\n"
                         "    \"uds_path\": \"/run/vsock.sock\"\n"
                         "  },\n"
                         "  \"metrics\": {\n"
                         "    \"metrics_path\": \"/run/fc-metrics.json\"\n"
                         "  }\n"
                         "}\n");
        free(json);
        vm_config_free(c);
}

Test(fc_config, minimal_keeps_console) {
        VmConfig *c = parse("[vm]\nkernel = /k\ncmdline = \"quiet\"\n[drive.root]\npath = /r\nroot = yes\n");
        FcRuntime rt = {};
        char *json = fc_config_render(c, &rt);
        cr_assert(strstr(json, "\"boot_args\": \"quiet console=ttyS0 reboot=k\""), "%s", json);
        cr_assert_null(strstr(json, "initrd_path"));
        cr_assert_null(strstr(json, "network-interfaces"));
        cr_assert_null(strstr(json, "vsock"));
        cr_assert(strstr(json, "\"metrics\": {\n    \"metrics_path\": \"/run/fc-metrics.json\"\n  }\n}\n"), "%s", json);
        free(json);
        vm_config_free(c);
}

/* Firecracker appends root=PARTUUID=<partuuid> for the root drive when its
 * config has one; our "--" goes where linux-loader splits. */
Test(fc_config, partuuid_and_init_args) {
        VmConfig *c = parse("[vm]\nkernel = /k\ncmdline = \"panic=1\t--\tsingle\"\n"
                            "[drive.root]\npath = /r\nroot = yes\npartuuid = 0eaa91a0-01\n"
                            "[drive.data]\npath = /d\n");
        FcRuntime rt = {};
        char *json = fc_config_render(c, &rt);
        cr_assert(strstr(json, "\"boot_args\": \"panic=1 console=ttyS0 reboot=k -- single\""), "%s", json);
        cr_assert(strstr(json, "\"drive_id\": \"root\",\n"
                               "      \"path_on_host\": \"/drive-root\",\n"
                               "      \"is_root_device\": true,\n"
                               "      \"is_read_only\": false,\n"
                               "      \"partuuid\": \"0eaa91a0-01\",\n"
                               "      \"cache_type\": \"Unsafe\""),
                  "%s", json);
        cr_assert_null(strstr(strstr(json, "partuuid") + 1, "partuuid"), "partuuid only on the root drive: %s", json);
        free(json);
        vm_config_free(c);
}

Test(fc_config, json_escape) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        json_write_string(f, "a\"b\\c\x01\x1f\x7f\xc3\xa9/");
        fclose(f);
        cr_assert_str_eq(out, "\"a\\\"b\\\\c\\u0001\\u001f\\u007f\xc3\xa9/\"");
        free(out);
}

static Plan *plan(void) {
        Plan *p = calloc(1, sizeof *p);
        p->version = PLAN_VERSION;
        strcpy(p->id, "web1");
        p->jailer = strdup("/usr/bin/jailer");
        p->exec_file = strdup("/usr/bin/firecracker");
        p->exec_name = strdup("firecracker");
        p->chroot_base = strdup("/srv/jailer");
        p->uid = 1000001;
        p->gid = 1000001;
        p->config_file = strdup("/vm-config.json");
        p->api_socket = strdup("/run/firecracker.socket");
        return p;
}

static char *join(char **argv) {
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        for (char **a = argv; *a; a++)
                fprintf(f, "%s%s", a == argv ? "" : " ", *a);
        fclose(f);
        return out;
}

Test(jailer_argv, golden) {
        Plan *p = plan();
        char **argv = NULL, *err = NULL, *s;

        cr_assert_eq(jailer_argv(p, "microvm.slice/microvm@web1.service/vmm", &argv, &err), 0, "%s", err);
        s = join(argv);
        cr_assert_str_eq(s, "/usr/bin/jailer --id web1 --exec-file /usr/bin/firecracker --uid 1000001 --gid 1000001 "
                            "--chroot-base-dir /srv/jailer --cgroup-version 2 "
                            "--parent-cgroup microvm.slice/microvm@web1.service/vmm "
                            "-- --config-file /vm-config.json --api-sock /run/firecracker.socket");
        free(s);
        strv_free(argv);

        strv_push(&p->cgroup, "cpuset.mems=0");
        strv_push(&p->cgroup, "cpuset.cpus=0-3");
        strv_push(&p->rlimit, "no-file=4096");
        p->netns = strdup("/run/netns/web1");
        cr_assert_eq(jailer_argv(p, "microvm.slice/microvm@web1.service", &argv, &err), 0, "%s", err);
        s = join(argv);
        cr_assert_str_eq(s, "/usr/bin/jailer --id web1 --exec-file /usr/bin/firecracker --uid 1000001 --gid 1000001 "
                            "--chroot-base-dir /srv/jailer --cgroup-version 2 "
                            "--parent-cgroup microvm.slice/microvm@web1.service "
                            "--cgroup cpuset.mems=0 --cgroup cpuset.cpus=0-3 --resource-limit no-file=4096 "
                            "--netns /run/netns/web1 "
                            "-- --config-file /vm-config.json --api-sock /run/firecracker.socket");
        cr_assert_null(strstr(s, "--daemonize"));
        cr_assert_null(strstr(s, "--new-pid-ns"));
        free(s);
        strv_free(argv);

        /* firecracker_log_level: on firecracker's command line, which a
         * resume (no config file) has as well */
        p->fc_log_level = strdup("Warning");
        cr_assert_eq(jailer_argv(p, "x", &argv, &err), 0, "%s", err);
        s = join(argv);
        cr_assert(endswith(s, " -- --config-file /vm-config.json --api-sock /run/firecracker.socket --level Warning"),
                  "%s", s);
        free(s);
        strv_free(argv);
        p->resume = true;
        cr_assert_eq(jailer_argv(p, "x", &argv, &err), 0, "%s", err);
        s = join(argv);
        cr_assert(endswith(s, " -- --api-sock /run/firecracker.socket --level Warning"), "%s", s);
        free(s);
        strv_free(argv);
        plan_free(p);
}

static void expect_reject(Plan *p, const char *parent, const char *msg) {
        char **argv = NULL, *err = NULL;
        cr_assert_eq(jailer_argv(p, parent, &argv, &err), -EINVAL);
        cr_assert(strstr(err, msg), "got \"%s\"", err);
        free(err);
}

Test(jailer_argv, rejects) {
        Plan *p = plan();
        expect_reject(p, "/abs", "parent cgroup \"/abs\"");
        expect_reject(p, "a/../b", "parent cgroup");
        expect_reject(p, "a/./b", "parent cgroup");
        expect_reject(p, "a//b", "parent cgroup");
        expect_reject(p, "a/", "parent cgroup");
        expect_reject(p, "", "parent cgroup");
        p->uid = 0;
        expect_reject(p, "x", "uid or gid 0");
        p->uid = 5;
        strv_push(&p->cgroup, "cpuset=0");
        expect_reject(p, "x", "\"cpuset=0\" is not of the form");
        strv_free(p->cgroup);
        p->cgroup = NULL;
        strv_push(&p->rlimit, "nproc=5");
        expect_reject(p, "x", "\"nproc=5\" is not fsize=N or no-file=N");
        strv_free(p->rlimit);
        p->rlimit = NULL;
        p->fc_log_level = strdup("warning");
        expect_reject(p, "x", "firecracker log level \"warning\" is not Error, Warning, Info or Debug");
        free(p->fc_log_level);
        p->fc_log_level = NULL;
        free(p->exec_file);
        p->exec_file = strdup("firecracker");
        expect_reject(p, "x", "firecracker path");
        plan_free(p);
}

Test(jailer_argv, rules) {
        cr_assert(jailer_id_valid("a"));
        cr_assert(jailer_id_valid("A-z-0"));
        cr_assert(!jailer_id_valid("a_b"));
        cr_assert(!jailer_id_valid(""));
        cr_assert(!jailer_id_valid("a.b"));
        cr_assert(jailer_id_valid("0123456789012345678901234567890123456789012345678901234567890123"));
        cr_assert(!jailer_id_valid("01234567890123456789012345678901234567890123456789012345678901234"));
        cr_assert(jailer_cgroup_value_valid("memory.max=1G"));
        cr_assert(jailer_cgroup_value_valid("hugetlb.2MB.max=0"));
        cr_assert(!jailer_cgroup_value_valid("a/b.max=0"));
        cr_assert(!jailer_cgroup_value_valid("memory.max="));
        cr_assert(!jailer_cgroup_value_valid(".max=1"));
        cr_assert(!jailer_cgroup_value_valid("memory.=1"));
        cr_assert(!jailer_cgroup_value_valid("../x.y=1"));
        cr_assert(!jailer_cgroup_value_valid("a.b=1\n"));
        cr_assert(jailer_rlimit_valid("fsize=0"));
        cr_assert(!jailer_rlimit_valid("fsize=-1"));
        cr_assert(!jailer_rlimit_valid("no-file="));
}
