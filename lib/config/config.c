/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <inttypes.h>

#include "config.h"
#include "ini.h"
#include "kernel-cmdline.h"
#include "parse-util.h"

static const char *const drive_mode_table[_DRIVE_MODE_MAX] = {
        [DRIVE_MODE_FILE] = "file",
        [DRIVE_MODE_SNAPSHOT] = "snapshot",
        [DRIVE_MODE_THIN] = "thin",
        [DRIVE_MODE_BLOCK] = "block",
};

const char *drive_mode_to_string(DriveMode m) {
        return m >= 0 && m < _DRIVE_MODE_MAX ? drive_mode_table[m] : NULL;
}

const char *restart_policy_to_string(RestartPolicy p) {
        switch (p) {
        case RESTART_NO:
                return "no";
        case RESTART_ON_FAILURE:
                return "on-failure";
        case RESTART_ALWAYS:
                return "always";
        }
        return NULL;
}

const char *vm_id_invalid_reason(const char *id) {
        size_t n = strlen(id);

        if (n == 0)
                return "is empty";
        if (n > VM_ID_MAX)
                return "is longer than 64 characters";
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (c >= 'A' && c <= 'Z')
                        return "contains an upper-case letter (use a-z, 0-9 and '-')";
                if (c == '_')
                        return "contains '_' (the jailer rejects it; use '-')";
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
                        return "contains a character other than a-z, 0-9 and '-'";
        }
        if (id[0] == '-')
                return "starts with '-'";
        if (id[n - 1] == '-')
                return "ends with '-'";
        return NULL;
}

bool device_name_valid(const char *name) {
        size_t n = strlen(name);

        if (n == 0 || n > DEVICE_NAME_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((name[i] >= 'a' && name[i] <= 'z') || (name[i] >= '0' && name[i] <= '9')))
                        return false;
        return true;
}

/* ---- typed key parsers ---------------------------------------------------
 * Each one reads an IniEntry's value into a field and records a problem
 * naming file, section, key, value and rule when the value is bad. */

typedef struct Ctx {
        const char *file;
        const char *section;
        Problems *problems;
        const HostConfig *host;
} Ctx;

#define BAD(ctx, e, ...) \
        problems_add((ctx)->problems, (ctx)->file, (e)->line, (ctx)->section, (e)->key, (e)->value, __VA_ARGS__)

typedef struct KeyDesc {
        const char *key;
        void (*parse)(const Ctx *ctx, const IniEntry *e, void *field, const struct KeyDesc *d);
        size_t offset;
        uint64_t min, max;      /* for numbers and sizes */
} KeyDesc;

static void parse_string_field(const Ctx *ctx, const IniEntry *e, void *field, size_t max) {
        char **s = field;

        if (strlen(e->value) > max) {
                BAD(ctx, e, "is longer than %zu characters", max);
                return;
        }
        free(*s);
        *s = strdup(e->value);
        if (!*s)
                ctx->problems->oom = true;
}

static void key_description(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        parse_string_field(ctx, e, field, DESCRIPTION_MAX);
}

static void key_cmdline(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        KernelCmdlineSplit split;

        if (isempty(e->value)) {
                BAD(ctx, e, "is empty (remove the key to use the default \"%s\")", DEFAULT_CMDLINE);
                return;
        }
        /* The kernel quotes from an unpaired '"' to the end of the line:
         * the parameters we and firecracker add after it would be part of
         * that quoted value. */
        if (!kernel_cmdline_quotes_balanced(e->value)) {
                BAD(ctx, e, "has an unpaired '\"' (the parameters microvm and firecracker append would end up "
                            "inside the quotes)");
                return;
        }
        /* Firecracker appends root=/dev/vda (root=PARTUUID=<partuuid> with
         * the root drive's partuuid) after these parameters, and the kernel
         * takes the last root=: a root= here never takes effect. */
        kernel_cmdline_split(e->value, &split);
        if (kernel_cmdline_has_param(split.kernel, split.kernel_len, "root")) {
                BAD(ctx, e, "sets root=, which firecracker always overrides with root=/dev/vda of the root drive "
                            "(remove it; for a root filesystem on a partition of the image, set partuuid = in the "
                            "root drive's section)");
                return;
        }
        parse_string_field(ctx, e, field, CMDLINE_MAX);
}

static void key_path(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        PathProblem pp = path_check_normalized(e->value);

        if (pp != PATH_OK) {
                BAD(ctx, e, "%s", path_problem_to_string(pp));
                return;
        }
        parse_string_field(ctx, e, field, SIZE_MAX);
}

static void key_bool(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        int b = parse_boolean(e->value);

        if (b < 0) {
                BAD(ctx, e, "is not a boolean (use yes or no)");
                return;
        }
        *(bool *) field = b;
}

static void key_u32(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        uint32_t v;
        int r = parse_u32(e->value, &v);

        if (r == -EINVAL) {
                BAD(ctx, e, "is not a decimal number");
                return;
        }
        if (r < 0 || v < d->min || v > d->max) {
                BAD(ctx, e, "is out of range (%" PRIu64 "-%" PRIu64 ")", d->min, d->max);
                return;
        }
        *(uint32_t *) field = v;
}

static void key_size(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        char a[32], b[32];
        uint64_t v;
        int r = parse_size(e->value, &v);

        if (r == -EINVAL) {
                BAD(ctx, e, "is not a size (use e.g. 512M, 4G)");
                return;
        }
        if (r < 0 || v < d->min || v > d->max) {
                BAD(ctx, e, "is out of range (%s-%s)", format_size(d->min, a, sizeof a),
                    format_size(d->max, b, sizeof b));
                return;
        }
        *(uint64_t *) field = v;
}

static void key_memory(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        uint64_t before = *(uint64_t *) field;

        key_size(ctx, e, field, d);
        if (*(uint64_t *) field != before && *(uint64_t *) field % (1ULL << 20) != 0) {
                BAD(ctx, e, "is not a whole number of MiB (firecracker sizes guest memory in MiB)");
                *(uint64_t *) field = before;
        }
}

static void key_stop_timeout(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        usec_t v;
        int r = parse_timespan(e->value, &v);

        if (r == -EINVAL) {
                BAD(ctx, e, "is not a time span (use e.g. 30s, 2min)");
                return;
        }
        if (r < 0 || v < STOP_TIMEOUT_MIN || v > STOP_TIMEOUT_MAX) {
                BAD(ctx, e, "is out of range (1s-1h)");
                return;
        }
        *(usec_t *) field = v;
}

static void key_restart(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        for (RestartPolicy p = RESTART_NO; p <= RESTART_ALWAYS; p++)
                if (streq(e->value, restart_policy_to_string(p))) {
                        *(RestartPolicy *) field = p;
                        return;
                }
        BAD(ctx, e, "is not a restart policy (use no, on-failure or always)");
}

const char *on_host_shutdown_to_string(OnHostShutdown o) {
        return o == ON_HOST_SHUTDOWN_SUSPEND ? "suspend" : o == ON_HOST_SHUTDOWN_STOP ? "stop" : "default";
}

static void key_on_host_shutdown(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (streq(e->value, "stop"))
                *(OnHostShutdown *) field = ON_HOST_SHUTDOWN_STOP;
        else if (streq(e->value, "suspend"))
                *(OnHostShutdown *) field = ON_HOST_SHUTDOWN_SUSPEND;
        else
                BAD(ctx, e, "is neither stop nor suspend");
}

const char *fc_log_level_to_string(FcLogLevel l) {
        static const char *const names[] = {
                [FC_LOG_LEVEL_ERROR] = "Error",
                [FC_LOG_LEVEL_WARNING] = "Warning",
                [FC_LOG_LEVEL_INFO] = "Info",
                [FC_LOG_LEVEL_DEBUG] = "Debug",
        };
        return l > FC_LOG_LEVEL_DEFAULT && (size_t) l < ELEMENTSOF(names) ? names[l] : NULL;
}

static void key_fc_log_level(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        static const char *const keys[] = {
                [FC_LOG_LEVEL_ERROR] = "error",
                [FC_LOG_LEVEL_WARNING] = "warning",
                [FC_LOG_LEVEL_INFO] = "info",
                [FC_LOG_LEVEL_DEBUG] = "debug",
        };
        for (FcLogLevel l = FC_LOG_LEVEL_ERROR; l <= FC_LOG_LEVEL_DEBUG; l++)
                if (streq(e->value, keys[l])) {
                        *(FcLogLevel *) field = l;
                        return;
                }
        BAD(ctx, e, "is not a firecracker log level (use error, warning, info or debug)");
}

static void key_uid(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        VmConfig *c = field;
        uint32_t v;

        if (streq(e->value, "auto")) {
                c->uid_auto = true;
                return;
        }
        if (parse_u32(e->value, &v) < 0) {
                BAD(ctx, e, "is neither \"auto\" nor a decimal uid");
                return;
        }
        if (ctx->host && (v < ctx->host->uid_min || v > ctx->host->uid_max)) {
                BAD(ctx, e, "is outside the host's uid_range (%u-%u)", (unsigned) ctx->host->uid_min,
                    (unsigned) ctx->host->uid_max);
                return;
        }
        c->uid_auto = false;
        c->uid = (uid_t) v;
}

/* A partition UUID as the kernel's root=PARTUUID= takes it
 * (Documentation/admin-guide/kernel-parameters.txt, init/do_mounts.c): a
 * GPT partition's unique GUID (8-4-4-4-12 hex digits) or, for an MBR
 * partition table, SSSSSSSS-PP (the disk signature and the 1-based
 * partition number, both zero-filled hex). */
static bool partuuid_valid(const char *s) {
        static const unsigned gpt[] = { 8, 4, 4, 4, 12 }, mbr[] = { 8, 2 };
        const unsigned *groups = strlen(s) == 36 ? gpt : mbr;
        size_t n = groups == gpt ? ELEMENTSOF(gpt) : ELEMENTSOF(mbr);
        const char *p = s;

        for (size_t i = 0; i < n; i++) {
                if (i > 0 && *p++ != '-')
                        return false;
                for (unsigned j = 0; j < groups[i]; j++, p++)
                        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
                                return false;
        }
        if (*p)
                return false;
        /* MBR partitions count from 1. */
        return groups == gpt || !(s[9] == '0' && s[10] == '0');
}

static void key_partuuid(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (!partuuid_valid(e->value)) {
                BAD(ctx, e, "is not a partition UUID (a GPT partition's unique GUID such as "
                            "8c5b8f8a-3c8e-4b6d-9d0e-2f1a6b7c8d9e, or SSSSSSSS-PP for an MBR partition: disk "
                            "signature and partition number in hex, such as 0eaa91a0-01)");
                return;
        }
        parse_string_field(ctx, e, field, SIZE_MAX);
}

static void key_cpu_quota(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        uint32_t v;
        int r = parse_percent(e->value, &v);

        if (r == -EINVAL) {
                BAD(ctx, e, "is not a percentage (use e.g. 50%% or 200%%)");
                return;
        }
        if (r < 0 || v < 1 || v > 100 * VCPUS_MAX) {
                BAD(ctx, e, "is out of range (1%%-%u%%)", 100 * VCPUS_MAX);
                return;
        }
        *(uint32_t *) field = v;
}

static void key_cpu_list(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        int r = parse_cpu_list(e->value);

        if (r < 0) {
                BAD(ctx, e, r == -ERANGE ? "names a CPU beyond 8191"
                                         : "is not a CPU list (use e.g. 0-3 or 0,2,4-7, ascending)");
                return;
        }
        parse_string_field(ctx, e, field, 256);
}

static void key_numa_node(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        uint32_t v;

        if (parse_u32(e->value, &v) < 0 || v > 1023) {
                BAD(ctx, e, "is not a NUMA node number (0-1023)");
                return;
        }
        *(int *) field = (int) v;
}

static void key_drive_mode(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        for (DriveMode m = 0; m < _DRIVE_MODE_MAX; m++)
                if (streq(e->value, drive_mode_to_string(m))) {
                        *(DriveMode *) field = m;
                        return;
                }
        BAD(ctx, e, "is not a storage mode (use file, snapshot, thin or block)");
}

static void key_drive_cache(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (streq(e->value, "unsafe"))
                *(DriveCache *) field = DRIVE_CACHE_UNSAFE;
        else if (streq(e->value, "writeback"))
                *(DriveCache *) field = DRIVE_CACHE_WRITEBACK;
        else
                BAD(ctx, e, "is not a cache type (use unsafe or writeback)");
}

static void key_drive_io_engine(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (streq(e->value, "sync"))
                *(DriveIoEngine *) field = DRIVE_IO_ENGINE_SYNC;
        else if (streq(e->value, "async"))
                *(DriveIoEngine *) field = DRIVE_IO_ENGINE_ASYNC;
        else
                BAD(ctx, e, "is not an io engine (use sync or async)");
}

static void key_ifname(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (!ifname_valid(e->value)) {
                BAD(ctx, e, "is not a valid interface name (1-15 bytes, no '/', ':' or spaces)");
                return;
        }
        parse_string_field(ctx, e, field, 15);
}

/* A group name as shadow-utils accepts it by default (useradd's
 * NAME_REGEX): [a-z_][a-z0-9_-]*[$]?, at most 32 bytes. */
static void key_group_name(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        const char *v = e->value;
        size_t n = strlen(v);
        bool ok = n > 0 && n <= 32 && (islower((unsigned char) v[0]) || v[0] == '_');

        for (size_t i = 1; ok && i < n; i++)
                ok = islower((unsigned char) v[i]) || isdigit((unsigned char) v[i]) || v[i] == '_' || v[i] == '-' ||
                     (v[i] == '$' && i + 1 == n);
        if (!ok) {
                BAD(ctx, e, "is not a group name (1-32 bytes of a-z, 0-9, '_' and '-', not starting with a digit or '-')");
                return;
        }
        parse_string_field(ctx, e, field, 32);
}

static void key_nic_mac(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        NicConfig *n = field;
        int r;

        if (streq(e->value, "auto")) {
                n->mac_auto = true;
                return;
        }
        r = parse_mac(e->value, n->mac);
        if (r == -ERANGE)
                BAD(ctx, e, "is not a unicast MAC address (the first octet must be even, and not all zero)");
        else if (r < 0)
                BAD(ctx, e, "is neither \"auto\" nor a MAC address (use e.g. 52:54:00:12:34:56)");
        else
                n->mac_auto = false;
}

static void key_nic_tap(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        NicConfig *n = field;

        if (streq(e->value, "auto")) {
                n->tap_auto = true;
                return;
        }
        if (!ifname_valid(e->value)) {
                BAD(ctx, e, "is neither \"auto\" nor a valid interface name (1-15 bytes, no '/', ':' or spaces)");
                return;
        }
        n->tap_auto = false;
        strcpy(n->tap, e->value);
}

static void key_nic_address(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        NicConfig *n = field;

        if (parse_ipv4_prefix(e->value, &n->address, &n->prefixlen) < 0 || !strchr(e->value, '/')) {
                BAD(ctx, e, "is not an IPv4 address with prefix length (use e.g. 10.0.0.2/24)");
                return;
        }
        n->has_address = true;
}

static void key_nic_gateway(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        NicConfig *n = field;

        if (parse_ipv4(e->value, &n->gateway) < 0) {
                BAD(ctx, e, "is not an IPv4 address (use e.g. 10.0.0.1)");
                return;
        }
        n->has_gateway = true;
}

static void key_vsock_cid(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        VmConfig *c = field;
        uint32_t v;

        if (streq(e->value, "auto")) {
                c->vsock_cid_auto = true;
                return;
        }
        if (parse_u32(e->value, &v) < 0 || v < VSOCK_CID_MIN || v == UINT32_MAX) {
                BAD(ctx, e, "is neither \"auto\" nor a context id (3-4294967294)");
                return;
        }
        c->vsock_cid_auto = false;
        c->vsock_cid = v;
}

static void key_uid_range(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        HostConfig *h = field;
        int r = parse_uid_range(e->value, &h->uid_min, &h->uid_max);

        if (r == -ERANGE)
                BAD(ctx, e, "is not a usable range (from <= to, 0 and 4294967294+ excluded)");
        else if (r < 0)
                BAD(ctx, e, "is not a uid range (use e.g. 1000000-1065535)");
}

static void key_thin_block_size(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        uint64_t before = *(uint64_t *) field;

        key_size(ctx, e, field, d);
        if (*(uint64_t *) field != before && *(uint64_t *) field % (64 << 10) != 0) {
                BAD(ctx, e, "is not a multiple of 64K (a dm thin-pool rule)");
                *(uint64_t *) field = before;
        }
}

/* dm device names: up to 127 bytes; we keep pool names to a safe charset. */
static bool dm_name_valid(const char *s) {
        size_t n = strlen(s);
        if (n == 0 || n > 100)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_' || s[i] == '.'))
                        return false;
        return !streq(s, ".") && !streq(s, "..");
}

static void key_dm_name(const Ctx *ctx, const IniEntry *e, void *field, const KeyDesc *d) {
        if (!dm_name_valid(e->value)) {
                BAD(ctx, e, "is not a valid device-mapper name (1-100 of A-Z a-z 0-9 - _ .)");
                return;
        }
        parse_string_field(ctx, e, field, 100);
}

#define K(name, fn, type, member, ...) { name, fn, offsetof(type, member), __VA_ARGS__ }
#define KSELF(name, fn) { name, fn, 0, 0, 0 }

static const KeyDesc vm_keys[] = {
        K("description", key_description, VmConfig, description, 0, 0),
        K("vcpus", key_u32, VmConfig, vcpus, VCPUS_MIN, VCPUS_MAX),
        K("memory", key_memory, VmConfig, memory, MEMORY_MIN, MEMORY_MAX),
        K("kernel", key_path, VmConfig, kernel, 0, 0),
        K("initrd", key_path, VmConfig, initrd, 0, 0),
        K("cmdline", key_cmdline, VmConfig, cmdline, 0, 0),
        K("autostart", key_bool, VmConfig, autostart, 0, 0),
        K("restart", key_restart, VmConfig, restart, 0, 0),
        K("stop_timeout", key_stop_timeout, VmConfig, stop_timeout, 0, 0),
        KSELF("uid", key_uid),
        K("cpu_weight", key_u32, VmConfig, cpu_weight, CPU_WEIGHT_MIN, CPU_WEIGHT_MAX),
        K("cpu_quota", key_cpu_quota, VmConfig, cpu_quota, 0, 0),
        K("allowed_cpus", key_cpu_list, VmConfig, allowed_cpus, 0, 0),
        K("numa_node", key_numa_node, VmConfig, numa_node, 0, 0),
        K("ephemeral", key_bool, VmConfig, ephemeral, 0, 0),
        K("on_host_shutdown", key_on_host_shutdown, VmConfig, on_host_shutdown, 0, 0),
        K("firecracker_log_level", key_fc_log_level, VmConfig, firecracker_log_level, 0, 0),
};

static const KeyDesc drive_keys[] = {
        K("mode", key_drive_mode, DriveConfig, mode, 0, 0),
        K("path", key_path, DriveConfig, path, 0, 0),
        K("root", key_bool, DriveConfig, root, 0, 0),
        K("read_only", key_bool, DriveConfig, read_only, 0, 0),
        K("size", key_size, DriveConfig, size, 1ULL << 20, 1ULL << 50),
        K("persistent", key_bool, DriveConfig, persistent, 0, 0),
        K("cache", key_drive_cache, DriveConfig, cache, 0, 0),
        K("io_engine", key_drive_io_engine, DriveConfig, io_engine, 0, 0),
        K("partuuid", key_partuuid, DriveConfig, partuuid, 0, 0),
};

static const KeyDesc nic_keys[] = {
        K("bridge", key_ifname, NicConfig, bridge, 0, 0),
        KSELF("mac", key_nic_mac),
        KSELF("tap", key_nic_tap),
        K("mtu", key_u32, NicConfig, mtu, MTU_MIN, MTU_MAX),
        KSELF("address", key_nic_address),
        KSELF("gateway", key_nic_gateway),
};

static const KeyDesc vsock_keys[] = {
        KSELF("cid", key_vsock_cid),
};

static const KeyDesc host_keys[] = {
        K("jailer", key_path, HostConfig, jailer, 0, 0),
        K("firecracker", key_path, HostConfig, firecracker, 0, 0),
        K("chroot_base", key_path, HostConfig, chroot_base, 0, 0),
        K("state_dir", key_path, HostConfig, state_dir, 0, 0),
        K("run_dir", key_path, HostConfig, run_dir, 0, 0),
        KSELF("uid_range", key_uid_range),
        K("memory_overhead", key_size, HostConfig, memory_overhead, 0, 64ULL << 30),
        K("bridge", key_ifname, HostConfig, bridge, 0, 0),
        K("console_group", key_group_name, HostConfig, console_group, 0, 0),
        K("on_host_shutdown", key_on_host_shutdown, HostConfig, on_host_shutdown, 0, 0),
        K("suspend_write_rate", key_size, HostConfig, suspend_write_rate, 1ULL << 20, 1ULL << 40),
        K("firecracker_log_level", key_fc_log_level, HostConfig, firecracker_log_level, 0, 0),
};

static const KeyDesc thin_pool_keys[] = {
        K("name", key_dm_name, ThinPoolConfig, name, 0, 0),
        K("data", key_path, ThinPoolConfig, data, 0, 0),
        K("metadata", key_path, ThinPoolConfig, metadata, 0, 0),
        K("data_size", key_size, ThinPoolConfig, data_size, 1ULL << 30, 1ULL << 50),
        K("metadata_size", key_size, ThinPoolConfig, metadata_size, 2ULL << 20, 16ULL << 30),
        K("block_size", key_thin_block_size, ThinPoolConfig, block_size, 64ULL << 10, 1ULL << 30),
};

/* Edit distance, for "did you mean" on typos in key names. */
static unsigned edit_distance(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned row[64];

        if (la >= ELEMENTSOF(row) || lb >= ELEMENTSOF(row))
                return UINT32_MAX;
        for (size_t j = 0; j <= lb; j++)
                row[j] = (unsigned) j;
        for (size_t i = 1; i <= la; i++) {
                unsigned prev = row[0];
                row[0] = (unsigned) i;
                for (size_t j = 1; j <= lb; j++) {
                        unsigned cur = row[j];
                        unsigned best = prev + (a[i - 1] == b[j - 1] ? 0 : 1);
                        best = MIN(best, row[j] + 1);
                        best = MIN(best, row[j - 1] + 1);
                        row[j] = best;
                        prev = cur;
                }
        }
        return row[lb];
}

static void apply_keys(const Ctx *ctx, const IniSection *s, const KeyDesc *keys, size_t n_keys, void *base) {
        for (size_t i = 0; i < s->n_entries; i++) {
                const IniEntry *e = &s->entries[i];
                const KeyDesc *d = NULL, *best = NULL;
                unsigned best_dist = 3;

                for (size_t k = 0; k < n_keys && !d; k++)
                        if (streq(keys[k].key, e->key))
                                d = &keys[k];
                /* The "did you mean" search only for unknown keys: edit
                 * distances for every key before the match cost ~3 µs per
                 * VM config, measurable in the generator at 1000 VMs. */
                for (size_t k = 0; k < n_keys && !d; k++) {
                        unsigned dist = edit_distance(keys[k].key, e->key);
                        if (dist < best_dist)
                                best_dist = dist, best = &keys[k];
                }
                if (!d) {
                        if (best)
                                problems_add(ctx->problems, ctx->file, e->line, ctx->section, e->key, NULL,
                                             "unknown key (did you mean \"%s\"?)", best->key);
                        else
                                problems_add(ctx->problems, ctx->file, e->line, ctx->section, e->key, NULL,
                                             "unknown key (see microvm.conf(5) for the keys of this section)");
                        continue;
                }
                d->parse(ctx, e, (char *) base + d->offset, d);
        }
}

static char *strdup_oom(const char *s, Problems *p) {
        char *r = strdup(s);
        if (!r)
                p->oom = true;
        return r;
}

/* ---- host config --------------------------------------------------------- */

HostConfig *host_config_free(HostConfig *h) {
        if (!h)
                return NULL;
        free(h->source_path);
        free(h->jailer);
        free(h->firecracker);
        free(h->chroot_base);
        free(h->state_dir);
        free(h->run_dir);
        free(h->bridge);
        free(h->console_group);
        free(h->thin_pool.name);
        free(h->thin_pool.data);
        free(h->thin_pool.metadata);
        free(h);
        return NULL;
}

static int host_config_defaults(HostConfig *h) {
        h->jailer = strdup(DEFAULT_JAILER);
        h->firecracker = strdup(DEFAULT_FIRECRACKER);
        h->chroot_base = strdup(DEFAULT_CHROOT_BASE);
        h->state_dir = strdup(DEFAULT_STATE_DIR);
        h->run_dir = strdup(DEFAULT_RUN_DIR);
        h->uid_min = DEFAULT_UID_MIN;
        h->uid_max = DEFAULT_UID_MAX;
        h->memory_overhead = DEFAULT_MEMORY_OVERHEAD;
        h->on_host_shutdown = ON_HOST_SHUTDOWN_STOP;
        h->suspend_write_rate = DEFAULT_SUSPEND_WRITE_RATE;
        h->firecracker_log_level = FC_LOG_LEVEL_INFO;
        h->thin_pool.block_size = DEFAULT_THIN_BLOCK_SIZE;
        if (!h->jailer || !h->firecracker || !h->chroot_base || !h->state_dir || !h->run_dir)
                return -ENOMEM;
        return 0;
}

int host_config_new_default(HostConfig **ret) {
        HostConfig *h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        if (host_config_defaults(h) < 0) {
                host_config_free(h);
                return -ENOMEM;
        }
        *ret = h;
        return 0;
}

/* a is b or lies below b (both normalized absolute paths). */
static bool path_is_below_or_same(const char *a, const char *b) {
        const char *rest = startswith(a, b);
        return rest && (*rest == '\0' || *rest == '/');
}

int host_config_parse(const char *file, const char *data, size_t size, HostConfig **ret, Problems *problems) {
        return host_config_parse_partial(file, data, size, ret, NULL, problems);
}

int host_config_parse_partial(const char *file, const char *data, size_t size, HostConfig **ret,
                              HostConfig **ret_partial, Problems *problems) {
        _cleanup_(ini_doc_done) IniDoc doc = {};
        _cleanup_host_config_ HostConfig *h = NULL;
        size_t before = problems->n;
        int r;

        r = ini_parse(file, data, size, &doc, problems);
        if (r == -ENOMEM)
                return r;

        r = host_config_new_default(&h);
        if (r < 0)
                return r;
        h->source_path = strdup_oom(file, problems);

        for (size_t i = 0; i < doc.n_sections; i++) {
                const IniSection *s = &doc.sections[i];
                Ctx ctx = { .file = file, .section = s->name, .problems = problems };

                if (streq(s->name, "host"))
                        apply_keys(&ctx, s, host_keys, ELEMENTSOF(host_keys), h);
                else if (streq(s->name, "thin_pool")) {
                        h->thin_pool.configured = true;
                        apply_keys(&ctx, s, thin_pool_keys, ELEMENTSOF(thin_pool_keys), &h->thin_pool);
                } else
                        problems_add(problems, file, s->line, s->name, NULL, NULL,
                                     "unknown section (the host config has [host] and [thin_pool])");
        }

        if (h->thin_pool.configured) {
                ThinPoolConfig *t = &h->thin_pool;
                const IniSection *s = ini_doc_find_section(&doc, "thin_pool");

                if (!t->name)
                        t->name = strdup_oom("microvm-pool", problems);
                if (!!t->data != !!t->metadata)
                        problems_add(problems, file, s->line, "thin_pool", t->data ? "metadata" : "data", NULL,
                                     "missing (data and metadata name the pool's backing files together; give both, or neither to use an existing pool)");
                if (t->data && t->data_size == 0)
                        problems_add(problems, file, s->line, "thin_pool", "data_size", NULL,
                                     "missing (needed to create the pool's data file)");
                if (!t->data && (t->data_size || t->metadata_size))
                        problems_add(problems, file, s->line, "thin_pool", t->data_size ? "data_size" : "metadata_size", NULL,
                                     "only applies when data and metadata are given (an existing pool has its own sizes)");
                if (t->data && t->metadata && streq(t->data, t->metadata))
                        problems_add(problems, file, s->line, "thin_pool", "metadata", t->metadata,
                                     "is the same file as data");
        }

        /* The jail tree is under the VMs' control; it must not overlap the
         * directories whose content we trust. */
        if (path_is_below_or_same(h->chroot_base, h->state_dir) || path_is_below_or_same(h->state_dir, h->chroot_base))
                problems_add(problems, file, 0, "host", "chroot_base", h->chroot_base,
                             "overlaps state_dir \"%s\" (jails are writable by VMs: keep them apart)", h->state_dir);
        if (path_is_below_or_same(h->chroot_base, h->run_dir) || path_is_below_or_same(h->run_dir, h->chroot_base))
                problems_add(problems, file, 0, "host", "chroot_base", h->chroot_base,
                             "overlaps run_dir \"%s\" (jails are writable by VMs: keep them apart)", h->run_dir);
        if (path_is_below_or_same(h->state_dir, h->run_dir) || path_is_below_or_same(h->run_dir, h->state_dir))
                problems_add(problems, file, 0, "host", "run_dir", h->run_dir,
                             "overlaps state_dir \"%s\"", h->state_dir);

        if (problems->n > before || problems->oom) {
                if (ret_partial)
                        *ret_partial = TAKE_PTR(h);
                return -EINVAL;
        }
        *ret = TAKE_PTR(h);
        return 0;
}

/* ---- VM config ----------------------------------------------------------- */

VmConfig *vm_config_free(VmConfig *c) {
        if (!c)
                return NULL;
        free(c->source_path);
        free(c->description);
        free(c->kernel);
        free(c->initrd);
        free(c->cmdline);
        free(c->allowed_cpus);
        for (size_t i = 0; i < c->n_drives; i++) {
                free(c->drives[i].path);
                free(c->drives[i].partuuid);
        }
        free(c->drives);
        for (size_t i = 0; i < c->n_nics; i++)
                free(c->nics[i].bridge);
        free(c->nics);
        free(c);
        return NULL;
}

const DriveConfig *vm_config_root_drive(const VmConfig *c) {
        for (size_t i = 0; i < c->n_drives; i++)
                if (c->drives[i].root)
                        return &c->drives[i];
        return NULL;
}

static void check_drive(const Ctx *ctx, const IniSection *s, const DriveConfig *d) {
        const IniEntry *e;

        if (!d->path && !ini_section_find(s, "path"))
                problems_add(ctx->problems, ctx->file, s->line, s->name, "path", NULL,
                             "missing (every drive needs the path of its image or device)");

        /* Firecracker reads a drive's partuuid only for the root device. */
        e = ini_section_find(s, "partuuid");
        if (e && d->partuuid && !d->root)
                BAD(ctx, e, "only applies to the root drive (root = yes): firecracker boots with "
                            "root=PARTUUID=<partuuid> of the root drive and ignores it elsewhere");

        /* The checks below depend on the mode; with a bad mode (already
         * reported) they would only add noise. */
        e = ini_section_find(s, "mode");
        if (e && !streq(e->value, drive_mode_to_string(d->mode)))
                return;

        e = ini_section_find(s, "size");
        if (e && (d->mode == DRIVE_MODE_FILE || d->mode == DRIVE_MODE_BLOCK))
                BAD(ctx, e, "only applies to snapshot and thin drives (mode is %s)", drive_mode_to_string(d->mode));
        e = ini_section_find(s, "persistent");
        if (e && d->mode != DRIVE_MODE_SNAPSHOT)
                BAD(ctx, e, "only applies to snapshot drives (mode is %s)", drive_mode_to_string(d->mode));
        e = ini_section_find(s, "read_only");
        if (e && d->read_only && (d->mode == DRIVE_MODE_SNAPSHOT || d->mode == DRIVE_MODE_THIN))
                BAD(ctx, e, "is not possible with mode = %s: a read-only drive needs no copy-on-write volume (use mode = file)",
                    drive_mode_to_string(d->mode));
        e = ini_section_find(s, "mode");
        if (e && d->mode == DRIVE_MODE_THIN && ctx->host && !ctx->host->thin_pool.configured)
                BAD(ctx, e, "needs a thin pool, but the host config (%s) has no [thin_pool] section",
                    ctx->host->source_path ?: HOST_CONFIG_PATH);
}

static void check_nics(const Ctx *base, const IniDoc *doc, const VmConfig *c) {
        const NicConfig *addressed = NULL;

        for (size_t i = 0; i < c->n_nics; i++) {
                const NicConfig *n = &c->nics[i];
                _cleanup_free_ char *sec = NULL;
                const IniSection *s;

                if (asprintf(&sec, "net.%s", n->name) < 0) {
                        base->problems->oom = true;
                        return;
                }
                s = ini_doc_find_section(doc, sec);
                Ctx local = *base;
                local.section = sec;
                const Ctx *ctx = &local;

                if (n->has_gateway && !n->has_address)
                        BAD(ctx, ini_section_find(s, "gateway"), "needs an address on the same NIC");
                if (n->has_address) {
                        if (addressed)
                                BAD(ctx, ini_section_find(s, "address"),
                                    "a second static address ([net.%s] has one; the kernel ip= parameter configures one NIC)",
                                    addressed->name);
                        else
                                addressed = n;
                }
                for (size_t j = 0; j < i; j++) {
                        const NicConfig *o = &c->nics[j];
                        if (!n->mac_auto && !o->mac_auto && memcmp(n->mac, o->mac, 6) == 0)
                                BAD(ctx, ini_section_find(s, "mac"), "is also the MAC of [net.%s]", o->name);
                        if (!n->tap_auto && !o->tap_auto && streq(n->tap, o->tap))
                                BAD(ctx, ini_section_find(s, "tap"), "is also the tap of [net.%s]", o->name);
                }
        }
}

int vm_config_parse(const char *file, const char *id, const char *data, size_t size, const HostConfig *host,
                    VmConfig **ret, Problems *problems) {
        _cleanup_(ini_doc_done) IniDoc doc = {};
        _cleanup_vm_config_ VmConfig *c = NULL;
        const IniSection *vm = NULL;
        const char *reason;
        size_t before = problems->n;
        int r;

        reason = vm_id_invalid_reason(id);
        if (reason) {
                _cleanup_free_ char *esc = cescape(id);
                problems_add(problems, file, 0, NULL, NULL, NULL,
                             "\"%s\" is not a valid VM id: it %s (ids match [a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)",
                             esc ?: "?", reason);
                return -EINVAL;
        }

        r = ini_parse(file, data, size, &doc, problems);
        if (r == -ENOMEM)
                return r;

        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        strcpy(c->id, id);
        c->source_path = strdup_oom(file, problems);
        sha256(data, size, c->digest);
        c->vcpus = DEFAULT_VCPUS;
        c->memory = DEFAULT_MEMORY;
        c->restart = RESTART_ON_FAILURE;
        c->stop_timeout = DEFAULT_STOP_TIMEOUT;
        c->uid_auto = true;
        c->numa_node = -1;
        c->vsock_cid_auto = true;

        for (size_t i = 0; i < doc.n_sections; i++) {
                const IniSection *s = &doc.sections[i];
                Ctx ctx = { .file = file, .section = s->name, .problems = problems, .host = host };
                const char *name;

                if (streq(s->name, "vm")) {
                        vm = s;
                        apply_keys(&ctx, s, vm_keys, ELEMENTSOF(vm_keys), c);
                } else if ((name = startswith(s->name, "drive."))) {
                        DriveConfig *d;
                        if (!device_name_valid(name)) {
                                problems_add(problems, file, s->line, s->name, NULL, NULL,
                                             "\"%s\" is not a valid drive name ([a-z0-9]{1,16})", name);
                                continue;
                        }
                        if (c->n_drives >= DRIVES_MAX) {
                                problems_add(problems, file, s->line, s->name, NULL, NULL,
                                             "more than %d drives", DRIVES_MAX);
                                continue;
                        }
                        d = realloc(c->drives, (c->n_drives + 1) * sizeof *d);
                        if (!d)
                                return -ENOMEM;
                        c->drives = d;
                        d = &c->drives[c->n_drives++];
                        *d = (DriveConfig) { .mode = DRIVE_MODE_FILE };
                        strcpy(d->name, name);
                        apply_keys(&ctx, s, drive_keys, ELEMENTSOF(drive_keys), d);
                        check_drive(&ctx, s, d);
                } else if ((name = startswith(s->name, "net."))) {
                        NicConfig *n;
                        if (!device_name_valid(name)) {
                                problems_add(problems, file, s->line, s->name, NULL, NULL,
                                             "\"%s\" is not a valid NIC name ([a-z0-9]{1,16})", name);
                                continue;
                        }
                        if (c->n_nics >= NICS_MAX) {
                                problems_add(problems, file, s->line, s->name, NULL, NULL,
                                             "more than %d NICs", NICS_MAX);
                                continue;
                        }
                        n = realloc(c->nics, (c->n_nics + 1) * sizeof *n);
                        if (!n)
                                return -ENOMEM;
                        c->nics = n;
                        n = &c->nics[c->n_nics++];
                        *n = (NicConfig) { .mac_auto = true, .tap_auto = true };
                        strcpy(n->name, name);
                        apply_keys(&ctx, s, nic_keys, ELEMENTSOF(nic_keys), n);
                        if (!n->bridge && host && host->bridge)
                                n->bridge = strdup_oom(host->bridge, problems);
                } else if (streq(s->name, "vsock")) {
                        c->has_vsock = true;
                        apply_keys(&ctx, s, vsock_keys, ELEMENTSOF(vsock_keys), c);
                } else
                        problems_add(problems, file, s->line, s->name, NULL, NULL,
                                     "unknown section (use [vm], [drive.NAME], [net.NAME] or [vsock])");
        }

        if (!vm)
                problems_add(problems, file, 0, "vm", NULL, NULL,
                             "missing section (every VM config needs [vm] with at least kernel =)");
        else if (!c->kernel && !ini_section_find(vm, "kernel"))
                problems_add(problems, file, vm->line, "vm", "kernel", NULL,
                             "missing (the guest kernel image is required)");

        if (c->n_drives == 0)
                problems_add(problems, file, 0, NULL, NULL, NULL,
                             "no drive configured (add a [drive.NAME] section with root = yes)");
        else {
                const DriveConfig *root = NULL;
                for (size_t i = 0; i < c->n_drives; i++) {
                        const DriveConfig *d = &c->drives[i];
                        _cleanup_free_ char *sec = NULL;
                        if (!d->root)
                                continue;
                        if (root) {
                                const IniSection *s;
                                if (asprintf(&sec, "drive.%s", d->name) < 0)
                                        return -ENOMEM;
                                s = ini_doc_find_section(&doc, sec);
                                problems_add(problems, file, 0, sec, "root", ini_section_find(s, "root")->value,
                                             "makes a second root drive ([drive.%s] is already the root drive; exactly one is allowed)",
                                             root->name);
                        } else
                                root = d;
                }
                if (!root)
                        problems_add(problems, file, 0, NULL, NULL, NULL,
                                     "no drive has root = yes (exactly one root drive is required)");
        }

        {
                Ctx ctx = { .file = file, .problems = problems, .host = host };
                check_nics(&ctx, &doc, c);
        }

        if (problems->n > before || problems->oom)
                return -EINVAL;
        *ret = TAKE_PTR(c);
        return 0;
}

bool vm_config_suspends(const VmConfig *c, const HostConfig *h) {
        OnHostShutdown o = c->on_host_shutdown != ON_HOST_SHUTDOWN_DEFAULT ? c->on_host_shutdown : h->on_host_shutdown;
        return o == ON_HOST_SHUTDOWN_SUSPEND;
}

FcLogLevel vm_config_fc_log_level(const VmConfig *c, const HostConfig *h) {
        return c->firecracker_log_level != FC_LOG_LEVEL_DEFAULT ? c->firecracker_log_level : h->firecracker_log_level;
}

usec_t vm_config_suspend_time(const VmConfig *c, const HostConfig *h) {
        uint64_t rate = h->suspend_write_rate ?: DEFAULT_SUSPEND_WRITE_RATE;
        /* Whole seconds, rounded up: memory <= 1T and rate >= 1M keep this small. */
        return (c->memory + rate - 1) / rate * USEC_PER_SEC + SUSPEND_TIMEOUT_MARGIN;
}

usec_t vm_config_stop_budget(const VmConfig *c, const HostConfig *h) {
        return c->stop_timeout + (vm_config_suspends(c, h) ? vm_config_suspend_time(c, h) : 0);
}

uint64_t vm_config_memory_max(const VmConfig *c, const HostConfig *h) {
        return c->memory + h->memory_overhead;
}

char *vm_config_boot_args(const VmConfig *c, const char *const *unused) {
        const char *base = c->cmdline ?: DEFAULT_CMDLINE;
        KernelCmdlineSplit split;
        const char *sep = "";
        char *r = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&r, &len);
        if (!f)
                return NULL;
        /* Ours go at the end of the kernel's parameters, before the "--"
         * that hands the rest to init; after it they would be init's
         * arguments. */
        kernel_cmdline_split(base, &split);
        if (split.kernel_len > 0) {
                fwrite(split.kernel, 1, split.kernel_len, f);
                sep = " ";
        }
        /* The serial console is the journal; without console=ttyS0 firecracker's
         * default command line turns it off. reboot=k makes a guest reboot end
         * firecracker (exit 0) instead of hanging in the BIOS reboot path. */
        if (!kernel_cmdline_has_param(split.kernel, split.kernel_len, "console")) {
                fprintf(f, "%sconsole=ttyS0", sep);
                sep = " ";
        }
        if (!kernel_cmdline_has_param(split.kernel, split.kernel_len, "reboot")) {
                fprintf(f, "%sreboot=k", sep);
                sep = " ";
        }
        for (size_t i = 0; i < c->n_nics; i++) {
                const NicConfig *n = &c->nics[i];
                uint32_t a = n->address, g = n->gateway, m;
                if (!n->has_address || kernel_cmdline_has_param(split.kernel, split.kernel_len, "ip"))
                        continue;
                m = n->prefixlen == 0 ? 0 : UINT32_MAX << (32 - n->prefixlen);
                /* ip=<client>::<gw>:<netmask>::<device>:off (kernel nfsroot.rst) */
                fprintf(f, "%sip=%u.%u.%u.%u::", sep, a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
                if (n->has_gateway)
                        fprintf(f, "%u.%u.%u.%u", g >> 24, (g >> 16) & 255, (g >> 8) & 255, g & 255);
                fprintf(f, ":%u.%u.%u.%u::eth%zu:off", m >> 24, (m >> 16) & 255, (m >> 8) & 255, m & 255, i);
                sep = " ";
        }
        /* The separator exactly as linux-loader's Cmdline::try_from() looks
         * for it (" -- "), so that firecracker inserts its parameters where
         * the kernel still reads them. An empty init part needs none
         * (firecracker drops it too). */
        if (split.init && split.init_len > 0) {
                fputs(" -- ", f);
                fwrite(split.init, 1, split.init_len, f);
        }
        if (fclose(f) != 0) {
                free(r);
                return NULL;
        }
        return r;
}
