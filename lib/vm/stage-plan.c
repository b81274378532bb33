/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>

#include "config-files.h"
#include "sha256.h"
#include "stage-plan.h"
#include "storage.h"
#include "tap.h"
#include "util.h"

void stage_network_done(StageNetwork *n) {
        strv_free(n->taps);
        free(n->macs);
        *n = (StageNetwork) {};
}

static int read_machine_id(uint8_t ret[16]) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = config_read_file("/etc/machine-id", &text, &size);
        if (r < 0)
                return r;
        if (size < 32)
                return -EBADMSG;
        for (unsigned i = 0; i < 16; i++) {
                unsigned v;
                if (sscanf(text + 2 * i, "%2x", &v) != 1)
                        return -EBADMSG;
                ret[i] = (uint8_t) v;
        }
        return 0;
}

int stage_network_plan(const VmConfig *vm, const char *id, StageNetwork *ret, char **ret_error) {
        _cleanup_(stage_network_done) StageNetwork n = {};
        uint8_t machine_id[16] = {};
        bool have_mid = false;
        int r;

        n.macs = calloc(vm->n_nics ?: 1, sizeof *n.macs);
        if (!n.macs)
                return -ENOMEM;
        for (size_t i = 0; i < vm->n_nics; i++) {
                const NicConfig *nic = &vm->nics[i];
                char tap[TAP_NAME_MAX + 1];

                if (nic->tap_auto)
                        tap_name_auto(id, nic->name, tap);
                else
                        strcpy(tap, nic->tap);
                if (strv_push(&n.taps, tap) < 0)
                        return -ENOMEM;

                if (nic->mac_auto) {
                        if (!have_mid) {
                                r = read_machine_id(machine_id);
                                if (r < 0)
                                        return error_setf(ret_error, r, "Failed to read /etc/machine-id for the MAC "
                                                          "of [net.%s] (mac = auto): %m", nic->name);
                                have_mid = true;
                        }
                        mac_auto(machine_id, id, nic->name, n.macs[i]);
                } else
                        memcpy(n.macs[i], nic->mac, 6);
        }
        *ret = n;
        n = (StageNetwork) {};
        return 0;
}

int stage_plan_build(const StagePlanInput *in, Plan **ret) {
        _cleanup_plan_ Plan *p = NULL;
        char digest[2 * SHA256_DIGEST_SIZE + 1];

        p = calloc(1, sizeof(Plan));
        if (!p)
                return -ENOMEM;
        sha256_hex(in->vm->digest, digest);
        p->version = PLAN_VERSION;
        strcpy(p->id, in->id);
        p->uid = in->uid;
        p->gid = in->gid;
        p->stop_timeout = in->vm->stop_timeout;
        p->ephemeral = in->vm->ephemeral;
        p->suspend = vm_config_suspends(in->vm, in->host);
        p->suspend_timeout = vm_config_suspend_time(in->vm, in->host);
        p->memory_mib = (unsigned) (in->vm->memory >> 20);
        /* Info is firecracker's default: passed only when it differs. */
        FcLogLevel level = vm_config_fc_log_level(in->vm, in->host);
        if (level != FC_LOG_LEVEL_INFO && !(p->fc_log_level = strdup(fc_log_level_to_string(level))))
                return -ENOMEM;
        {
                /* The snapshot refers to the disks as they are: a disk that
                 * a stop or the next start resets cannot be suspended. */
                const char *why = NULL;
                _cleanup_free_ char *w = NULL;
                /* A non-persistent dm snapshot keeps its exception table in
                 * kernel memory only: once the device is removed (every
                 * stop), its copy-on-write file means nothing. */
                for (size_t i = 0; !why && i < in->vm->n_drives; i++)
                        if (in->vm->drives[i].mode == DRIVE_MODE_SNAPSHOT && !in->vm->drives[i].persistent &&
                            !in->vm->drives[i].read_only) {
                                if (asprintf(&w, "[drive.%s] is a non-persistent snapshot (its data lives only as "
                                                 "long as its device-mapper device; persistent = yes keeps it)",
                                             in->vm->drives[i].name) < 0)
                                        return -ENOMEM;
                                why = w;
                        }
                if (why && !(p->suspend_blocker = strdup(why)))
                        return -ENOMEM;
        }
        if (!(p->config_digest = strdup(digest)) || !(p->jailer = strdup(in->host->jailer)) ||
            !(p->exec_file = strdup(in->exec_file)) || !(p->exec_name = strdup(in->exec_name)) ||
            !(p->chroot_base = strdup(in->host->chroot_base)) || !(p->jail_dir = strdup(in->paths->jail_dir)) ||
            !(p->run_dir = strdup(in->paths->run_dir)) || !(p->state_dir = strdup(in->paths->state_dir)) ||
            !(p->config_file = strdup("/" JAIL_CONFIG_FILE)) || !(p->api_socket = strdup(JAIL_API_SOCKET)))
                return -ENOMEM;
        for (char *const *t = in->taps; t && *t; t++)
                if (strv_push(&p->tap, *t) < 0)
                        return -ENOMEM;
        /* The dm devices the drives will get, named before any exists. */
        if (storage_plan_dm_names(in->vm, &p->dm) < 0)
                return -ENOMEM;
        if (in->vm->numa_node >= 0) {
                _cleanup_free_ char *mems = NULL;
                if (asprintf(&mems, "cpuset.mems=%d", in->vm->numa_node) < 0 || strv_push(&p->cgroup, mems) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(p);
        return 0;
}
