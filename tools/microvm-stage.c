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
 *   <state_dir>/<id>/uid              the VM's uid (lib/jail/uid-alloc)
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

#include <grp.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "config-files.h"
#include "binary.h"
#include "log.h"
#include "safe-fs.h"
#include "seccomp-util.h"
#include "stage.h"
#include "stage-plan.h"
#include "tool.h"
#include "uid-alloc.h"
#include "vm-unit.h"
#include "vm-teardown.h"

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
        gid_t console_gid;      /* console_group, (gid_t) -1: none */
        StageNetwork net;
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
        stage_network_done(&s->net);
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

static int open_roots(Stage *s) {
        _cleanup_free_ char *error = NULL, *exec_dir = NULL;
        int r;

        r = safe_root_open(s->host->state_dir, SAFE_ROOT_CREATE, 0700, &s->state_fd, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot use the state directory: %s", strna(error));
        free(error);
        error = NULL;
        /* 0711 as tmpfiles.d makes it: names not listable, a console_group
         * member may pass to its VM's console FIFO. */
        r = safe_root_open(s->host->run_dir, SAFE_ROOT_CREATE, 0711, &s->run_fd, &error);
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

static int plan_start(Stage *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = stage_network_plan(s->vm, s->id, &s->net, &error);
        if (r == -ENOMEM)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "%s", error);
        StagePlanInput in = {
                .host = s->host,
                .vm = s->vm,
                .paths = &s->paths,
                .id = s->id,
                .exec_file = s->exec_file,
                .exec_name = s->exec_name,
                .uid = s->uid.uid,
                .gid = s->uid.gid,
                .taps = s->net.taps,
        };
        if (stage_plan_build(&in, &s->plan) < 0)
                return log_oom();
        return 0;
}

/* The host's console_group: an NSS lookup, so before the seccomp filter. */
static int console_group_lookup(Stage *s) {
        struct group grp, *result = NULL;
        char buf[4096];
        int r;

        s->console_gid = (gid_t) -1;
        if (!s->host->console_group)
                return 0;
        r = getgrnam_r(s->host->console_group, &grp, buf, sizeof buf, &result);
        if (r != 0)
                return log_error_errno(r, "Failed to look up console_group %s of %s: %m", s->host->console_group,
                                       host_config_path());
        if (!result)
                return log_error_errno(ENOENT, "console_group %s of %s does not exist: create it (groupadd) or remove the key.",
                                       s->host->console_group, host_config_path());
        s->console_gid = result->gr_gid;
        return 0;
}

static StageTarget stage_target(const Stage *s) {
        return (StageTarget) {
                .id = s->id,
                .host = s->host,
                .vm = s->vm,
                .state_fd = s->state_fd,
                .run_fd = s->run_fd,
                .jail_fd = s->jail_fd,
                .vm_state_fd = s->vm_state_fd,
                .state_dir = s->paths.state_dir,
                .jail_root = s->paths.jail_root,
                .uid = s->uid.uid,
                .gid = s->uid.gid,
                .previous_uid = s->uid.previous,
                .console_gid = s->console_gid,
        };
}

/* Logs a step's error; -ENOMEM comes without a message. */
static int step(int r, char **error) {
        _cleanup_free_ char *e = *error;

        *error = NULL;
        if (r == -ENOMEM && !e)
                return log_oom();
        if (r < 0)
                return log_error_errno(r, "%s", e ?: strerror(-r));
        return r;
}

static int stage_readonly(Stage *s, const char *path, const char *what, const char *name) {
        StageTarget t = stage_target(s);
        _cleanup_free_ char *error = NULL;
        SafeCopyMethod method;
        int r;

        r = step(stage_readonly_file(&t, path, what, name, &method, &error), &error);
        if (r > 0)
                log_debug("Copied the %s %s into the jail (%s).", what, path, safe_copy_method_to_string(method));
        return r;
}

static int stage_drives(Stage *s) {
        StageTarget t = stage_target(s);
        _cleanup_free_ char *error = NULL;
        SafeCopyMethod method;

        for (size_t i = 0; i < s->vm->n_drives; i++) {
                const DriveConfig *d = &s->vm->drives[i];
                char name[64];
                int r;

                snprintf(name, sizeof name, JAIL_DRIVE_PREFIX "%s", d->name);
                if (d->mode != DRIVE_MODE_FILE)
                        r = step(stage_block_drive(&t, d, name, &error), &error);
                else if (d->read_only)
                        r = stage_readonly(s, d->path, "read-only drive image", name);
                else {
                        r = step(stage_file_drive(&t, d, name, &method, &error), &error);
                        if (r > 0)
                                log_info("Drive %s: made the VM's own copy of %s (%s).", d->name, d->path,
                                         safe_copy_method_to_string(method));
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

static int stage_jail(Stage *s) {
        _cleanup_free_ char *root = NULL, *error = NULL;
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

        r = stage_readonly(s, s->vm->kernel, "kernel", JAIL_KERNEL);
        if (r >= 0 && s->vm->initrd)
                r = stage_readonly(s, s->vm->initrd, "initrd", JAIL_INITRD);
        if (r >= 0)
                r = stage_drives(s);
        if (r < 0)
                return r;

        StageTarget t = stage_target(s);
        return step(stage_jail_run_dir_and_config(&t, &s->net, &error), &error);
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
        if ((r = check_digest(&s)) < 0 || (r = check_binaries(&s)) < 0 ||
            (r = step(stage_check_chroot_base(s.host, &error), &error)) < 0)
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
        r = console_group_lookup(&s);
        if (r < 0)
                return tool_exit(r);
        r = safe_open_dir_at(s.state_fd, s.id, &s.vm_state_fd);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to open %s: %m", s.paths.state_dir));

        r = plan_start(&s);
        if (r < 0)
                return tool_exit(r);

        r = seccomp_install_denylist(seccomp_deny_tools, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return tool_exit(log_error_errno(r, "Failed to install the seccomp filter: %m"));

        /* From here on everything created is named by the plan. */
        StageTarget t = stage_target(&s);
        r = step(stage_plan_write(&t, s.plan, &error), &error);
        if (r < 0)
                return tool_exit(r);
        r = stage_jail(&s);
        if (r < 0)
                return tool_exit(r);
        t = stage_target(&s);
        if ((r = step(stage_taps(&t, s.net.taps, &error), &error)) < 0 ||
            (r = step(stage_console_fifo(&t, &error), &error)) < 0)
                return tool_exit(r);

        log_debug("Staged %s in %s as uid %u.", s.id, s.paths.jail_root, (unsigned) s.uid.uid);
        return EXIT_SUCCESS;
}
