/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What two VMs must not share (lib/vm/vm-conflicts.c) and the uid-room
 * rule of validate's host checks (lib/vm/host-check.c): pure parts. */

#include <criterion/criterion.h>

#include "host-check.h"
#include "uid-alloc.h"
#include "vm-conflicts.h"

static VmConfig *vm(const char *id, const char *text) {
        HostConfig *h;
        VmConfig *c = NULL;
        Problems p = {};
        char file[96];

        cr_assert_eq(host_config_new_default(&h), 0);
        snprintf(file, sizeof file, "%s.conf", id);
        cr_assert_eq(vm_config_parse(file, id, text, strlen(text), h, &c, &p), 0, "%s does not parse", id);
        problems_done(&p);
        host_config_free(h);
        return c;
}

static int conflicts(VmConfig **vms, size_t n, Problems *p) {
        VmConflictInput in[8] = {};
        StageNetwork nets[8] = {};
        int r;

        for (size_t i = 0; i < n; i++) {
                in[i].vm = vms[i];
                cr_assert_eq(stage_network_plan(vms[i], vms[i]->id, &nets[i], NULL), 0);
                in[i].net = &nets[i];
        }
        r = vm_conflicts_check(in, n, p);
        for (size_t i = 0; i < n; i++)
                stage_network_done(&nets[i]);
        return r;
}

#define BASE "[vm]\nkernel = /k\n[drive.root]\npath = /img\nroot = yes\n"

Test(conflicts, none_between_file_drives_on_one_image) {
        VmConfig *v[2] = { vm("a", BASE "[net.eth0]\nmac = 02:00:00:00:00:01\n"),
                           vm("b", BASE "[net.eth0]\nmac = 02:00:00:00:00:02\n") };
        Problems p = {};
        cr_assert_eq(conflicts(v, 2, &p), 0);
        cr_assert_eq(p.n, 0);
        problems_done(&p);
        vm_config_free(v[0]);
        vm_config_free(v[1]);
}

Test(conflicts, mac_tap_uid_cid_and_block) {
        const char *t = "[vm]\nkernel = /k\nuid = 1000005\n[drive.root]\nmode = block\npath = /dev/sdx\nroot = yes\n"
                        "[net.eth0]\nmac = 02:00:00:00:00:01\ntap = tapx\n[vsock]\ncid = 7\n";
        VmConfig *v[2] = { vm("a", t), vm("b", t) };
        Problems p = {};
        cr_assert_eq(conflicts(v, 2, &p), 5);
        cr_assert_eq(p.n, 5);
        for (size_t i = 0; i < p.n; i++)
                cr_assert_str_eq(p.items[i].file, "b.conf", "the later VM is blamed");
        cr_assert_str_eq(p.items[0].key, "uid");
        cr_assert_str_eq(p.items[1].section, "vsock");
        cr_assert_str_eq(p.items[2].key, "mac");
        cr_assert_str_eq(p.items[3].key, "tap");
        cr_assert_str_eq(p.items[4].section, "drive.root");
        problems_done(&p);
        vm_config_free(v[0]);
        vm_config_free(v[1]);
}

Test(conflicts, read_only_block_may_be_shared) {
        const char *t = "[vm]\nkernel = /k\n[drive.root]\npath = /img\nroot = yes\n"
                        "[drive.data]\nmode = block\npath = /dev/sdy\nread_only = yes\n";
        VmConfig *v[2] = { vm("a", t), vm("b", t) };
        Problems p = {};
        cr_assert_eq(conflicts(v, 2, &p), 0);
        problems_done(&p);
        vm_config_free(v[0]);
        vm_config_free(v[1]);
}

Test(conflicts, identity_beats_path) {
        const char *t1 = "[vm]\nkernel = /k\n[drive.root]\nmode = block\npath = /dev/a\nroot = yes\n";
        const char *t2 = "[vm]\nkernel = /k\n[drive.root]\nmode = block\npath = /dev/b\nroot = yes\n";
        VmConfig *v[2] = { vm("a", t1), vm("b", t2) };
        DriveIdentity same[2] = { { .known = true, .dev = 42 }, { .known = true, .dev = 42 } };
        VmConflictInput in[2] = { { .vm = v[0], .drives = &same[0] }, { .vm = v[1], .drives = &same[1] } };
        Problems p = {};
        cr_assert_eq(vm_conflicts_check(in, 2, &p), 1, "/dev/a and /dev/b name one device");
        problems_done(&p);
        vm_config_free(v[0]);
        vm_config_free(v[1]);
}

Test(host_check, uid_range_room) {
        UidOwner o[3] = { { .uid = 10, .id = "a" }, { .uid = 11, .id = "b" }, { .uid = 99, .id = "c" } };
        cr_assert(!uid_range_has_room(10, 11, o, 3, "new"));
        cr_assert(uid_range_has_room(10, 12, o, 3, "new"));
        cr_assert(uid_range_has_room(10, 11, o, 3, "a"), "a VM's own uid does not count against it");
        cr_assert(!uid_range_has_room(11, 10, o, 0, "new"));
}
