/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "config-files.h"
#include "ini.h"
#include "util.h"

const char *host_config_path(void) {
        const char *e = getenv("MICROVM_HOST_CONFIG");
        return isempty(e) ? HOST_CONFIG_PATH : e;
}

int config_search_path(char ***ret) {
        const char *e = getenv("MICROVM_CONFIG_PATH");
        _cleanup_free_ char *copy = strdup(isempty(e) ? VM_CONFIG_PATH : e);
        _cleanup_strv_free_ char **l = NULL;
        size_t n = 0;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
                char **nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[n] = strdup(t);
                l[n + 1] = NULL;
                if (!l[n])
                        return -ENOMEM;
                n++;
        }
        if (!l) {
                l = calloc(1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Asked once per process: a generator reads thousands of configs, and
 * none of our programs changes its uid. */
static bool running_as_root(void) {
        static int cached = -1;

        if (cached < 0)
                cached = geteuid() == 0;
        return cached;
}

int config_read_file(const char *path, char **ret_data, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_size > INI_FILE_MAX)
                return -EFBIG;
        /* A config names files and devices that root hands to a VM: only root
         * may be able to write it. (Checked when we are root; a user running
         * microvmctl validate on their own files is not acting for root.) */
        if (running_as_root() && st.st_uid != 0)
                return -EPERM;
        if (running_as_root() && (st.st_mode & (S_IWGRP | S_IWOTH)))
                return -EACCES;

        return read_full_fd(fd, INI_FILE_MAX, ret_data, ret_size);
}

/* A symlink whose target is /dev/null masks the name (as with units). */
static bool is_masked(int dirfd, const char *name) {
        struct stat st;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISLNK(st.st_mode))
                return false;
        if (fstatat(dirfd, name, &st, 0) < 0)
                return false;
        return S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3);
}

void vm_config_files_free(VmConfigFile *f, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(f[i].name);
                free(f[i].path);
        }
        free(f);
}

/* By name and, for one name, by the directory's place in the search path:
 * after sorting, the first of each name is the one that wins. */
static int cmp_files(const void *a, const void *b) {
        const VmConfigFile *x = a, *y = b;
        int c = strcmp(x->name, y->name);

        return c != 0 ? c : CMP(x->dir, y->dir);
}

int vm_config_enumerate(VmConfigFile **ret, size_t *ret_n) {
        _cleanup_strv_free_ char **dirs = NULL;
        VmConfigFile *files = NULL;
        size_t n = 0, allocated = 0, kept = 0;
        int r;

        r = config_search_path(&dirs);
        if (r < 0)
                return r;

        for (size_t d = 0; dirs[d]; d++) {
                DIR *dir = opendir(dirs[d]);
                struct dirent *de;

                if (!dir) {
                        if (errno == ENOENT || errno == ENOTDIR)
                                continue;
                        r = -errno;
                        goto fail;
                }
                while ((errno = 0, de = readdir(dir))) {
                        const char *suffix = endswith(de->d_name, ".conf");

                        if (!suffix || suffix == de->d_name || de->d_name[0] == '.')
                                continue;
                        if (de->d_type != DT_REG && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN)
                                continue;
                        if (greedy_realloc((void **) &files, &allocated, n + 1, sizeof *files) < 0) {
                                closedir(dir);
                                r = -ENOMEM;
                                goto fail;
                        }
                        files[n] = (VmConfigFile) {
                                .name = strndup(de->d_name, (size_t) (suffix - de->d_name)),
                                /* only a symlink can mask: spare regular files the stat */
                                .masked = de->d_type != DT_REG && is_masked(dirfd(dir), de->d_name),
                                .dir = d,
                        };
                        n++;
                        if (!files[n - 1].name ||
                            asprintf(&files[n - 1].path, "%s/%s", dirs[d], de->d_name) < 0) {
                                files[n - 1].path = NULL;
                                closedir(dir);
                                r = -ENOMEM;
                                goto fail;
                        }
                }
                r = errno > 0 ? -errno : 0;
                closedir(dir);
                if (r < 0)
                        goto fail;
        }

        /* One sort instead of comparing every name with every earlier one:
         * a generator run with thousands of VMs stays linear-ish. Then the
         * later directories' files of a name go. */
        if (n > 0)
                qsort(files, n, sizeof *files, cmp_files);
        for (size_t i = 0; i < n; i++) {
                if (kept > 0 && streq(files[kept - 1].name, files[i].name)) {
                        free(files[i].name);
                        free(files[i].path);
                        continue;
                }
                files[kept++] = files[i];
        }
        *ret = files;
        *ret_n = kept;
        return 0;
fail:
        vm_config_files_free(files, n);
        return r;
}

int vm_config_find(const char *id, char **ret_path) {
        _cleanup_strv_free_ char **dirs = NULL;
        int r;

        r = config_search_path(&dirs);
        if (r < 0)
                return r;
        for (char **d = dirs; *d; d++) {
                _cleanup_close_ int dfd = open(*d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                _cleanup_free_ char *name = NULL, *path = NULL;
                struct stat st;

                if (dfd < 0)
                        continue;
                if (asprintf(&name, "%s.conf", id) < 0)
                        return -ENOMEM;
                if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (is_masked(dfd, name))
                        return -ERFKILL;
                if (asprintf(&path, "%s/%s", *d, name) < 0)
                        return -ENOMEM;
                *ret_path = TAKE_PTR(path);
                return 0;
        }
        return -ENOENT;
}

const char *config_read_strerror(int r) {
        switch (-r) {
        case EPERM:
                return "not owned by root (a config is as powerful as root: chown root it)";
        case EACCES:
                /* As root, open() does not fail with EACCES: it is our check. */
                if (running_as_root())
                        return "writable by group or others (a config is as powerful as root: chmod go-w it)";
                return strerror(EACCES);
        case EFBIG:
                return "larger than 1 MiB";
        case EBADFD:
                return "not a regular file";
        default:
                return strerror(-r);
        }
}

int host_config_load(HostConfig **ret, Problems *problems) {
        return host_config_load_partial(ret, NULL, problems);
}

int host_config_load_partial(HostConfig **ret, HostConfig **ret_partial, Problems *problems) {
        _cleanup_free_ char *data = NULL;
        const char *path = host_config_path();
        size_t size;
        int r;

        r = config_read_file(path, &data, &size);
        if (r == -ENOENT)
                return host_config_new_default(ret);
        if (r < 0) {
                problems_add(problems, path, 0, NULL, NULL, NULL, "cannot be used: %s", config_read_strerror(r));
                return r;
        }
        return host_config_parse_partial(path, data, size, ret, ret_partial, problems);
}

int vm_config_load(const HostConfig *host, const char *id, VmConfig **ret, Problems *problems) {
        _cleanup_free_ char *path = NULL, *data = NULL;
        const char *reason;
        size_t size;
        int r;

        reason = vm_id_invalid_reason(id);
        if (reason) {
                problems_add(problems, id, 0, NULL, NULL, NULL,
                             "is not a valid VM id: it %s (ids match [a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)", reason);
                return -EINVAL;
        }

        r = vm_config_find(id, &path);
        if (r == -ENOENT) {
                _cleanup_strv_free_ char **dirs = NULL;
                _cleanup_free_ char *joined = NULL;
                size_t len = 0;
                FILE *f;

                if (config_search_path(&dirs) < 0)
                        return -ENOMEM;
                f = open_memstream(&joined, &len);
                if (!f)
                        return -ENOMEM;
                for (char **d = dirs; *d; d++)
                        fprintf(f, "%s%s", d == dirs ? "" : ", ", *d);
                fclose(f);
                problems_add(problems, id, 0, NULL, NULL, NULL, "no such VM: no %s.conf in %s", id, strna(joined));
                return r;
        }
        if (r == -ERFKILL) {
                problems_add(problems, id, 0, NULL, NULL, NULL, "VM is masked (its config is a symlink to /dev/null)");
                return r;
        }
        if (r < 0)
                return r;

        r = config_read_file(path, &data, &size);
        if (r < 0) {
                problems_add(problems, path, 0, NULL, NULL, NULL, "cannot be used: %s", config_read_strerror(r));
                return r;
        }
        return vm_config_parse(path, id, data, size, host, ret, problems);
}
