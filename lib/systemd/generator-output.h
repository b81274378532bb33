/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Writing what generator-core rendered into the generator's output
 * directory: new files and symlinks only, nothing existing replaced. */

#include <linux/limits.h>
#include <stdint.h>

#include "generator-core.h"

/* Directories created (or found) recently, least recently used replaced
 * first: every autostart VM links into the same microvms.target.wants/,
 * between VMs' own drop-in directories, and one mkdirat() per VM that
 * fails with EEXIST is measurable at a thousand VMs. */
typedef struct DirCache {
        char dirs[4][PATH_MAX];
        uint64_t used[4];
        uint64_t clock;
} DirCache;

/* Creates one generated file below outfd: its directory (one level, ours
 * alone or shared with other VMs), then the file with O_EXCL, or the
 * symlink: 0 or -errno (-EEXIST when the name exists). */
int generated_file_write(int outfd, DirCache *cache, const GeneratedFile *f);

/* For a VM whose unit runs and whose config can no longer be generated
 * (invalid, masked, removed, or the host config does not parse): writes
 * the drop-in and config copy it was started with, as microvm-stage kept
 * them in <run_dir>/<id>/ (started.dropin, started.config), so that a
 * reload changes none of its unit's settings. Returns 1 when written, 0
 * when the VM kept nothing (not running), -errno with *ret_error. */
int generator_keep_started(int outfd, DirCache *cache, const char *dest, const char *run_dir, const char *id,
                           char **ret_error);
