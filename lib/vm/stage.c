/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include "cgroup.h"
#include <grp.h>

#include "binary.h"
#include "config-files.h"
#include "fc-config.h"
#include "generator-core.h"
#include "names.h"
#include "parse-util.h"
#include "stage.h"
#include "storage.h"
#include "tap.h"
#include "vm-suspend.h"
#include "vm-teardown.h"
#include "vm-unit.h"
#include "util.h"

/* Opens an administrator's file (kernel, initrd, template image) named in
 * the config. Paths in the config are the administrator's, so symlinks are
 * fine there; what we open must be a regular file. */
static int open_admin_file(const char *path, const char *what, int *ret_fd, struct stat *ret_st, char **ret_error) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;

        if (fd < 0)
                return error_setf(ret_error, errno, "Cannot open the %s %s: %m", what, path);
        if (fstat(fd, &st) < 0)
                return error_setf(ret_error, errno, "Cannot stat the %s %s: %m", what, path);
        if (!S_ISREG(st.st_mode))
                return error_setf(ret_error, EBADFD, "The %s %s is not a regular file.", what, path);
        *ret_fd = TAKE_FD(fd);
        *ret_st = st;
        return 0;
}

/* "the filesystem /var (ext4)": the mount the directory dir_fd is on, from
 * /proc/self/mountinfo (the deepest mount point of its device that is a
 * prefix of its path), so that a space error names what to grow or clean. */
static void describe_fs(int dir_fd, char *buf, size_t size) {
        _cleanup_fclose_ FILE *f = NULL;
        char self[64], path[PATH_MAX], line[4096], best[PATH_MAX] = "", best_type[64] = "";
        struct stat st;
        ssize_t n;

        snprintf(buf, size, "its filesystem");
        snprintf(self, sizeof self, "/proc/self/fd/%d", dir_fd);
        n = readlink(self, path, sizeof path - 1);
        if (n <= 0 || fstat(dir_fd, &st) < 0)
                return;
        path[n] = '\0';
        f = fopen("/proc/self/mountinfo", "re");
        if (!f)
                return;
        while (fgets(line, sizeof line, f)) {
                unsigned maj, min;
                char mp[PATH_MAX], type[64];
                const char *sep = strstr(line, " - ");
                size_t l;

                if (!sep || sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mp) != 3 ||
                    sscanf(sep + 3, "%63s", type) != 1)
                        continue;
                if (makedev(maj, min) != st.st_dev)
                        continue;
                l = strlen(mp);
                if (!(streq(mp, "/") || (strncmp(path, mp, l) == 0 && (path[l] == '/' || path[l] == '\0'))))
                        continue;
                if (strlen(mp) >= strlen(best)) {
                        snprintf(best, sizeof best, "%s", mp);
                        snprintf(best_type, sizeof best_type, "%s", type);
                }
        }
        if (best[0])
                snprintf(buf, size, "the filesystem %s (%s)", best, best_type);
}

static int check_space(int dir_fd, const struct stat *src, const char *what, const char *path, char **ret_error) {
        struct statvfs sv;
        uint64_t need = (uint64_t) src->st_blocks * 512, have;
        char a[32], b[32], fs[PATH_MAX + 96];

        if (fstatvfs(dir_fd, &sv) < 0)
                return 0;
        have = (uint64_t) sv.f_bavail * sv.f_frsize;
        if (need > have) {
                describe_fs(dir_fd, fs, sizeof fs);
                return error_setf(ret_error, ENOSPC, "Not enough space on %s for a copy of the %s %s: it needs %s, "
                                  "%s is free there.", fs, what, path, format_size(need, a, sizeof a),
                                  format_size(have, b, sizeof b));
        }
        return 0;
}

/* A copy that ran out of space midway (the check above cannot see other
 * writers): the same naming of the filesystem. */
static int copy_failed(int r, int dir_fd, const char *what, const char *path, const char *dest, char **ret_error) {
        char fs[PATH_MAX + 96];

        if (r == -ENOSPC || r == -EDQUOT) {
                describe_fs(dir_fd, fs, sizeof fs);
                return error_setf(ret_error, r, "Failed to copy the %s %s to %s: %m on %s.", what, path, dest, fs);
        }
        return error_setf(ret_error, r, "Failed to copy the %s %s to %s: %m", what, path, dest);
}

int stage_readonly_file(const StageTarget *t, const char *path, const char *what, const char *name,
                        SafeCopyMethod *ret_method, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        bool readable;
        char sz[32];
        int r;

        r = open_admin_file(path, what, &fd, &st, ret_error);
        if (r < 0)
                return r;
        /* firecracker runs as the VM's uid, in no group of the owner's. */
        readable = (st.st_mode & S_IROTH) || st.st_uid == t->uid;
        if (readable) {
                r = safe_link_at(fd, t->jail_fd, name);
                if (r >= 0)
                        return 0;
                if (r != -EXDEV)
                        return error_setf(ret_error, r, "Failed to link the %s %s into the jail: %m", what, path);
        }
        if ((uint64_t) st.st_size > COPY_ACROSS_FS_MAX) {
                format_size((uint64_t) st.st_size, sz, sizeof sz);
                if (!readable)
                        return error_setf(ret_error, EACCES,
                                          "The %s %s is not readable by the VM's uid %u (mode %04o, owner %u), and "
                                          "at %s it is too big to copy on every start: make it world-readable "
                                          "(chmod o+r).",
                                          what, path, (unsigned) t->uid, (unsigned) (st.st_mode & 07777),
                                          (unsigned) st.st_uid, sz);
                return error_setf(ret_error, EXDEV,
                                  "The %s %s is on another filesystem than %s, so it cannot be hardlinked into "
                                  "the jail, and at %s copying it on every start would be huge: put images on "
                                  "the chroot base's filesystem.",
                                  what, path, t->host->chroot_base, sz);
        }
        r = check_space(t->jail_fd, &st, what, path, ret_error);
        if (r < 0)
                return r;
        r = safe_copy_file_at(fd, t->jail_fd, name, 0400, t->uid, t->gid, 0, ret_method, NULL);
        if (r < 0)
                return copy_failed(r, t->jail_fd, what, path, "the jail", ret_error);
        return 1;
}

/* Ours from an earlier start: owned by the VM's uid (or by its previous
 * uid, after uid = N changed, and then given to the new one). */
static int adopt_drive_copy(const StageTarget *t, int fd) {
        int r = safe_fd_verify(fd, S_IFREG, t->uid);

        if (r == -EPERM && t->previous_uid != (uid_t) -1 && safe_fd_verify(fd, S_IFREG, t->previous_uid) >= 0)
                r = safe_fd_chown(fd, t->uid, t->gid);
        return r;
}

int stage_file_drive(const StageTarget *t, const DriveConfig *d, const char *jail_name,
                     SafeCopyMethod *ret_method, char **ret_error) {
        _cleanup_close_ int tfd = -EBADF, cfd = -EBADF;
        _cleanup_free_ char *rel = NULL;
        bool copied = false;
        struct stat st;
        int r;

        if (asprintf(&rel, STATE_DRIVES_DIR "/%s.img", d->name) < 0)
                return -ENOMEM;
        r = safe_mkdir_at(t->vm_state_fd, STATE_DRIVES_DIR, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to create %s/" STATE_DRIVES_DIR ": %m", t->state_dir);

        r = safe_open_at(t->vm_state_fd, rel, O_RDONLY, S_IFREG, &cfd);
        if (r == -ENOENT) {
                r = open_admin_file(d->path, "drive image", &tfd, &st, ret_error);
                if (r < 0)
                        return r;
                r = check_space(t->vm_state_fd, &st, "drive image", d->path, ret_error);
                if (r < 0)
                        return r;
                r = safe_copy_file_at(tfd, t->vm_state_fd, rel, 0600, t->uid, t->gid, 0, ret_method, &cfd);
                if (r < 0) {
                        _cleanup_free_ char *dest = NULL;
                        if (asprintf(&dest, "%s/%s", t->state_dir, rel) < 0)
                                return -ENOMEM;
                        return copy_failed(r, t->vm_state_fd, "drive image", d->path, dest, ret_error);
                }
                copied = true;
        } else if (r < 0)
                return error_setf(ret_error, r, "Cannot use the VM's copy %s/%s of drive %s: %m", t->state_dir, rel,
                                  d->name);
        else {
                r = adopt_drive_copy(t, cfd);
                if (r < 0)
                        return error_setf(ret_error, r, "The VM's copy %s/%s of drive %s is not what we made "
                                          "(owner, type or link count changed): %m", t->state_dir, rel, d->name);
        }

        r = safe_link_at(cfd, t->jail_fd, jail_name);
        if (r == -EXDEV)
                return error_setf(ret_error, r, "%s and %s are on different filesystems: writable file drives are "
                                  "hardlinked from the state directory into the jail, so both must be on one "
                                  "filesystem (or use mode = snapshot).",
                                  t->host->state_dir, t->host->chroot_base);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to link drive %s into the jail: %m", d->name);
        return copied;
}

int stage_block_drive(const StageTarget *t, const DriveConfig *d, const char *jail_name, char **ret_error) {
        _cleanup_close_ int dev_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        int r;

        r = storage_prepare_drive(t->host, t->vm, d, t->state_fd, t->uid, &dev_fd, NULL, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: %s", d->name, error ?: strerror(-r));
        r = safe_mknod_at(t->jail_fd, jail_name, dev_fd, 0600, t->uid, t->gid);
        if (r < 0)
                return error_setf(ret_error, r, "Drive %s: failed to create its device node in the jail: %m", d->name);
        return 0;
}

int stage_taps(const StageTarget *t, char *const *taps, char **ret_error) {
        for (size_t i = 0; i < t->vm->n_nics; i++) {
                const NicConfig *n = &t->vm->nics[i];
                int r = tap_create(taps[i], t->uid, t->gid, n->mtu, n->bridge);
                if (r == -EEXIST)
                        return error_setf(ret_error, r, "NIC %s: the interface %s exists and is not this VM's tap "
                                          "(another VM's, or the host's): choose another tap name.",
                                          n->name, taps[i]);
                if (r == -ENODEV && n->bridge)
                        return error_setf(ret_error, r, "NIC %s: bridge %s does not exist.", n->name, n->bridge);
                if (r < 0)
                        return error_setf(ret_error, r, "NIC %s: failed to create tap %s%s%s: %m", n->name, taps[i],
                                          n->bridge ? " on bridge " : "", strempty(n->bridge));
        }
        return 0;
}

int stage_console_fifo(const StageTarget *t, char **ret_error) {
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/" RUN_CONSOLE_FIFO, t->id) < 0)
                return -ENOMEM;
        bool group = t->console_gid != (gid_t) -1;
        gid_t gid = group ? t->console_gid : 0;
        _cleanup_close_ int dir_fd = -EBADF, fifo_fd = -EBADF;

        r = safe_mkfifo_at(t->run_fd, rel, group ? 0620 : 0600, 0, gid);
        if (r < 0 && r != -EEXIST)
                return error_setf(ret_error, r, "Failed to create the serial input FIFO %s/%s: %m",
                                  t->host->run_dir, rel);
        /* Who may write keystrokes into the VM is decided here, by mode and
         * owner: the directory and the FIFO are ours (root-owned, verified
         * by type, one link), so changing their group and mode is safe. */
        /* A run dir from before console_group (0700): let the group pass. */
        struct stat st;
        if (group && fstat(t->run_fd, &st) >= 0 && (st.st_mode & 0011) != 0011)
                (void) safe_fd_chmod(t->run_fd, (st.st_mode & 07777) | 0011);
        r = safe_open_dir_at(t->run_fd, t->id, &dir_fd);
        if (r >= 0)
                r = safe_fd_chown(dir_fd, 0, gid);
        if (r >= 0)
                r = safe_fd_chmod(dir_fd, group ? 0710 : 0700);
        if (r >= 0)
                r = safe_open_at(t->run_fd, rel, O_PATH, S_IFIFO, &fifo_fd);
        if (r >= 0)
                r = safe_fd_chown(fifo_fd, 0, gid);
        if (r >= 0)
                r = safe_fd_chmod(fifo_fd, group ? 0620 : 0600);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to set the owner and mode of the serial input FIFO %s/%s: %m",
                                  t->host->run_dir, rel);
        return 0;
}

int stage_plan_write(const StageTarget *t, const Plan *plan, char **ret_error) {
        _cleanup_free_ char *text = plan_serialize(plan), *rel = NULL;
        int r;

        if (!text)
                return -ENOMEM;
        r = safe_mkdir_at(t->run_fd, t->id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to create %s/%s: %m", t->host->run_dir, t->id);
        if (asprintf(&rel, "%s/" RUN_PLAN_FILE, t->id) < 0)
                return -ENOMEM;
        r = safe_write_file_at(t->run_fd, rel, text, strlen(text), 0600, 0, 0, SAFE_WRITE_REPLACE);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to write the launch plan %s/%s: %m", t->host->run_dir, rel);
        return 0;
}

int stage_check_bridges(const VmConfig *vm, char **ret_error) {
        for (size_t i = 0; i < vm->n_nics; i++) {
                const NicConfig *n = &vm->nics[i];
                char path[128];
                struct stat st;

                if (!n->bridge)
                        continue;
                snprintf(path, sizeof path, "/sys/class/net/%s", n->bridge);
                if (stat(path, &st) < 0) {
                        if (errno == ENOENT)
                                return error_setf(ret_error, ENODEV,
                                                  "NIC %s: bridge %s does not exist. Create it (e.g. a systemd-networkd "
                                                  ".netdev with Kind=bridge, or \"ip link add %s type bridge\") or name "
                                                  "another one with bridge = in [net.%s].",
                                                  n->name, n->bridge, n->bridge, n->name);
                        return error_setf(ret_error, errno, "NIC %s: cannot look up bridge %s (%s): %m", n->name,
                                          n->bridge, path);
                }
                snprintf(path, sizeof path, "/sys/class/net/%s/bridge", n->bridge);
                if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                        return error_setf(ret_error, ENOTTY, "NIC %s: network interface %s is not a bridge; bridge = "
                                          "in [net.%s] must name a bridge.", n->name, n->bridge, n->name);
        }
        return 0;
}

int stage_check_chroot_base(const HostConfig *host, char **ret_error) {
        static const char *const ro[] = { "/usr", "/etc", "/boot", "/efi" };

        for (size_t i = 0; i < ELEMENTSOF(ro); i++) {
                const char *rest = startswith(host->chroot_base, ro[i]);
                if (rest && (*rest == '/' || *rest == '\0'))
                        return error_setf(ret_error, EROFS, "chroot_base %s lies below %s, which microvm@.service "
                                          "keeps read-only (ProtectSystem=full): move it, e.g. to /srv/jailer.",
                                          host->chroot_base, ro[i]);
        }
        return 0;
}

int stage_jail_run_dir_and_config(const StageTarget *t, const StageNetwork *net, char **ret_error) {
        _cleanup_free_ char *json = NULL;
        int r;

        r = safe_mkdir_at(t->jail_fd, "run", 0700, t->uid, t->gid, 0, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to create %s/run: %m", t->jail_root);
        /* Firecracker's metrics file: a regular file the VM's uid writes
         * (firecracker would create it, but then nobody would have said
         * what it is); microvm-metrics reads it as root and refuses any
         * other type. */
        r = safe_create_file_at(t->jail_fd, &JAIL_METRICS_FILE[1], 0600, t->uid, t->gid, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to create %s" JAIL_METRICS_FILE ": %m", t->jail_root);

        FcRuntime rt = {
                .taps = (const char *const *) net->taps,
                .macs = (const uint8_t(*)[6]) net->macs,
                .vsock_cid = t->vm->vsock_cid_auto ? (uint32_t) t->uid : t->vm->vsock_cid,
        };
        json = fc_config_render(t->vm, &rt);
        if (!json)
                return -ENOMEM;
        /* Root-owned and read-only for the VM: firecracker only reads it. */
        r = safe_write_file_at(t->jail_fd, JAIL_CONFIG_FILE, json, strlen(json), 0444, 0, 0, 0);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to write %s/" JAIL_CONFIG_FILE ": %m", t->jail_root);
        return 0;
}

int stage_check_cgroup_controllers(const VmConfig *vm, const Plan *plan, const char *mount, const char *unit_cgroup,
                                   char **ret_error) {
        for (char **v = plan->cgroup; v && *v; v++) {
                _cleanup_free_ char *controller = strndup(*v, strcspn(*v, ".")), *list = NULL, *why = NULL;
                int r;

                if (!controller)
                        return -ENOMEM;
                if (vm->numa_node >= 0 && asprintf(&why, "numa_node = %d", vm->numa_node) < 0)
                        return -ENOMEM;
                r = cgroup_has_controller(mount, "/", controller, &list);
                if (r < 0)
                        return error_setf(ret_error, r, "Failed to read %s/cgroup.controllers: %m", mount);
                if (r == 0)
                        return error_setf(ret_error, -EOPNOTSUPP,
                                          "%s of %s needs the %s controller of cgroup v2 (jailer --cgroup %s), "
                                          "which this host does not offer: %s/cgroup.controllers lists \"%s\" "
                                          "(a hybrid-cgroup host binds it to cgroup v1). Remove %s or boot the "
                                          "host with the unified cgroup hierarchy.",
                                          why ?: "A jailer cgroup value", vm->id, controller, *v, mount, list,
                                          why ? "numa_node" : "the value");
                if (!unit_cgroup)
                        continue;
                free(list);
                list = NULL;
                r = cgroup_has_controller(mount, unit_cgroup, controller, &list);
                if (r < 0)
                        return error_setf(ret_error, r, "Failed to read %s%s/cgroup.controllers: %m", mount,
                                          unit_cgroup);
                if (r == 0)
                        return error_setf(ret_error, -EPERM,
                                          "%s of %s needs the %s controller, which systemd has not enabled for "
                                          "the unit: %s%s/cgroup.controllers lists \"%s\". The jailer would "
                                          "enable it itself in cgroup.subtree_control of every ancestor from "
                                          "the cgroup root down, outside the unit's delegated subtree. The "
                                          "generated drop-in sets AllowedMemoryNodes= for numa_node: run "
                                          "\"systemctl daemon-reload\" (and check drop-ins for "
                                          "DisableControllers= or Delegate=) before starting again.",
                                          why ?: "A jailer cgroup value", vm->id, controller, mount, unit_cgroup,
                                          list);
        }
        return 0;
}

int stage_check_binaries(const HostConfig *host, char **ret_exec_file, char **ret_error) {
        _cleanup_free_ char *error = NULL, *exec_file = NULL;
        int r;

        r = trusted_binary_open(host->jailer, false, NULL, NULL, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Refusing to use the jailer: %s", strna(error));
        free(error);
        error = NULL;
        r = trusted_binary_open(host->firecracker, true, &exec_file, NULL, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Refusing to use firecracker: %s", strna(error));
        if (!filename_valid(exec_name_from_path(exec_file)))
                return error_setf(ret_error, EINVAL, "The firecracker binary's file name \"%s\" cannot name a jail "
                                  "directory.", exec_name_from_path(exec_file));
        *ret_exec_file = TAKE_PTR(exec_file);
        return 0;
}

int stage_open_roots(const HostConfig *host, const char *exec_name, int *ret_state_fd, int *ret_run_fd,
                     int *ret_exec_fd, char **ret_error) {
        _cleanup_close_ int state_fd = -EBADF, run_fd = -EBADF, exec_fd = -EBADF;
        _cleanup_free_ char *error = NULL, *exec_dir = NULL;
        int r;

        r = safe_root_open(host->state_dir, SAFE_ROOT_CREATE, 0700, &state_fd, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot use the state directory: %s", strna(error));
        free(error);
        error = NULL;
        r = safe_root_open(host->run_dir, SAFE_ROOT_CREATE, 0711, &run_fd, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot use the run directory: %s", strna(error));
        free(error);
        error = NULL;
        if (asprintf(&exec_dir, "%s/%s", host->chroot_base, exec_name) < 0)
                return -ENOMEM;
        r = safe_root_open(exec_dir, SAFE_ROOT_CREATE, 0711, &exec_fd, &error);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot use the chroot base: %s", strna(error));
        *ret_state_fd = TAKE_FD(state_fd);
        *ret_run_fd = TAKE_FD(run_fd);
        *ret_exec_fd = TAKE_FD(exec_fd);
        return 0;
}

int stage_console_gid(const HostConfig *host, gid_t *ret_gid, char **ret_error) {
        struct group grp, *result = NULL;
        char buf[4096];
        int r;

        if (!host->console_group) {
                *ret_gid = (gid_t) -1;
                return 0;
        }
        r = getgrnam_r(host->console_group, &grp, buf, sizeof buf, &result);
        if (r != 0)
                return error_setf(ret_error, r, "Failed to look up console_group %s of %s: %m", host->console_group,
                                  host_config_path());
        if (!result)
                return error_setf(ret_error, ENOENT,
                                  "console_group %s of %s does not exist: create it (groupadd) or remove the key.",
                                  host->console_group, host_config_path());
        *ret_gid = result->gr_gid;
        return 0;
}

int stage_save_start_record(const StageTarget *t, const char *config_copy_path, const char *config_copy,
                            size_t config_copy_size, char **ret_error) {
        _cleanup_free_ char *dir = NULL, *dropin_path = NULL, *dropin = NULL, *rel = NULL;
        size_t size;
        int r;

        if (!config_copy || isempty(config_copy_path))
                return 0;
        dir = strdup(config_copy_path);
        if (!dir)
                return -ENOMEM;
        if (strrchr(dir, '/'))
                *strrchr(dir, '/') = '\0';
        if (asprintf(&dropin_path, "%s/" GENERATOR_DROPIN, dir) < 0)
                return -ENOMEM;
        r = config_read_file(dropin_path, &dropin, &size);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to read the drop-in microvm@%s.service was generated with, %s: %s",
                                  t->id, dropin_path, config_read_strerror(r));
        if (asprintf(&rel, "%s/" RUN_STARTED_DROPIN, t->id) < 0)
                return -ENOMEM;
        r = safe_write_file_at(t->run_fd, rel, dropin, size, 0600, 0, 0, SAFE_WRITE_REPLACE);
        if (r >= 0) {
                free(rel);
                if (asprintf(&rel, "%s/" RUN_STARTED_CONFIG, t->id) < 0)
                        return -ENOMEM;
                r = safe_write_file_at(t->run_fd, rel, config_copy, config_copy_size, 0600, 0, 0, SAFE_WRITE_REPLACE);
        }
        if (r < 0)
                return error_setf(ret_error, r, "Failed to write %s/%s: %m", t->host->run_dir, rel);
        return 0;
}

int stage_mark_staged(const StageTarget *t, const char *invocation_id, char **ret_error) {
        _cleanup_free_ char *rel = NULL;
        int r;

        if (asprintf(&rel, "%s/" RUN_STAGED_FILE, t->id) < 0)
                return -ENOMEM;
        r = safe_write_file_at(t->run_fd, rel, strempty(invocation_id), strlen(strempty(invocation_id)), 0600, 0, 0,
                               SAFE_WRITE_REPLACE);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to write %s/%s: %m", t->host->run_dir, rel);
        return 0;
}

static int readonly_noted(const StageTarget *t, const char *path, const char *what, const char *name, char ***notes,
                          char **ret_error) {
        SafeCopyMethod method;
        int r = stage_readonly_file(t, path, what, name, &method, ret_error);

        if (r > 0)
                (void) strv_push_errorf(notes, 0, "Copied the %s %s into the jail (%s).", what, path,
                                        safe_copy_method_to_string(method));
        return r;
}

int stage_jail_files(const StageTarget *t, char ***ret_notes, char **ret_error) {
        SafeCopyMethod method;
        int r;

        r = readonly_noted(t, t->vm->kernel, "kernel", JAIL_KERNEL, ret_notes, ret_error);
        if (r >= 0 && t->vm->initrd)
                r = readonly_noted(t, t->vm->initrd, "initrd", JAIL_INITRD, ret_notes, ret_error);
        for (size_t i = 0; r >= 0 && i < t->vm->n_drives; i++) {
                const DriveConfig *d = &t->vm->drives[i];
                char name[64];

                snprintf(name, sizeof name, JAIL_DRIVE_PREFIX "%s", d->name);
                if (d->mode != DRIVE_MODE_FILE)
                        r = stage_block_drive(t, d, name, ret_error);
                else if (d->read_only)
                        r = readonly_noted(t, d->path, "read-only drive image", name, ret_notes, ret_error);
                else {
                        r = stage_file_drive(t, d, name, &method, ret_error);
                        if (r > 0)
                                (void) strv_push_errorf(ret_notes, 0, "Drive %s: made the VM's own copy of %s (%s).",
                                                        d->name, d->path, safe_copy_method_to_string(method));
                }
        }
        return r < 0 ? r : 0;
}

int stage_reset(const HostConfig *host, const VmConfig *vm, const char *id, const char *exec_name, bool *ret_removed,
                char ***ret_left, char **ret_warning, char **ret_error) {
        _cleanup_plan_ Plan *old = NULL;
        _cleanup_free_ char *cg = NULL, *error = NULL;
        TeardownReport rep = {};
        bool inside = false;
        const char *child = NULL;
        int r;

        r = vm_plan_read(host, id, &old, &error);
        if (r < 0 && r != -ENOENT)
                (void) error_setf(ret_warning, r, "Ignoring the old launch plan of %s: %s", id, error ?: strerror(-r));
        r = vm_unit_cgroup(id, &cg, &inside, &child);
        if (r < 0)
                return error_setf(ret_error, r, "Failed to find the cgroup of microvm@%s.service: %m", id);
        if (!inside) {
                /* Run by hand: never rebuild a running VM's jail under it. */
                const char *how = NULL;
                r = vm_unit_refuse_if_running(id, cg, &how);
                if (r == -EBUSY)
                        return error_setf(ret_error, r, "microvm@%s.service is running (per %s): use \"systemctl "
                                          "restart microvm@%s\" instead.", id, how, id);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot tell whether microvm@%s.service runs; not touching "
                                          "it: %m", id);
        }

        TeardownTarget t = {
                .id = id,
                .host = host,
                .plan = old,
                .exec_name = exec_name,
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
                .remove_state = (old && old->ephemeral) || vm->ephemeral,
        };
        r = vm_teardown(&t, &rep);
        *ret_left = TAKE_PTR(rep.failed);
        *ret_removed = rep.jail_removed || rep.n_cgroups_removed > 0;
        teardown_report_done(&rep);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot start %s over what an earlier run left behind (see above).", id);
        return 0;
}

int stage_resume(const StageTarget *t, Plan *plan, char **ret_note, char **ret_error) {
        _cleanup_free_ char *reason = NULL, *aside = NULL;
        int r = vm_resume_prepare(plan, t->vm_state_fd, t->jail_fd, &reason, &aside);

        *ret_note = NULL;
        if (r == -ENOMEM)
                return r;
        if (r < 0 && t->vm->ephemeral)
                /* Its disks were kept for the snapshot: booting on them would
                 * break ephemeral's fresh start. This start's cleanup removes
                 * them; the next start begins from the templates. */
                return error_setf(ret_error, r,
                                  "VM %s: its snapshot cannot be resumed: %s (kept as %s/%s). It is ephemeral, and "
                                  "its disks were kept for the snapshot: this start fails, the next one begins from "
                                  "the template images.", t->id, strna(reason), t->state_dir, aside ?: "suspend");
        if (r < 0)
                return asprintf(ret_note, "VM %s: not resuming its snapshot, booting instead: %s (snapshot kept as "
                                "%s/%s).", t->id, strna(reason), t->state_dir, aside ?: "suspend") < 0 ? -ENOMEM : 0;
        if (r == 0)
                return 0;
        plan->resume = true;
        r = stage_plan_write(t, plan, ret_error);
        if (r < 0)
                return r;
        if (asprintf(ret_note, "VM %s: resuming from its snapshot in %s/suspend/.", t->id, t->state_dir) < 0)
                *ret_note = NULL;
        return 1;
}
