/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "cgroup.h"
#include "util.h"

static int write_file_at(int dir_fd, const char *name, const char *value) {
        _cleanup_close_ int fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        size_t len = strlen(value);
        ssize_t n;

        if (fd < 0)
                return -errno;
        n = write(fd, value, len);
        if (n < 0)
                return -errno;
        return (size_t) n == len ? 0 : -EIO;
}

static int read_whole_file(const char *path, char **ret) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return read_full_fd(fd, 16 * 1024 * 1024, ret, NULL);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static char *unescape_mountinfo(const char *s, size_t n) {
        char *r = malloc(n + 1), *o = r;
        if (!r)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3') {
                        *o++ = (char) ((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
                        i += 3;
                } else
                        *o++ = s[i];
        }
        *o = '\0';
        return r;
}

int cgroup2_mount_from_mountinfo(const char *text, char **ret) {
        for (const char *line = text; *line;) {
                const char *end = strchrnul(line, '\n'), *sep, *p;
                const char *fields[5];
                size_t lens[5];
                unsigned i = 0;

                /* "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER" */
                p = line;
                while (i < 5 && p < end) {
                        const char *sp = memchr(p, ' ', (size_t) (end - p));
                        if (!sp)
                                sp = end;
                        fields[i] = p;
                        lens[i] = (size_t) (sp - p);
                        i++;
                        p = sp < end ? sp + 1 : end;
                }
                sep = NULL;
                for (const char *q = p; q + 2 < end; q++)
                        if (q[0] == ' ' && q[1] == '-' && q[2] == ' ') {
                                sep = q + 3;
                                break;
                        }
                if (i == 5 && sep && (size_t) (end - sep) >= 8 && strncmp(sep, "cgroup2 ", 8) == 0) {
                        char *m = unescape_mountinfo(fields[4], lens[4]);
                        if (!m)
                                return -ENOMEM;
                        *ret = m;
                        return 0;
                }
                line = *end ? end + 1 : end;
        }
        return -ENOMEDIUM;
}

int cgroup2_find_mount(char **ret) {
        _cleanup_free_ char *text = NULL;
        int r = read_whole_file("/proc/self/mountinfo", &text);
        if (r < 0)
                return r;
        return cgroup2_mount_from_mountinfo(text, ret);
}

int cgroup_path_from_proc(const char *text, char **ret) {
        for (const char *line = text; *line;) {
                const char *end = strchrnul(line, '\n');
                if ((size_t) (end - line) >= 3 && strncmp(line, "0::", 3) == 0) {
                        char *p = strndup(line + 3, (size_t) (end - line - 3));
                        if (!p)
                                return -ENOMEM;
                        if (p[0] != '/') {
                                free(p);
                                return -EINVAL;
                        }
                        *ret = p;
                        return 0;
                }
                line = *end ? end + 1 : end;
        }
        return -ENOMEDIUM;
}

int cgroup_pid_path(pid_t pid, char **ret) {
        _cleanup_free_ char *text = NULL;
        char path[64];
        int r;

        if (pid == 0)
                snprintf(path, sizeof path, "/proc/self/cgroup");
        else
                snprintf(path, sizeof path, "/proc/%d/cgroup", (int) pid);
        r = read_whole_file(path, &text);
        if (r < 0)
                return r;
        return cgroup_path_from_proc(text, ret);
}

int cgroup_open(const char *mount, const char *path, int *ret_fd) {
        _cleanup_free_ char *full = NULL;
        int fd;

        if (asprintf(&full, "%s%s", mount, streq(path, "/") ? "" : path) < 0)
                return -ENOMEM;
        fd = open(full, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

bool cgroup_controller_listed(const char *list, const char *controller) {
        size_t n = strlen(controller);

        for (const char *p = list; *p;) {
                size_t w;
                p += strspn(p, " \n");
                w = strcspn(p, " \n");
                if (w == n && n > 0 && strncmp(p, controller, n) == 0)
                        return true;
                p += w;
        }
        return false;
}

int cgroup_has_controller(const char *mount, const char *path, const char *controller, char **ret_list) {
        _cleanup_free_ char *file = NULL, *text = NULL;
        bool found;
        int r;

        if (asprintf(&file, "%s%s/cgroup.controllers", mount, streq(path, "/") ? "" : path) < 0)
                return -ENOMEM;
        r = read_whole_file(file, &text);
        if (r < 0)
                return r;
        found = cgroup_controller_listed(text, controller);
        if (ret_list) {
                text[strcspn(text, "\n")] = '\0';
                *ret_list = TAKE_PTR(text);
        }
        return found;
}

int cgroup_open_child(int dir_fd, const char *name, bool create, int *ret_fd) {
        int fd;

        if (isempty(name) || strchr(name, '/') || streq(name, ".") || streq(name, ".."))
                return -EINVAL;
        if (create && mkdirat(dir_fd, name, 0755) < 0 && errno != EEXIST)
                return -errno;
        fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        *ret_fd = fd;
        return 0;
}

int cgroup_enter(int cg_fd) {
        /* "0" means the writing process itself. */
        return write_file_at(cg_fd, "cgroup.procs", "0");
}

int cgroup_is_populated(int cg_fd) {
        char buf[512];
        const char *p;
        int r = read_small_file_at(cg_fd, "cgroup.events", O_NOFOLLOW, buf, sizeof buf);

        if (r < 0)
                return r;
        p = strstr(buf, "populated ");
        if (!p)
                return -EBADMSG;
        return p[10] == '1';
}

int cgroup_has_own_processes(int cg_fd) {
        char buf[64];
        int r = read_small_file_at(cg_fd, "cgroup.procs", O_NOFOLLOW, buf, sizeof buf);

        if (r < 0)
                return r;
        return buf[0] != '\0';
}

int cgroup_kill(int cg_fd) {
        char buf[8192];
        int r;

        r = write_file_at(cg_fd, "cgroup.kill", "1");
        if (r != -ENOENT)
                return r;

        /* Linux < 5.14 has no cgroup.kill: freeze the cgroup so nothing can
         * fork or move away, SIGKILL what cgroup.procs lists, thaw. (The
         * pids come from the kernel at the moment of the kill, not from a
         * file we or the guest wrote.) Only the cgroup itself; the caller
         * walks children deepest first. */
        r = write_file_at(cg_fd, "cgroup.freeze", "1");
        if (r < 0 && r != -ENOENT)
                return r;
        r = read_small_file_at(cg_fd, "cgroup.procs", O_NOFOLLOW, buf, sizeof buf);
        if (r >= 0)
                for (char *p = buf, *e; *p; p = e) {
                        long pid = strtol(p, &e, 10);
                        if (e == p)
                                break;
                        if (pid > 1)
                                (void) kill((pid_t) pid, SIGKILL);
                        while (*e == '\n')
                                e++;
                }
        (void) write_file_at(cg_fd, "cgroup.freeze", "0");
        return r < 0 ? r : 0;
}

int cgroup_wait_unpopulated(int cg_fd, usec_t timeout) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_close_ int fd = openat(cg_fd, "cgroup.events", O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

        if (fd < 0)
                return -errno;
        for (;;) {
                struct pollfd pfd = { .fd = fd, .events = POLLPRI };
                usec_t now;
                int r;

                r = cgroup_is_populated(cg_fd);
                if (r <= 0)
                        return r;
                now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                /* kernfs signals a change of cgroup.events with POLLPRI|POLLERR;
                 * the timeout is only the bound. */
                r = poll(&pfd, 1, (int) MIN((deadline - now) / USEC_PER_MSEC + 1, 1000));
                if (r < 0 && errno != EINTR)
                        return -errno;
                if (r > 0) {
                        char buf[256];
                        if (pread(fd, buf, sizeof buf, 0) < 0) /* re-arm the notification */
                                return -errno;
                }
        }
}

/* rmdir with a bounded, growing back-off on EBUSY: a cgroup whose last
 * process was just reaped can stay busy for a moment (crun does the same). */
static int rmdir_retry(int dir_fd, const char *name) {
        usec_t delay = 1 * USEC_PER_MSEC;

        for (unsigned attempt = 0;; attempt++) {
                if (unlinkat(dir_fd, name, AT_REMOVEDIR) >= 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY || attempt >= 12)
                        return -errno;
                struct timespec ts = { .tv_sec = (time_t) (delay / USEC_PER_SEC),
                                       .tv_nsec = (long) (delay % USEC_PER_SEC) * 1000 };
                (void) nanosleep(&ts, NULL);
                delay = MIN(delay * 2, 100 * USEC_PER_MSEC);
        }
}

static void report_failure(CgroupTeardown *t, const char *rel, int error) {
        if (t->failed)
                return;
        t->failed = strdup(rel);
        t->error = error;
}

static int teardown_at(int dir_fd, const char *rel, const char *skip, usec_t timeout, unsigned depth,
                       CgroupTeardown *t) {
        _cleanup_close_ int dup_fd = -EBADF;
        DIR *d;
        struct dirent *de;
        int first = 0;

        if (depth > CGROUP_DEPTH_MAX) {
                report_failure(t, rel, -ELOOP);
                return -ELOOP;
        }

        dup_fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return -errno;
        d = fdopendir(dup_fd);
        if (!d)
                return -errno;
        TAKE_FD(dup_fd);

        while ((de = readdir(d))) {
                _cleanup_close_ int child = -EBADF;
                _cleanup_free_ char *child_rel = NULL;
                int r;

                if (de->d_type != DT_DIR || streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                if (skip && depth == 0 && streq(de->d_name, skip))
                        continue;
                if (asprintf(&child_rel, "%s/%s", rel, de->d_name) < 0) {
                        closedir(d);
                        return -ENOMEM;
                }
                r = cgroup_open_child(dirfd(d), de->d_name, false, &child);
                if (r == -ENOENT)
                        continue;
                if (r < 0) {
                        report_failure(t, child_rel, r);
                        if (first == 0)
                                first = r;
                        continue;
                }

                /* Kill the whole subtree at once, then wait for it to drain,
                 * then remove the children bottom-up. */
                if (cgroup_is_populated(child) > 0) {
                        t->killed++;
                        r = cgroup_kill(child);
                        if (r >= 0)
                                r = cgroup_wait_unpopulated(child, timeout);
                        if (r < 0) {
                                report_failure(t, child_rel, r);
                                if (first == 0)
                                        first = r;
                        }
                }
                r = teardown_at(child, child_rel, NULL, timeout, depth + 1, t);
                if (r < 0 && first == 0)
                        first = r;
                r = rmdir_retry(dirfd(d), de->d_name);
                if (r < 0) {
                        report_failure(t, child_rel, r);
                        if (first == 0)
                                first = r;
                } else
                        t->removed++;
        }
        closedir(d);
        return first;
}

int cgroup_teardown_children(int dir_fd, const char *skip, usec_t timeout, CgroupTeardown *report) {
        *report = (CgroupTeardown) {};
        return teardown_at(dir_fd, "", skip, timeout, 0, report);
}

void cgroup_teardown_done(CgroupTeardown *t) {
        free(t->failed);
        *t = (CgroupTeardown) {};
}
