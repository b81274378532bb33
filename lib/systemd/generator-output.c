/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "generator-output.h"
#include "util.h"

static bool dir_cache_has(DirCache *c, const char *dir) {
        for (size_t i = 0; i < ELEMENTSOF(c->dirs); i++)
                if (c->used[i] > 0 && streq(c->dirs[i], dir)) {
                        c->used[i] = ++c->clock;
                        return true;
                }
        return false;
}

static void dir_cache_add(DirCache *c, const char *dir) {
        size_t lru = 0;

        for (size_t i = 1; i < ELEMENTSOF(c->dirs); i++)
                if (c->used[i] < c->used[lru])
                        lru = i;
        strcpy(c->dirs[lru], dir);
        c->used[lru] = ++c->clock;
}

int generated_file_write(int outfd, DirCache *cache, const GeneratedFile *f) {
        _cleanup_close_ int fd = -EBADF;
        const char *slash = strrchr(f->path, '/');
        int r;

        if (slash) {
                char dir[PATH_MAX];
                size_t n = (size_t) (slash - f->path);

                if (n == 0 || n >= sizeof dir)
                        return -EINVAL;
                memcpy(dir, f->path, n);
                dir[n] = '\0';
                if (!dir_cache_has(cache, dir)) {
                        if (mkdirat(outfd, dir, 0755) < 0 && errno != EEXIST)
                                return -errno;
                        dir_cache_add(cache, dir);
                }
        }

        if (f->symlink)
                return RET_NERRNO(symlinkat(f->content, outfd, f->path));

        fd = openat(outfd, f->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
                    f->mode ?: 0644);
        if (fd < 0)
                return -errno;
        r = loop_write(fd, f->content, f->size ?: strlen(f->content));
        if (r < 0)
                return r;
        return RET_NERRNO(close(TAKE_FD(fd)));
}
