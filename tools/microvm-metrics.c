/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-metrics: answers one Prometheus scrape and exits.
 *
 * Run by microvm-metrics@.service for each connection that
 * microvm-metrics.socket accepts (Accept=yes): the connection is standard
 * input and output. It reads one HTTP request, and for GET /metrics collects
 * the figures (lib/vm/vm-metrics.c: units over the bus, cgroups, firecracker's
 * metrics files after a FlushMetrics bounded by --flush-timeout), answers in
 * the text exposition format 0.0.4 and exits. Between scrapes nothing of ours
 * runs. --print writes the exposition to standard output instead (tests,
 * benchmarks, a look by hand). */
#include <getopt.h>
#include <poll.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mount-sandbox.h"
#include "manager.h"
#include "parse-util.h"
#include "sd-lib.h"
#include "seccomp-util.h"
#include "test-hook.h"
#include "tool.h"
#include "util.h"
#include "vm-metrics.h"
#include "vm-metrics-fc.h"

#define REQUEST_MAX 8192

static bool arg_print = false;
static usec_t arg_flush_timeout = 250 * USEC_PER_MSEC;
static usec_t arg_timeout = 5 * USEC_PER_SEC;

static void help(void) {
        printf("microvm-metrics [OPTIONS]\n\n"
               "Answers one HTTP GET /metrics on standard input/output (a connection accepted by\n"
               "microvm-metrics.socket) with the VMs' figures in Prometheus' text format, and exits.\n\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "     --print               Write the figures to standard output, no HTTP\n"
               "     --flush-timeout=TIME  How long to wait for firecracker's FlushMetrics (default 250ms;\n"
               "                           0: do not ask)\n"
               "     --timeout=TIME        The whole scrape at most (default 5s)\n\n"
               "See microvm-metrics.socket(8).\n");
}

/* The request head, until its empty line, within the deadline. */
static int read_request(int fd, usec_t deadline, char *buf, size_t size, size_t *ret_len) {
        size_t got = 0;

        while (got < size - 1) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (now >= deadline)
                        return -ETIMEDOUT;
                int r = poll(&p, 1, (int) ((deadline - now) / USEC_PER_MSEC + 1));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        continue;
                n = read(fd, buf + got, size - 1 - got);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
                buf[got] = '\0';
                if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
                        break;
        }
        buf[got] = '\0';
        *ret_len = got;
        return 0;
}

static int respond(int fd, int status, const char *reason, const char *type, const char *body, size_t len,
                   bool head_only) {
        _cleanup_free_ char *head = NULL;
        int n = asprintf(&head,
                         "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n"
                         "Cache-Control: no-store\r\n\r\n",
                         status, reason, type, len);
        if (n < 0)
                return -ENOMEM;
        int r = loop_write(fd, head, (size_t) n);
        if (r >= 0 && !head_only && len > 0)
                r = loop_write(fd, body, len);
        return r;
}

/* Before any input is read: as root, a read-only file system but for the
 * run directory (the running sums) and the jails (the metrics files' read
 * part is punched out), the way mount-sandbox.h says, then no more mounts,
 * namespaces, execs. What is written under a scrape is then these, and
 * nothing else, whatever the untrusted metrics files or the request make of
 * the parsers. Answering a connection it also hides the home and temporary
 * directories, as ProtectHome=yes and PrivateTmp=yes would. This is instead
 * of systemd's ProtectSystem=, ProtectKernelTunables=, ... in the unit,
 * whose mounts cost 15-30 ms per scrape on a nested-virtualisation host
 * (this: well under one). Not as root (--print by a user): nothing of
 * root's to protect, and no right to make mounts. */
static int confine(const HostConfig *host) {
        const char *const writable[] = { host->run_dir, host->chroot_base, NULL };
        static const char *const hidden[] = { "/home", "/root", "/run/user", "/tmp", "/var/tmp", NULL };
        _cleanup_free_ char *error = NULL;
        int r;

        if (geteuid() == 0) {
                r = mount_sandbox_read_only(writable, arg_print ? NULL : hidden, &error);
                if (r < 0)
                        return log_error_errno(r, "Failed to make the file system read-only: %s", error ?: strerror(-r));
        }
        /* Also what the unit would otherwise ask of systemd (its
         * RestrictAddressFamilies=AF_UNIX, RestrictNamespaces=,
         * LockPersonality=, MemoryDenyWriteExecute=, RestrictRealtime=,
         * RestrictSUIDSGID=), in this one filter: systemd would compile a
         * filter per option in every scrape's process, and its
         * RestrictSUIDSGID= refuses openat2(), which safe-fs.h then makes
         * up for with a walk of several calls per path component. */
        r = seccomp_install_denylist_restricted(seccomp_deny_sandboxed, &seccomp_restrict_all, SECCOMP_VIOLATION_TRAP);
        if (r < 0 && r != -EOPNOTSUPP)
                return log_error_errno(r, "Failed to install the seccomp filter: %m");
        return 0;
}

/* The manager's connection. As root, straight to PID 1 (as systemctl
 * does): the bus daemon's hop would double the cost of the two calls per
 * VM. NULL (and a warning) without one. */
static sd_bus *open_manager(void) {
        _cleanup_free_ char *error = NULL;
        sd_bus *bus = NULL;
        int r;

        r = sd_lib_load(&error);
        if (r >= 0 && manager_open_direct(&bus) < 0)
                r = sym_sd_bus_open_system(&bus);
        if (r < 0) {
                log_warning("No service manager to ask (%s): the VMs' unit figures are left out.",
                            error ?: strerror(-r));
                return NULL;
        }
        return bus;
}

/* Firecracker's half of the scrape (vm-metrics-fc.h) is begun first: the
 * VMMs' FlushMetrics is what a scrape waits for longest. The manager's
 * connection is opened while they answer. */
static int collect(const HostConfig *host, usec_t deadline, char **ret, size_t *ret_len) {
        _cleanup_(host_metrics_done) HostMetrics h = {};
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_free_ char *error = NULL, *out = NULL;
        FcScrape *fc = NULL;
        size_t len = 0;
        FILE *f;
        int r;

        MetricsOptions opts = {
                .flush_timeout = arg_flush_timeout,
                .deadline = deadline,
                .write_sums = geteuid() == 0,
        };
        /* On failure (no memory) vm_metrics_collect() tries once more. */
        (void) fc_scrape_begin(host, NULL, 0, &opts, &fc);
        bus = open_manager();
        r = vm_metrics_collect(host, bus, NULL, 0, &opts, fc, &h, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to collect the VMs' figures: %s", error ?: strerror(-r));
        f = open_memstream(&out, &len);
        if (!f)
                return log_oom();
        /* Only this thread writes it: no lock per character. */
        (void) __fsetlocking(f, FSETLOCKING_BYCALLER);
        r = metrics_render_prometheus(&h, f);
        if (fclose(f) != 0 || r < 0)
                return log_oom();
        *ret = TAKE_PTR(out);
        *ret_len = len;
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_PRINT, ARG_FLUSH_TIMEOUT, ARG_TIMEOUT };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "print", no_argument, NULL, ARG_PRINT },
                { "flush-timeout", required_argument, NULL, ARG_FLUSH_TIMEOUT },
                { "timeout", required_argument, NULL, ARG_TIMEOUT },
                {}
        };
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_free_ char *body = NULL;
        char req[REQUEST_MAX];
        size_t req_len = 0, body_len = 0;
        int c, r;

        log_set_program_name("microvm-metrics");
        log_parse_environment(false);
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("microvm-metrics %s\n", PROJECT_VERSION);
                        return EXIT_SUCCESS;
                case ARG_PRINT:
                        arg_print = true;
                        break;
                case ARG_FLUSH_TIMEOUT:
                case ARG_TIMEOUT:
                        if (parse_timespan(optarg, c == ARG_TIMEOUT ? &arg_timeout : &arg_flush_timeout) < 0) {
                                log_error("Invalid time span for --%s: %s", c == ARG_TIMEOUT ? "timeout" : "flush-timeout",
                                          optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                log_error("Unexpected argument: %s", argv[optind]);
                return EXIT_FAILURE;
        }
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + arg_timeout;

        r = tool_load_host_config(&host);
        if (r < 0) {
                if (!arg_print)
                        (void) respond(STDOUT_FILENO, 500, "Internal Server Error", "text/plain", "host config\n", 12, false);
                return tool_exit(r);
        }

        r = confine(host);
        if (r < 0) {
                if (!arg_print)
                        (void) respond(STDOUT_FILENO, 500, "Internal Server Error", "text/plain", "sandbox\n", 8, false);
                return tool_exit(r);
        }
        test_hook("metrics-confined");

        if (arg_print) {
                r = collect(host, deadline, &body, &body_len);
                if (r < 0)
                        return tool_exit(r);
                return tool_exit(loop_write(STDOUT_FILENO, body, body_len));
        }

        r = read_request(STDIN_FILENO, deadline, req, sizeof req, &req_len);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to read the HTTP request: %m"));
        /* "METHOD TARGET HTTP/1.x": only GET/HEAD of /metrics (a query
         * string is allowed and ignored). */
        char method[8] = "", target[256] = "";
        if (sscanf(req, "%7s %255s HTTP/1.", method, target) != 2) {
                (void) respond(STDOUT_FILENO, 400, "Bad Request", "text/plain", "bad request\n", 12, false);
                return EXIT_FAILURE;
        }
        bool head = streq(method, "HEAD");
        if (!streq(method, "GET") && !head) {
                (void) respond(STDOUT_FILENO, 405, "Method Not Allowed", "text/plain", "GET /metrics\n", 13, false);
                return EXIT_SUCCESS;
        }
        target[strcspn(target, "?")] = '\0';
        if (!streq(target, "/metrics")) {
                (void) respond(STDOUT_FILENO, 404, "Not Found", "text/plain", "GET /metrics\n", 13, head);
                return EXIT_SUCCESS;
        }
        r = collect(host, deadline, &body, &body_len);
        if (r < 0) {
                (void) respond(STDOUT_FILENO, 500, "Internal Server Error", "text/plain", "collection failed\n", 18, head);
                return tool_exit(r);
        }
        r = respond(STDOUT_FILENO, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, body_len, head);
        if (r < 0)
                return tool_exit(log_error_errno(r, "Failed to send the answer: %m"));
        (void) shutdown(STDOUT_FILENO, SHUT_WR);
        return EXIT_SUCCESS;
}
