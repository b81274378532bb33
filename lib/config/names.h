/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Every name derived from a VM id, in one pure place. For every valid id
 * (vm_id_valid()) and device name (device_name_valid()) these are valid
 * and distinct: dm names fit DM_NAME_LEN, taps fit IFNAMSIZ, the sockets
 * firecracker binds inside its jail fit sun_path. tests/unit/test-names.c
 * checks this for the extremes, 64-character ids included. */

#include <sys/types.h>

#include "config.h"

#define DM_NAME_PREFIX "microvm-"
#define DM_UUID_PREFIX "MICROVM-"
#define UNIT_PREFIX "microvm@"
#define UNIT_SLICE "microvm.slice"
#define TAP_NAME_MAX 15
#define SUN_PATH_MAX 107

/* Inside the jail, as firecracker sees it (paths relative to the jail root). */
#define JAIL_API_SOCKET "/run/firecracker.socket"
#define JAIL_VSOCK_SOCKET "/run/vsock.sock"
#define JAIL_CONFIG_FILE "vm-config.json"
#define JAIL_KERNEL "vmlinux"
#define JAIL_INITRD "initrd"
#define JAIL_DRIVE_PREFIX "drive-"
/* firecracker's metrics file (JSON lines; lib/vm/fc-metrics.h) */
#define JAIL_METRICS_FILE "/run/fc-metrics.json"

/* In <run_dir>/<id>/ */
#define RUN_PLAN_FILE "plan"
#define RUN_CONSOLE_FIFO "console.in"
/* What a start used, kept while the VM runs (microvm-stage writes them,
 * cleanup removes them with the directory): the generated drop-in and the
 * config it was generated from. A daemon-reload that finds the VM's config
 * invalid or gone (or the host config invalid) re-emits these instead of
 * nothing, so a running VM never loses its limits (microvm-generator(8)). */
#define RUN_STARTED_DROPIN "started.dropin"
/* Written last by a successful microvm-stage: $INVOCATION_ID of the start
 * it staged. microvm-launch and microvm-ready go on only for this start
 * (ExecStartPre=- lets them run after a failed stage; see microvm@.service). */
#define RUN_STAGED_FILE "staged"
#define RUN_STARTED_CONFIG "started.config"

/* In <state_dir>/ and <state_dir>/<id>/ */
#define STATE_LOCK_FILE ".lock"
#define STATE_UID_FILE "uid"
#define STATE_DRIVES_DIR "drives"
/* No process of the VM's uid has ever run: see lib/vm/vm-first-run.h. */
#define STATE_UNLAUNCHED_FILE "unlaunched"
#define STATE_LAUNCHING_FILE "launching"

typedef struct VmPaths {
        char *exec_dir;         /* <chroot_base>/<exec-name> */
        char *jail_dir;         /* <chroot_base>/<exec-name>/<id> (jailer creates it) */
        char *jail_root;        /* <jail_dir>/root */
        char *run_dir;          /* <run_dir>/<id> */
        char *state_dir;        /* <state_dir>/<id> */
        char *unit;             /* microvm@<id>.service */
} VmPaths;

int vm_paths_new(const HostConfig *h, const char *exec_name, const char *id, VmPaths *ret);
void vm_paths_done(VmPaths *p);

/* "microvm-<id>-<drive>" / "MICROVM-<id>-<drive>". buf must hold 128 bytes.
 * Drive names have no '-', so the last '-' separates id and drive and no
 * two (id, drive) pairs share a name. */
int dm_name_for(const char *id, const char *drive, char buf[static 128]);
int dm_uuid_for(const char *id, const char *drive, char buf[static 128]);
/* Parses a dm UUID of ours back into the VM id; false for foreign ones. */
bool dm_uuid_parse(const char *uuid, char ret_id[static VM_ID_MAX + 1]);

/* Tap name for tap = auto: "<id>-<nic>" when it fits in 15 bytes, else
 * "mv" + 13 base32 characters of a hash of both. The readable form always
 * contains '-', the hashed one never does, so the two cannot collide. */
void tap_name_auto(const char *id, const char *nic, char buf[static TAP_NAME_MAX + 1]);
/* MAC for mac = auto: stable, locally administered, unicast, derived from
 * the machine id, the VM id and the NIC name. */
void mac_auto(const uint8_t machine_id[16], const char *id, const char *nic, uint8_t ret[6]);

/* Basename of a canonical path ("exec name" as the jailer computes it). */
const char *exec_name_from_path(const char *canonical_path);

/* Jailers v1.2.0 to v1.12.x refuse an --exec-file whose exec name does not
 * contain "firecracker" (src/jailer/src/env.rs validate_exec_file(),
 * JailerError::ExecFileName); v1.13.0 dropped the rule (CHANGELOG #5282).
 * False when an old jailer would refuse the name. */
#define JAILER_EXEC_NAME_RULE_VERSIONS "v1.2.0 to v1.12.x"
bool exec_name_ok_for_old_jailers(const char *exec_name);

/* "microvm@<id>.service"; ids need no escaping (ids are valid unit instance
 * names by construction), arbitrary strings go through unit_name_escape(). */
char *unit_name_for(const char *id);
