/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Libraries only some runs need, loaded on first use (as systemd does for
 * its optional libraries): libdevmapper for dm storage, libsystemd for
 * asking the manager over the bus. A VM's start and stop in file mode,
 * inside its unit, need neither, and loading them (and what they pull in:
 * libgcrypt, liblzma, libzstd, liblz4, libcap, libselinux, libudev,
 * libpcre2, ...) costs about a millisecond per process.
 *
 *   DLSYM_PROTOTYPE(dm_task_create);   -> static typeof(dm_task_create) *sym_dm_task_create;
 *   r = dlopen_many(&handle, "libdevmapper.so.1.02.1", &error,
 *                   DLSYM_ARG(dm_task_create), ..., NULL);
 *
 * Either the library is loaded and every symbol is set, or nothing is and
 * the error says which library or symbol is missing. Once loaded, the
 * library stays for the life of the process. */

#include "macro.h"

#define DLSYM_PROTOTYPE(symbol) static typeof(symbol) *sym_##symbol
#define DLSYM_ARG(symbol) ((void **) (void *) &sym_##symbol), #symbol

__attribute__((sentinel)) int dlopen_many(void **handle, const char *soname, char **ret_error, ...);
