/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl console ID: the VM's serial console, interactively. Input goes
 * to the console FIFO that microvm-launch put on firecracker's stdin
 * (<run_dir>/<id>/console.in); output is followed from the journal, where
 * every console line goes whether or not anybody is attached. Nothing
 * keeps running when nobody is attached. The terminal is put into raw mode
 * and always restored; Ctrl-] detaches (as in machinectl login).
 *
 * Who may attach is decided by the FIFO's owner and mode, which
 * microvm-stage sets (0600 root:root, or 0620 root:<console_group>): the
 * kernel refuses an open for writing by anyone else. We check the same
 * before opening, to say why. */

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "log.h"
#include "microvmctl.h"
#include "names.h"
#include "safe-fs.h"

#define DETACH_KEY 0x1d         /* Ctrl-] */

static struct termios saved_termios;
static bool termios_saved = false;

static void terminal_restore(void) {
        if (termios_saved) {
                (void) tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
                termios_saved = false;
        }
}

static int terminal_raw(void) {
        struct termios raw;

        if (!isatty(STDIN_FILENO))
                return 0;
        if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
                return -errno;
        raw = saved_termios;
        cfmakeraw(&raw);
        /* Keep output processing: our lines end in \n. */
        raw.c_oflag = saved_termios.c_oflag;
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0)
                return -errno;
        termios_saved = true;
        atexit(terminal_restore);
        return 1;
}

static bool in_group(gid_t gid) {
        gid_t groups[256];
        int n;

        if (getegid() == gid)
                return true;
        n = getgroups(ELEMENTSOF(groups), groups);
        for (int i = 0; i < n; i++)
                if (groups[i] == gid)
                        return true;
        return false;
}

/* The FIFO, opened for writing, after saying why not when we may not. */
static int open_console(const HostConfig *host, const char *id, int *ret_fd) {
        _cleanup_close_ int run_fd = -EBADF, path_fd = -EBADF, fd = -EBADF;
        _cleanup_free_ char *error = NULL, *rel = NULL;
        struct stat st;
        int r;

        if (asprintf(&rel, "%s/" RUN_CONSOLE_FIFO, id) < 0)
                return log_oom();
        if (geteuid() == 0)
                r = safe_root_open(host->run_dir, 0, 0, &run_fd, &error);
        else {
                /* A console_group member may pass through the run dir (0711)
                 * but not read it: an O_PATH fd. The FIFO below is checked
                 * to be root's either way, and the kernel checks our right
                 * to write it. */
                run_fd = open(host->run_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
                r = run_fd < 0 ? -errno : 0;
        }
        if (r == -EACCES && geteuid() != 0)
                return log_error_errno(r, "VM %s: %s is not reachable for you: only root%s%s may attach (console_group in %s).",
                                       id, host->run_dir, host->console_group ? " and members of group " : "",
                                       strempty(host->console_group), HOST_CONFIG_PATH);
        if (r < 0)
                return log_error_errno(r, "VM %s: cannot open %s: %s", id, host->run_dir, error ?: strerror(-r));
        r = safe_open_at(run_fd, rel, O_PATH, S_IFIFO, &path_fd);
        if (r == -ENOENT)
                return log_error_errno(r, "VM %s is not running: no console FIFO %s/%s (start it with microvmctl start %s).",
                                       id, host->run_dir, rel, id);
        if (r == -EACCES && geteuid() != 0)
                return log_error_errno(r, "VM %s: %s/%s is not reachable for you: only root%s%s may attach (console_group in %s).",
                                       id, host->run_dir, id, host->console_group ? " and members of group " : "",
                                       strempty(host->console_group), HOST_CONFIG_PATH);
        if (r < 0)
                return log_error_errno(r, "VM %s: cannot open its console FIFO %s/%s: %m", id, host->run_dir, rel);
        if (fstat(path_fd, &st) < 0)
                return log_error_errno(errno, "VM %s: cannot stat %s/%s: %m", id, host->run_dir, rel);
        if (st.st_uid != 0 || (st.st_mode & 0002))
                return log_error_errno(EPERM, "VM %s: %s/%s is not root's or is world-writable (owner %u, mode %04o): refusing to use it.",
                                       id, host->run_dir, rel, (unsigned) st.st_uid, (unsigned) (st.st_mode & 07777));
        if (geteuid() != 0 && !((st.st_mode & 0020) && in_group(st.st_gid))) {
                struct group *g = getgrgid(st.st_gid);
                return log_error_errno(EACCES, "VM %s: only root%s%s may attach to its console (%s/%s is mode %04o, group %s).",
                                       id, (st.st_mode & 0020) ? " and members of group " : "",
                                       (st.st_mode & 0020) && g ? g->gr_name : "", host->run_dir, rel,
                                       (unsigned) (st.st_mode & 07777), g ? g->gr_name : "?");
        }
        r = safe_open_at(run_fd, rel, O_WRONLY | O_NONBLOCK, S_IFIFO, &fd);
        if (r == -ENXIO)
                return log_error_errno(r, "VM %s is not running: nobody reads its console FIFO.", id);
        if (r < 0)
                return log_error_errno(r, "VM %s: cannot open its console FIFO %s/%s for writing: %m", id,
                                       host->run_dir, rel);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int forward_input(int fifo_fd, bool *ret_detach) {
        char buf[256];
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);

        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0) {
                *ret_detach = true; /* end of input */
                return 0;
        }
        char *detach = memchr(buf, DETACH_KEY, (size_t) n);
        if (detach) {
                n = detach - buf;
                *ret_detach = true;
        }
        /* The FIFO holds 64 KiB and firecracker drains it: a short wait
         * at most. A VM that stopped has no reader: EPIPE ends it. */
        for (ssize_t done = 0; done < n;) {
                ssize_t k = write(fifo_fd, buf + done, (size_t) (n - done));
                if (k < 0 && errno == EAGAIN) {
                        struct pollfd p = { .fd = fifo_fd, .events = POLLOUT };
                        (void) poll(&p, 1, 1000);
                        continue;
                }
                if (k < 0)
                        return -errno;
                done += k;
        }
        return 0;
}

int verb_console(int argc, char **argv) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_close_ int fifo_fd = -EBADF;
        const char *id = argv[0];
        int r;

        r = ctl_check_id(id);
        if (r < 0)
                return r;
        r = ctl_load_host(&host);
        if (r < 0)
                return r;
        r = open_console(host, id, &fifo_fd);
        if (r < 0)
                return r;
        /* A write into a FIFO nobody reads any more must not kill us. */
        signal(SIGPIPE, SIG_IGN);

        bool tty = isatty(STDIN_FILENO);
        if (tty)
                fprintf(stderr, "Connected to the console of VM %s. Press Ctrl-] to detach.\n", id);
        r = terminal_raw();
        if (r < 0)
                return log_error_errno(r, "Cannot put the terminal into raw mode: %m");

        r = journal_follow_with_input(id, 10, fifo_fd, forward_input);
        terminal_restore();
        if (tty)
                fprintf(stderr, "\nDetached from the console of VM %s.\n", id);
        return r;
}
