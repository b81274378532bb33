/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Shared by the libFuzzer harnesses: a NUL-terminated copy of the input,
 * the default host config, and a VM config parsed from the input bytes. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A failed invariant: says which, then aborts (libFuzzer keeps the input). */
#define fuzz_check(cond, ...)                                                   \
        do {                                                                    \
                if (!(cond)) {                                                  \
                        fprintf(stderr, "invariant failed: " __VA_ARGS__);      \
                        fputc('\n', stderr);                                    \
                        abort();                                                \
                }                                                               \
        } while (0)

static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        char *s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = '\0';
        return s;
}

static inline const HostConfig *fuzz_host(void) {
        static HostConfig *host = NULL;
        if (!host && host_config_new_default(&host) < 0)
                abort();
        return host;
}

/* The VM config the bytes describe, or NULL when they do not validate. */
static inline VmConfig *fuzz_vm_config(const uint8_t *data, size_t size) {
        Problems p = {};
        VmConfig *c = NULL;

        if (vm_config_parse("fuzz.conf", "fuzz", (const char *) data, size, fuzz_host(), &c, &p) < 0)
                c = NULL;
        problems_done(&p);
        return c;
}
