/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The configuration model shared by every tool: the host config
 * (/etc/microvm/microvm.conf) and one <id>.conf per VM. Parsing and
 * validation are pure functions of the file bytes (config_parse_*); the
 * loaders (config-files.h) only find and read the files. */

#include <sys/types.h>

#include "macro.h"
#include "problems.h"
#include "sha256.h"

#define VM_ID_MAX 64
#define DEVICE_NAME_MAX 16      /* [drive.NAME] and [net.NAME]: [a-z0-9]{1,16} */
#define DRIVES_MAX 16
#define NICS_MAX 8
#define VCPUS_MIN 1
#define VCPUS_MAX 32
#define MEMORY_MIN (128ULL << 20)
#define MEMORY_MAX (1ULL << 40)
#define MTU_MIN 68
#define MTU_MAX 65535
#define CMDLINE_MAX 2048
#define DESCRIPTION_MAX 256
#define STOP_TIMEOUT_MIN (1 * USEC_PER_SEC)
#define STOP_TIMEOUT_MAX (3600 * USEC_PER_SEC)
#define CPU_WEIGHT_MIN 1
#define CPU_WEIGHT_MAX 10000
#define VSOCK_CID_MIN 3U

typedef enum DriveMode {
        DRIVE_MODE_FILE,
        DRIVE_MODE_SNAPSHOT,
        DRIVE_MODE_THIN,
        DRIVE_MODE_BLOCK,
        _DRIVE_MODE_MAX,
} DriveMode;

typedef enum DriveCache {
        DRIVE_CACHE_DEFAULT,    /* firecracker's default: Unsafe */
        DRIVE_CACHE_UNSAFE,
        DRIVE_CACHE_WRITEBACK,
} DriveCache;

typedef enum DriveIoEngine {
        DRIVE_IO_ENGINE_DEFAULT, /* firecracker's default: Sync */
        DRIVE_IO_ENGINE_SYNC,
        DRIVE_IO_ENGINE_ASYNC,
} DriveIoEngine;

typedef enum RestartPolicy {
        RESTART_NO,
        RESTART_ON_FAILURE,
        RESTART_ALWAYS,
} RestartPolicy;

/* What microvm-stop does with a running VM when the host shuts down. */
typedef enum OnHostShutdown {
        ON_HOST_SHUTDOWN_DEFAULT,       /* [vm] unset: the host's on_host_shutdown */
        ON_HOST_SHUTDOWN_STOP,          /* Ctrl-Alt-Del, as a plain stop */
        ON_HOST_SHUTDOWN_SUSPEND,       /* pause + snapshot to disk, resumed at the next start */
} OnHostShutdown;

/* Firecracker's logger level (its --level): what of its own log reaches
 * the unit's journal beside the serial console. */
typedef enum FcLogLevel {
        FC_LOG_LEVEL_DEFAULT,           /* [vm] unset: the host's firecracker_log_level */
        FC_LOG_LEVEL_ERROR,
        FC_LOG_LEVEL_WARNING,
        FC_LOG_LEVEL_INFO,              /* firecracker's own default */
        FC_LOG_LEVEL_DEBUG,
} FcLogLevel;

typedef struct DriveConfig {
        char name[DEVICE_NAME_MAX + 1];
        DriveMode mode;
        char *path;
        bool root;
        bool read_only;
        bool persistent;
        uint64_t size;          /* 0: unset (use the base image's size) */
        DriveCache cache;
        DriveIoEngine io_engine;
        char *partuuid;         /* root drive only: root=PARTUUID=<partuuid>; NULL: root=/dev/vda */
} DriveConfig;

typedef struct NicConfig {
        char name[DEVICE_NAME_MAX + 1];
        char *bridge;           /* NULL: the host's default bridge, if any */
        bool mac_auto;
        uint8_t mac[6];
        bool tap_auto;
        char tap[16];
        uint32_t mtu;           /* 0: leave the kernel default */
        bool has_address;
        uint32_t address;
        unsigned prefixlen;
        bool has_gateway;
        uint32_t gateway;
} NicConfig;

typedef struct VmConfig {
        char id[VM_ID_MAX + 1];
        char *source_path;
        uint8_t digest[SHA256_DIGEST_SIZE];     /* of the file bytes */

        char *description;
        uint32_t vcpus;
        uint64_t memory;
        char *kernel;
        char *initrd;
        char *cmdline;          /* as written; NULL: the default */
        bool autostart;
        RestartPolicy restart;
        usec_t stop_timeout;
        bool uid_auto;
        uid_t uid;
        uint32_t cpu_weight;    /* 0: unset */
        uint32_t cpu_quota;     /* percent, 0: unset */
        char *allowed_cpus;     /* NULL: unset */
        int numa_node;          /* -1: unset */
        bool ephemeral;         /* remove state_dir/<id>/ on stop */
        OnHostShutdown on_host_shutdown;
        FcLogLevel firecracker_log_level;

        DriveConfig *drives;
        size_t n_drives;
        NicConfig *nics;
        size_t n_nics;

        bool has_vsock;
        bool vsock_cid_auto;
        uint32_t vsock_cid;
} VmConfig;

typedef struct ThinPoolConfig {
        bool configured;
        char *name;             /* dm name of the pool */
        char *data;             /* backing files when we create the pool */
        char *metadata;
        uint64_t data_size;
        uint64_t metadata_size; /* 0: derived from data_size */
        uint64_t block_size;    /* dm thin-pool data block size */
} ThinPoolConfig;

typedef struct HostConfig {
        char *source_path;      /* NULL: built-in defaults, no file */
        char *jailer;
        char *firecracker;
        char *chroot_base;
        char *state_dir;
        char *run_dir;
        uid_t uid_min;
        uid_t uid_max;
        uint64_t memory_overhead;
        char *bridge;
        char *console_group;    /* may write the VMs' serial input; NULL: root only */
        OnHostShutdown on_host_shutdown;        /* never _DEFAULT here */
        uint64_t suspend_write_rate;    /* bytes per second the state dir takes a memory file at */
        FcLogLevel firecracker_log_level;       /* never _DEFAULT here */
        ThinPoolConfig thin_pool;
} HostConfig;

#define DEFAULT_JAILER "/usr/bin/jailer"
#define DEFAULT_FIRECRACKER "/usr/bin/firecracker"
#define DEFAULT_RUN_DIR "/run/microvm"
#define DEFAULT_UID_MIN 1000000U
#define DEFAULT_UID_MAX 1065535U
#define DEFAULT_MEMORY_OVERHEAD (64ULL << 20)
#define DEFAULT_VCPUS 1
#define DEFAULT_MEMORY (256ULL << 20)
#define DEFAULT_STOP_TIMEOUT (30 * USEC_PER_SEC)
#define DEFAULT_SUSPEND_WRITE_RATE (100ULL << 20)
/* Added to the memory write time for a suspend VM's TimeoutStopSec=. */
#define SUSPEND_TIMEOUT_MARGIN (10 * USEC_PER_SEC)
#define DEFAULT_THIN_BLOCK_SIZE (64ULL << 10)
#define DEFAULT_CMDLINE "console=ttyS0 reboot=k panic=1"

const char *drive_mode_to_string(DriveMode m) _const_;
const char *restart_policy_to_string(RestartPolicy p) _const_;
const char *on_host_shutdown_to_string(OnHostShutdown o) _const_;
/* Firecracker's name of the level ("Warning"); NULL for _DEFAULT. */
const char *fc_log_level_to_string(FcLogLevel l) _const_;

/* VM id rule: ^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?$. Returns NULL when id is
 * valid, else a static string saying which rule it broke. */
const char *vm_id_invalid_reason(const char *id);
static inline bool vm_id_valid(const char *id) {
        return !vm_id_invalid_reason(id);
}
/* [a-z0-9]{1,16} for drive and NIC names. */
bool device_name_valid(const char *name);

/* Pure: bytes → config. file names the source in problems. Returns 0 with
 * *ret set, or -EINVAL with every problem in problems (-ENOMEM on OOM). */
int host_config_parse(const char *file, const char *data, size_t size, HostConfig **ret, Problems *problems);
/* The same; on -EINVAL, *ret_partial (if given) gets what could be read,
 * defaults for the rest: enough for the generator to find the run_dir of
 * running VMs while the file has a typo. Not to be used for anything else. */
int host_config_parse_partial(const char *file, const char *data, size_t size, HostConfig **ret,
                              HostConfig **ret_partial, Problems *problems);
/* The built-in defaults, used when the host config file does not exist. */
int host_config_new_default(HostConfig **ret);
HostConfig *host_config_free(HostConfig *h);

/* id is the VM id (the file name minus ".conf"); host supplies the uid range
 * and whether a thin pool exists. */
int vm_config_parse(const char *file, const char *id, const char *data, size_t size, const HostConfig *host,
                    VmConfig **ret, Problems *problems);
VmConfig *vm_config_free(VmConfig *c);

static inline void host_config_freep(HostConfig **h) {
        host_config_free(*h);
}
static inline void vm_config_freep(VmConfig **c) {
        vm_config_free(*c);
}
#define _cleanup_host_config_ _cleanup_(host_config_freep)
#define _cleanup_vm_config_ _cleanup_(vm_config_freep)

const DriveConfig *vm_config_root_drive(const VmConfig *c);
/* The kernel command line we boot with: the configured one (or the
 * default), plus console=ttyS0 / reboot=k when absent, plus ip= for a NIC
 * with a static address, inserted at the end of the kernel's parameters,
 * before a "--" that hands the rest to init (written " -- ", the way
 * firecracker's linux-loader finds it; see kernel-cmdline.h). Newly
 * allocated. */
char *vm_config_boot_args(const VmConfig *c, const char *const *guest_ifnames);
/* Whether the VM is suspended (not stopped) when the host shuts down: its
 * own on_host_shutdown, else the host's. */
bool vm_config_suspends(const VmConfig *c, const HostConfig *h) _pure_;
/* Firecracker's logger level for the VM: its own firecracker_log_level,
 * else the host's. */
FcLogLevel vm_config_fc_log_level(const VmConfig *c, const HostConfig *h) _pure_;
/* The time a suspend may take: the guest memory written at the host's
 * suspend_write_rate, plus SUSPEND_TIMEOUT_MARGIN. */
usec_t vm_config_suspend_time(const VmConfig *c, const HostConfig *h) _pure_;
/* The unit's TimeoutStopSec=: stop_timeout, plus for a suspend VM the
 * suspend time (a failed suspend falls back to the graceful stop, which
 * then still has its whole stop_timeout). */
usec_t vm_config_stop_budget(const VmConfig *c, const HostConfig *h) _pure_;
/* Guest memory + host overhead, the unit's MemoryMax=. */
uint64_t vm_config_memory_max(const VmConfig *c, const HostConfig *h);
