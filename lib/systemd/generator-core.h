/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The pure core of microvm-generator: one validated VM config (and the
 * host config) in, the files to write out — relative paths below the
 * generator's output directory, each with its contents or, for a symlink,
 * its target. No I/O: generators/microvm-generator.c writes the result,
 * tests/unit/test-generator-core.c checks it without a filesystem. */

#include "config.h"

#define GENERATOR_PROGRAM "microvm-generator"
#define GENERATOR_DROPIN "50-microvm.conf"
/* Beside the drop-in: the bytes of the VM config it was generated from. Not
 * a ".conf" name, so systemd does not read it as a drop-in; microvm-stage
 * starts the VM from it ($MICROVM_CONFIG_COPY), whatever the file on disk
 * says by then (microvm-generator(8)). */
#define GENERATOR_CONFIG_COPY "vm-config"
#define MICROVMS_TARGET "microvms.target"
#define MICROVM_TEMPLATE "microvm@.service"

/* Resource-control derivations (documented in microvm-generator(8)). */
#define TASKS_BASE 32U                  /* firecracker's API and main threads, our control processes, slack */
#define TASKS_PER_ASYNC_DRIVE 128U      /* io_uring workers: at most the ring's 128 entries per drive */

typedef struct GeneratedFile {
        char *path;             /* relative to the output directory */
        char *content;          /* file contents, or the symlink target */
        size_t size;            /* of content; 0: strlen(content) */
        mode_t mode;            /* 0: 0644 */
        bool symlink;
} GeneratedFile;

typedef struct GeneratedFiles {
        GeneratedFile *items;
        size_t n;
} GeneratedFiles;

void generated_files_done(GeneratedFiles *g);

/* TasksMax= for a VM: TASKS_BASE + one per vCPU + TASKS_PER_ASYNC_DRIVE per
 * drive with io_engine = async. */
uint64_t generator_tasks_max(const VmConfig *c);

/* The drop-in microvm@<id>.service.d/50-microvm.conf. On -EINVAL, *ret_what
 * (if given) names the value a unit file cannot carry (e.g. "kernel path"). */
int generator_render_dropin(const VmConfig *c, const HostConfig *h, char **ret, const char **ret_what);

/* Everything the generator writes for one VM, appended to out: the drop-in
 * and, when autostart = yes, the symlink
 * microvms.target.wants/microvm@<id>.service → <unit_dir>/microvm@.service
 * (the installed template, as systemctl enable and systemd's own
 * generators link instances). On failure out is unchanged. */
int generator_render_vm(const VmConfig *c, const HostConfig *h, const char *unit_dir, GeneratedFiles *out,
                        const char **ret_what);

/* After generator_render_vm() for c: the copy of the config bytes (data,
 * size: what c was parsed from) as microvm@<id>.service.d/vm-config, mode
 * 0600, and the line Environment=MICROVM_CONFIG_COPY=<dest>/<that path>
 * appended to the VM's drop-in. -EINVAL when dest cannot be written into a
 * unit file as is (it is the manager's /run/systemd/generator). On failure
 * out is unchanged. */
int generator_render_config_copy(const VmConfig *c, const char *dest, const char *data, size_t size,
                                 GeneratedFiles *out);
