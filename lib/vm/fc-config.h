/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Renders firecracker's --config-file JSON for a VM (pure). Paths are the
 * ones inside the jail (names.h): /vmlinux, /initrd, /drive-NAME,
 * /run/vsock.sock. Field names follow firecracker's API structs (kebab-case
 * top-level keys, snake_case fields); every string is JSON-escaped. */

#include "config.h"

typedef struct FcRuntime {
        /* Per NIC, in config order: the tap name and the MAC to use. */
        const char *const *taps;
        const uint8_t (*macs)[6];
        uint32_t vsock_cid;     /* used when the VM has [vsock] */
} FcRuntime;

char *fc_config_render(const VmConfig *vm, const FcRuntime *rt);

/* Appends s as a JSON string literal (with quotes) to f. */
void json_write_string(FILE *f, const char *s);
