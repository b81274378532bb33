/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include "host-check.h"
#include "tap.h"
#include "safe-fs.h"
#include "uid-alloc.h"
#include "util.h"

void host_uid_view_done(HostUidView *v) {
        free(v->error_message);
        free(v->owners);
        *v = (HostUidView) {};
}

/* The administrator's file as stage opens it: a path from the config
 * (symlinks allowed), opened read-only, of the wanted type. */
static void check_file(const char *file, const char *section, const char *key, const char *path, mode_t type,
                       Problems *problems) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        struct stat st;

        if (fd < 0) {
                problems_add(problems, file, 0, section, key, path, "cannot be opened on this host: %s",
                             strerror(errno));
                return;
        }
        if (fstat(fd, &st) < 0) {
                problems_add(problems, file, 0, section, key, path, "cannot be examined: %s", strerror(errno));
                return;
        }
        if (type == S_IFBLK && !S_ISBLK(st.st_mode))
                problems_add(problems, file, 0, section, key, path,
                             "is not a block device (mode = block passes a host block device through)");
        else if (type == S_IFREG && S_ISDIR(st.st_mode))
                problems_add(problems, file, 0, section, key, path, "is a directory, not a file");
        else if (type == S_IFREG && S_ISBLK(st.st_mode))
                problems_add(problems, file, 0, section, key, path,
                             "is a block device, not a regular file (use mode = block for a device)");
        else if (type == S_IFREG && !S_ISREG(st.st_mode))
                problems_add(problems, file, 0, section, key, path, "is not a regular file");
}

/* A bridge is a net device with a bridge/ directory in sysfs. */
static void check_bridge(const char *file, const char *section, const char *bridge, Problems *problems) {
        char path[96];
        struct stat st;

        snprintf(path, sizeof path, "/sys/class/net/%s", bridge);
        if (stat(path, &st) < 0) {
                if (errno == ENOENT)
                        problems_add(problems, file, 0, section, "bridge", bridge,
                                     "no such network device on this host (create the bridge first)");
                else
                        problems_add(problems, file, 0, section, "bridge", bridge, "cannot be looked up: %s",
                                     strerror(errno));
                return;
        }
        snprintf(path, sizeof path, "/sys/class/net/%s/bridge", bridge);
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                problems_add(problems, file, 0, section, "bridge", bridge, "is a network device but not a bridge");
}

bool uid_range_has_room(uid_t min, uid_t max, const UidOwner *owners, size_t n, const char *id) {
        uint64_t taken = 0;

        if (min > max)
                return false;
        /* owners may name a uid twice (a corrupt state the allocation
         * refuses anyway): count distinct uids in range held by others. */
        for (size_t i = 0; i < n; i++) {
                if (streq(owners[i].id, id) || owners[i].uid < min || owners[i].uid > max)
                        continue;
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++)
                        seen = owners[j].uid == owners[i].uid && !streq(owners[j].id, id);
                if (!seen)
                        taken++;
        }
        return taken < (uint64_t) max - min + 1;
}

/* Every <state_dir>/<id>/uid record, without the allocation lock (records
 * are replaced atomically): a view for advice, not a reservation. */
static int uid_view_load(const HostConfig *h, HostUidView *v) {
        _cleanup_close_ int state_fd = -EBADF;
        _cleanup_(closedirp) DIR *d = NULL;
        size_t allocated = 0;
        char *error = NULL;
        struct dirent *de;
        int r, fd;

        v->loaded = true;
        r = safe_root_open(h->state_dir, 0, 0, &state_fd, &error);
        if (r == -ENOENT) {
                free(error);
                return 0; /* no VM has started yet: every uid is free */
        }
        if (r < 0) {
                v->error = r;
                v->error_message = error;
                return 0;
        }
        fd = openat(state_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || !(d = fdopendir(fd))) {
                v->error = -errno;
                if (fd >= 0)
                        close(fd);
                if (asprintf(&v->error_message, "%s: %s", h->state_dir, strerror(-v->error)) < 0)
                        return -ENOMEM;
                return 0;
        }
        while ((de = readdir(d))) {
                uid_t uid;

                if (!vm_id_valid(de->d_name))
                        continue;
                if (uid_record_read(state_fd, de->d_name, &uid) < 0)
                        continue; /* no record, or one the allocation will name */
                if (greedy_realloc((void **) &v->owners, &allocated, v->n_owners + 1, sizeof(UidOwner)) < 0)
                        return -ENOMEM;
                v->owners[v->n_owners].uid = uid;
                memcpy(v->owners[v->n_owners].id, de->d_name, strlen(de->d_name) + 1); /* a valid id fits */
                v->n_owners++;
        }
        return 0;
}

static void check_uid(const HostConfig *h, const VmConfig *c, HostUidView *v, Problems *problems) {
        const UidOwner *self = NULL;

        if (!v->loaded && uid_view_load(h, v) < 0) {
                problems->oom = true;
                return;
        }
        if (v->error < 0) {
                problems_add(problems, c->source_path, 0, "vm", "uid", NULL,
                             "cannot check the uid records in the state dir: %s (run as root, or use --offline)",
                             v->error_message ?: strerror(-v->error));
                return;
        }
        for (size_t i = 0; i < v->n_owners; i++)
                if (streq(v->owners[i].id, c->id))
                        self = &v->owners[i];

        if (!c->uid_auto) {
                for (size_t i = 0; i < v->n_owners; i++)
                        if (v->owners[i].uid == c->uid && !streq(v->owners[i].id, c->id)) {
                                char value[16];
                                snprintf(value, sizeof value, "%u", (unsigned) c->uid);
                                problems_add(problems, c->source_path, 0, "vm", "uid", value,
                                             "is recorded for VM %s in %s/%s/uid", v->owners[i].id, h->state_dir,
                                             v->owners[i].id);
                                return;
                        }
                return;
        }
        if (self && self->uid >= h->uid_min && self->uid <= h->uid_max)
                return; /* a restart keeps its uid */
        if (!uid_range_has_room(h->uid_min, h->uid_max, v->owners, v->n_owners, c->id))
                problems_add(problems, c->source_path, 0, "vm", "uid", "auto",
                             "no free uid left in the host's uid_range %u-%u (every uid is recorded for a VM in %s)",
                             (unsigned) h->uid_min, (unsigned) h->uid_max, h->state_dir);
}

/* A fixed tap name must be free, or this VM's own tap (a running VM's, or
 * one its last start left): microvm-stage never adopts another interface. */
static void check_tap(const char *file, const char *section, const NicConfig *n, const VmConfig *c,
                      const HostUidView *v, Problems *problems) {
        TapInfo info;
        int r;

        r = tap_inspect(n->tap, &info);
        if (r < 0) {
                problems_add(problems, file, 0, section, "tap", n->tap, "cannot be looked up: %s", strerror(-r));
                return;
        }
        if (!info.exists)
                return;
        if (!info.is_tap) {
                problems_add(problems, file, 0, section, "tap", n->tap,
                             "a network device of that name exists and is not a tap (the host's interface): "
                             "choose another tap name");
                return;
        }
        for (size_t i = 0; v->loaded && v->error >= 0 && i < v->n_owners; i++)
                if (streq(v->owners[i].id, c->id) && v->owners[i].uid == info.owner)
                        return; /* this VM's own */
        if (info.owner == (uid_t) -1)
                problems_add(problems, file, 0, section, "tap", n->tap,
                             "a tap of that name exists without an owner, not this VM's: choose another tap name");
        else
                problems_add(problems, file, 0, section, "tap", n->tap,
                             "a tap of that name exists and belongs to uid %u, not this VM's: choose another tap name",
                             (unsigned) info.owner);
}

int vm_host_check(const HostConfig *h, const VmConfig *c, HostUidView *uids, Problems *problems) {
        const char *file = c->source_path;

        check_file(file, "vm", "kernel", c->kernel, S_IFREG, problems);
        if (c->initrd)
                check_file(file, "vm", "initrd", c->initrd, S_IFREG, problems);
        for (size_t i = 0; i < c->n_drives; i++) {
                const DriveConfig *d = &c->drives[i];
                _cleanup_free_ char *section = NULL;

                if (asprintf(&section, "drive.%s", d->name) < 0)
                        return -ENOMEM;
                check_file(file, section, "path", d->path, d->mode == DRIVE_MODE_BLOCK ? S_IFBLK : S_IFREG,
                           problems);
        }
        check_uid(h, c, uids, problems); /* first: loads the uid records check_tap() reads */
        for (size_t i = 0; i < c->n_nics; i++) {
                const NicConfig *n = &c->nics[i];
                _cleanup_free_ char *section = NULL;

                if (asprintf(&section, "net.%s", n->name) < 0)
                        return -ENOMEM;
                if (!n->tap_auto)
                        check_tap(file, section, n, c, uids, problems);
                if (n->bridge) /* a tap without a bridge: the operator wires it */
                        check_bridge(file, section, n->bridge, problems);
        }
        return problems->oom ? -ENOMEM : 0;
}
