/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* The guest kernel's command line as the kernel and firecracker split it.
 *
 * The kernel (lib/cmdline.c next_arg(), kernel/params.c parse_args())
 * splits at whitespace outside double quotes (a '"' anywhere toggles
 * quoting) and stops at the first parameter "--" (also written "\"--\""):
 * what follows goes to init. Firecracker parses boot_args with
 * linux-loader's Cmdline::try_from(), which splits at the first " -- "
 * (single spaces) preceded by an even number of '"', and inserts its own
 * parameters (pci=off, root=, virtio_mmio.device=) at the end of the part
 * before it. The two agree only when the separator is written " -- ";
 * kernel_cmdline_split() finds the kernel's separator so that callers can
 * render it that way. */

typedef struct KernelCmdlineSplit {
        const char *kernel;     /* the kernel parameters, blanks at both ends cut */
        size_t kernel_len;
        const char *init;       /* init's arguments, leading blanks cut; NULL: no "--" */
        size_t init_len;        /* trailing blanks cut */
} KernelCmdlineSplit;

/* isspace() of the kernel's lib/ctype.c (which counts 0xa0 as a space). */
bool kernel_cmdline_is_space(char c);

/* Every '"' closed? An odd count leaves the rest of the line, and whatever
 * firecracker appends, quoted. */
bool kernel_cmdline_quotes_balanced(const char *text);

void kernel_cmdline_split(const char *text, KernelCmdlineSplit *ret);

/* Whether the kernel parameters text[0, len) (e.g. a split's kernel part)
 * contain parameter NAME ("NAME" or "NAME=..."; a leading '"' is not part of the name). */
bool kernel_cmdline_has_param(const char *text, size_t len, const char *name);
