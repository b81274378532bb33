/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for the doubles' own tests: run a program with its output captured
 * and wait on events (output seen, exit) with a deadline — never a fixed
 * sleep; temp trees; a tiny HTTP/1.1 client over AF_UNIX. */

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "doubles-util.h"

/* Deadline for anything the doubles do; they are fast, this only bounds a hang. */
#define TEST_TIMEOUT_MS 20000

typedef enum StdinMode {
        STDIN_DEVNULL,
        STDIN_PIPE,     /* a pipe is a FIFO: firecracker reads it as serial input */
        STDIN_FILE,     /* a regular file (stdin_file) */
} StdinMode;

typedef struct SpawnOptions {
        bool drop_privileges;   /* setgroups(0), setgid(gid), setuid(uid) before exec */
        uid_t uid;
        gid_t gid;
        StdinMode stdin_mode;
        const char *stdin_file;
        const char *cwd;
        /* Before exec, the child moves itself into this cgroup (cgroup.procs path). */
        const char *cgroup_procs;
        /* Before exec, the child leaves an fd without O_CLOEXEC at this number
         * (> 2), to check that the jailer closes inherited fds. */
        int leak_fd;
        /* Extra environment (NULL-terminated), e.g. to check it is cleared. */
        char *const *env;
} SpawnOptions;

typedef struct Child {
        pid_t pid;
        int pidfd;
        int out_fd;
        int err_fd;
        int in_fd;
        StrBuf out;
        StrBuf err;
        bool exited;
        int status;     /* waitpid() status */
} Child;

int child_spawn(Child *c, char *const *argv, const SpawnOptions *o);
/* Waits until needle appears in the child's stdout (or stderr with
 * from_stderr), the child exits, or timeout_ms passes. */
bool child_wait_output(Child *c, const char *needle, bool from_stderr, int timeout_ms);
/* Reads what output is there now and notices an exit, without waiting. */
void child_poll(Child *c);
/* Waits for the exit (reaps it); false on timeout. */
bool child_wait_exit(Child *c, int timeout_ms);
/* SIGKILL if still running, reap, close everything. */
void child_done(Child *c);
/* SIGKILL and reap every child spawned and not yet child_done()'d: a failed
 * assertion leaves the test function early, the suite's teardown calls this. */
void children_kill_all(void);
bool child_exited_with(const Child *c, int code);
bool child_killed_by(const Child *c, int sig);

/* mkdtemp under /tmp (or the set_temp_dir_base() directory), mode 0755 so
 * an unprivileged VM uid can traverse it. */
char *make_temp_dir(const char *prefix);
void set_temp_dir_base(const char *dir);
/* mkdir -p */
int mkdir_p(const char *path, mode_t mode);
/* rm -rf that never crosses a mount point and never follows symlinks. */
int remove_tree(const char *path);
int write_file(const char *path, const char *content, mode_t mode);
char *read_file(const char *path);

/* HTTP/1.1 over AF_UNIX. A path longer than sun_path is reached through an
 * O_PATH|O_NOFOLLOW fd of the socket inode and "/proc/self/fd/N". */
int unix_connect(const char *path);
int unix_connect_via_opath(const char *path);
/* For a socket that is about to appear: retries ENOENT (not bound yet) and
 * ECONNREFUSED (bound, not listening yet) with a short back-off until the
 * deadline. Used where no output announces readiness (--daemonize). */
int unix_connect_via_opath_wait(const char *path, int timeout_ms);
/* Sends one request, reads one response (Content-Length framed; a 204 has
 * no body). The connection stays open (the server keeps it alive). */
int http_request(int fd, const char *method, const char *uri, const char *body, int *ret_status,
                 char **ret_body);

/* The cgroup2 mount from /proc/self/mountinfo (on a hybrid host
 * /sys/fs/cgroup/unified), or NULL. */
char *find_cgroup2_mount(void);

/* A config file for the firecracker double; extra_top is spliced into the
 * top-level object (", \"vsock\": {...}") and may be NULL. */
char *make_vm_config(const char *kernel, const char *boot_args, const char *drive, bool drive_ro,
                     const char *extra_top);
