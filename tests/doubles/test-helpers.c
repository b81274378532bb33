/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "test-helpers.h"

/* Children not yet done, for children_kill_all(). */
static pid_t live_children[64];

static void track_child(pid_t pid, bool add) {
        for (size_t i = 0; i < ELEMENTSOF(live_children); i++)
                if (live_children[i] == (add ? 0 : pid)) {
                        live_children[i] = add ? pid : 0;
                        return;
                }
}

void children_kill_all(void) {
        for (size_t i = 0; i < ELEMENTSOF(live_children); i++)
                if (live_children[i] > 0) {
                        kill(live_children[i], SIGKILL);
                        (void) waitpid(live_children[i], NULL, 0);
                        live_children[i] = 0;
                }
}

static int pidfd_open_(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

_noreturn_ static void child_fail(const char *what) {
        dprintf(STDERR_FILENO, "test helper child: %s: %s\n", what, strerror(errno));
        _exit(127);
}

int child_spawn(Child *c, char *const *argv, const SpawnOptions *o) {
        static const SpawnOptions defaults = {};
        int out[2], err[2], in[2] = { -1, -1 };

        if (!o)
                o = &defaults;
        *c = (Child) { .pidfd = -1, .out_fd = -1, .err_fd = -1, .in_fd = -1 };
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
                return -errno;
        if (o->stdin_mode == STDIN_PIPE && pipe2(in, O_CLOEXEC) < 0)
                return -errno;

        pid_t pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                int fd0;
                if (o->stdin_mode == STDIN_PIPE)
                        fd0 = in[0];
                else
                        fd0 = open(o->stdin_mode == STDIN_FILE ? o->stdin_file : "/dev/null", O_RDONLY | O_CLOEXEC);
                if (fd0 < 0)
                        child_fail("open stdin");
                if (dup2(fd0, 0) < 0 || dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)
                        child_fail("dup2");
                /* Drop everything else the test runner (criterion) holds. */
                if (syscall(SYS_close_range, 3U, ~0U, 0U) < 0)
                        child_fail("close_range");
                if (o->cgroup_procs) {
                        int fd = open(o->cgroup_procs, O_WRONLY | O_CLOEXEC);
                        if (fd < 0 || write(fd, "0\n", 2) != 2)
                                child_fail("move into cgroup");
                        close(fd);
                }
                if (o->cwd && chdir(o->cwd) < 0)
                        child_fail("chdir");
                if (o->drop_privileges) {
                        if (setgroups(0, NULL) < 0 || setgid(o->gid) < 0 || setuid(o->uid) < 0)
                                child_fail("drop privileges");
                }
                if (o->leak_fd > 2) {
                        int fd = open("/dev/null", O_RDONLY);
                        if (fd < 0 || dup2(fd, o->leak_fd) < 0)
                                child_fail("leak fd");
                }
                if (o->env)
                        for (char *const *e = o->env; *e; e++)
                                putenv(*e);
                (void) signal(SIGPIPE, SIG_DFL);
                execv(argv[0], argv);
                child_fail(argv[0]);
        }

        close(out[1]);
        close(err[1]);
        if (in[0] >= 0)
                close(in[0]);
        track_child(pid, true);
        c->pid = pid;
        c->pidfd = pidfd_open_(pid);
        c->out_fd = out[0];
        c->err_fd = err[0];
        c->in_fd = in[1];
        fcntl(c->out_fd, F_SETFL, O_NONBLOCK);
        fcntl(c->err_fd, F_SETFL, O_NONBLOCK);
        return c->pidfd < 0 ? -errno : 0;
}

static uint64_t mono_ms(void) {
        return clock_us(CLOCK_MONOTONIC) / 1000;
}

/* Reads what is available now; closes a pipe at EOF. */
static void drain(int *fd, StrBuf *sb) {
        char buf[65536];

        while (*fd >= 0) {
                ssize_t n = read(*fd, buf, sizeof(buf));
                if (n > 0) {
                        sb_append_n(sb, buf, (size_t) n);
                        continue;
                }
                if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
                        close(*fd);
                        *fd = -1;
                }
                return;
        }
}

static void reap(Child *c) {
        if (c->exited)
                return;
        if (waitpid(c->pid, &c->status, WNOHANG) == c->pid)
                c->exited = true;
}

/* One round of waiting for any event: output, exit. */
static void wait_some(Child *c, int timeout_ms) {
        struct pollfd p[3];
        int n = 0;

        if (c->out_fd >= 0)
                p[n++] = (struct pollfd) { .fd = c->out_fd, .events = POLLIN };
        if (c->err_fd >= 0)
                p[n++] = (struct pollfd) { .fd = c->err_fd, .events = POLLIN };
        if (!c->exited && c->pidfd >= 0)
                p[n++] = (struct pollfd) { .fd = c->pidfd, .events = POLLIN };
        if (n > 0)
                (void) poll(p, (nfds_t) n, timeout_ms);
        drain(&c->out_fd, &c->out);
        drain(&c->err_fd, &c->err);
        reap(c);
}

bool child_wait_output(Child *c, const char *needle, bool from_stderr, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;

        for (;;) {
                const StrBuf *sb = from_stderr ? &c->err : &c->out;
                if (strstr(sb_str(sb), needle))
                        return true;
                /* Exited and every writer gone (a grandchild may still hold
                 * the pipes, e.g. after the jailer's --new-pid-ns): nothing
                 * more can come. */
                if (c->exited && c->out_fd < 0 && c->err_fd < 0)
                        return false;
                uint64_t now = mono_ms();
                if (now >= deadline) {
                        /* One last look without waiting. */
                        drain(&c->out_fd, &c->out);
                        drain(&c->err_fd, &c->err);
                        return strstr(sb_str(from_stderr ? &c->err : &c->out), needle) != NULL;
                }
                wait_some(c, (int) (deadline - now));
        }
}

void child_poll(Child *c) {
        drain(&c->out_fd, &c->out);
        drain(&c->err_fd, &c->err);
        reap(c);
}

bool child_wait_exit(Child *c, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;

        while (!c->exited) {
                uint64_t now = mono_ms();
                if (now >= deadline)
                        return false;
                wait_some(c, (int) (deadline - now));
        }
        drain(&c->out_fd, &c->out);
        drain(&c->err_fd, &c->err);
        return true;
}

void child_done(Child *c) {
        if (c->pid > 0 && !c->exited) {
                kill(c->pid, SIGKILL);
                (void) waitpid(c->pid, &c->status, 0);
                c->exited = true;
        }
        if (c->pid > 0)
                track_child(c->pid, false);
        if (c->out_fd >= 0)
                close(c->out_fd);
        if (c->err_fd >= 0)
                close(c->err_fd);
        if (c->in_fd >= 0)
                close(c->in_fd);
        if (c->pidfd >= 0)
                close(c->pidfd);
        c->out_fd = c->err_fd = c->in_fd = c->pidfd = -1;
        sb_free(&c->out);
        sb_free(&c->err);
}

bool child_exited_with(const Child *c, int code) {
        return c->exited && WIFEXITED(c->status) && WEXITSTATUS(c->status) == code;
}

bool child_killed_by(const Child *c, int sig) {
        return c->exited && WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig;
}

/* In the environment, not a variable: criterion's workers are this
 * program exec'd anew (BoxFort), main() does not run in them. */
#define TEMP_BASE_ENV "DOUBLES_TEST_TEMP_BASE"

void set_temp_dir_base(const char *dir) {
        if (setenv(TEMP_BASE_ENV, dir, 1) < 0)
                abort();
}

char *make_temp_dir(const char *prefix) {
        const char *base = getenv(TEMP_BASE_ENV) ?: "/tmp";
        char *p = NULL;

        if (asprintf(&p, "%s/%s-XXXXXX", base, prefix) < 0)
                abort();
        if (!mkdtemp(p) || chmod(p, 0755) < 0) {
                free(p);
                return NULL;
        }
        return p;
}

int mkdir_p(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *c = p + 1;; c++) {
                if (*c != '/' && *c != 0)
                        continue;
                char saved = *c;
                *c = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return -errno;
                *c = saved;
                if (saved == 0)
                        return 0;
        }
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) st;
        (void) ftw;
        if (type == FTW_DP)
                return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
        return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int remove_tree(const char *path) {
        if (!path)
                return 0;
        /* FTW_PHYS: never follow symlinks; FTW_MOUNT: stay on this filesystem. */
        if (nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

int write_file(const char *path, const char *content, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0)
                return -errno;
        size_t len = strlen(content);
        ssize_t n = write(fd, content, len);
        int r = n == (ssize_t) len ? 0 : -EIO;
        if (fchmod(fd, mode) < 0)
                r = -errno;
        close(fd);
        return r;
}

char *read_file(const char *path) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        StrBuf sb = {};
        char buf[4096];

        if (fd < 0)
                return NULL;
        for (;;) {
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n <= 0)
                        break;
                sb_append_n(&sb, buf, (size_t) n);
        }
        close(fd);
        if (!sb.s)
                sb_append(&sb, "");
        return sb.s;
}

static int connect_sun(const char *sun_path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(sun_path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, sun_path, strlen(sun_path));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

int unix_connect(const char *path) {
        return connect_sun(path);
}

int unix_connect_via_opath(const char *path) {
        char proc[64];
        /* O_PATH|O_NOFOLLOW pins the socket inode itself; connect(2) to the
         * magic link /proc/self/fd/N reaches it whatever the path length. */
        int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (pfd < 0)
                return -errno;
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        int fd = connect_sun(proc);
        close(pfd);
        return fd;
}

int unix_connect_via_opath_wait(const char *path, int timeout_ms) {
        uint64_t deadline = mono_ms() + (uint64_t) timeout_ms;
        long delay_ms = 1;

        for (;;) {
                int fd = unix_connect_via_opath(path);
                if (fd >= 0 || (fd != -ENOENT && fd != -ECONNREFUSED) || mono_ms() >= deadline)
                        return fd;
                struct timespec ts = { .tv_nsec = delay_ms * 1000000L };
                nanosleep(&ts, NULL);
                delay_ms = MIN(delay_ms * 2, 50L);
        }
}

static int read_more(int fd, StrBuf *sb) {
        char buf[8192];
        struct pollfd p = { .fd = fd, .events = POLLIN };

        int r = poll(&p, 1, TEST_TIMEOUT_MS);
        if (r <= 0)
                return r == 0 ? -ETIMEDOUT : -errno;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0)
                return -errno;
        if (n == 0)
                return -ECONNRESET;
        sb_append_n(sb, buf, (size_t) n);
        return 0;
}

int http_request(int fd, const char *method, const char *uri, const char *body, int *ret_status,
                 char **ret_body) {
        _cleanup_sb_ StrBuf req = {}, resp = {};

        sb_appendf(&req, "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n", method, uri);
        if (body)
                sb_appendf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
        else
                sb_append(&req, "\r\n");
        if (send(fd, req.s, req.len, MSG_NOSIGNAL) != (ssize_t) req.len)
                return -errno;

        char *head_end;
        while (!(head_end = strstr(sb_str(&resp), "\r\n\r\n"))) {
                int r = read_more(fd, &resp);
                if (r < 0)
                        return r;
        }
        size_t head_len = (size_t) (head_end - resp.s) + 4;
        int status = 0;
        if (sscanf(resp.s, "HTTP/1.1 %d", &status) != 1)
                return -EBADMSG;
        size_t content_length = 0;
        const char *cl = strcasestr(resp.s, "\r\nContent-Length:");
        if (cl && cl < head_end)
                content_length = strtoul(cl + 17, NULL, 10);
        while (resp.len < head_len + content_length) {
                int r = read_more(fd, &resp);
                if (r < 0)
                        return r;
        }
        *ret_status = status;
        if (ret_body)
                *ret_body = strndup(resp.s + head_len, content_length);
        return 0;
}

char *find_cgroup2_mount(void) {
        FILE *f = fopen("/proc/self/mountinfo", "re");
        char *line = NULL, *result = NULL;
        size_t n = 0;

        if (!f)
                return NULL;
        while (!result && getline(&line, &n, f) > 0) {
                /* ... mount-point ... - fstype source options */
                char *sep = strstr(line, " - ");
                if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
                        continue;
                char *s = line;
                for (int i = 0; i < 4 && s; i++) {
                        s = strchr(s, ' ');
                        if (s)
                                s++;
                }
                if (s)
                        result = strndup(s, strcspn(s, " "));
        }
        free(line);
        fclose(f);
        return result;
}

char *make_vm_config(const char *kernel, const char *boot_args, const char *drive, bool drive_ro,
                     const char *extra_top) {
        StrBuf sb = {};

        sb_append(&sb, "{\n  \"boot-source\": {\"kernel_image_path\": ");
        json_append_string(&sb, kernel);
        if (boot_args) {
                sb_append(&sb, ", \"boot_args\": ");
                json_append_string(&sb, boot_args);
        }
        sb_append(&sb, "},\n  \"drives\": [");
        if (drive) {
                sb_append(&sb, "{\"drive_id\": \"root\", \"path_on_host\": ");
                json_append_string(&sb, drive);
                sb_appendf(&sb, ", \"is_root_device\": true, \"is_read_only\": %s}", drive_ro ? "true" : "false");
        }
        sb_append(&sb, "],\n  \"machine-config\": {\"vcpu_count\": 2, \"mem_size_mib\": 256}");
        if (extra_top)
                sb_append(&sb, extra_top);
        sb_append(&sb, "\n}\n");
        return sb.s;
}
