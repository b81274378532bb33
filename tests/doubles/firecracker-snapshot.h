/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The firecracker double's snapshot files (PUT /snapshot/create and
 * /snapshot/load), kept apart from the API glue in firecracker-double.c.
 *
 * What the real VMM writes (src/vmm/src/persist.rs, vstate/vm.rs):
 *   - snapshot_path: the microVM state (vCPUs, KVM, devices, with the
 *     drives' path_on_host, the taps' host_dev_name and the vsock
 *     uds_path), opened create+truncate, written, fsync'd; a CRC64 at the
 *     end, checked on load;
 *   - mem_file_path: the whole guest memory (a Full snapshot writes every
 *     byte of every plugged region), opened create without truncate,
 *     truncated only when its size differs, then set_len(memory size).
 * The double's stand-ins: the state is a small text frame around a JSON
 * document (the VM's config and kernel command line) with an FNV-1a 64
 * checksum instead of CRC64; the memory file has the guest memory's size,
 * every byte written, and its first page holds the double's "guest state":
 * the boot token and the console tick counter. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "doubles-util.h"

#define FCSNAP_TOKEN_LEN 32

typedef struct GuestMemory {
        char token[FCSNAP_TOKEN_LEN + 1];       /* random hex, made at boot */
        uint64_t ticks;                         /* console ticks printed so far */
} GuestMemory;

/* A new random boot token. */
void fcsnap_new_token(char token[FCSNAP_TOKEN_LEN + 1]);

/* Writes the state frame around payload. 0, or an errno with *ret_op
 * naming the failed operation ("open", "write", "sync_all"). */
int fcsnap_state_write(const char *path, const char *payload, const char **ret_op);
/* Reads and checks a state frame; the payload is newly allocated. 0, or a
 * positive errno (open/read) or -1 with *ret_problem describing a corrupt
 * or truncated file. */
int fcsnap_state_read(const char *path, char **ret_payload, const char **ret_problem);

/* Writes the memory file: mem_bytes in total, g in the first page. With
 * fail_after > 0 it stops after that many bytes with ENOSPC (the
 * fcdouble.fail_create knob). 0, or an errno and *ret_op. */
int fcsnap_memory_write(const char *path, uint64_t mem_bytes, const GuestMemory *g, uint64_t fail_after,
                        const char **ret_op);
/* Reads the guest state back; the file must be exactly mem_bytes long. 0,
 * a positive errno, or -1 with *ret_problem. */
int fcsnap_memory_read(const char *path, uint64_t mem_bytes, GuestMemory *ret, const char **ret_problem);
