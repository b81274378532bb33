/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-stage ID — ExecStartPre=+ of microvm@ID.service, as root.
 *
 * Builds everything the jailer does not build itself, and nothing it does:
 *   <chroot_base>/<exec>/<id>/root/   the jail (root:root 0700 until the
 *                                      jailer chowns it to the VM's uid)
 *       vmlinux, initrd               hardlinks of the admin's files (or
 *                                      VM-owned copies, see stage_boot_file)
 *       drive-<name>                  one per drive
 *       vm-config.json                firecracker's --config-file
 *       run/                          where firecracker binds its sockets
 *   <state_dir>/<id>/uid              the VM's uid (lib/uid-alloc)
 *   <state_dir>/<id>/drives/<name>    VM-owned copies of writable file drives
 *   <run_dir>/<id>/plan, console.in   the launch plan, the serial input FIFO
 *   taps                              one per NIC, owned by the VM's uid
 * and never /dev/kvm, /dev/net/tun, /dev/urandom or the jailer's pid file
 * (the jailer fails on an existing one).
 *
 * It first tears down whatever an earlier run left (the same code as
 * microvm-cleanup), so a start after a crash, a SIGKILL or a failed start
 * works. The plan is written before anything is created: whatever a
 * SIGKILL interrupts, the plan names it for the next cleanup. */

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "binary.h"
#include "cgroup.h"
#include "config-files.h"
#include "fc-config.h"
#include "log.h"
#include "names.h"
#include "parse-util.h"
#include "plan.h"
#include "safe-fs.h"
#include "safe-path.h"
#include "seccomp-util.h"
#include "sha256.h"
#include "storage.h"
#include "tap.h"
#include "tool.h"
#include "uid-alloc.h"
#include "unit-state.h"
#include "vm-teardown.h"

/* Kernels, initrds and read-only images on another filesystem than the
 * chroot base are copied up to this size; beyond it, copying on every start
 * would be slow and huge, and we say so instead. */
#define COPY_ACROSS_FS_MAX (256ULL << 20)

typedef struct Stage {
        const char *id;
        HostConfig *host;
        VmConfig *vm;
        char *exec_file;        /* canonical firecracker path */
        const char *exec_name;
        VmPaths paths;
        int state_fd;           /* <state_dir> */
        int vm_state_fd;        /* <state_dir>/<id> */
        int run_fd;             /* <run_dir> */
        int exec_fd;            /* <chroot_base>/<exec> */
        int jail_fd;            /* <chroot_base>/<exec>/<id>/root */
        int lock_fd;            /* shared reclaim lock, held for the whole stage */
        UidAllocation uid;
        char **taps;            /* per NIC */
        uint8_t (*macs)[6];
        Plan *plan;
} Stage;

static void stage_done(Stage *s) {
        host_config_free(s->host);
        vm_config_free(s->vm);
        free(s->exec_file);
        vm_paths_done(&s->paths);
        safe_close(s->state_fd);
        safe_close(s->vm_state_fd);
        safe_close(s->run_fd);
        safe_close(s->exec_fd);
        safe_close(s->jail_fd);
        safe_close(s->lock_fd);
        strv_free(s->taps);
        free(s->macs);
        plan_free(s->plan);
}

/* The generator records a digest of the config file it generated the unit
 * from; a config edited since then would start with stale unit settings
 * (limits, restart policy, stop timeout). */
static int check_digest(const Stage *s) {
        const char *want = getenv("MICROVM_CONFIG_DIGEST");
        char have[2 * SHA256_DIGEST_SIZE + 1];

        if (isempty(want))
                return 0;
        sha256_hex(s->vm->digest, have);
        if (!streq(want, have))
                return log_error_errno(ESTALE,
                                       "%s changed since the unit was generated: run \"systemctl daemon-reload\" "
                                       "first, then start microvm@%s again.",
                                       s->vm->source_path, s->id);
        return 0;
}

static int check_binaries(Stage *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = trusted_binary_open(s->host->jailer, false, NULL, NULL, &error);
        if (r < 0)
                return log_error_errno(r, "Refusing to use the jailer: %s", strna(error));
        free(error);
        error = NULL;
        r = trusted_binary_open(s->host->firecracker, true, &s->exec_file, NULL, &error);
        if (r < 0)
                return log_error_errno(r, "Refusing to use firecracker: %s", strna(error));
        s->exec_name = exec_name_from_path(s->exec_file);
        if (!filename_valid(s->exec_name))
                return log_error_errno(EINVAL, "The firecracker binary's file name \"%s\" cannot name a jail "
                                       "directory.", s->exec_name);
        return 0;
}

/* systemd's ProtectSystem=full makes these read-only for the jailer, which
 * must create <chroot_base>/<exec>/<id>/root/dev and friends. */
static int check_chroot_base_location(const Stage *s) {
        static const char *const ro[] = { "/usr", "/etc", "/boot", "/efi" };
        for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
                const char *rest = startswith(s->host->chroot_base, ro[i]);
                if (rest && (*rest == '/' || *rest == '\0'))
                        return log_error_errno(EROFS, "chroot_base %s lies below %s, which microvm@.service "
                                               "keeps read-only (ProtectSystem=full): move it, e.g. to /srv/jailer.",
                                               s->host->chroot_base, ro[i]);
        }
        return 0;
}

static int open_roots(Stage *s) {
        _cleanup_free_ char *error = NULL, *exec_dir = NULL;
        int r;

        r = safe_root_open(s->host->state_dir, SAFE_ROOT_CREATE, 0700, &s->state_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the state directory: %s", strna(error));
        free(error);
        error = NULL;
        r = safe_root_open(s->host->run_dir, SAFE_ROOT_CREATE, 0700, &s->run_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the run directory: %s", strna(error));
        free(error);
        error = NULL;
        if (asprintf(&exec_dir, "%s/%s", s->host->chroot_base, s->exec_name) < 0)
                return log_oom();
        /* 0711: others may traverse to their own jail, not list the VMs. */
        r = safe_root_open(exec_dir, SAFE_ROOT_CREATE, 0711, &s->exec_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the chroot base: %s", strna(error));
        return 0;
}

static int reset(Stage *s) {
        _cleanup_plan_ Plan *old = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL;
        TeardownReport rep = {};
        bool inside = false;
        const char *child = NULL;
        int r;

        r = vm_plan_read(s->host, s->id, &old, &error);
        if (r < 0 && r != -ENOENT)
                log_warning("Ignoring the old launch plan of %s: %s", s->id, error ?: strerror(-r));
        r = vm_unit_cgroup(s->id, &cg, &inside, &child);
        if (r < 0)
                return log_error_errno(r, "Failed to find the cgroup of microvm@%s.service: %m", s->id);
        if (!inside) {
                /* Run by hand: never rebuild a running VM's jail under it. */
                const char *how = NULL;
                r = vm_unit_refuse_if_running(s->id, cg, &how);
                if (r == -EBUSY)
                        return log_error_errno(r, "microvm@%s.service is running (per %s): use \"systemctl "
                                               "restart microvm@%s\" instead.", s->id, how, s->id);
                if (r < 0)
                        return log_error_errno(r, "Cannot tell whether microvm@%s.service runs; not touching it: "
                                               "%m", s->id);
        }

        TeardownTarget t = {
                .id = s->id,
                .host = s->host,
                .plan = old,
                .exec_name = s->exec_name,
                /* Only from inside our unit: never kill a running VM's
                 * processes because someone ran microvm-stage by hand. */
                .unit_cgroup = inside ? cg : NULL,
                .keep_child = child,
                /* An ephemeral VM begins every start from the template
                 * images, so the current config decides too, not only the
                 * old plan: after a host crash there is no plan (run_dir is
                 * a tmpfs), no stop removed the disk state, and the start
                 * would otherwise reuse the crashed run's thin volumes,
                 * persistent CoW files and drive copies (and leave the old
                 * thin volume in the pool). */
                .remove_state = (old && old->ephemeral) || s->vm->ephemeral,
        };
        r = vm_teardown(&t, &rep);
        for (char **m = rep.failed; m && *m; m++)
                log_error("Left over from an earlier run: %s", *m);
        if (r < 0)
                log_error_errno(r, "Cannot start %s over what an earlier run left behind (see above).", s->id);
        else if (rep.jail_removed || rep.n_cgroups_removed > 0)
                log_info("Removed what an earlier run of %s left behind.", s->id);
        teardown_report_done(&rep);
        return r;
}

static int read_machine_id(uint8_t ret[16]) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        r = config_read_file("/etc/machine-id", &text, &size);
        if (r < 0)
                return r;
        if (size < 32)
                return -EBADMSG;
        for (unsigned i = 0; i < 16; i++) {
                unsigned v;
                if (sscanf(text + 2 * i, "%2x", &v) != 1)
                        return -EBADMSG;
                ret[i] = (uint8_t) v;
        }
        return 0;
}

static int plan_network(Stage *s) {
        uint8_t machine_id[16] = {};
        bool have_mid = false;
        int r;

        s->macs = calloc(s->vm->n_nics ?: 1, sizeof *s->macs);
        if (!s->macs)
                return log_oom();
        for (size_t i = 0; i < s->vm->n_nics; i++) {
                const NicConfig *n = &s->vm->nics[i];
                char tap[TAP_NAME_MAX + 1];

                if (n->tap_auto)
                        tap_name_auto(s->id, n->name, tap);
                else
                        strcpy(tap, n->tap);
                if (strv_push(&s->taps, tap) < 0)
                        return log_oom();

                if (n->mac_auto) {
                        if (!have_mid) {
                                r = read_machine_id(machine_id);
                                if (r < 0)
                                        return log_error_errno(r, "Failed to read /etc/machine-id for the MAC of "
                                                               "[net.%s] (mac = auto): %m", n->name);
                                have_mid = true;
                        }
                        mac_auto(machine_id, s->id, n->name, s->macs[i]);
                } else
                        memcpy(s->macs[i], n->mac, 6);
        }
        return 0;
}

static int build_plan(Stage *s) {
        char digest[2 * SHA256_DIGEST_SIZE + 1];
        Plan *p;

        p = s->plan = calloc(1, sizeof(Plan));
        if (!p)
                return log_oom();
        sha256_hex(s->vm->digest, digest);
        p->version = PLAN_VERSION;
        strcpy(p->id, s->id);
        p->uid = s->uid.uid;
        p->gid = s->uid.gid;
        p->stop_timeout = s->vm->stop_timeout;
        p->ephemeral = s->vm->ephemeral;
        if (!(p->config_digest = strdup(digest)) || !(p->jailer = strdup(s->host->jailer)) ||
            !(p->exec_file = strdup(s->exec_file)) || !(p->exec_name = strdup(s->exec_name)) ||
            !(p->chroot_base = strdup(s->host->chroot_base)) || !(p->jail_dir = strdup(s->paths.jail_dir)) ||
            !(p->run_dir = strdup(s->paths.run_dir)) || !(p->state_dir = strdup(s->paths.state_dir)) ||
            !(p->config_file = strdup("/" JAIL_CONFIG_FILE)) || !(p->api_socket = strdup(JAIL_API_SOCKET)))
                return log_oom();
        for (char **t = s->taps; t && *t; t++)
                if (strv_push(&p->tap, *t) < 0)
                        return log_oom();
        /* The dm devices the drives will get, named before any exists. */
        if (storage_plan_dm_names(s->vm, &p->dm) < 0)
                return log_oom();
        if (s->vm->numa_node >= 0) {
                _cleanup_free_ char *mems = NULL;
                if (asprintf(&mems, "cpuset.mems=%d", s->vm->numa_node) < 0 || strv_push(&p->cgroup, mems) < 0)
                        return log_oom();
        }
        return 0;
}

static int write_plan(Stage *s) {
        _cleanup_free_ char *text = plan_serialize(s->plan), *rel = NULL;
        int r;

        if (!text)
                return log_oom();
        r = safe_mkdir_at(s->run_fd, s->id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", s->paths.run_dir);
        if (asprintf(&rel, "%s/" RUN_PLAN_FILE, s->id) < 0)
                return log_oom();
        r = safe_write_file_at(s->run_fd, rel, text, strlen(text), 0600, 0, 0, SAFE_WRITE_REPLACE);
        if (r < 0)
                return log_error_errno(r, "Failed to write the launch plan %s/%s: %m", s->host->run_dir, rel);
        return 0;
}

/* Opens an administrator's file (kernel, initrd, template image) named in
 * the config. Paths in the config are the administrator's, so symlinks are
 * fine there; what we open must be a regular file. */
static int open_admin_file(const char *path, const char *what, int *ret_fd, struct stat *ret_st) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;

        if (fd < 0)
                return log_error_errno(errno, "Cannot open the %s %s: %m", what, path);
        if (fstat(fd, &st) < 0)
                return log_error_errno(errno, "Cannot stat the %s %s: %m", what, path);
        if (!S_ISREG(st.st_mode))
                return log_error_errno(EBADFD, "The %s %s is not a regular file.", what, path);
        *ret_fd = TAKE_FD(fd);
        if (ret_st)
                *ret_st = st;
        return 0;
}

static int check_space(int dir_fd, const struct stat *src, const char *what, const char *path) {
        struct statvfs sv;
        uint64_t need = (uint64_t) src->st_blocks * 512, have;

        if (fstatvfs(dir_fd, &sv) < 0)
                return 0;
        have = (uint64_t) sv.f_bavail * sv.f_frsize;
        if (need > have) {
                char a[32], b[32];
                return log_error_errno(ENOSPC, "Not enough space for a copy of the %s %s: it needs %s, %s is free.",
                                       what, path, format_size(need, a, sizeof a), format_size(have, b, sizeof b));
        }
        return 0;
}

/* A file firecracker only reads (kernel, initrd, read-only drive): a
 * hardlink of the administrator's file when the VM's uid can read it and it
 * is on the jail's filesystem; else a VM-owned copy, when small enough.
 * The administrator's file is never chowned or chmodded. */
static int stage_readonly_file(Stage *s, const char *path, const char *what, const char *name) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        SafeCopyMethod method;
        bool readable;
        int r;

        r = open_admin_file(path, what, &fd, &st);
        if (r < 0)
                return r;
        /* firecracker runs as the VM's uid, in no group of the owner's. */
        readable = (st.st_mode & S_IROTH) || st.st_uid == s->uid.uid;
        if (readable) {
                r = safe_link_at(fd, s->jail_fd, name);
                if (r >= 0)
                        return 0;
                if (r != -EXDEV)
                        return log_error_errno(r, "Failed to link the %s %s into the jail: %m", what, path);
        }
        if ((uint64_t) st.st_size > COPY_ACROSS_FS_MAX) {
                char sz[32];
                if (!readable)
                        return log_error_errno(EACCES,
                                               "The %s %s is not readable by the VM's uid %u (mode %04o, owner %u), and "
                                               "at %s it is too big to copy on every start: make it world-readable "
                                               "(chmod o+r).",
                                               what, path, (unsigned) s->uid.uid, (unsigned) (st.st_mode & 07777),
                                               (unsigned) st.st_uid, format_size((uint64_t) st.st_size, sz, sizeof sz));
                return log_error_errno(EXDEV,
                                       "The %s %s is on another filesystem than %s, so it cannot be hardlinked into "
                                       "the jail, and at %s copying it on every start would be huge: put images on "
                                       "the chroot base's filesystem.",
                                       what, path, s->host->chroot_base,
                                       format_size((uint64_t) st.st_size, sz, sizeof sz));
        }
        r = check_space(s->jail_fd, &st, what, path);
        if (r < 0)
                return r;
        r = safe_copy_file_at(fd, s->jail_fd, name, 0400, s->uid.uid, s->uid.gid, 0, &method, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to copy the %s %s into the jail: %m", what, path);
        log_debug("Copied the %s %s into the jail (%s).", what, path, safe_copy_method_to_string(method));
        return 0;
}

/* A writable file drive: the VM's own copy in <state_dir>/<id>/drives/,
 * made on the first start, kept across restarts, hardlinked into the jail. */
static int stage_file_drive(Stage *s, const DriveConfig *d, const char *jail_name) {
        _cleanup_close_ int tfd = -EBADF, cfd = -EBADF;
        _cleanup_free_ char *rel = NULL;
        SafeCopyMethod method;
        struct stat st;
        int r;

        if (asprintf(&rel, STATE_DRIVES_DIR "/%s.img", d->name) < 0)
                return log_oom();
        r = safe_mkdir_at(s->vm_state_fd, STATE_DRIVES_DIR, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s/" STATE_DRIVES_DIR ": %m", s->paths.state_dir);

        r = safe_open_at(s->vm_state_fd, rel, O_RDONLY, S_IFREG, &cfd);
        if (r == -ENOENT) {
                r = open_admin_file(d->path, "drive image", &tfd, &st);
                if (r < 0)
                        return r;
                r = check_space(s->vm_state_fd, &st, "drive image", d->path);
                if (r < 0)
                        return r;
                r = safe_copy_file_at(tfd, s->vm_state_fd, rel, 0600, s->uid.uid, s->uid.gid, 0, &method, &cfd);
                if (r < 0)
                        return log_error_errno(r, "Failed to copy the drive image %s to %s/%s: %m", d->path,
                                               s->paths.state_dir, rel);
                log_info("Drive %s: made the VM's own copy of %s (%s).", d->name, d->path,
                         safe_copy_method_to_string(method));
        } else if (r < 0)
                return log_error_errno(r, "Cannot use the VM's copy %s/%s of drive %s: %m", s->paths.state_dir, rel,
                                       d->name);
        else {
                /* Ours from an earlier start: owned by the VM's uid (or by its
                 * previous uid, after uid = N changed). */
                r = safe_fd_verify(cfd, S_IFREG, s->uid.uid);
                if (r == -EPERM && s->uid.previous != (uid_t) -1 && safe_fd_verify(cfd, S_IFREG, s->uid.previous) >= 0)
                        r = safe_fd_chown(cfd, s->uid.uid, s->uid.gid);
                if (r < 0)
                        return log_error_errno(r, "The VM's copy %s/%s of drive %s is not what we made (owner, type "
                                               "or link count changed): %m", s->paths.state_dir, rel, d->name);
        }

        r = safe_link_at(cfd, s->jail_fd, jail_name);
        if (r == -EXDEV)
                return log_error_errno(r, "%s and %s are on different filesystems: writable file drives are "
                                       "hardlinked from the state directory into the jail, so both must be on one "
                                       "filesystem (or use mode = snapshot).",
                                       s->host->state_dir, s->host->chroot_base);
        if (r < 0)
                return log_error_errno(r, "Failed to link drive %s into the jail: %m", d->name);
        return 0;
}

/* snapshot, thin and block drives: a block device made by lib/storage,
 * entering the jail as a node made from the fd of the device it opened
 * (never from a name or a number), owned by the VM's uid, 0600. */
static int stage_block_drive(Stage *s, const DriveConfig *d, const char *jail_name) {
        _cleanup_close_ int dev_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = storage_prepare_drive(s->host, s->vm, d, s->state_fd, s->uid.uid, &dev_fd, NULL, &error);
        if (r < 0)
                return log_error_errno(r, "Drive %s: %s", d->name, error ?: strerror(-r));
        r = safe_mknod_at(s->jail_fd, jail_name, dev_fd, 0600, s->uid.uid, s->uid.gid);
        if (r < 0)
                return log_error_errno(r, "Drive %s: failed to create its device node in the jail: %m", d->name);
        return 0;
}

static int stage_drives(Stage *s) {
        for (size_t i = 0; i < s->vm->n_drives; i++) {
                const DriveConfig *d = &s->vm->drives[i];
                char name[64];
                int r;

                snprintf(name, sizeof name, JAIL_DRIVE_PREFIX "%s", d->name);
                switch (d->mode) {
                case DRIVE_MODE_FILE:
                        if (d->read_only)
                                r = stage_readonly_file(s, d->path, "read-only drive image", name);
                        else
                                r = stage_file_drive(s, d, name);
                        break;
                default:
                        r = stage_block_drive(s, d, name);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int stage_jail(Stage *s) {
        _cleanup_free_ char *root = NULL, *json = NULL;
        int r;

        r = safe_mkdir_at(s->exec_fd, s->id, 0711, 0, 0, 0, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", s->paths.jail_dir);
        if (asprintf(&root, "%s/root", s->id) < 0)
                return log_oom();
        /* root:root 0700; the jailer chowns it to the VM's uid. */
        r = safe_mkdir_at(s->exec_fd, root, 0700, 0, 0, 0, &s->jail_fd);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s: %m", s->paths.jail_root);

        r = stage_readonly_file(s, s->vm->kernel, "kernel", JAIL_KERNEL);
        if (r < 0)
                return r;
        if (s->vm->initrd) {
                r = stage_readonly_file(s, s->vm->initrd, "initrd", JAIL_INITRD);
                if (r < 0)
                        return r;
        }
        r = stage_drives(s);
        if (r < 0)
                return r;

        r = safe_mkdir_at(s->jail_fd, "run", 0700, s->uid.uid, s->uid.gid, 0, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to create %s/run: %m", s->paths.jail_root);

        FcRuntime rt = {
                .taps = (const char *const *) s->taps,
                .macs = (const uint8_t(*)[6]) s->macs,
                .vsock_cid = s->vm->vsock_cid_auto ? (uint32_t) s->uid.uid : s->vm->vsock_cid,
        };
        json = fc_config_render(s->vm, &rt);
        if (!json)
                return log_oom();
        /* Root-owned and read-only for the VM: firecracker only reads it. */
        r = safe_write_file_at(s->jail_fd, JAIL_CONFIG_FILE, json, strlen(json), 0444, 0, 0, 0);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s/" JAIL_CONFIG_FILE ": %m", s->paths.jail_root);
        return 0;
}

static int stage_taps(Stage *s) {
        for (size_t i = 0; i < s->vm->n_nics; i++) {
                const NicConfig *n = &s->vm->nics[i];
                int r = tap_create(s->taps[i], s->uid.uid, s->uid.gid, n->mtu, n->bridge);
                if (r == -EEXIST)
                        return log_error_errno(r, "NIC %s: the interface %s exists and is not this VM's tap "
                                               "(another VM's, or the host's): choose another tap name.",
                                               n->name, s->taps[i]);
                if (r == -ENODEV && n->bridge)
                        return log_error_errno(r, "NIC %s: bridge %s does not exist.", n->name, n->bridge);
                if (r < 0)
                        return log_error_errno(r, "NIC %s: failed to create tap %s%s%s: %m", n->name, s->taps[i],
                                               n->bridge ? " on bridge " : "", strempty(n->bridge));
        }
        return 0;
}

static int stage_console(Stage *s) {
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/" RUN_CONSOLE_FIFO, s->id) < 0)
                return log_oom();
        r = safe_mkfifo_at(s->run_fd, rel, 0600, 0, 0);
        if (r == -EEXIST)
                return 0;
        if (r < 0)
                return log_error_errno(r, "Failed to create the serial input FIFO %s/%s: %m", s->host->run_dir, rel);
        return 0;
}

int main(int argc, char **argv) {
        _cleanup_(stage_done) Stage s = { .state_fd = -EBADF, .vm_state_fd = -EBADF, .run_fd = -EBADF,
                                          .exec_fd = -EBADF, .jail_fd = -EBADF, .lock_fd = -EBADF };
        _cleanup_free_ char *error = NULL;
        int r;

        r = tool_begin(argc, argv, "microvm-stage",
                       "Stage a VM's jail, drives, taps and launch plan (tearing down an earlier run's first).",
                       &s.id);
        if (r != 0)
                return tool_exit(r);

        /* Inputs: configs, binaries, directories. */
        r = tool_load_host_config(&s.host);
        if (r < 0)
                return tool_exit(r);
        r = tool_load_vm_config(s.host, s.id, &s.vm);
        if (r < 0)
                return tool_exit(r);
        if ((r = check_digest(&s)) < 0 || (r = check_binaries(&s)) < 0 || (r = check_chroot_base_location(&s)) < 0)
                return tool_exit(r);
        r = vm_paths_new(s.host, s.exec_name, s.id, &s.paths);
        if (r < 0)
                return tool_exit(log_oom());
        r = open_roots(&s);
        if (r < 0)
                return tool_exit(r);

        /* microvm-reclaim must not tear down what we are building. */
        r = vm_reclaim_lock(s.run_fd, false, &s.lock_fd);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to take the reclaim lock in %s: %m", s.host->run_dir));
        r = reset(&s);
        if (r < 0)
                return tool_exit(r);

        /* The uid needs NSS lookups: before the seccomp filter. */
        r = uid_allocate_for_vm(s.state_fd, s.host, s.vm, &s.uid, &error);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to allocate a uid for %s: %s", s.id,
                                                 error ?: strerror(-r)));
        if (s.uid.created)
                log_info("VM %s runs as uid and gid %u.", s.id, (unsigned) s.uid.uid);
        r = safe_open_dir_at(s.state_fd, s.id, &s.vm_state_fd);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to open %s: %m", s.paths.state_dir));

        r = plan_network(&s);
        if (r < 0)
                return tool_exit(r);
        r = build_plan(&s);
        if (r < 0)
                return tool_exit(r);

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        /* From here on everything created is named by the plan. */
        r = write_plan(&s);
        if (r < 0)
                return tool_exit(r);
        if ((r = stage_jail(&s)) < 0 || (r = stage_taps(&s)) < 0 || (r = stage_console(&s)) < 0)
                return tool_exit(r);

        log_debug("Staged %s in %s as uid %u.", s.id, s.paths.jail_root, (unsigned) s.uid.uid);
        return EXIT_SUCCESS;
}
