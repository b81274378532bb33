/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The baseline for bench/fuzz: a harness that does nothing, so that each
 * real harness's executions per second can be given as a ratio of what
 * libFuzzer and the sanitizers cost on their own on this machine. */

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        return 0;
}
