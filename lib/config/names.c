/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "names.h"
#include "sha256.h"

int vm_paths_new(const HostConfig *h, const char *exec_name, const char *id, VmPaths *ret) {
        VmPaths p = {};

        if (!vm_id_valid(id) || isempty(exec_name) || strchr(exec_name, '/') || streq(exec_name, ".") ||
            streq(exec_name, ".."))
                return -EINVAL;
        if (asprintf(&p.exec_dir, "%s/%s", h->chroot_base, exec_name) < 0)
                p.exec_dir = NULL;
        if (asprintf(&p.jail_dir, "%s/%s/%s", h->chroot_base, exec_name, id) < 0)
                p.jail_dir = NULL;
        if (asprintf(&p.jail_root, "%s/%s/%s/root", h->chroot_base, exec_name, id) < 0)
                p.jail_root = NULL;
        if (asprintf(&p.run_dir, "%s/%s", h->run_dir, id) < 0)
                p.run_dir = NULL;
        if (asprintf(&p.state_dir, "%s/%s", h->state_dir, id) < 0)
                p.state_dir = NULL;
        p.unit = unit_name_for(id);
        if (!p.exec_dir || !p.jail_dir || !p.jail_root || !p.run_dir || !p.state_dir || !p.unit) {
                vm_paths_done(&p);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

void vm_paths_done(VmPaths *p) {
        free(p->exec_dir);
        free(p->jail_dir);
        free(p->jail_root);
        free(p->run_dir);
        free(p->state_dir);
        free(p->unit);
        *p = (VmPaths) {};
}

int dm_name_for(const char *id, const char *drive, char buf[static 128]) {
        if (!vm_id_valid(id) || !device_name_valid(drive))
                return -EINVAL;
        snprintf(buf, 128, DM_NAME_PREFIX "%s-%s", id, drive);
        return 0;
}

int dm_uuid_for(const char *id, const char *drive, char buf[static 128]) {
        if (!vm_id_valid(id) || !device_name_valid(drive))
                return -EINVAL;
        snprintf(buf, 128, DM_UUID_PREFIX "%s-%s", id, drive);
        return 0;
}

bool dm_uuid_parse(const char *uuid, char ret_id[static VM_ID_MAX + 1]) {
        const char *rest = startswith(uuid, DM_UUID_PREFIX), *dash;
        char id[VM_ID_MAX + 1];
        size_t n;

        if (!rest)
                return false;
        dash = strrchr(rest, '-');
        if (!dash || !device_name_valid(dash + 1))
                return false;
        n = (size_t) (dash - rest);
        if (n == 0 || n > VM_ID_MAX)
                return false;
        memcpy(id, rest, n);
        id[n] = '\0';
        if (!vm_id_valid(id))
                return false;
        strcpy(ret_id, id);
        return true;
}

void tap_name_auto(const char *id, const char *nic, char buf[static TAP_NAME_MAX + 1]) {
        static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
        uint8_t digest[SHA256_DIGEST_SIZE];
        Sha256 s;

        size_t il = strlen(id), nl = strlen(nic);

        if (il + 1 + nl <= TAP_NAME_MAX) {
                memcpy(buf, id, il);
                buf[il] = '-';
                memcpy(buf + il + 1, nic, nl + 1);
                return;
        }
        sha256_init(&s);
        sha256_update(&s, "microvm-tap", sizeof "microvm-tap");
        sha256_update(&s, id, strlen(id) + 1);
        sha256_update(&s, nic, strlen(nic) + 1);
        sha256_final(&s, digest);
        buf[0] = 'm';
        buf[1] = 'v';
        for (unsigned i = 0; i < 13; i++) {
                /* 13 x 5 bits = 65 bits of the digest */
                unsigned bit = i * 5, byte = bit / 8, shift = bit % 8;
                unsigned v = ((unsigned) digest[byte] << 8 | digest[byte + 1]) >> (11 - shift);
                buf[2 + i] = b32[v & 31];
        }
        buf[TAP_NAME_MAX] = '\0';
}

void mac_auto(const uint8_t machine_id[16], const char *id, const char *nic, uint8_t ret[6]) {
        uint8_t digest[SHA256_DIGEST_SIZE];
        Sha256 s;

        sha256_init(&s);
        sha256_update(&s, "microvm-mac", sizeof "microvm-mac");
        sha256_update(&s, machine_id, 16);
        sha256_update(&s, id, strlen(id) + 1);
        sha256_update(&s, nic, strlen(nic) + 1);
        sha256_final(&s, digest);
        memcpy(ret, digest, 6);
        ret[0] = (uint8_t) ((ret[0] & 0xfe) | 0x02); /* unicast, locally administered */
}

const char *exec_name_from_path(const char *canonical_path) {
        const char *slash = strrchr(canonical_path, '/');
        return slash ? slash + 1 : canonical_path;
}

bool exec_name_ok_for_old_jailers(const char *exec_name) {
        return strstr(exec_name, "firecracker");
}

char *unit_name_for(const char *id) {
        char *r;
        if (asprintf(&r, UNIT_PREFIX "%s.service", id) < 0)
                return NULL;
        return r;
}
