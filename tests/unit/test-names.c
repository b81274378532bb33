/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Names derived from ids stay valid and distinct for every valid id. */

#include <criterion/criterion.h>
#include <net/if.h>

#include "config.h"
#include "names.h"

#define ID64 "a123456789012345678901234567890123456789012345678901234567890123"

static HostConfig *host(void) {
        HostConfig *h;
        cr_assert_eq(host_config_new_default(&h), 0);
        return h;
}

Test(names, paths) {
        HostConfig *h = host();
        VmPaths p;
        cr_assert_eq(vm_paths_new(h, "firecracker", "web1", &p), 0);
        cr_assert_str_eq(p.exec_dir, "/srv/jailer/firecracker");
        cr_assert_str_eq(p.jail_dir, "/srv/jailer/firecracker/web1");
        cr_assert_str_eq(p.jail_root, "/srv/jailer/firecracker/web1/root");
        cr_assert_str_eq(p.run_dir, "/run/microvm/web1");
        cr_assert_str_eq(p.state_dir, "/var/lib/microvm/web1");
        cr_assert_str_eq(p.unit, "microvm@web1.service");
        vm_paths_done(&p);
        cr_assert_eq(vm_paths_new(h, "fire/cracker", "web1", &p), -EINVAL);
        cr_assert_eq(vm_paths_new(h, "..", "web1", &p), -EINVAL);
        cr_assert_eq(vm_paths_new(h, "firecracker", "Web1", &p), -EINVAL);
        host_config_free(h);
}

Test(names, id64) {
        HostConfig *h = host();
        VmPaths p;
        char dm[128], uuid[128], id[VM_ID_MAX + 1], tap[TAP_NAME_MAX + 1];

        cr_assert(vm_id_valid(ID64));
        cr_assert_eq(strlen(ID64), 64);
        cr_assert_eq(vm_paths_new(h, "firecracker", ID64, &p), 0);
        cr_assert_eq(strlen(p.unit), strlen("microvm@.service") + 64);
        /* The host-side socket path is too long for sun_path: tools connect
         * through an O_PATH fd instead. The in-jail paths firecracker binds
         * are short. */
        cr_assert_gt(strlen(p.jail_root) + strlen(JAIL_API_SOCKET), (size_t) SUN_PATH_MAX);
        cr_assert_leq(strlen(JAIL_API_SOCKET), (size_t) SUN_PATH_MAX);
        cr_assert_leq(strlen(JAIL_VSOCK_SOCKET), (size_t) SUN_PATH_MAX);
        vm_paths_done(&p);

        cr_assert_eq(dm_name_for(ID64, "abcdefghijklmnop", dm), 0);
        cr_assert_lt(strlen(dm), (size_t) 128);
        cr_assert_eq(dm_uuid_for(ID64, "abcdefghijklmnop", uuid), 0);
        cr_assert_lt(strlen(uuid), (size_t) 128);
        cr_assert(dm_uuid_parse(uuid, id));
        cr_assert_str_eq(id, ID64);

        tap_name_auto(ID64, "abcdefghijklmnop", tap);
        cr_assert_eq(strlen(tap), (size_t) TAP_NAME_MAX);
        cr_assert_lt(strlen(tap), (size_t) IFNAMSIZ);
        host_config_free(h);
}

Test(names, dm) {
        char n[128], id[VM_ID_MAX + 1];
        cr_assert_eq(dm_name_for("web1", "root", n), 0);
        cr_assert_str_eq(n, "microvm-web1-root");
        cr_assert_eq(dm_uuid_for("web1", "root", n), 0);
        cr_assert_str_eq(n, "MICROVM-web1-root");
        cr_assert(dm_uuid_parse("MICROVM-a-b-c", id));
        cr_assert_str_eq(id, "a-b");
        cr_assert(!dm_uuid_parse("LVM-abc", id));
        cr_assert(!dm_uuid_parse("MICROVM-", id));
        cr_assert(!dm_uuid_parse("MICROVM-web1", id));
        cr_assert(!dm_uuid_parse("MICROVM--root", id));
        cr_assert(!dm_uuid_parse("MICROVM-web1-ro_t", id));
        cr_assert_eq(dm_name_for("web_1", "root", n), -EINVAL);
        cr_assert_eq(dm_name_for("web1", "ro-ot", n), -EINVAL);
}

Test(names, tap_readable_and_hashed) {
        char t[TAP_NAME_MAX + 1];
        tap_name_auto("web1", "eth0", t);
        cr_assert_str_eq(t, "web1-eth0");
        tap_name_auto("abcdefghij", "eth0", t); /* 15 bytes: still readable */
        cr_assert_str_eq(t, "abcdefghij-eth0");
        tap_name_auto("abcdefghijk", "eth0", t); /* 16: hashed */
        cr_assert_eq(strlen(t), 15);
        cr_assert_eq(strncmp(t, "mv", 2), 0);
        cr_assert_null(strchr(t, '-'));
        for (const char *c = t; *c; c++)
                cr_assert((*c >= 'a' && *c <= 'z') || (*c >= '2' && *c <= '7'));
}

/* No two (id, nic) pairs of a large family of ids collide. */
Test(names, tap_unique) {
        enum { N = 20000 };
        char(*names)[TAP_NAME_MAX + 1] = calloc(N, sizeof *names);
        char id[VM_ID_MAX + 1];
        for (int i = 0; i < N; i++) {
                /* mix short readable ids and long hashed ones */
                if (i % 2)
                        snprintf(id, sizeof id, "vm%d", i);
                else
                        snprintf(id, sizeof id, "tenant-%d-sandbox-%d-long", i, i * 7);
                tap_name_auto(id, i % 3 ? "eth0" : "eth1", names[i]);
        }
        qsort(names, N, sizeof *names, (int (*)(const void *, const void *)) strcmp);
        for (int i = 1; i < N; i++)
                cr_assert_str_neq(names[i - 1], names[i]);
        free(names);
}

Test(names, mac_auto) {
        uint8_t mid[16] = { 1, 2, 3 }, a[6], b[6], c[6];
        mac_auto(mid, "web1", "eth0", a);
        mac_auto(mid, "web1", "eth0", b);
        cr_assert_eq(memcmp(a, b, 6), 0, "stable");
        mac_auto(mid, "web1", "eth1", c);
        cr_assert_neq(memcmp(a, c, 6), 0);
        cr_assert_eq(a[0] & 1, 0, "unicast");
        cr_assert_eq(a[0] & 2, 2, "locally administered");
        mid[0] = 9;
        mac_auto(mid, "web1", "eth0", c);
        cr_assert_neq(memcmp(a, c, 6), 0, "depends on the machine id");
}

Test(names, exec_name) {
        cr_assert_str_eq(exec_name_from_path("/usr/bin/firecracker"), "firecracker");
        cr_assert_str_eq(exec_name_from_path("/opt/fc/firecracker-v1.16.0-x86_64"), "firecracker-v1.16.0-x86_64");
}
