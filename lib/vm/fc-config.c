/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "fc-config.h"
#include "names.h"

void json_write_string(FILE *f, const char *s) {
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                switch (*p) {
                case '"':
                        fputs("\\\"", f);
                        break;
                case '\\':
                        fputs("\\\\", f);
                        break;
                case '\n':
                        fputs("\\n", f);
                        break;
                case '\t':
                        fputs("\\t", f);
                        break;
                case '\r':
                        fputs("\\r", f);
                        break;
                default:
                        /* Control characters must be escaped; everything else,
                         * UTF-8 included (configs are valid UTF-8), is literal. */
                        if (*p < 0x20 || *p == 0x7f)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
        fputc('"', f);
}

static const char *cache_type(DriveCache c) {
        return c == DRIVE_CACHE_WRITEBACK ? "Writeback" : "Unsafe";
}

static const char *io_engine(DriveIoEngine e) {
        return e == DRIVE_IO_ENGINE_ASYNC ? "Async" : "Sync";
}

char *fc_config_render(const VmConfig *vm, const FcRuntime *rt) {
        _cleanup_free_ char *boot_args = vm_config_boot_args(vm, NULL);
        char *out = NULL;
        size_t len = 0;
        FILE *f;

        if (!boot_args)
                return NULL;
        f = open_memstream(&out, &len);
        if (!f)
                return NULL;

        fputs("{\n  \"boot-source\": {\n    \"kernel_image_path\": ", f);
        json_write_string(f, "/" JAIL_KERNEL);
        if (vm->initrd) {
                fputs(",\n    \"initrd_path\": ", f);
                json_write_string(f, "/" JAIL_INITRD);
        }
        fputs(",\n    \"boot_args\": ", f);
        json_write_string(f, boot_args);
        fputs("\n  },\n  \"drives\": [", f);
        for (size_t i = 0; i < vm->n_drives; i++) {
                const DriveConfig *d = &vm->drives[i];
                char path[64];

                snprintf(path, sizeof path, "/" JAIL_DRIVE_PREFIX "%s", d->name);
                fputs(i ? ",\n    {\n      \"drive_id\": " : "\n    {\n      \"drive_id\": ", f);
                json_write_string(f, d->name);
                fputs(",\n      \"path_on_host\": ", f);
                json_write_string(f, path);
                fprintf(f, ",\n      \"is_root_device\": %s,\n      \"is_read_only\": %s",
                        d->root ? "true" : "false", d->read_only ? "true" : "false");
                /* Firecracker then appends root=PARTUUID=<partuuid> instead of
                 * root=/dev/vda to the kernel command line. */
                if (d->partuuid) {
                        fputs(",\n      \"partuuid\": ", f);
                        json_write_string(f, d->partuuid);
                }
                fprintf(f, ",\n      \"cache_type\": \"%s\",\n      \"io_engine\": \"%s\"\n    }",
                        cache_type(d->cache), io_engine(d->io_engine));
        }
        fputs(vm->n_drives ? "\n  ],\n" : "],\n", f);
        fprintf(f, "  \"machine-config\": {\n    \"vcpu_count\": %" PRIu32 ",\n    \"mem_size_mib\": %" PRIu64
                   ",\n    \"smt\": false\n  }",
                vm->vcpus, vm->memory >> 20);
        if (vm->n_nics > 0) {
                fputs(",\n  \"network-interfaces\": [", f);
                for (size_t i = 0; i < vm->n_nics; i++) {
                        const uint8_t *m = rt->macs[i];
                        char mac[18];

                        snprintf(mac, sizeof mac, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
                        fputs(i ? ",\n    {\n      \"iface_id\": " : "\n    {\n      \"iface_id\": ", f);
                        json_write_string(f, vm->nics[i].name);
                        fputs(",\n      \"host_dev_name\": ", f);
                        json_write_string(f, rt->taps[i]);
                        fputs(",\n      \"guest_mac\": ", f);
                        json_write_string(f, mac);
                        fputs("\n    }", f);
                }
                fputs("\n  ]", f);
        }
        if (vm->has_vsock) {
                fprintf(f, ",\n  \"vsock\": {\n    \"guest_cid\": %" PRIu32 ",\n    \"uds_path\": ", rt->vsock_cid);
                json_write_string(f, JAIL_VSOCK_SOCKET);
                fputs("\n  }", f);
        }
        /* Firecracker's own counters, one JSON line per flush: read by
         * microvm-metrics (lib/vm/vm-metrics.c); microvm-stage makes the
         * file, owned by the VM's uid. */
        fputs(",\n  \"metrics\": {\n    \"metrics_path\": ", f);
        json_write_string(f, JAIL_METRICS_FILE);
        fputs("\n  }", f);
        fputs("\n}\n", f);

        if (fclose(f) != 0) {
                free(out);
                return NULL;
        }
        return out;
}
