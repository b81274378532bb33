/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The jailer and firecracker binaries are run (or copied into jails) as
 * root: they must be root-owned regular executables that no one else can
 * write, reached through root-owned directories no one else can write. And
 * firecracker runs in an empty jail (we mount nothing into it), so it must
 * be statically linked: an ELF with a PT_INTERP program header would fail
 * in the jail with a baffling "No such file or directory". */

#include "macro.h"

typedef enum ElfKind {
        ELF_NOT_ELF,
        ELF_TRUNCATED,
        ELF_UNSUPPORTED,        /* not 64-bit little-endian, or not executable */
        ELF_DYNAMIC,            /* has PT_INTERP */
        ELF_STATIC,             /* no interpreter: static or static-pie */
} ElfKind;

/* Pure: classifies the first bytes of a file (pass at least the ELF header
 * and the program header table; 4096 bytes is enough in practice). */
ElfKind elf_classify(const void *data, size_t size);
const char *elf_kind_to_string(ElfKind k) _const_;

/* Resolves path to its canonical form (symlinks resolved, as the jailer does
 * for --exec-file), then opens it as a trusted root-owned executable. With
 * want_static, refuses a dynamically linked ELF. ret_canonical and ret_fd
 * (an O_RDONLY fd of the checked file) are optional. On failure *ret_error
 * says which component or property is wrong, for the log. */
int trusted_binary_open(const char *path, bool want_static, char **ret_canonical, int *ret_fd, char **ret_error);
