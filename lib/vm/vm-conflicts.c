/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "vm-conflicts.h"
#include "util.h"

static bool drive_writes_in_place(const DriveConfig *d) {
        return d->mode == DRIVE_MODE_BLOCK && !d->read_only;
}

static bool same_object(const VmConflictInput *a, size_t i, const VmConflictInput *b, size_t j) {
        const DriveIdentity *x = a->drives ? &a->drives[i] : NULL, *y = b->drives ? &b->drives[j] : NULL;

        if (x && y && x->known && y->known)
                return x->dev == y->dev && x->ino == y->ino;
        return streq(a->vm->drives[i].path, b->vm->drives[j].path);
}

static void format_mac(const uint8_t mac[6], char buf[static 18]) {
        snprintf(buf, 18, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

int vm_conflicts_check(const VmConflictInput *vms, size_t n, Problems *problems) {
        int found = 0;

        for (size_t b = 0; b < n; b++) {
                const VmConfig *vb = vms[b].vm;

                for (size_t a = 0; a < b; a++) {
                        const VmConfig *va = vms[a].vm;

                        if (!va->uid_auto && !vb->uid_auto && va->uid == vb->uid) {
                                char v[16];
                                snprintf(v, sizeof v, "%u", (unsigned) vb->uid);
                                problems_add(problems, vb->source_path, 0, "vm", "uid", v,
                                             "is also the uid of VM %s (%s): two VMs never share a uid", va->id,
                                             va->source_path);
                                found++;
                        }
                        if (va->has_vsock && vb->has_vsock && !va->vsock_cid_auto && !vb->vsock_cid_auto &&
                            va->vsock_cid == vb->vsock_cid) {
                                char v[16];
                                snprintf(v, sizeof v, "%" PRIu32, vb->vsock_cid);
                                problems_add(problems, vb->source_path, 0, "vsock", "cid", v,
                                             "is also the vsock CID of VM %s (%s)", va->id, va->source_path);
                                found++;
                        }
                        for (size_t j = 0; j < vb->n_nics && vms[a].net && vms[b].net; j++)
                                for (size_t i = 0; i < va->n_nics; i++) {
                                        char section[5 + DEVICE_NAME_MAX + 1];

                                        snprintf(section, sizeof section, "net.%s", vb->nics[j].name);
                                        if (memcmp(vms[a].net->macs[i], vms[b].net->macs[j], 6) == 0) {
                                                char mac[18];
                                                format_mac(vms[b].net->macs[j], mac);
                                                problems_add(problems, vb->source_path, 0, section, "mac", mac,
                                                             "is also the MAC of VM %s [net.%s] (%s)", va->id,
                                                             va->nics[i].name, va->source_path);
                                                found++;
                                        }
                                        if (streq(vms[a].net->taps[i], vms[b].net->taps[j])) {
                                                problems_add(problems, vb->source_path, 0, section, "tap",
                                                             vms[b].net->taps[j], "is also the tap of VM %s [net.%s] (%s)",
                                                             va->id, va->nics[i].name, va->source_path);
                                                found++;
                                        }
                                }
                        for (size_t j = 0; j < vb->n_drives; j++)
                                for (size_t i = 0; i < va->n_drives; i++) {
                                        const DriveConfig *da = &va->drives[i], *db = &vb->drives[j];
                                        char section[7 + DEVICE_NAME_MAX + 1];

                                        if (!drive_writes_in_place(da) && !drive_writes_in_place(db))
                                                continue;
                                        if (!same_object(&vms[a], i, &vms[b], j))
                                                continue;
                                        snprintf(section, sizeof section, "drive.%s", db->name);
                                        problems_add(problems, vb->source_path, 0, section, "path", db->path,
                                                     "is also a drive of VM %s [drive.%s] (%s), and %s writes it in place (mode = block): one of them would corrupt the other's disk",
                                                     va->id, da->name, va->source_path,
                                                     drive_writes_in_place(db) ? "this one" : "that one");
                                        found++;
                                }
                }
        }
        return problems->oom ? -ENOMEM : found;
}
