/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* firecracker — a faithful test double of the Firecracker VMM (v1.16 era),
 * for machines without KVM. Built only with -Dtests=true, installed nowhere,
 * and linked statically: the jailer copies it into an empty jail with no
 * libraries. Spec: ../../../shared/JAILER-CONTRACT.md; behaviour and messages
 * follow firecracker src/firecracker/src/{main.rs,api_server*},
 * src/vmm/src/{resources.rs,vmm_config,logger,signal_handler.rs}.
 *
 * What it does, in the real one's order:
 *   - parses argv with the ArgParser rules (bad arguments: exit 153);
 *     --id must be a valid instance id (else it panics: SIGABRT);
 *   - logs to stdout in firecracker's format
 *     "<UTC time> [<id>:<thread>] <message>";
 *   - installs the real signal handlers: SIGHUP → exit 156, SIGSYS → 148,
 *     SIGBUS 149, SIGSEGV 150, SIGXFSZ 151, SIGXCPU 154, SIGILL 157, SIGPIPE
 *     logged and ignored; *no* SIGTERM handler: SIGTERM kills it at once;
 *   - binds the API socket (--api-sock, default /run/firecracker.socket)
 *     without unlinking: an existing file is fatal (exit 1);
 *   - reads --config-file (unreadable: panic, SIGABRT) and checks it like
 *     serde would (same messages): kebab-case top-level keys, unknown
 *     top-level keys ignored, `boot-source` and `drives` required, every
 *     sub-object rejects unknown fields, types and ranges checked;
 *   - as the uid it runs as, opens the kernel, initrd and every drive
 *     (O_RDONLY or O_RDWR per is_read_only), every tap (/dev/net/tun +
 *     TUNSETIFF IFF_TAP|IFF_NO_PI|IFF_VNET_HDR), binds the vsock uds_path,
 *     and checks it may use /dev/kvm; any failure: exit 1, naming the file;
 *   - builds the kernel command line as firecracker does: linux-loader's
 *     Cmdline::try_from() of boot_args (split at the first " -- " outside
 *     quotes, size checked, no character checks), then pci=off, the root
 *     drive's root=/dev/vda or root=PARTUUID=<partuuid> and rw/ro, one
 *     virtio_mmio.device= per device, all before the " -- ";
 *   - "boots": stdout goes O_NONBLOCK (output is dropped when the reader
 *     stalls) and, if the kernel's parameters (before the kernel's own
 *     "--", which may differ from linux-loader's) have console=ttyS0, the
 *     guest's serial console prints kernel-like lines: the version,
 *     "Command line: ...", one line per drive ("virtio_blk virtio0: [vda]
 *     N 512-byte logical blocks") and per NIC, then a login prompt.
 *     Without console=ttyS0 (e.g. no boot_args: the default disables the
 *     UART) the guest prints nothing. The guest kernel mounts the last
 *     root= of its parameters: none, /dev/vda holding a partition table
 *     (MBR or GPT), or a PARTUUID no drive has is a kernel panic (panic=N:
 *     reboot after N s, firecracker exits 0; else the guest hangs);
 *   - reads stdin as serial input only if it is a tty or a FIFO; the guest
 *     echoes each line; a line "reboot" or "poweroff" is obeyed;
 *   - serves the API over HTTP/1.1 (keep-alive, like micro_http: it never
 *     closes a connection after a response; clients must use Content-Length
 *     or the absence of a body on 204):
 *       GET /                → 200 {"id","state":"Running","vmm_version","app_name"}
 *       GET /version         → 200 {"firecracker_version": ...}
 *       GET /machine-config  → 200 the machine config
 *       PUT /actions SendCtrlAltDel → 204; the guest shuts down and
 *                                     reboots: firecracker exits 0
 *       PUT /actions FlushMetrics   → 204
 *       PUT /actions InstanceStart  → 400, not supported after boot
 *       unknown method/path  → 400 {"fault_message":"Invalid request method and/or path: ..."}
 *   - a guest reboot ends the process with exit 0; a guest poweroff halts the
 *     guest but the VMM keeps running (x86 behaviour).
 *
 * Test knobs: the guest kernel command line (boot_args) is free-form and a
 * real kernel ignores parameters it does not know, so the double reads its
 * knobs from there (the config file cannot carry them: sub-objects reject
 * unknown fields; the environment cannot: the jailer clears it). An unknown
 * "fcdouble." parameter fails the boot (exit 1), so a typo is loud.
 *   fcdouble.crash_after_ms=N    N ms after boot the VMM dies by a signal
 *   fcdouble.crash_signal=S      kill (SIGKILL, default) or abort (SIGABRT)
 *   fcdouble.reboot_after_ms=N   the guest reboots by itself: exit 0
 *   fcdouble.poweroff_after_ms=N the guest powers off; the VMM keeps running
 *   fcdouble.ignore_cad=1        the guest ignores Ctrl-Alt-Del (no systemd)
 *   fcdouble.cad_delay_ms=N      Ctrl-Alt-Del to exit (guest shutdown), default 200
 *   fcdouble.boot_ms=N           boot to login prompt, default 0
 *   fcdouble.hang=guest          the guest stalls early in boot: no prompt,
 *                                Ctrl-Alt-Del and serial input ignored
 *   fcdouble.hang=vmm            the VMM wedges after boot: the API socket
 *                                accepts connections that are never answered
 *   fcdouble.flood=N|forever     the guest prints N (or endless) lines at full speed;
 *                                lines the reader cannot take are dropped, as with
 *                                the real console; after N lines a report line
 *                                "fcdouble: flood of N lines done, D dropped ..."
 *                                is printed once stdout is writable again
 *   fcdouble.hang_vmm_after_ms=N as hang=vmm, but N ms after boot (a start's
 *                                readiness check is answered first)
 *   fcdouble.traffic=N           each drive and NIC moves N bytes a second: the
 *                                metrics lines' block and net counters (and vCPU
 *                                exits) grow with time (firecracker-metrics.c)
 *   fcdouble.metrics_period_ms=N the periodic metrics line every N ms (default
 *                                60000, firecracker's WRITE_METRICS_PERIOD_MS)
 *   fcdouble.long_line=N         the guest prints one line of N bytes with no
 *                                newline, at full speed (bytes the reader cannot
 *                                take are dropped), then, once stdout is
 *                                writable, a newline and "fcdouble: long line of
 *                                N bytes done, D dropped ..."
 *   fcdouble.tick_ms=N           once booted, the guest prints "fcdouble: tick K
 *                                (boot token T)" every N ms; K lives in guest memory
 *   fcdouble.fail_create=1       PUT /snapshot/create fails half way through the
 *                                memory file (ENOSPC), answered 400
 *   fcdouble.fail_load=1         PUT /snapshot/load of a snapshot taken with this
 *                                knob fails (400, then the VMM exits 1)
 *   fcdouble.create_ms=N         PUT /snapshot/create takes N ms longer
 * Every boot prints "fcdouble: boot token T" (T random, in guest memory).
 *
 * Snapshots (firecracker-snapshot.[ch]): PATCH /vm Paused/Resumed, PUT
 * /snapshot/create (paused, post-boot only; Full: the whole memory is
 * written), PUT /snapshot/load (only in a VMM started without
 * --config-file, which waits "Not started"; mem_backend File or
 * mem_file_path, resume_vm, network_overrides, vsock_override). A restored
 * guest prints "fcdouble: restored from a snapshot, boot token T, K ticks
 * so far" and goes on ticking from K.
 *
 * Where it simplifies (also noted at each spot): no KVM, no guest memory, no
 * vCPU threads, no seccomp (exit 148 never happens), metrics lines carry
 * a subset of the real fields (firecracker-metrics.c), /dev/kvm is checked with
 * access(2) rather than opened; balloon, cpu-config, mmds-config, entropy,
 * pmem, memory-hotplug, vhost-user drives, Diff snapshots, Uffd memory
 * backends, configuring a VM over the API (InstanceStart), --metadata,
 * --seccomp-filter, --describe-snapshot and --snapshot-version are refused
 * as unsupported; PUT/PATCH requests other than /actions, /vm and /snapshot are answered 400
 * without looking at their body; a struct given as a JSON array (which serde
 * accepts) is refused; error line/column positions approximate serde_json's;
 * Debug forms on stderr approximate Rust's.
 */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "arg-parser.h"
#include "doubles-util.h"
#include "firecracker-metrics.h"
#include "json.h"
#include "firecracker-snapshot.h"

#define FIRECRACKER_VERSION DOUBLES_FIRECRACKER_VERSION
#define DEFAULT_API_SOCK_PATH "/run/firecracker.socket"
#define DEFAULT_INSTANCE_ID "anonymous-instance"
#define HTTP_MAX_PAYLOAD_SIZE "51200"
#define DEFAULT_KERNEL_CMDLINE \
        "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce"
#define CMDLINE_MAX_SIZE 2048
#define MAX_VCPUS 32
#define MAX_CONNECTIONS 16

/* FcExitCode */
enum {
        FC_EXIT_OK = 0,
        FC_EXIT_GENERIC = 1,
        FC_EXIT_BAD_SYSCALL = 148,
        FC_EXIT_SIGBUS = 149,
        FC_EXIT_SIGSEGV = 150,
        FC_EXIT_SIGXFSZ = 151,
        FC_EXIT_BAD_CONFIGURATION = 152,
        FC_EXIT_ARG_PARSING = 153,
        FC_EXIT_SIGXCPU = 154,
        FC_EXIT_SIGHUP = 156,
        FC_EXIT_SIGILL = 157,
};

/* ---------------------------------------------------------------------------
 * logger (vmm::logger): "<time> [<instance>:<thread>[:<LEVEL>][:<file>:<line>]] <msg>\n",
 * one write(2) per line, to stdout unless a log_path was configured. Errors
 * (EAGAIN on a stalled reader) drop the line, as the real one does.
 * ------------------------------------------------------------------------- */

typedef enum Level {
        LEVEL_OFF,
        LEVEL_ERROR,
        LEVEL_WARN,
        LEVEL_INFO,
        LEVEL_DEBUG,
        LEVEL_TRACE,
} Level;

static struct {
        char instance_id[65];
        int fd;
        Level max_level;
        bool show_level;
        bool show_origin;
        char *module;
} logger = {
        .instance_id = DEFAULT_INSTANCE_ID,
        .fd = STDOUT_FILENO,
        .max_level = LEVEL_INFO,
};

static const char *level_name(Level l) {
        switch (l) {
        case LEVEL_ERROR:
                return "ERROR";
        case LEVEL_WARN:
                return "WARN";
        case LEVEL_DEBUG:
                return "DEBUG";
        case LEVEL_TRACE:
                return "TRACE";
        default:
                return "INFO";
        }
}

/* One write(2); a failure (EAGAIN from a stalled reader, EPIPE) loses the
 * data, as with the real logger and serial device. Async-signal-safe. */
static void write_or_drop(int fd, const void *buf, size_t n) {
        ssize_t r = write(fd, buf, n);
        (void) r;
}

/* Async-signal-safe decimal formatting, zero padded to width. */
static char *put_uint(char *p, uint64_t v, int width) {
        char tmp[24];
        int n = 0;
        do {
                tmp[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v > 0);
        while (n < width)
                tmp[n++] = '0';
        while (n > 0)
                *p++ = tmp[--n];
        return p;
}

static char *put_str(char *p, const char *end, const char *s) {
        while (*s && p < end)
                *p++ = *s++;
        return p;
}

/* LocalTime::now() as "YYYY-MM-DDTHH:MM:SS.nnnnnnnnn". UTC: in a jail there
 * is no /etc/localtime, so the real one prints UTC there too.
 * Async-signal-safe (the signal handlers log). */
static char *put_timestamp(char *p) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int64_t secs = ts.tv_sec, days = secs / 86400, rem = secs % 86400;
        /* civil_from_days (H. Hinnant) */
        int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
        int64_t doe = z - era * 146097;
        int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
        int64_t m = mp < 10 ? mp + 3 : mp - 9;
        y += m <= 2;

        p = put_uint(p, (uint64_t) y, 4);
        *p++ = '-';
        p = put_uint(p, (uint64_t) m, 2);
        *p++ = '-';
        p = put_uint(p, (uint64_t) d, 2);
        *p++ = 'T';
        p = put_uint(p, (uint64_t) (rem / 3600), 2);
        *p++ = ':';
        p = put_uint(p, (uint64_t) (rem / 60 % 60), 2);
        *p++ = ':';
        p = put_uint(p, (uint64_t) (rem % 60), 2);
        *p++ = '.';
        return put_uint(p, (uint64_t) ts.tv_nsec, 9);
}

static void log_write(Level level, const char *module, const char *thread, int line, const char *msg) {
        if (level > logger.max_level)
                return;
        if (logger.module && !startswith(module, logger.module))
                return;

        _cleanup_sb_ StrBuf sb = {};
        char ts[64];
        *put_timestamp(ts) = 0;
        sb_appendf(&sb, "%s [%s:%s", ts, logger.instance_id, thread);
        if (logger.show_level)
                sb_appendf(&sb, ":%s", level_name(level));
        if (logger.show_origin)
                sb_appendf(&sb, ":%s:%d", __FILE__, line);
        sb_appendf(&sb, "] %s\n", msg);
        write_or_drop(logger.fd, sb.s, sb.len);
}

_printf_(5, 6) static void log_full(Level level, const char *module, const char *thread, int line,
                                    const char *fmt, ...) {
        _cleanup_sb_ StrBuf sb = {};
        va_list ap;

        va_start(ap, fmt);
        sb_vappendf(&sb, fmt, ap);
        va_end(ap);
        log_write(level, module, thread, line, sb_str(&sb));
}

/* The module paths the real messages come from (for the logger's module filter). */
#define MOD_MAIN "firecracker"
#define MOD_API "firecracker::api_server"
#define MOD_VMM "vmm"
#define log_main(level, ...) log_full(level, MOD_MAIN, "main", __LINE__, __VA_ARGS__)
#define log_api(level, ...) log_full(level, MOD_API, "fc_api", __LINE__, __VA_ARGS__)
#define log_vmm(level, ...) log_full(level, MOD_VMM, "main", __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------------------
 * signals (vmm::signal_handler)
 * ------------------------------------------------------------------------- */

static void log_signal_safe(const char *what, int signo, int code) {
        char buf[256], *p = buf, *end = buf + sizeof(buf) - 2;

        p = put_timestamp(p);
        p = put_str(p, end, " [");
        p = put_str(p, end, logger.instance_id);
        p = put_str(p, end, ":main] ");
        p = put_str(p, end, what);
        p = put_str(p, end, " signal ");
        p = put_uint(p, (uint64_t) signo, 1);
        p = put_str(p, end, ", code ");
        if (code < 0) {
                *p++ = '-';
                p = put_uint(p, (uint64_t) -(int64_t) code, 1);
        } else
                p = put_uint(p, (uint64_t) code, 1);
        p = put_str(p, end, ".\n");
        write_or_drop(logger.fd, buf, (size_t) (p - buf));
}

_noreturn_ static void fatal_signal_handler(int signo, siginfo_t *si, void *ctx) {
        int code;
        switch (signo) {
        case SIGSYS:
                code = FC_EXIT_BAD_SYSCALL;
                break;
        case SIGBUS:
                code = FC_EXIT_SIGBUS;
                break;
        case SIGSEGV:
                code = FC_EXIT_SIGSEGV;
                break;
        case SIGXFSZ:
                code = FC_EXIT_SIGXFSZ;
                break;
        case SIGXCPU:
                code = FC_EXIT_SIGXCPU;
                break;
        case SIGHUP:
                code = FC_EXIT_SIGHUP;
                break;
        case SIGILL:
                code = FC_EXIT_SIGILL;
                break;
        default:
                code = 2; /* UnexpectedError */
        }
        log_signal_safe("Shutting down VM after intercepting", signo, si ? si->si_code : 0);
        /* A SIGSYS that is no seccomp violation (SYS_SECCOMP = 1) is an
         * UnexpectedError, like in log_sigsys_err(). */
        if (signo == SIGSYS && (!si || si->si_code != 1))
                code = 2;
        _exit(code);
}

static void sigpipe_handler(int signo, siginfo_t *si, void *ctx) {
        /* Just logged: the EPIPE is handled by whoever wrote. */
        log_signal_safe("Received", signo, si ? si->si_code : 0);
}

static void register_signal_handlers(void) {
        static const int fatal[] = { SIGSYS, SIGBUS, SIGSEGV, SIGXFSZ, SIGXCPU, SIGHUP, SIGILL };
        struct sigaction sa = { .sa_flags = SA_SIGINFO };

        sigfillset(&sa.sa_mask);
        sa.sa_sigaction = fatal_signal_handler;
        for (size_t i = 0; i < ELEMENTSOF(fatal); i++)
                (void) sigaction(fatal[i], &sa, NULL);
        sa.sa_sigaction = sigpipe_handler;
        (void) sigaction(SIGPIPE, &sa, NULL);
        /* Deliberately no SIGTERM handler: the default action kills us. */
}

/* ---------------------------------------------------------------------------
 * errors: Display and Debug built together, outermost variant first.
 * ------------------------------------------------------------------------- */

typedef struct Err {
        StrBuf display;
        StrBuf debug;
        unsigned open;
} Err;

static void err_wrap(Err *e, const char *variant, const char *display_prefix) {
        sb_append(&e->display, display_prefix);
        sb_appendf(&e->debug, "%s(", variant);
        e->open++;
}

/* A leaf variant holding one io::Error. */
static void err_io(Err *e, const char *variant, const char *display_prefix, int err) {
        sb_append(&e->display, display_prefix);
        sb_append_io_display(&e->display, err);
        sb_appendf(&e->debug, "%s(", variant);
        sb_append_io_debug(&e->debug, err);
        sb_append(&e->debug, ")");
}

/* A leaf variant holding one String. */
static void err_string(Err *e, const char *variant, const char *display_prefix, const char *s) {
        sb_appendf(&e->display, "%s%s", display_prefix, s);
        sb_appendf(&e->debug, "%s(", variant);
        sb_append_rust_str_debug(&e->debug, s);
        sb_append(&e->debug, ")");
}

/* A unit variant. */
static void err_unit(Err *e, const char *variant, const char *display) {
        sb_append(&e->display, display);
        sb_append(&e->debug, variant);
}

static bool api_enabled = true;

/* main(): error_unrestricted!("{err}"), eprintln!("Error: {err:?}"), then
 * "Firecracker exiting with error. exit_code=N" and that exit code. */
_noreturn_ static void fail_main(Err *e, int exit_code) {
        for (; e->open > 0; e->open--)
                sb_append(&e->debug, ")");
        log_main(LEVEL_ERROR, "%s", sb_str(&e->display));
        fprintf(stderr, "Error: %s\n", sb_str(&e->debug));
        log_main(LEVEL_ERROR, "Firecracker exiting with error. exit_code=%d", exit_code);
        exit(exit_code);
}

/* A panic: the panic hook logs "Firecracker panicked at <location>:\n<msg>"
 * (the custom hook replaces Rust's default stderr message), then, built with
 * panic = "abort", the process dies by SIGABRT. */
_noreturn_ static void rust_panic(const char *location, const char *msg) {
        log_main(LEVEL_ERROR, "Firecracker panicked at %s:\n%s", location, msg);
        abort();
}

/* MainError::RunWithApi(ApiServerError::BuildFromJson(...)) or the
 * --no-api equivalent, then BuildFromJsonError::<variant>. */
static void err_build_from_json(Err *e, bool parse) {
        if (api_enabled) {
                err_wrap(e, "RunWithApi", "RunWithApiError error: ");
                err_wrap(e, "BuildFromJson", "Failed to build MicroVM from Json: ");
        } else {
                err_wrap(e, "RunWithoutApiError", "RunWithoutApiError error: ");
                err_wrap(e, "BuildMicroVMFromJson", "Failed to build MicroVM from Json: ");
        }
        if (parse)
                err_wrap(e, "ParseFromJson", "Configuration for VMM from one single json failed: ");
        else
                err_wrap(e, "StartMicroVM", "Could not Start MicroVM from one single json: ");
}

_noreturn_ static void fail_unsupported(const char *what) {
        Err e = {};
        err_build_from_json(&e, true);
        err_string(&e, "Unsupported", "", what);
        sb_append(&e.display, " is not supported by the firecracker test double");
        fail_main(&e, FC_EXIT_GENERIC);
}

/* ---------------------------------------------------------------------------
 * command line (src/firecracker/src/main.rs)
 * ------------------------------------------------------------------------- */

static Argument arguments[] = {
        { .name = "api-sock", .takes_value = true, .default_value = DEFAULT_API_SOCK_PATH,
          .help = "Path to unix domain socket used by the API." },
        { .name = "boot-timer",
          .help = "Whether or not to load boot timer device for logging elapsed time since InstanceStart command." },
        { .name = "config-file", .takes_value = true,
          .help = "Path to a file that contains the microVM configuration in JSON format." },
        { .name = "describe-snapshot", .takes_value = true,
          .help = "Print the data format version of the provided snapshot state file." },
        { .name = "enable-pci", .help = "Enables PCIe support." },
        { .name = "http-api-max-payload-size", .takes_value = true, .default_value = HTTP_MAX_PAYLOAD_SIZE,
          .help = "Http API request payload max size, in bytes." },
        { .name = "id", .takes_value = true, .default_value = DEFAULT_INSTANCE_ID,
          .help = "MicroVM unique identifier." },
        { .name = "level", .takes_value = true, .help = "Set the logger level." },
        { .name = "log-path", .takes_value = true,
          .help = "Path to a fifo or a file used for configuring the logger on startup." },
        { .name = "metadata", .takes_value = true,
          .help = "Path to a file that contains metadata in JSON format to add to the mmds." },
        { .name = "metrics-path", .takes_value = true,
          .help = "Path to a fifo or a file used for configuring the metrics on startup." },
        { .name = "mmds-size-limit", .takes_value = true, .help = "Mmds data store limit, in bytes." },
        { .name = "module", .takes_value = true, .help = "Set the logger module filter." },
        { .name = "no-api", .requires = "config-file",
          .help = "Optional parameter which allows starting and using a microVM without an active API socket." },
        { .name = "no-seccomp", .forbids = "seccomp-filter",
          .help = "Optional parameter which allows starting and using a microVM without seccomp filtering. "
                  "Not recommended." },
        { .name = "parent-cpu-time-us", .takes_value = true,
          .help = "Parent process CPU time (wall clock, microseconds). This parameter is optional." },
        { .name = "seccomp-filter", .takes_value = true, .forbids = "no-seccomp",
          .help = "Optional parameter which allows specifying the path to a custom seccomp filter. For "
                  "advanced users." },
        { .name = "show-level", .help = "Whether or not to output the level in the logs." },
        { .name = "show-log-origin",
          .help = "Whether or not to include the file path and line number of the log's origin." },
        { .name = "snapshot-version", .help = "Print the supported data format version." },
        { .name = "start-time-cpu-us", .takes_value = true,
          .help = "Process start CPU time (wall clock, microseconds). This parameter is optional." },
        { .name = "start-time-us", .takes_value = true,
          .help = "Process start time (wall clock, microseconds). This parameter is optional." },
        { .name = "version", .help = "Print the binary version number." },
};

static const char *arg(const char *name) {
        return arg_value(arguments, ELEMENTSOF(arguments), name);
}

static bool flag(const char *name) {
        return arg_find(arguments, ELEMENTSOF(arguments), name)->present;
}

static bool parse_level(const char *s, Level *ret) {
        static const struct {
                const char *name;
                Level level;
        } table[] = {
                { "off", LEVEL_OFF },   { "trace", LEVEL_TRACE }, { "debug", LEVEL_DEBUG },
                { "info", LEVEL_INFO }, { "warn", LEVEL_WARN },   { "warning", LEVEL_WARN },
                { "error", LEVEL_ERROR },
        };
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (strcasecmp(s, table[i].name) == 0) {
                        *ret = table[i].level;
                        return true;
                }
        return false;
}

/* `.expect("...")` on a ParseIntError: a panic. */
static uint64_t parse_u64_or_panic(const char *s, uint64_t max, const char *expect_msg) {
        uint64_t v;
        const char *why;

        if (!rust_parse_unsigned(s, max, &v, &why)) {
                _cleanup_sb_ StrBuf m = {};
                const char *kind = streq(why, "cannot parse integer from empty string") ? "Empty"
                                   : streq(why, "invalid digit found in string")        ? "InvalidDigit"
                                                                                          : "PosOverflow";
                sb_appendf(&m, "%s: ParseIntError { kind: %s }", expect_msg, kind);
                rust_panic("src/firecracker/src/main.rs", sb_str(&m));
        }
        return v;
}

/* ---------------------------------------------------------------------------
 * config checking: serde's derive(Deserialize) rules for VmmConfig
 * ------------------------------------------------------------------------- */

typedef enum FieldKind {
        FK_STRING,
        FK_PATH,
        FK_BOOL,
        FK_U8,
        FK_U16,
        FK_U32,
        FK_U64,
        FK_USIZE,
        FK_STRUCT,
        FK_SEQ,         /* Vec<struct> */
        FK_ENUM,        /* unit variants as strings */
        FK_MAC,
        FK_LEVEL,
        FK_MAP_STRING,  /* BTreeMap<String, String> */
        FK_UNSUPPORTED, /* valid for the real one, refused by the double */
} FieldKind;

typedef struct Schema Schema;

typedef struct Field {
        const char *name;
        FieldKind kind;
        bool optional;  /* Option<T> or #[serde(default)]: may be absent */
        bool nullable;  /* Option<T>: null is None */
        const Schema *schema;
        const char *const *variants;
} Field;

struct Schema {
        const char *name;
        bool deny_unknown_fields;
        const Field *fields;
        size_t n_fields;
};

#define REQUIRED(n, k, ...) { .name = n, .kind = k, __VA_ARGS__ }
#define OPTION(n, k, ...) { .name = n, .kind = k, .optional = true, .nullable = true, __VA_ARGS__ }
#define DEFAULT(n, k, ...) { .name = n, .kind = k, .optional = true, __VA_ARGS__ }
#define SCHEMA(var, type_name, deny, ...)                                             \
        static const Field var##_fields[] = { __VA_ARGS__ };                         \
        static const Schema var = { type_name, deny, var##_fields, ELEMENTSOF(var##_fields) }

static const char *const cache_types[] = { "Unsafe", "Writeback", NULL };
static const char *const io_engines[] = { "Async", "Sync", NULL };
static const char *const huge_pages[] = { "None", "Transparent", "2M", NULL };
static const char *const cpu_templates[] = { "C3", "T2", "T2S", "None", "T2CL", "T2A", NULL };
static const char *const action_types[] = { "FlushMetrics", "InstanceStart", "SendCtrlAltDel", NULL };
static const char *const snapshot_types[] = { "Full", "Diff", NULL };
static const char *const mem_backend_types[] = { "File", "Uffd", NULL };
static const char *const vm_states[] = { "Paused", "Resumed", NULL };
static const char *const load_huge_pages[] = { "Snapshot", "None", "Transparent", "2M", NULL };

SCHEMA(token_bucket_schema, "struct TokenBucketConfig", false,
       REQUIRED("size", FK_U64),
       OPTION("one_time_burst", FK_U64),
       REQUIRED("refill_time", FK_U64));
SCHEMA(rate_limiter_schema, "struct RateLimiterConfig", true,
       OPTION("bandwidth", FK_STRUCT, .schema = &token_bucket_schema),
       OPTION("ops", FK_STRUCT, .schema = &token_bucket_schema));
SCHEMA(boot_source_schema, "struct BootSourceConfig", true,
       REQUIRED("kernel_image_path", FK_STRING),
       OPTION("initrd_path", FK_STRING),
       OPTION("boot_args", FK_STRING));
SCHEMA(drive_schema, "struct BlockDeviceConfig", true,
       REQUIRED("drive_id", FK_STRING),
       OPTION("partuuid", FK_STRING),
       REQUIRED("is_root_device", FK_BOOL),
       DEFAULT("cache_type", FK_ENUM, .variants = cache_types),
       OPTION("is_read_only", FK_BOOL),
       OPTION("path_on_host", FK_STRING),
       OPTION("rate_limiter", FK_STRUCT, .schema = &rate_limiter_schema),
       OPTION("io_engine", FK_ENUM, .variants = io_engines),
       OPTION("socket", FK_STRING));
SCHEMA(machine_config_schema, "struct MachineConfig", true,
       REQUIRED("vcpu_count", FK_U8),
       REQUIRED("mem_size_mib", FK_USIZE),
       DEFAULT("smt", FK_BOOL),
       OPTION("cpu_template", FK_ENUM, .variants = cpu_templates),
       DEFAULT("track_dirty_pages", FK_BOOL),
       DEFAULT("huge_pages", FK_ENUM, .variants = huge_pages));
SCHEMA(net_schema, "struct NetworkInterfaceConfig", true,
       REQUIRED("iface_id", FK_STRING),
       REQUIRED("host_dev_name", FK_STRING),
       OPTION("guest_mac", FK_MAC),
       OPTION("mtu", FK_U16),
       OPTION("rx_rate_limiter", FK_STRUCT, .schema = &rate_limiter_schema),
       OPTION("tx_rate_limiter", FK_STRUCT, .schema = &rate_limiter_schema));
SCHEMA(vsock_schema, "struct VsockDeviceConfig", true,
       OPTION("vsock_id", FK_STRING),
       REQUIRED("guest_cid", FK_U32),
       REQUIRED("uds_path", FK_STRING));
SCHEMA(logger_schema, "struct LoggerConfig", true,
       OPTION("log_path", FK_PATH),
       OPTION("level", FK_LEVEL),
       OPTION("show_level", FK_BOOL),
       OPTION("show_log_origin", FK_BOOL),
       OPTION("module", FK_STRING));
SCHEMA(metrics_schema, "struct MetricsConfig", false,
       REQUIRED("metrics_path", FK_PATH),
       DEFAULT("emit_id", FK_BOOL),
       OPTION("properties", FK_MAP_STRING));
/* VmmConfig: no deny_unknown_fields, so unknown top-level keys are ignored. */
SCHEMA(vmm_config_schema, "struct VmmConfig", false,
       OPTION("balloon", FK_UNSUPPORTED),
       REQUIRED("drives", FK_SEQ, .schema = &drive_schema),
       REQUIRED("boot-source", FK_STRUCT, .schema = &boot_source_schema),
       OPTION("cpu-config", FK_UNSUPPORTED),
       OPTION("logger", FK_STRUCT, .schema = &logger_schema),
       OPTION("machine-config", FK_STRUCT, .schema = &machine_config_schema),
       OPTION("metrics", FK_STRUCT, .schema = &metrics_schema),
       OPTION("mmds-config", FK_UNSUPPORTED),
       DEFAULT("network-interfaces", FK_SEQ, .schema = &net_schema),
       OPTION("vsock", FK_STRUCT, .schema = &vsock_schema),
       OPTION("entropy", FK_UNSUPPORTED),
       DEFAULT("pmem", FK_UNSUPPORTED),
       OPTION("memory-hotplug", FK_UNSUPPORTED));
SCHEMA(action_schema, "struct ActionBody", true,
       REQUIRED("action_type", FK_ENUM, .variants = action_types));
/* src/vmm/src/vmm_config/snapshot.rs: each with deny_unknown_fields. */
SCHEMA(vm_state_schema, "struct Vm", true,
       REQUIRED("state", FK_ENUM, .variants = vm_states));
SCHEMA(snapshot_create_schema, "struct CreateSnapshotParams", true,
       DEFAULT("snapshot_type", FK_ENUM, .variants = snapshot_types),
       REQUIRED("snapshot_path", FK_PATH),
       REQUIRED("mem_file_path", FK_PATH));
SCHEMA(mem_backend_schema, "struct MemBackendConfig", true,
       REQUIRED("backend_path", FK_PATH),
       REQUIRED("backend_type", FK_ENUM, .variants = mem_backend_types));
SCHEMA(network_override_schema, "struct NetworkOverride", false,
       REQUIRED("iface_id", FK_STRING),
       REQUIRED("host_dev_name", FK_STRING));
SCHEMA(vsock_override_schema, "struct VsockOverride", false,
       REQUIRED("uds_path", FK_STRING));
SCHEMA(snapshot_load_schema, "struct LoadSnapshotConfig", true,
       REQUIRED("snapshot_path", FK_PATH),
       OPTION("mem_file_path", FK_PATH),
       OPTION("mem_backend", FK_STRUCT, .schema = &mem_backend_schema),
       DEFAULT("enable_diff_snapshots", FK_BOOL),
       DEFAULT("track_dirty_pages", FK_BOOL),
       DEFAULT("resume_vm", FK_BOOL),
       DEFAULT("network_overrides", FK_SEQ, .schema = &network_override_schema),
       OPTION("vsock_override", FK_STRUCT, .schema = &vsock_override_schema),
       DEFAULT("clock_realtime", FK_BOOL),
       DEFAULT("huge_pages", FK_ENUM, .variants = load_huge_pages));

typedef struct SerdeError {
        StrBuf message;
        JsonPos pos;
        const char *unsupported;        /* set for FK_UNSUPPORTED */
} SerdeError;

static int serde_fail(SerdeError *e, JsonPos pos, const char *fmt, ...) _printf_(3, 4);
static int serde_fail(SerdeError *e, JsonPos pos, const char *fmt, ...) {
        va_list ap;

        sb_reset(&e->message);
        va_start(ap, fmt);
        sb_vappendf(&e->message, fmt, ap);
        va_end(ap);
        e->pos = pos;
        return -EINVAL;
}

/* serde's Unexpected, as serde_json prints it. */
static void describe_unexpected(StrBuf *sb, const JsonValue *v) {
        switch (v->type) {
        case JSON_NULL:
                sb_append(sb, "null");
                break;
        case JSON_BOOL:
                sb_appendf(sb, "boolean `%s`", v->boolean ? "true" : "false");
                break;
        case JSON_NUMBER:
                if (v->is_u64)
                        sb_appendf(sb, "integer `%" PRIu64 "`", v->u64);
                else if (v->is_i64)
                        sb_appendf(sb, "integer `%" PRIi64 "`", v->i64);
                else {
                        char buf[64];
                        snprintf(buf, sizeof(buf), "%.17g", v->f64);
                        /* serde prints floats with a decimal point ("1.0"). */
                        sb_appendf(sb, "floating point `%s%s`", buf, strpbrk(buf, ".eEn") ? "" : ".0");
                }
                break;
        case JSON_STRING:
                sb_append(sb, "string ");
                sb_append_rust_str_debug(sb, v->string);
                break;
        case JSON_ARRAY:
                sb_append(sb, "sequence");
                break;
        case JSON_OBJECT:
                sb_append(sb, "map");
                break;
        }
}

static int invalid_type(SerdeError *e, const JsonValue *v, const char *expected) {
        _cleanup_sb_ StrBuf u = {};
        describe_unexpected(&u, v);
        /* serde_json consumes a scalar before complaining, but not a '[' or '{'. */
        JsonPos pos = v->end;
        if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
                pos = (JsonPos) { v->start.line, v->start.column - 1 };
        return serde_fail(e, pos, "invalid type: %s, expected %s", sb_str(&u), expected);
}

/* serde's OneOf: "expected `a`", "expected `a` or `b`", "expected one of `a`, `b`, `c`". */
static void append_one_of(StrBuf *sb, const char *const *names, size_t n, const char *none) {
        if (n == 0)
                sb_append(sb, none);
        else if (n == 1)
                sb_appendf(sb, "expected `%s`", names[0]);
        else if (n == 2)
                sb_appendf(sb, "expected `%s` or `%s`", names[0], names[1]);
        else {
                sb_append(sb, "expected one of ");
                for (size_t i = 0; i < n; i++)
                        sb_appendf(sb, "%s`%s`", i > 0 ? ", " : "", names[i]);
        }
}

static bool mac_valid(const char *s) {
        /* MacAddr::from_str: six ':'-separated parts of exactly two hex digits. */
        size_t parts = 0;
        for (const char *p = s;; p++) {
                size_t n = strcspn(p, ":");
                if (n != 2 || strspn(p, "0123456789abcdefABCDEF") < 2)
                        return false;
                parts++;
                p += n;
                if (*p == 0)
                        break;
        }
        return parts == 6;
}

static int check_struct(const JsonValue *v, const Schema *s, SerdeError *e);

static int check_uint(const JsonValue *v, uint64_t max, const char *type, SerdeError *e) {
        if (v->type != JSON_NUMBER || (!v->is_u64 && !v->is_i64))
                return invalid_type(e, v, type);
        if (v->is_i64 || v->u64 > max) {
                _cleanup_sb_ StrBuf u = {};
                describe_unexpected(&u, v);
                return serde_fail(e, v->end, "invalid value: %s, expected %s", sb_str(&u), type);
        }
        return 0;
}

static int check_value(const JsonValue *v, const Field *f, SerdeError *e) {
        switch (f->kind) {
        case FK_STRING:
        case FK_PATH:
        case FK_MAC:
        case FK_LEVEL:
                if (v->type != JSON_STRING)
                        return invalid_type(e, v, f->kind == FK_PATH ? "path string" : "a string");
                if (f->kind == FK_MAC && !mac_valid(v->string))
                        return serde_fail(e, v->end, "The provided MAC address is invalid.");
                if (f->kind == FK_LEVEL) {
                        Level l;
                        if (!parse_level(v->string, &l))
                                return serde_fail(e, v->end, "Invalid LevelFilter");
                }
                return 0;
        case FK_BOOL:
                return v->type == JSON_BOOL ? 0 : invalid_type(e, v, "a boolean");
        case FK_U8:
                return check_uint(v, UINT8_MAX, "u8", e);
        case FK_U16:
                return check_uint(v, UINT16_MAX, "u16", e);
        case FK_U32:
                return check_uint(v, UINT32_MAX, "u32", e);
        case FK_U64:
                return check_uint(v, UINT64_MAX, "u64", e);
        case FK_USIZE:
                return check_uint(v, SIZE_MAX, "usize", e);
        case FK_STRUCT:
                return check_struct(v, f->schema, e);
        case FK_SEQ:
                if (v->type != JSON_ARRAY)
                        return invalid_type(e, v, "a sequence");
                for (size_t i = 0; i < v->n_items; i++) {
                        int r = check_struct(v->items[i], f->schema, e);
                        if (r < 0)
                                return r;
                }
                return 0;
        case FK_ENUM: {
                size_t n = 0;
                if (v->type != JSON_STRING)
                        /* serde_json's deserialize_enum wants '"' (or '{'),
                         * and reports the character it peeked at. */
                        return serde_fail(e, v->start, "expected value");
                for (; f->variants[n]; n++)
                        if (streq(v->string, f->variants[n]))
                                return 0;
                _cleanup_sb_ StrBuf m = {};
                sb_appendf(&m, "unknown variant `%s`, ", v->string);
                append_one_of(&m, (const char *const *) f->variants, n, "there are no variants");
                return serde_fail(e, v->end, "%s", sb_str(&m));
        }
        case FK_MAP_STRING:
                if (v->type != JSON_OBJECT)
                        return invalid_type(e, v, "a map");
                for (size_t i = 0; i < v->n_members; i++)
                        if (v->members[i].value->type != JSON_STRING)
                                return invalid_type(e, v->members[i].value, "a string");
                return 0;
        case FK_UNSUPPORTED:
                if (v->type == JSON_ARRAY && v->n_items == 0)
                        return 0;
                e->unsupported = f->name;
                return serde_fail(e, v->end, "`%s` is not supported by the firecracker test double", f->name);
        }
        return 0;
}

static int check_struct(const JsonValue *v, const Schema *s, SerdeError *e) {
        bool seen[32] = {};
        assert(s->n_fields <= ELEMENTSOF(seen));

        if (v->type != JSON_OBJECT)
                /* Simplification: serde would also accept a struct as a JSON array. */
                return invalid_type(e, v, s->name);

        /* Keys in document order: an unknown or duplicate key, or a bad value,
         * fails at once; missing fields are checked at the closing brace. */
        for (size_t i = 0; i < v->n_members; i++) {
                const JsonMember *m = &v->members[i];
                size_t k;
                for (k = 0; k < s->n_fields; k++)
                        if (streq(s->fields[k].name, m->key))
                                break;
                if (k == s->n_fields) {
                        if (!s->deny_unknown_fields)
                                continue;
                        _cleanup_sb_ StrBuf msg = {};
                        const char *names[32];
                        for (size_t j = 0; j < s->n_fields; j++)
                                names[j] = s->fields[j].name;
                        sb_appendf(&msg, "unknown field `%s`, ", m->key);
                        append_one_of(&msg, names, s->n_fields, "there are no fields");
                        return serde_fail(e, m->key_end, "%s", sb_str(&msg));
                }
                if (seen[k])
                        return serde_fail(e, m->key_end, "duplicate field `%s`", m->key);
                seen[k] = true;
                if (m->value->type == JSON_NULL && s->fields[k].nullable)
                        continue;
                int r = check_value(m->value, &s->fields[k], e);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < s->n_fields; k++)
                if (!seen[k] && !s->fields[k].optional)
                        return serde_fail(e, v->end, "missing field `%s`", s->fields[k].name);
        return 0;
}

/* A present, non-null member, or NULL. */
static const JsonValue *get(const JsonValue *o, const char *key) {
        const JsonValue *v = json_get(o, key);
        return v && v->type != JSON_NULL ? v : NULL;
}

static const char *get_str(const JsonValue *o, const char *key) {
        const JsonValue *v = get(o, key);
        return v ? v->string : NULL;
}

static bool get_bool(const JsonValue *o, const char *key, bool def) {
        const JsonValue *v = get(o, key);
        return v ? v->boolean : def;
}

static uint64_t get_u64(const JsonValue *o, const char *key, uint64_t def) {
        const JsonValue *v = get(o, key);
        return v ? v->u64 : def;
}

/* ---------------------------------------------------------------------------
 * the VM
 * ------------------------------------------------------------------------- */

typedef enum GuestState {
        GUEST_BOOTING,
        GUEST_RUNNING,
        GUEST_SHUTTING_DOWN,
        GUEST_HALTED,
        GUEST_HUNG,
        GUEST_PANICKED,         /* kernel panic: only panic=N's reboot ends it */
} GuestState;

typedef struct Drive {
        char *id;
        char *path;
        bool root;
        bool read_only;
        char *partuuid;
        int fd;
        uint64_t nsectors;
} Drive;

typedef struct Nic {
        char *id;
        char *tap;
        char *mac;
        int fd;
} Nic;

typedef struct Knobs {
        int64_t crash_after_ms;
        int crash_signal;
        int64_t reboot_after_ms;
        int64_t poweroff_after_ms;
        bool ignore_cad;
        int64_t cad_delay_ms;
        int64_t boot_ms;
        bool hang_guest;
        bool hang_vmm;
        int64_t flood;          /* lines; -1 forever */
        int64_t long_line;      /* bytes of one line without a newline */
        int64_t traffic;        /* bytes a second per device, in the metrics */
        int64_t metrics_period_ms;
        int64_t hang_vmm_after_ms;      /* > 0: hang=vmm that long after boot */
        int64_t tick_ms;        /* console tick period, 0: none */
        bool fail_create;
        bool fail_load;
        int64_t create_ms;      /* extra time a snapshot create takes */
} Knobs;

static struct Vm {
        const char *id;
        char *boot_args;        /* NULL: the default command line */
        char *ll_boot;          /* linux-loader Cmdline: boot args (before " -- ") */
        char *ll_init;          /* ... and init args, both trimmed */
        char *cmdline;          /* what the guest kernel gets, firecracker's parameters included */
        bool console;
        unsigned vcpus;
        uint64_t mem_mib;
        bool smt;
        bool track_dirty_pages;
        const char *huge_pages;
        const char *cpu_template;

        Drive *drives;          /* root drive first, as BlockBuilder keeps them */
        size_t n_drives;
        Nic *nics;
        size_t n_nics;
        bool has_vsock;
        uint32_t vsock_cid;
        int vsock_fd;

        int kernel_fd;
        int initrd_fd;
        int metrics_fd;

        Knobs knobs;
        GuestState state;
        uint64_t boot_us;       /* CLOCK_MONOTONIC at boot */
        uint64_t login_at;
        uint64_t crash_at;
        uint64_t reboot_at;
        uint64_t poweroff_at;
        uint64_t cad_exit_at;
        int64_t flood_left;
        uint64_t flood_n;
        uint64_t flood_dropped;
        bool flood_report;      /* a "flood done" line waits for stdout to drain */
        int64_t long_line_left;
        uint64_t long_line_dropped;
        bool long_line_report;  /* its end waits for stdout to drain */
        uint64_t metrics_at;    /* next periodic metrics line */
        uint64_t metrics_last;  /* CLOCK_MONOTONIC of the previous line */

        char *config_text;      /* the --config-file, kept for a snapshot's state */
        bool started;           /* booted, or loaded from a snapshot */
        bool paused;            /* PATCH /vm Paused: the vCPUs stand still */
        uint64_t paused_at;
        GuestMemory mem;        /* what a cold boot cannot reproduce */
        uint64_t tick_at;
} vm = {
        .kernel_fd = -EBADF,
        .initrd_fd = -EBADF,
        .metrics_fd = -EBADF,
        .vsock_fd = -EBADF,
        .vcpus = 1,
        .mem_mib = 128,
        .huge_pages = "None",
};

static uint64_t now_us(void) {
        return clock_us(CLOCK_MONOTONIC);
}

static int console_errno;       /* of the last console write; 0 on success or short write */

/* One line on the serial console (stdout), with a single write(2). stdout
 * is O_NONBLOCK once the VM booted: a stalled reader loses lines, exactly
 * as with the real serial device. */
_printf_(2, 3) static bool console(bool kernel, const char *fmt, ...) {
        _cleanup_sb_ StrBuf sb = {};
        va_list ap;

        if (!vm.console)
                return false;
        if (kernel) {
                uint64_t t = now_us() - vm.boot_us;
                sb_appendf(&sb, "[%5" PRIu64 ".%06" PRIu64 "] ", t / 1000000, t % 1000000);
        }
        va_start(ap, fmt);
        sb_vappendf(&sb, fmt, ap);
        va_end(ap);
        sb_append(&sb, "\n");
        ssize_t n = write(STDOUT_FILENO, sb.s, sb.len);
        console_errno = n < 0 ? errno : 0;
        return n == (ssize_t) sb.len;
}

_noreturn_ static void vmm_exit_ok(void) {
        log_vmm(LEVEL_INFO, "Vmm is stopping.");
        log_main(LEVEL_INFO, "Firecracker exiting successfully. exit_code=0");
        exit(FC_EXIT_OK);
}

/* The guest restarts: with reboot=k the i8042 reset makes firecracker exit 0.
 * (Simplification: any guest reboot ends the VMM, with or without reboot=k.) */
_noreturn_ static void guest_reboot_now(void) {
        console(true, "reboot: Restarting system");
        vmm_exit_ok();
}

static void guest_begin_shutdown(const char *why) {
        if (vm.state == GUEST_SHUTTING_DOWN)
                return;
        vm.state = GUEST_SHUTTING_DOWN;
        console(false, "%s", "");
        if (why)
                console(false, "%s", why);
        console(false, "[  OK  ] Stopped target multi-user.target - Multi-User System.");
        console(false, "[  OK  ] Reached target shutdown.target - System Shutdown.");
        console(false, "[  OK  ] Reached target final.target - Late Shutdown Services.");
        console(false, "[  OK  ] Finished systemd-reboot.service - System Reboot.");
        console(false, "[  OK  ] Reached target reboot.target - System Reboot.");
        console(true, "systemd-shutdown[1]: Syncing filesystems and block devices.");
        console(true, "systemd-shutdown[1]: Sending SIGTERM to remaining processes...");
        vm.cad_exit_at = now_us() + (uint64_t) vm.knobs.cad_delay_ms * 1000;
}

static void guest_poweroff(void) {
        if (vm.state == GUEST_HALTED)
                return;
        console(true, "systemd-shutdown[1]: Powering off.");
        console(true, "reboot: Power down");
        /* x86: the guest halts, firecracker keeps running. */
        vm.state = GUEST_HALTED;
}

static void guest_ctrl_alt_del(void) {
        /* The keys are injected whatever the guest does with them. */
        if (vm.knobs.ignore_cad)
                return;
        if (vm.state == GUEST_BOOTING || vm.state == GUEST_RUNNING)
                guest_begin_shutdown("Ctrl-Alt-Del pressed, rebooting.");
}

static void guest_login_prompt(void) {
        vm.state = GUEST_RUNNING;
        console(true, "systemd[1]: Startup finished in 0.9s.");
        console(true, "fcdouble: boot token %s", vm.mem.token);
        if (vm.knobs.tick_ms > 0)
                vm.tick_at = now_us() + (uint64_t) vm.knobs.tick_ms * 1000;
        console(false, "%s", "");
        console(false, "Debian GNU/Linux 12 %s ttyS0", vm.id);
        console(false, "%s", "");
        console(false, "%s login: ", vm.id);
        /* Without a console there is nothing to flood. */
        if (vm.knobs.flood != 0 && vm.console)
                vm.flood_left = vm.knobs.flood;
        if (vm.knobs.long_line > 0 && vm.console)
                vm.long_line_left = vm.knobs.long_line;
}

/* ---------------------------------------------------------------------------
 * The kernel command line: linux-loader's Cmdline (v0.13.2, which
 * firecracker v1.16.1 links: src/cmdline/mod.rs) as firecracker builds it,
 * and the guest kernel's view of the result (lib/cmdline.c next_arg(),
 * kernel/params.c parse_args(), init/do_mounts.c).
 * ------------------------------------------------------------------------- */

#define LL_INIT_ARGS_SEPARATOR " -- "

/* Rust's str::trim() (Unicode White_Space). Simplification: ASCII only. */
static bool rust_whitespace(char c) {
        return c == ' ' || (c >= '\t' && c <= '\r');
}

static char *rust_trim(const char *s, size_t n) {
        while (n > 0 && rust_whitespace(*s))
                s++, n--;
        while (n > 0 && rust_whitespace(s[n - 1]))
                n--;
        char *r = strndup(s, n);
        if (!r)
                abort();
        return r;
}

static size_t ll_size(void) {
        /* get_null_terminated_representation_size() */
        size_t n = strlen(vm.ll_boot) + 1;
        if (*vm.ll_init)
                n += strlen(LL_INIT_ARGS_SEPARATOR) + strlen(vm.ll_init);
        return n;
}

/* Cmdline::try_from(): split at the first " -- " preceded by an even number
 * of '"', trim both halves, check the capacity. No character is checked
 * here (only insert_str() checks its own argument). */
static const char *ll_try_from(const char *raw) {
        const char *sep = NULL;

        for (const char *p = strstr(raw, LL_INIT_ARGS_SEPARATOR); p && !sep;
             p = strstr(p + 1, LL_INIT_ARGS_SEPARATOR)) {
                size_t quotes = 0;
                for (const char *q = raw; q < p; q++)
                        quotes += *q == '"';
                if (quotes % 2 == 0)
                        sep = p;
        }
        free(vm.ll_boot);
        free(vm.ll_init);
        if (sep) {
                vm.ll_boot = rust_trim(raw, (size_t) (sep - raw));
                const char *init = sep + strlen(LL_INIT_ARGS_SEPARATOR);
                vm.ll_init = rust_trim(init, strlen(init));
        } else {
                vm.ll_boot = rust_trim(raw, strlen(raw));
                vm.ll_init = rust_trim("", 0);
        }
        if (ll_size() > CMDLINE_MAX_SIZE)
                return "Invalid cmdline capacity provided.";
        return NULL;
}

/* Cmdline::insert_str(): the argument trimmed, printable ASCII, appended to
 * the boot args (the part before " -- ") with one space. */
static const char *ll_insert_str(const char *slug) {
        _cleanup_free_ char *s = rust_trim(slug, strlen(slug));
        size_t n = ll_size();

        for (const char *p = s; *p; p++)
                if (*p < ' ' || *p > '~')
                        return "String contains a non-printable ASCII character.";
        if (*vm.ll_boot)
                n++;
        if (n + strlen(s) > CMDLINE_MAX_SIZE)
                return "Inserting string would make command line too long.";
        char *b = NULL;
        if (asprintf(&b, "%s%s%s", vm.ll_boot, *vm.ll_boot ? " " : "", s) < 0)
                abort();
        free(vm.ll_boot);
        vm.ll_boot = b;
        return NULL;
}

_noreturn_ static void fail_cmdline(const char *why) {
        Err e = {};
        err_build_from_json(&e, false);
        err_string(&e, "KernelCmdline", "Invalid kernel command line: ", why);
        fail_main(&e, FC_EXIT_GENERIC);
}

static void ll_insert_or_fail(const char *slug) {
        const char *why = ll_insert_str(slug);
        if (why)
                fail_cmdline(why);
}

/* builder.rs: pci=off (PCI is off by default), then per block device
 * root=... and ro/rw for the root device (attach_block_devices(); the root
 * device is first, /dev/vda) and its virtio-mmio device, then the NICs'
 * and the vsock's devices (x86: add_virtio_mmio_device()); as_cstring()
 * joins boot and init args with " -- ". */
static void build_kernel_cmdline(void) {
        unsigned dev = 0;

        ll_insert_or_fail("pci=off");
        for (size_t i = 0; i < vm.n_drives; i++) {
                _cleanup_free_ char *s = NULL;
                if (vm.drives[i].root) {
                        if (vm.drives[i].partuuid) {
                                if (asprintf(&s, "root=PARTUUID=%s", vm.drives[i].partuuid) < 0)
                                        abort();
                                ll_insert_or_fail(s);
                        } else
                                ll_insert_or_fail("root=/dev/vda");
                        ll_insert_or_fail(vm.drives[i].read_only ? "ro" : "rw");
                }
                free(s);
                if (asprintf(&s, "virtio_mmio.device=4K@0x%x:%u", 0xd0000000u + dev * 0x1000u, 5 + dev) < 0)
                        abort();
                dev++;
                ll_insert_or_fail(s);
        }
        for (size_t i = 0; i < vm.n_nics + (vm.has_vsock ? 1 : 0); i++, dev++) {
                _cleanup_free_ char *s = NULL;
                if (asprintf(&s, "virtio_mmio.device=4K@0x%x:%u", 0xd0000000u + dev * 0x1000u, 5 + dev) < 0)
                        abort();
                ll_insert_or_fail(s);
        }
        free(vm.cmdline);
        if (*vm.ll_init) {
                if (asprintf(&vm.cmdline, "%s" LL_INIT_ARGS_SEPARATOR "%s", vm.ll_boot, vm.ll_init) < 0)
                        abort();
        } else if (!(vm.cmdline = strdup(vm.ll_boot)))
                abort();
}

/* The kernel's parameters (before its "--"), as parse_args() sees them:
 * name and value, quotes stripped as next_arg() strips them. */
typedef struct KParam {
        char *name;
        char *value;            /* NULL: no '=' */
} KParam;

static bool kernel_isspace(char c) {
        /* lib/ctype.c: \t \n \v \f \r, ' ' and 0xa0 */
        return c == ' ' || (c >= '\t' && c <= '\r') || (unsigned char) c == 0xa0;
}

static size_t kernel_params(const char *cmdline, KParam **ret) {
        _cleanup_free_ char *copy = strdup(cmdline);
        KParam *params = NULL;
        size_t n = 0;
        char *args;

        if (!copy)
                abort();
        args = copy;
        while (kernel_isspace(*args))
                args++;
        while (*args) {
                /* next_arg() */
                size_t i, equals = 0;
                bool in_quote = false, quoted = false;
                char *param, *val = NULL;

                if (*args == '"') {
                        args++;
                        in_quote = quoted = true;
                }
                for (i = 0; args[i]; i++) {
                        if (kernel_isspace(args[i]) && !in_quote)
                                break;
                        if (equals == 0 && args[i] == '=')
                                equals = i;
                        if (args[i] == '"')
                                in_quote = !in_quote;
                }
                param = args;
                if (equals) {
                        args[equals] = 0;
                        val = args + equals + 1;
                        if (*val == '"') {
                                val++;
                                if (args[i - 1] == '"')
                                        args[i - 1] = 0;
                        }
                }
                if (quoted && i > 0 && args[i - 1] == '"')
                        args[i - 1] = 0;
                bool more = args[i] != 0;
                args[i] = 0;
                args += i + (more ? 1 : 0);
                while (kernel_isspace(*args))
                        args++;

                /* parse_args(): "Stop at --" */
                if (!val && streq(param, "--"))
                        break;
                KParam *a = realloc(params, (n + 1) * sizeof(KParam));
                if (!a)
                        abort();
                params = a;
                params[n].name = strdup(param);
                params[n].value = val ? strdup(val) : NULL;
                n++;
        }
        *ret = params;
        return n;
}

static void kernel_params_free(KParam *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(p[i].name);
                free(p[i].value);
        }
        free(p);
}

/* The last value of a kernel parameter (as the kernel's __setup handlers
 * for root= and panic= keep the last one), or NULL. */
static const char *kernel_param_last(const KParam *p, size_t n, const char *name) {
        const char *v = NULL;
        for (size_t i = 0; i < n; i++)
                if (streq(p[i].name, name) && p[i].value)
                        v = p[i].value;
        return v;
}

/* ---- the root device: init/do_mounts.c, block/partitions/{msdos,efi}.c ---- */

static uint32_t le32(const uint8_t *p) {
        return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static uint64_t le64(const uint8_t *p) {
        return le32(p) | (uint64_t) le32(p + 4) << 32;
}

typedef struct Partitions {
        size_t n;
        char uuid[128][37];     /* PARTUUID per partition, partition number i + 1 */
} Partitions;

/* The partitions the guest kernel would find on a drive: an MBR's primary
 * partitions (PARTUUID SSSSSSSS-PP) or a GPT's entries (the unique
 * partition GUID). Simplification: no logical partitions. Returns false
 * when the drive has no partition table (the double then takes the whole
 * drive for a filesystem). */
static bool drive_partitions(const Drive *d, Partitions *ret) {
        uint8_t sector[1024];
        bool mbr = false;

        *ret = (Partitions) {};
        if (pread(d->fd, sector, sizeof sector, 0) != (ssize_t) sizeof sector)
                return false;
        if (memcmp(sector + 512, "EFI PART", 8) == 0) {
                uint64_t lba = le64(sector + 512 + 72);
                uint32_t count = le32(sector + 512 + 80), size = le32(sector + 512 + 84);
                uint8_t e[128];
                if (size < 128 || count > ELEMENTSOF(ret->uuid))
                        return false;
                for (uint32_t i = 0; i < count; i++) {
                        static const uint8_t zero[16];
                        if (pread(d->fd, e, sizeof e, (off_t) (lba * 512 + (uint64_t) i * size)) != (ssize_t) sizeof e)
                                return false;
                        if (memcmp(e, zero, 16) == 0) /* unused entry: no partition i + 1 */
                                continue;
                        const uint8_t *g = e + 16;
                        snprintf(ret->uuid[i], sizeof ret->uuid[i],
                                 "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", le32(g),
                                 (unsigned) (g[4] | g[5] << 8), (unsigned) (g[6] | g[7] << 8), g[8], g[9], g[10],
                                 g[11], g[12], g[13], g[14], g[15]);
                        ret->n = i + 1;
                }
                return true;
        }
        if (sector[510] != 0x55 || sector[511] != 0xaa)
                return false;
        for (unsigned i = 0; i < 4; i++) {
                const uint8_t *e = sector + 446 + 16 * i;
                if ((e[0] != 0 && e[0] != 0x80) || e[4] == 0)
                        continue;
                snprintf(ret->uuid[i], sizeof ret->uuid[i], "%08x-%02x", le32(sector + 440), i + 1);
                ret->n = i + 1;
                mbr = true;
        }
        return mbr;
}

/* prepare_namespace() → mount_root(): whether root= names something the
 * guest kernel can mount, and if not, what it prints before its panic.
 * Simplification: also with an initrd (whose init would fail on the same
 * root= in its own way). */
static bool guest_mount_root(const char *root, StrBuf *why) {
        Partitions parts;

        if (!root) {
                sb_append(why, "VFS: Cannot open root device \"\" or unknown-block(0,0): error -6");
                return false;
        }
        const char *uuid = startswith(root, "PARTUUID=");
        if (uuid) {
                for (size_t i = 0; i < vm.n_drives; i++) {
                        if (!drive_partitions(&vm.drives[i], &parts))
                                continue;
                        for (size_t j = 0; j < parts.n; j++)
                                if (*parts.uuid[j] && strcasecmp(parts.uuid[j], uuid) == 0)
                                        return true;
                }
                sb_appendf(why, "VFS: Cannot open root device \"%s\" or unknown-block(0,0): error -6", root);
                return false;
        }
        const char *dev = startswith(root, "/dev/vd");
        if (dev && *dev >= 'a' && (size_t) (*dev - 'a') < vm.n_drives) {
                const Drive *d = &vm.drives[*dev - 'a'];
                bool partitioned = drive_partitions(d, &parts);
                unsigned long nr = 0;
                if (dev[1] == 0) {
                        if (!partitioned)
                                return true;
                        /* A partition table where a filesystem should be. */
                        sb_appendf(why, "No filesystem could mount root, tried:  ext4\n"
                                        "Kernel panic - not syncing: VFS: Unable to mount root fs on \"%s\" or "
                                        "unknown-block(254,%d)", root, 16 * (*dev - 'a'));
                        return false;
                }
                char *end;
                nr = strtoul(dev + 1, &end, 10);
                if (*end == 0 && partitioned && nr >= 1 && nr <= parts.n && *parts.uuid[nr - 1])
                        return true;
        }
        sb_appendf(why, "VFS: Cannot open root device \"%s\" or unknown-block(0,0): error -6", root);
        return false;
}

static void guest_boot(void) {
        unsigned dev = 0;

        vm.state = GUEST_BOOTING;
        vm.boot_us = now_us();
        vm.started = true;
        fcsnap_new_token(vm.mem.token);

        console(true, "Linux version 6.1.102 (fcdouble@microvm) (gcc (Debian 12.2.0-14) 12.2.0) "
                      "#1 SMP PREEMPT_DYNAMIC firecracker test double");
        console(true, "Command line: %s", vm.cmdline);
        if (vm.knobs.hang_guest) {
                /* The guest stalls here: nothing more, ever. */
                vm.state = GUEST_HUNG;
                return;
        }
        console(true, "Memory: %" PRIu64 "K/%" PRIu64 "K available", vm.mem_mib * 1024 - 4096, vm.mem_mib * 1024);
        console(true, "smpboot: Allowing %u CPUs, 0 hotplug CPUs", vm.vcpus);
        dev = 0;
        for (size_t i = 0; i < vm.n_drives; i++, dev++) {
                uint64_t bytes = vm.drives[i].nsectors * 512;
                console(true, "virtio_blk virtio%u: [vd%c] %" PRIu64 " 512-byte logical blocks (%" PRIu64
                              " MB/%" PRIu64 " MiB)%s",
                        dev, (char) ('a' + i), vm.drives[i].nsectors, bytes / 1000000, bytes >> 20,
                        vm.drives[i].read_only ? " (read-only)" : "");
        }
        for (size_t i = 0; i < vm.n_nics; i++, dev++)
                console(true, "virtio_net virtio%u eth%zu: %s on tap %s, MAC %s", dev, i, vm.nics[i].id,
                        vm.nics[i].tap, vm.nics[i].mac ?: "06:00:00:00:00:00");
        if (vm.has_vsock)
                console(true, "NET: Registered PF_VSOCK protocol family (guest cid %" PRIu32 ")", vm.vsock_cid);

        /* The root filesystem, from the kernel's own parameters: the last
         * root= before the kernel's "--" (a root= the user wrote is
         * overridden by firecracker's, which comes later; a root= after
         * "--" is init's). Failing that, the kernel panics; panic=N > 0
         * reboots after N seconds (firecracker exits 0), else it hangs. */
        {
                KParam *params;
                size_t n = kernel_params(vm.cmdline, &params);
                _cleanup_sb_ StrBuf why = {};
                const char *panic = kernel_param_last(params, n, "panic");
                long panic_s = panic ? strtol(panic, NULL, 10) : 0;

                if (!guest_mount_root(kernel_param_last(params, n, "root"), &why)) {
                        console(true, "%s", sb_str(&why));
                        if (!strstr(sb_str(&why), "Kernel panic"))
                                console(true, "Kernel panic - not syncing: VFS: Unable to mount root fs on "
                                              "unknown-block(0,0)");
                        kernel_params_free(params, n);
                        vm.state = GUEST_PANICKED;
                        if (panic_s > 0) {
                                console(true, "Rebooting in %ld seconds..", panic_s);
                                vm.reboot_at = vm.boot_us + (uint64_t) panic_s * 1000000;
                        }
                        return;
                }
                kernel_params_free(params, n);
        }
        console(true, "Run /sbin/init as init process");
        console(true, "systemd[1]: Hostname set to <%s>.", vm.id);

        uint64_t now = vm.boot_us;
        vm.login_at = now + (uint64_t) vm.knobs.boot_ms * 1000;
        if (vm.knobs.crash_after_ms >= 0)
                vm.crash_at = now + (uint64_t) vm.knobs.crash_after_ms * 1000;
        if (vm.knobs.reboot_after_ms >= 0)
                vm.reboot_at = now + (uint64_t) vm.knobs.reboot_after_ms * 1000;
        if (vm.knobs.poweroff_after_ms >= 0)
                vm.poweroff_at = now + (uint64_t) vm.knobs.poweroff_after_ms * 1000;
}

/* ---------------------------------------------------------------------------
 * configuration (VmResources::from_json and build_microvm_from_json)
 * ------------------------------------------------------------------------- */

static int64_t knob_ms(const char *key, const char *value, Err *e) {
        uint64_t v;
        const char *why;

        if (!rust_parse_unsigned(value, INT32_MAX, &v, &why)) {
                _cleanup_sb_ StrBuf m = {};
                sb_appendf(&m, "fcdouble.%s=%s: %s", key, value, why);
                err_build_from_json(e, true);
                err_wrap(e, "BootSource", "Boot source error: ");
                err_string(e, "InvalidKernelCommandLine", "The kernel command line is invalid: ", sb_str(&m));
                fail_main(e, FC_EXIT_GENERIC);
        }
        return (int64_t) v;
}

/* Knobs ride on the kernel command line, see the top of this file. */
static void parse_knobs(const KParam *params, size_t n_params) {
        Knobs *k = &vm.knobs;
        Err e = {};

        *k = (Knobs) {
                .crash_after_ms = -1,
                .crash_signal = SIGKILL,
                .reboot_after_ms = -1,
                .poweroff_after_ms = -1,
                .cad_delay_ms = 200,
                .metrics_period_ms = 60000,
        };
        for (size_t i = 0; i < n_params; i++) {
                const char *name = startswith(params[i].name, "fcdouble.");
                if (!name)
                        continue;
                _cleanup_free_ char *key = strdup(name);
                const char *value = params[i].value ?: "";
                _cleanup_free_ char *tok = NULL;
                if (asprintf(&tok, "%s%s%s", params[i].name, params[i].value ? "=" : "", value) < 0)
                        abort();

                if (streq(key, "crash_after_ms"))
                        k->crash_after_ms = knob_ms(key, value, &e);
                else if (streq(key, "crash_signal") && (streq(value, "kill") || streq(value, "abort")))
                        k->crash_signal = streq(value, "kill") ? SIGKILL : SIGABRT;
                else if (streq(key, "reboot_after_ms"))
                        k->reboot_after_ms = knob_ms(key, value, &e);
                else if (streq(key, "poweroff_after_ms"))
                        k->poweroff_after_ms = knob_ms(key, value, &e);
                else if (streq(key, "ignore_cad") && (streq(value, "1") || streq(value, "0")))
                        k->ignore_cad = streq(value, "1");
                else if (streq(key, "cad_delay_ms"))
                        k->cad_delay_ms = knob_ms(key, value, &e);
                else if (streq(key, "boot_ms"))
                        k->boot_ms = knob_ms(key, value, &e);
                else if (streq(key, "hang") && streq(value, "guest"))
                        k->hang_guest = true;
                else if (streq(key, "hang") && streq(value, "vmm"))
                        k->hang_vmm = true;
                else if (streq(key, "flood") && streq(value, "forever"))
                        k->flood = -1;
                else if (streq(key, "flood"))
                        k->flood = knob_ms(key, value, &e);
                else if (streq(key, "long_line"))
                        k->long_line = knob_ms(key, value, &e);
                else if (streq(key, "traffic"))
                        k->traffic = knob_ms(key, value, &e);
                else if (streq(key, "hang_vmm_after_ms"))
                        k->hang_vmm_after_ms = knob_ms(key, value, &e);
                else if (streq(key, "metrics_period_ms"))
                        k->metrics_period_ms = knob_ms(key, value, &e);
                else if (streq(key, "tick_ms"))
                        k->tick_ms = knob_ms(key, value, &e);
                else if (streq(key, "fail_create") && (streq(value, "1") || streq(value, "0")))
                        k->fail_create = streq(value, "1");
                else if (streq(key, "fail_load") && (streq(value, "1") || streq(value, "0")))
                        k->fail_load = streq(value, "1");
                else if (streq(key, "create_ms"))
                        k->create_ms = knob_ms(key, value, &e);
                else {
                        _cleanup_sb_ StrBuf m = {};
                        sb_appendf(&m, "unknown or malformed test knob `%s` (firecracker test double; known: "
                                       "fcdouble.crash_after_ms=N, crash_signal=kill|abort, reboot_after_ms=N, "
                                       "poweroff_after_ms=N, ignore_cad=0|1, cad_delay_ms=N, boot_ms=N, "
                                       "hang=guest|vmm, flood=N|forever, long_line=N, traffic=N, metrics_period_ms=N, hang_vmm_after_ms=N, "
                                       "tick_ms=N, fail_create=0|1, fail_load=0|1, create_ms=N)", tok);
                        err_build_from_json(&e, true);
                        err_wrap(&e, "BootSource", "Boot source error: ");
                        err_string(&e, "InvalidKernelCommandLine", "The kernel command line is invalid: ", sb_str(&m));
                        fail_main(&e, FC_EXIT_GENERIC);
                }
        }
}

static bool console_enabled(const KParam *params, size_t n) {
        bool ttys0 = false, no_uarts = false;

        for (size_t i = 0; i < n; i++) {
                if (streq(params[i].name, "console") && params[i].value && startswith(params[i].value, "ttyS0"))
                        ttys0 = true;
                if (streq(params[i].name, "8250.nr_uarts") && params[i].value && streq(params[i].value, "0"))
                        no_uarts = true;
        }
        return ttys0 && !no_uarts;
}

/* open_file_nonblock(): create, read+write, O_NONBLOCK. */
static int open_file_nonblock(const char *path) {
        return open(path, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0666);
}

static void config_logger(const JsonValue *cfg) {
        const char *path = get_str(cfg, "log_path");
        const char *level = get_str(cfg, "level");

        if (path) {
                int fd = open_file_nonblock(path);
                if (fd < 0) {
                        Err e = {};
                        err_build_from_json(&e, true);
                        err_wrap(&e, "Logger", "Logger error: ");
                        err_io(&e, "LoggerUpdateError", "Failed to open target file: ", errno);
                        fail_main(&e, FC_EXIT_GENERIC);
                }
                logger.fd = fd;
        }
        /* LOGGER.update(): an absent level resets to the default (Info). */
        logger.max_level = LEVEL_INFO;
        if (level)
                (void) parse_level(level, &logger.max_level);
        if (get(cfg, "show_level"))
                logger.show_level = get_bool(cfg, "show_level", false);
        if (get(cfg, "show_log_origin"))
                logger.show_origin = get_bool(cfg, "show_log_origin", false);
        if (get_str(cfg, "module"))
                logger.module = strdup(get_str(cfg, "module"));
}

static void init_metrics(const char *path, bool from_config) {
        if (vm.metrics_fd >= 0) {
                Err e = {};
                err_build_from_json(&e, true);
                err_wrap(&e, "Metrics", "Metrics error: ");
                err_string(&e, "InitializationFailure",
                           "Cannot initialize the metrics system due to bad user input: ",
                           "Reinitialization of metrics not allowed.");
                fail_main(&e, FC_EXIT_GENERIC);
        }
        vm.metrics_fd = open_file_nonblock(path);
        if (vm.metrics_fd < 0) {
                int err = errno;
                Err e = {};
                _cleanup_sb_ StrBuf io = {};
                sb_append_io_display(&io, err);
                if (from_config) {
                        err_build_from_json(&e, true);
                        err_wrap(&e, "Metrics", "Metrics error: ");
                } else
                        err_wrap(&e, "MetricsInitialization", "Could not initialize metrics: ");
                err_string(&e, "InitializationFailure",
                           "Cannot initialize the metrics system due to bad user input: ", sb_str(&io));
                fail_main(&e, FC_EXIT_GENERIC);
        }
}

static void flush_metrics(void) {
        static char line[64 * 1024];
        _cleanup_free_ const char **drives = calloc(vm.n_drives + 1, sizeof *drives);
        _cleanup_free_ const char **nics = calloc(vm.n_nics + 1, sizeof *nics);
        _cleanup_free_ bool *ro = calloc(vm.n_drives + 1, sizeof *ro);
        uint64_t now = now_us();
        size_t n;

        if (vm.metrics_fd < 0 || !drives || !nics || !ro)
                return;
        for (size_t i = 0; i < vm.n_drives; i++) {
                drives[i] = vm.drives[i].id;
                ro[i] = vm.drives[i].read_only;
        }
        for (size_t i = 0; i < vm.n_nics; i++)
                nics[i] = vm.nics[i].id;
        FcdDevices dev = { drives, ro, vm.n_drives, nics, vm.n_nics };
        n = fcd_metrics_line(line, sizeof line, &dev, (uint64_t) vm.knobs.traffic,
                             vm.metrics_last ? now - vm.metrics_last : 0, clock_us(CLOCK_REALTIME) / 1000,
                             0 /* process_startup_time_us: not simulated */);
        vm.metrics_last = now;
        if (n > 0)
                write_or_drop(vm.metrics_fd, line, n);
}

static void config_machine(const JsonValue *mc) {
        vm.vcpus = (unsigned) get_u64(mc, "vcpu_count", 1);
        vm.mem_mib = get_u64(mc, "mem_size_mib", 128);
        vm.smt = get_bool(mc, "smt", false);
        vm.track_dirty_pages = get_bool(mc, "track_dirty_pages", false);
        vm.huge_pages = get_str(mc, "huge_pages") ?: "None";
        vm.cpu_template = get_str(mc, "cpu_template");
        if (vm.cpu_template && streq(vm.cpu_template, "None"))
                vm.cpu_template = NULL;

        Err e = {};
        if (vm.vcpus == 0 || vm.vcpus > MAX_VCPUS || (vm.smt && vm.vcpus > 1 && vm.vcpus % 2 == 1)) {
                err_build_from_json(&e, true);
                err_wrap(&e, "MachineConfig", "VM config error: ");
                err_unit(&e, "InvalidVcpuCount",
                         "The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even "
                         "number if SMT is enabled.");
                fail_main(&e, FC_EXIT_GENERIC);
        }
        if (vm.mem_mib == 0 || (!streq(vm.huge_pages, "None") && vm.mem_mib % 2 != 0)) {
                err_build_from_json(&e, true);
                err_wrap(&e, "MachineConfig", "VM config error: ");
                err_unit(&e, "InvalidMemorySize",
                         "The memory size (MiB) is either 0, or not a multiple of the configured page size.");
                fail_main(&e, FC_EXIT_GENERIC);
        }
}

/* Knobs and the console are the kernel's parameters: before the kernel's
 * "--" (firecracker's own parameters add neither). */
static void apply_boot_args(const char *args) {
        KParam *params;
        size_t n = kernel_params(args ?: DEFAULT_KERNEL_CMDLINE, &params);
        parse_knobs(params, n);
        vm.console = console_enabled(params, n);
        kernel_params_free(params, n);
}

static void config_boot_source(const JsonValue *bs) {
        const char *kernel = get_str(bs, "kernel_image_path");
        const char *initrd = get_str(bs, "initrd_path");
        const char *args = get_str(bs, "boot_args");
        Err e = {};

        vm.kernel_fd = open(kernel, O_RDONLY | O_CLOEXEC);
        if (vm.kernel_fd < 0) {
                err_build_from_json(&e, true);
                err_wrap(&e, "BootSource", "Boot source error: ");
                err_io(&e, "InvalidKernelPath", "The kernel file cannot be opened: ", errno);
                fail_main(&e, FC_EXIT_GENERIC);
        }
        if (initrd) {
                vm.initrd_fd = open(initrd, O_RDONLY | O_CLOEXEC);
                if (vm.initrd_fd < 0) {
                        err_build_from_json(&e, true);
                        err_wrap(&e, "BootSource", "Boot source error: ");
                        err_io(&e, "InvalidInitrdPath",
                               "The initrd file cannot be opened due to invalid path or invalid permissions. ", errno);
                        fail_main(&e, FC_EXIT_GENERIC);
                }
        }
        /* BootConfig::new() (vmm_config/boot_source.rs): Cmdline::try_from()
         * of boot_args or the default; it checks only the size. */
        const char *problem = ll_try_from(args ?: DEFAULT_KERNEL_CMDLINE);
        if (problem) {
                err_build_from_json(&e, true);
                err_wrap(&e, "BootSource", "Boot source error: ");
                err_string(&e, "InvalidKernelCommandLine", "The kernel command line is invalid: ", problem);
                fail_main(&e, FC_EXIT_GENERIC);
        }
        if (args)
                vm.boot_args = strdup(args);
        apply_boot_args(args);
}

_noreturn_ static void fail_drive(Err *e) {
        fail_main(e, FC_EXIT_GENERIC);
}

static void config_drive(const JsonValue *d) {
        const char *id = get_str(d, "drive_id");
        const char *path = get_str(d, "path_on_host");
        const char *socket = get_str(d, "socket");
        bool root = get_bool(d, "is_root_device", false);
        bool ro = get_bool(d, "is_read_only", false);
        Err e = {};
        size_t pos = SIZE_MAX;

        for (size_t i = 0; i < vm.n_drives; i++)
                if (streq(vm.drives[i].id, id))
                        pos = i;
        bool has_root = vm.n_drives > 0 && vm.drives[0].root;
        if (root && has_root && pos != 0) {
                err_build_from_json(&e, true);
                err_wrap(&e, "BlockDevice", "Block device error: ");
                err_unit(&e, "RootBlockDeviceAlreadyAdded", "A root block device already exists!");
                fail_drive(&e);
        }
        if (socket && !path)
                fail_unsupported("a vhost-user drive (`socket`)");
        if (!path || socket) {
                err_build_from_json(&e, true);
                err_wrap(&e, "BlockDevice", "Block device error: ");
                err_wrap(&e, "CreateBlockDevice", "Unable to create the virtio block device: ");
                err_unit(&e, "InvalidBlockConfig", "Invalid block config.");
                fail_drive(&e);
        }

        /* DiskProperties::open_file(): read, plus write unless read-only —
         * as the unprivileged VM user, which is the point of the exercise. */
        int fd = open(path, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : -1;
        if (fd < 0 || size < 0) {
                int err = errno;
                err_build_from_json(&e, true);
                err_wrap(&e, "BlockDevice", "Block device error: ");
                err_wrap(&e, "CreateBlockDevice", "Unable to create the virtio block device: ");
                err_wrap(&e, "VirtioBackend", "Virtio backend error: ");
                sb_append(&e.display, "Error manipulating the backing file: ");
                sb_append_io_display(&e.display, err);
                sb_appendf(&e.display, " %s", path);
                sb_append(&e.debug, "BackingFile(");
                sb_append_io_debug(&e.debug, err);
                sb_append(&e.debug, ", ");
                sb_append_rust_str_debug(&e.debug, path);
                sb_append(&e.debug, ")");
                fail_drive(&e);
        }
        if (size % 512 != 0)
                log_vmm(LEVEL_WARN,
                        "Disk size %" PRIi64 " is not a multiple of sector size 512; the remainder will not be "
                        "visible to the guest.",
                        (int64_t) size);

        Drive drive = {
                .id = strdup(id),
                .path = strdup(path),
                .root = root,
                .read_only = ro,
                .partuuid = get_str(d, "partuuid") ? strdup(get_str(d, "partuuid")) : NULL,
                .fd = fd,
                .nsectors = (uint64_t) size / 512,
        };
        if (pos != SIZE_MAX) {
                /* Same drive_id: an update, the old device is replaced. */
                safe_close(vm.drives[pos].fd);
                vm.drives[pos] = drive;
                if (root && pos != 0) {
                        Drive t = vm.drives[0];
                        vm.drives[0] = vm.drives[pos];
                        vm.drives[pos] = t;
                }
                return;
        }
        Drive *a = realloc(vm.drives, (vm.n_drives + 1) * sizeof(Drive));
        if (!a)
                abort();
        vm.drives = a;
        if (root) {
                memmove(vm.drives + 1, vm.drives, vm.n_drives * sizeof(Drive));
                vm.drives[0] = drive;
        } else
                vm.drives[vm.n_drives] = drive;
        vm.n_drives++;
}

_noreturn_ static void fail_tap(const char *variant, int err, const char *tap) {
        Err e = {};
        err_build_from_json(&e, true);
        err_wrap(&e, "NetDevice", "Network device error: ");
        err_wrap(&e, "CreateNetworkDevice", "Could not create the network device: ");
        if (streq(variant, "TapSetVnetHdrSize")) {
                err_wrap(&e, "TapSetVnetHdrSize", "Setting vnet header size failed: ");
                err_io(&e, "SetSizeOfVnetHdr", "Error while setting size of the vnet header: ", err);
        } else {
                err_wrap(&e, "TapOpen", "Open tap device failed: ");
                if (streq(variant, "OpenTun"))
                        err_io(&e, "OpenTun", "Couldn't open /dev/net/tun: ", err);
                else if (streq(variant, "InvalidIfname"))
                        err_unit(&e, "InvalidIfname", "Invalid interface name");
                else {
                        sb_append(&e.display, "Error while creating ifreq structure: ");
                        sb_append_io_display(&e.display, err);
                        sb_appendf(&e.display, ". Invalid TUN/TAP Backend provided by %s. Check our documentation "
                                               "on setting up the network devices.", tap);
                        sb_append(&e.debug, "IfreqExecuteError(");
                        sb_append_io_debug(&e.debug, err);
                        sb_append(&e.debug, ", ");
                        sb_append_rust_str_debug(&e.debug, tap);
                        sb_append(&e.debug, ")");
                }
        }
        fail_main(&e, FC_EXIT_GENERIC);
}

static void config_net(const JsonValue *n) {
        const char *id = get_str(n, "iface_id");
        const char *tap = get_str(n, "host_dev_name");
        const char *mac = get_str(n, "guest_mac");
        const JsonValue *mtu = get(n, "mtu");
        Err e = {};

        if (mac)
                for (size_t i = 0; i < vm.n_nics; i++)
                        if (vm.nics[i].mac && strcasecmp(vm.nics[i].mac, mac) == 0 && !streq(vm.nics[i].id, id)) {
                                err_build_from_json(&e, true);
                                err_wrap(&e, "NetDevice", "Network device error: ");
                                err_string(&e, "GuestMacAddressInUse", "The MAC address is already in use: ", mac);
                                fail_main(&e, FC_EXIT_GENERIC);
                        }

        /* Tap::open_named(), as the VM user: /dev/net/tun must be usable
         * and the tap must exist and be ours (TUNSETIFF needs CAP_NET_ADMIN
         * to create one, or ownership of a persistent one). */
        int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
                fail_tap("OpenTun", errno, tap);
        if (strlen(tap) >= IFNAMSIZ)
                fail_tap("InvalidIfname", 0, tap);
        struct ifreq ifr = {};
        memcpy(ifr.ifr_name, tap, strlen(tap));
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                fail_tap("IfreqExecuteError", errno, tap);
        int hdr = 12; /* sizeof(struct virtio_net_hdr_v1) */
        if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0)
                fail_tap("TapSetVnetHdrSize", errno, tap);
        if (mtu && (mtu->u64 < 68)) {
                char buf[16];
                snprintf(buf, sizeof(buf), "%" PRIu64, mtu->u64);
                err_build_from_json(&e, true);
                err_wrap(&e, "NetDevice", "Network device error: ");
                err_wrap(&e, "CreateNetworkDevice", "Could not create the network device: ");
                sb_appendf(&e.display, "MTU %s is out of range [68, 65535]", buf);
                sb_appendf(&e.debug, "InvalidMtu(%s)", buf);
                fail_main(&e, FC_EXIT_GENERIC);
        }

        for (size_t i = 0; i < vm.n_nics; i++)
                if (streq(vm.nics[i].id, id)) {
                        log_vmm(LEVEL_WARN,
                                "Replacing existing network device '%s'. The previous device configuration will be "
                                "destroyed.",
                                id);
                        safe_close(vm.nics[i].fd);
                        memmove(vm.nics + i, vm.nics + i + 1, (vm.n_nics - i - 1) * sizeof(Nic));
                        vm.n_nics--;
                        break;
                }
        Nic *a = realloc(vm.nics, (vm.n_nics + 1) * sizeof(Nic));
        if (!a)
                abort();
        vm.nics = a;
        vm.nics[vm.n_nics++] = (Nic) {
                .id = strdup(id),
                .tap = strdup(tap),
                .mac = mac ? strdup(mac) : NULL,
                .fd = fd,
        };
}

static void config_vsock(const JsonValue *v) {
        const char *uds = get_str(v, "uds_path");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int err = 0;

        vm.has_vsock = true;
        vm.vsock_cid = (uint32_t) get_u64(v, "guest_cid", 0);
        /* VsockUnixBackend::new(): a UnixListener on uds_path, which must not exist. */
        vm.vsock_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (vm.vsock_fd < 0)
                err = errno;
        else if (strlen(uds) >= sizeof(sa.sun_path))
                err = EINVAL;
        else {
                memcpy(sa.sun_path, uds, strlen(uds));
                if (bind(vm.vsock_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(vm.vsock_fd, 128) < 0)
                        err = errno;
        }
        if (err != 0) {
                Err e = {};
                err_build_from_json(&e, true);
                err_wrap(&e, "VsockDevice", "Vsock device error: ");
                err_wrap(&e, "CreateVsockBackend", "Cannot create backend for vsock device: ");
                err_io(&e, "UnixBind", "Error binding to the host-side Unix socket: ", err);
                fail_main(&e, FC_EXIT_GENERIC);
        }
}

static void open_kvm_and_serial(void);

static void build_microvm_from_json(const char *json, size_t len) {
        _cleanup_json_ JsonValue *cfg = NULL;
        JsonError jerr = {};
        SerdeError serr = {};
        Err e = {};

        int r = json_parse(json, len, &cfg, &jerr);
        if (r >= 0)
                r = check_struct(cfg, &vmm_config_schema, &serr);
        else {
                sb_append(&serr.message, jerr.message);
                serr.pos = jerr.pos;
                json_error_done(&jerr);
        }
        if (r < 0) {
                if (serr.unsupported)
                        fail_unsupported(serr.unsupported);
                err_build_from_json(&e, true);
                sb_appendf(&e.display, "Invalid JSON: %s at line %u column %u", sb_str(&serr.message), serr.pos.line,
                           serr.pos.column);
                sb_append(&e.debug, "InvalidJson(Error(");
                sb_append_rust_str_debug(&e.debug, sb_str(&serr.message));
                sb_appendf(&e.debug, ", line: %u, column: %u))", serr.pos.line, serr.pos.column);
                sb_free(&serr.message);
                fail_main(&e, FC_EXIT_GENERIC);
        }

        if (!vm.config_text && !(vm.config_text = strndup(json, len)))
                abort();

        /* In VmResources::from_json()'s order. */
        const JsonValue *v;
        if ((v = get(cfg, "logger")))
                config_logger(v);
        if ((v = get(cfg, "metrics")))
                init_metrics(get_str(v, "metrics_path"), true);
        if ((v = get(cfg, "machine-config")))
                config_machine(v);
        config_boot_source(get(cfg, "boot-source"));
        v = get(cfg, "drives");
        for (size_t i = 0; i < v->n_items; i++)
                config_drive(v->items[i]);
        if ((v = get(cfg, "network-interfaces")))
                for (size_t i = 0; i < v->n_items; i++)
                        config_net(v->items[i]);
        if ((v = get(cfg, "vsock")))
                config_vsock(v);

        open_kvm_and_serial();
        build_kernel_cmdline();
        guest_boot();
        log_main(LEVEL_INFO, "Successfully started microvm that was configured from one single json");
}

/* What building a VM needs past its resources, booted or restored. */
static void open_kvm_and_serial(void) {
        Err e = {};

        /* build_and_boot_microvm(): Kvm::new() opens /dev/kvm read-write.
         * Simplification: only the permission is checked (access(2)), so the
         * double works where the node exists but no KVM driver does. */
        if (access("/dev/kvm", R_OK | W_OK) < 0) {
                int err = errno;
                err_build_from_json(&e, false);
                err_wrap(&e, "Kvm", "Kvm error: ");
                sb_append(&e.display, "Error creating KVM object: ");
                sb_append_io_display(&e.display, err);
                sb_append(&e.display, " Make sure the user launching the firecracker process is configured on "
                                      "the /dev/kvm file's ACL.");
                sb_appendf(&e.debug, "Kvm(Error(%d))", err);
                fail_main(&e, FC_EXIT_GENERIC);
        }

        /* DeviceManager::setup_serial_device(): stdout becomes non-blocking. */
        int fl = fcntl(STDOUT_FILENO, F_GETFL);
        if (fl < 0)
                log_vmm(LEVEL_ERROR, "Could not get Firecracker stdout flags.");
        else if (fcntl(STDOUT_FILENO, F_SETFL, fl | O_NONBLOCK) < 0)
                log_vmm(LEVEL_ERROR, "Could not set Firecracker stdout to non-blocking.");
}

/* ---------------------------------------------------------------------------
 * API server (micro_http + api_server/parsed_request.rs)
 * ------------------------------------------------------------------------- */

typedef struct Conn {
        int fd;
        StrBuf in;
} Conn;

static Conn conns[MAX_CONNECTIONS];
static size_t n_conns;
static size_t api_payload_limit = 51200;

static void http_respond(Conn *c, int status, const char *body) {
        _cleanup_sb_ StrBuf r = {};
        /* micro_http: "HTTP/1.1 <code> \r\n", Server, keep-alive, and
         * Content-Type/Length unless 204. */
        sb_appendf(&r, "HTTP/1.1 %d \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n", status);
        if (status != 204)
                sb_appendf(&r, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body ? strlen(body) : 0);
        sb_append(&r, "\r\n");
        if (body && status != 204)
                sb_append(&r, body);
        (void) send(c->fd, r.s, r.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (status == 200)
                log_api(LEVEL_INFO, "The request was executed successfully. Status code: 200 OK.");
        else if (status == 204)
                log_api(LEVEL_INFO, "The request was executed successfully. Status code: 204 No Content.");
}

static void http_fault(Conn *c, int status, const char *message) {
        _cleanup_sb_ StrBuf body = {};
        sb_append(&body, "{\"fault_message\":");
        json_append_string(&body, message);
        sb_append(&body, "}");
        http_respond(c, status, sb_str(&body));
}

/* VmmActionError, answered 400 and logged. */
static void vmm_action_error(Conn *c, const char *message) {
        log_api(LEVEL_ERROR, "Received Error. Status code: 400 Bad Request. Message: %s", message);
        http_fault(c, 400, message);
}

/* RequestError: logged with {:?}, answered 400. */
static void request_error(Conn *c, const char *debug, const char *message) {
        log_api(LEVEL_ERROR, "%s", debug);
        http_fault(c, 400, message);
}

static const char *method_debug(const char *m) {
        return streq(m, "GET") ? "Get" : streq(m, "PUT") ? "Put" : streq(m, "PATCH") ? "Patch" : "Delete";
}

/* serde_json::from_slice() of a request body: false (answered) on an error. */
static bool parse_body(Conn *c, const char *body, size_t body_len, const Schema *schema, JsonValue **ret) {
        _cleanup_json_ JsonValue *v = NULL;
        JsonError jerr = {};
        SerdeError serr = {};

        int r = json_parse(body, body_len, &v, &jerr);
        if (r >= 0)
                r = check_struct(v, schema, &serr);
        else {
                sb_append(&serr.message, jerr.message);
                serr.pos = jerr.pos;
                json_error_done(&jerr);
        }
        if (r < 0) {
                _cleanup_sb_ StrBuf msg = {}, dbg = {};
                sb_appendf(&msg, "An error occurred when deserializing the json body of a request: %s at line %u column %u.",
                           sb_str(&serr.message), serr.pos.line, serr.pos.column);
                sb_append(&dbg, "SerdeJson(Error(");
                sb_append_rust_str_debug(&dbg, sb_str(&serr.message));
                sb_appendf(&dbg, ", line: %u, column: %u))", serr.pos.line, serr.pos.column);
                sb_free(&serr.message);
                request_error(c, sb_str(&dbg), sb_str(&msg));
                return false;
        }
        *ret = TAKE_PTR(v);
        return true;
}

/* Timers stand still while the vCPUs do: shifted by the pause. */
static void shift(uint64_t *t, uint64_t by) {
        if (*t != 0)
                *t += by;
}

static void vm_pause(void) {
        vm.paused = true;
        vm.paused_at = now_us();
}

static void vm_resume(void) {
        uint64_t d = now_us() - vm.paused_at;

        vm.paused = false;
        shift(&vm.login_at, d);
        shift(&vm.reboot_at, d);
        shift(&vm.poweroff_at, d);
        shift(&vm.cad_exit_at, d);
        shift(&vm.crash_at, d);
        shift(&vm.tick_at, d);
}

/* PATCH /vm: RuntimeApiController::pause()/resume(); pre-boot both are
 * OperationNotSupportedPreBoot. Pausing a paused VM (and resuming a
 * running one) succeeds. */
static void handle_vm_state(Conn *c, const char *body, size_t body_len) {
        _cleanup_json_ JsonValue *v = NULL;

        if (!parse_body(c, body, body_len, &vm_state_schema, &v))
                return;
        if (!vm.started) {
                vmm_action_error(c, "The requested operation is not supported before starting the microVM.");
                return;
        }
        if (streq(get_str(v, "state"), "Paused")) {
                if (!vm.paused)
                        vm_pause();
                log_api(LEVEL_INFO, "'pause vm' VMM action took 1 us.");
        } else {
                if (vm.paused)
                        vm_resume();
                log_api(LEVEL_INFO, "'resume vm' VMM action took 1 us.");
        }
        http_respond(c, 204, NULL);
}

static void snapshot_io_error(Conn *c, const char *prefix, const char *op, int err) {
        _cleanup_sb_ StrBuf m = {};
        sb_appendf(&m, "Create snapshot error: %s", prefix);
        if (op)
                sb_appendf(&m, "Cannot perform %s on the %s backing file: ", op,
                           strstr(prefix, "memory") ? "memory" : "snapshot");
        sb_append_io_display(&m, err);
        vmm_action_error(c, sb_str(&m));
}

/* PUT /snapshot/create: persist.rs create_snapshot(). Post-boot only; the
 * vCPUs must be paused (a running vCPU answers SaveState with NotAllowed).
 * Simplification: Diff snapshots are refused. */
static void handle_snapshot_create(Conn *c, const char *body, size_t body_len) {
        _cleanup_json_ JsonValue *v = NULL;
        _cleanup_sb_ StrBuf payload = {};
        const char *op = NULL;
        int err;

        if (!parse_body(c, body, body_len, &snapshot_create_schema, &v))
                return;
        if (!vm.started) {
                vmm_action_error(c, "The requested operation is not supported before starting the microVM.");
                return;
        }
        if (get_str(v, "snapshot_type") && streq(get_str(v, "snapshot_type"), "Diff")) {
                vmm_action_error(c, "The requested operation is not supported by the firecracker test double.");
                return;
        }
        if (!vm.paused) {
                vmm_action_error(c, "Create snapshot error: Cannot save the microVM state: Operation not allowed: "
                                    "save/restore unavailable while running");
                return;
        }
        if (vm.knobs.create_ms > 0)
                /* The API thread is busy writing: nothing else is served meanwhile. */
                (void) usleep((useconds_t) vm.knobs.create_ms * 1000);

        /* The state: what a restore needs to rebuild the devices. */
        sb_append(&payload, "{\"config\":");
        json_append_string(&payload, vm.config_text);
        sb_append(&payload, ",\"cmdline\":");
        json_append_string(&payload, vm.cmdline);
        sb_append(&payload, ",\"boot_args\":");
        if (vm.boot_args)
                json_append_string(&payload, vm.boot_args);
        else
                sb_append(&payload, "null");
        sb_appendf(&payload, ",\"guest_state\":%d,\"guest_us\":%" PRIu64 "}", (int) vm.state,
                   vm.paused_at - vm.boot_us);
        err = fcsnap_state_write(get_str(v, "snapshot_path"), sb_str(&payload), &op);
        if (err != 0) {
                snapshot_io_error(c, "", op, err);
                return;
        }
        /* fcdouble.fail_create: the memory file fills the disk half way. */
        err = fcsnap_memory_write(get_str(v, "mem_file_path"), vm.mem_mib << 20, &vm.mem,
                                  vm.knobs.fail_create ? (vm.mem_mib << 20) / 2 : 0, &op);
        if (err != 0) {
                snapshot_io_error(c, "Cannot write memory file: ", op, err);
                return;
        }
        log_api(LEVEL_INFO, "'create full snapshot' VMM action took 1 us.");
        http_respond(c, 204, NULL);
}

/* A failed restore leaves the process "too dirty to recover": firecracker
 * answers, then exits (BuildMicrovmFromRequestsError::Restore). */
_noreturn_ static void load_failed(Conn *c, const char *what, const char *detail, int err) {
        _cleanup_sb_ StrBuf m = {};
        sb_appendf(&m, "Load snapshot error: Failed to restore from snapshot: %s", what);
        if (detail)
                sb_append(&m, detail);
        if (err > 0)
                sb_append_io_display(&m, err);
        vmm_action_error(c, sb_str(&m));
        log_main(LEVEL_ERROR, "Building VMM configured from cmdline json failed: %s", sb_str(&m));
        exit(FC_EXIT_GENERIC);
}

/* PUT /snapshot/load: PrebootApiController::load_snapshot(). Only before
 * anything booted (with --config-file the VM booted at once: post-boot).
 * Devices are restored from the state: drives reopened at path_on_host,
 * taps at host_dev_name (or its network_overrides entry), the vsock bound
 * at uds_path (or vsock_override). Simplification: a device that cannot be
 * restored ends the process like a bad --config-file (exit 1) instead of
 * a 400 answer first. */
static void handle_snapshot_load(Conn *c, const char *body, size_t body_len) {
        _cleanup_json_ JsonValue *v = NULL, *st = NULL, *cfg = NULL;
        _cleanup_free_ char *payload = NULL;
        const JsonValue *mb, *o, *dev;
        const char *problem = NULL, *mem_path;
        JsonError jerr = {};
        int err;

        if (!parse_body(c, body, body_len, &snapshot_load_schema, &v))
                return;
        mb = get(v, "mem_backend");
        if (mb && get(v, "mem_file_path")) {
                request_error(c, "SerdeJson(Error(\"too many fields\"))",
                              "An error occurred when deserializing the json body of a request: too many fields: "
                              "either `mem_backend` or `mem_file_path` exclusively is required.");
                return;
        }
        if (!mb && !get(v, "mem_file_path")) {
                request_error(c, "SerdeJson(Error(\"missing field\"))",
                              "An error occurred when deserializing the json body of a request: missing field: "
                              "either `mem_backend` or `mem_file_path` is required.");
                return;
        }
        if (vm.started) {
                vmm_action_error(c, "The requested operation is not supported after starting the microVM.");
                return;
        }
        if (mb && streq(get_str(mb, "backend_type"), "Uffd")) {
                vmm_action_error(c, "The requested operation is not supported by the firecracker test double.");
                return;
        }
        mem_path = mb ? get_str(mb, "backend_path") : get_str(v, "mem_file_path");

        err = fcsnap_state_read(get_str(v, "snapshot_path"), &payload, &problem);
        if (err > 0)
                load_failed(c, "Failed to get snapshot state from file: Failed to open snapshot file: ", NULL, err);
        if (err < 0)
                load_failed(c, "Failed to get snapshot state from file: Failed to load snapshot state from file: ",
                            problem, 0);
        if (json_parse(payload, strlen(payload), &st, &jerr) < 0 || !get_str(st, "config") ||
            json_parse(get_str(st, "config"), strlen(get_str(st, "config")), &cfg, &jerr) < 0) {
                json_error_done(&jerr);
                load_failed(c, "Invalid snapshot state: ", "the double cannot read its own state", 0);
        }
        vm.boot_args = get_str(st, "boot_args") ? strdup(get_str(st, "boot_args")) : NULL;
        vm.cmdline = strdup(get_str(st, "cmdline") ?: "");
        vm.config_text = strdup(get_str(st, "config"));
        apply_boot_args(vm.boot_args);
        if ((dev = get(cfg, "machine-config")))
                config_machine(dev);

        err = fcsnap_memory_read(mem_path, vm.mem_mib << 20, &vm.mem, &problem);
        if (err > 0)
                load_failed(c, "Failed to load guest memory: Error creating guest memory from file: ", NULL, err);
        if (err < 0)
                load_failed(c, "Failed to load guest memory: Error creating guest memory from file: ", problem, 0);
        if (vm.knobs.fail_load)
                load_failed(c, "Failed to build microVM from snapshot: ", "fcdouble.fail_load=1", 0);

        dev = get(cfg, "drives");
        for (size_t i = 0; dev && i < dev->n_items; i++)
                config_drive(dev->items[i]);
        dev = get(cfg, "network-interfaces");
        for (size_t i = 0; dev && i < dev->n_items; i++) {
                JsonValue *nic = dev->items[i];
                o = get(v, "network_overrides");
                for (size_t j = 0; o && j < o->n_items; j++)
                        if (streq(get_str(o->items[j], "iface_id"), get_str(nic, "iface_id")))
                                for (size_t k = 0; k < nic->n_members; k++)
                                        if (streq(nic->members[k].key, "host_dev_name")) {
                                                free(nic->members[k].value->string);
                                                nic->members[k].value->string =
                                                        strdup(get_str(o->items[j], "host_dev_name"));
                                                nic->members[k].value->string_len =
                                                        strlen(nic->members[k].value->string);
                                        }
                config_net(nic);
        }
        if ((dev = get(cfg, "vsock"))) {
                o = get(v, "vsock_override");
                if (o)
                        for (size_t k = 0; k < dev->n_members; k++)
                                if (streq(dev->members[k].key, "uds_path")) {
                                        free(dev->members[k].value->string);
                                        dev->members[k].value->string = strdup(get_str(o, "uds_path"));
                                        dev->members[k].value->string_len = strlen(dev->members[k].value->string);
                                }
                config_vsock(dev);
        }
        open_kvm_and_serial();

        /* The restored guest: paused where it was, its timers relative to
         * the guest time saved (only the login prompt and ticks matter). */
        vm.started = true;
        vm.state = (GuestState) get_u64(st, "guest_state", GUEST_RUNNING);
        vm.boot_us = now_us() - get_u64(st, "guest_us", 0);
        vm.paused = true;
        vm.paused_at = now_us();
        if (vm.state == GUEST_BOOTING)
                vm.login_at = now_us();
        else if (vm.state == GUEST_RUNNING && vm.knobs.tick_ms > 0)
                vm.tick_at = now_us() + (uint64_t) vm.knobs.tick_ms * 1000;
        log_api(LEVEL_INFO, "'load snapshot' VMM action took 1 us.");
        if (get_bool(v, "resume_vm", false))
                vm_resume();
        console(true, "fcdouble: restored from a snapshot, boot token %s, %" PRIu64 " ticks so far%s", vm.mem.token,
                vm.mem.ticks, vm.paused ? " (paused)" : "");
        http_respond(c, 204, NULL);
}

static void handle_actions(Conn *c, const char *body, size_t body_len) {
        _cleanup_json_ JsonValue *v = NULL;

        if (!parse_body(c, body, body_len, &action_schema, &v))
                return;

        const char *action = get_str(v, "action_type");
        if (!vm.started) {
                /* Simplification: InstanceStart of a VM configured over the
                 * API is not implemented (our tools never do that). */
                vmm_action_error(c, streq(action, "InstanceStart")
                                            ? "The requested operation is not supported by the firecracker test double."
                                            : "The requested operation is not supported before starting the microVM.");
                return;
        }
        if (streq(action, "SendCtrlAltDel")) {
                http_respond(c, 204, NULL);
                guest_ctrl_alt_del();
        } else if (streq(action, "FlushMetrics")) {
                flush_metrics();
                http_respond(c, 204, NULL);
        } else {
                fcd_metrics_count_action_failure();
                vmm_action_error(c, "The requested operation is not supported after starting the microVM.");
        }
}

static void handle_request(Conn *c, const char *method, const char *uri, const char *body, size_t body_len) {
        _cleanup_sb_ StrBuf desc = {};

        /* describe(): the request as the API server logs it. */
        sb_appendf(&desc, "%s request on ", method_debug(method));
        sb_append_rust_str_debug(&desc, uri);
        if (body && !streq(uri, "/mmds")) {
                _cleanup_free_ char *b = strndup(body, body_len);
                sb_append(&desc, " with body ");
                sb_append_rust_str_debug(&desc, b);
        }
        log_api(LEVEL_INFO, "The API server received a %s.", sb_str(&desc));

        /* The first path segment after trimming leading '/'. */
        const char *p = uri;
        while (*p == '/')
                p++;
        _cleanup_free_ char *path = strndup(p, strcspn(p, "/"));
        const char *rest = p + strlen(path);
        while (*rest == '/')
                rest++;
        _cleanup_free_ char *second = strndup(rest, strcspn(rest, "/"));
        fcd_metrics_count_request(method, path);

        if (streq(method, "GET") && !body) {
                if (streq(path, "")) {
                        _cleanup_sb_ StrBuf b = {};
                        sb_append(&b, "{\"id\":");
                        json_append_string(&b, vm.id);
                        sb_appendf(&b, ",\"state\":\"%s\"", !vm.started ? "Not started" : vm.paused ? "Paused" : "Running");
                        sb_append(&b, ",\"vmm_version\":\"" FIRECRACKER_VERSION
                                      "\",\"app_name\":\"Firecracker\"}");
                        http_respond(c, 200, sb_str(&b));
                        return;
                }
                if (streq(path, "version")) {
                        http_respond(c, 200, "{\"firecracker_version\":\"" FIRECRACKER_VERSION "\"}");
                        return;
                }
                if (streq(path, "machine-config")) {
                        _cleanup_sb_ StrBuf b = {};
                        sb_appendf(&b, "{\"vcpu_count\":%u,\"mem_size_mib\":%" PRIu64 ",\"smt\":%s,", vm.vcpus,
                                   vm.mem_mib, vm.smt ? "true" : "false");
                        if (vm.cpu_template)
                                sb_appendf(&b, "\"cpu_template\":\"%s\",", vm.cpu_template);
                        sb_appendf(&b, "\"track_dirty_pages\":%s,\"huge_pages\":\"%s\"}",
                                   vm.track_dirty_pages ? "true" : "false", vm.huge_pages);
                        http_respond(c, 200, sb_str(&b));
                        return;
                }
                if (streq(path, "balloon") || streq(path, "mmds") || (streq(path, "vm") && streq(second, "config")) ||
                    (streq(path, "hotplug") && streq(second, "memory"))) {
                        vmm_action_error(c, "The requested operation is not supported by the firecracker test double.");
                        return;
                }
        }
        if (streq(method, "GET") && body) {
                request_error(c, "Generic(BadRequest, \"GET request cannot have a body.\")",
                              "GET request cannot have a body.");
                return;
        }
        if (!streq(method, "GET") && !streq(method, "DELETE") && !body) {
                _cleanup_sb_ StrBuf dbg = {}, msg = {};
                const char *m = streq(method, "PUT") ? "PUT" : "PATCH";
                sb_appendf(&msg, "Empty %s request.", m);
                sb_append(&dbg, "Generic(BadRequest, ");
                sb_append_rust_str_debug(&dbg, sb_str(&msg));
                sb_append(&dbg, ")");
                request_error(c, sb_str(&dbg), sb_str(&msg));
                return;
        }
        if (streq(method, "PUT") && streq(path, "actions")) {
                handle_actions(c, body, body_len);
                return;
        }
        if (streq(method, "PATCH") && streq(path, "vm") && !*second) {
                handle_vm_state(c, body, body_len);
                return;
        }
        if (streq(method, "PUT") && streq(path, "snapshot") && (streq(second, "create") || streq(second, "load"))) {
                if (streq(second, "create"))
                        handle_snapshot_create(c, body, body_len);
                else
                        handle_snapshot_load(c, body, body_len);
                return;
        }
        static const char *const put_known[] = { "balloon", "boot-source", "cpu-config", "drives", "pmem",
                                                 "logger", "serial", "machine-config", "metrics", "mmds",
                                                 "network-interfaces", "snapshot", "vsock", "entropy", NULL };
        static const char *const patch_known[] = { "balloon", "drives", "machine-config", "mmds",
                                                   "network-interfaces", "pmem", "vm", NULL };
        const char *const *known = streq(method, "PUT") ? put_known : streq(method, "PATCH") ? patch_known : NULL;
        for (size_t i = 0; known && known[i]; i++)
                if (streq(path, known[i])) {
                        /* Simplification: the body is not validated first. */
                        static const char *const pre_boot_only[] = { "boot-source", "cpu-config", "logger", "serial",
                                                                     "machine-config", "metrics", "vsock",
                                                                     "entropy", "balloon", NULL };
                        for (size_t j = 0; streq(method, "PUT") && pre_boot_only[j]; j++)
                                if (streq(path, pre_boot_only[j])) {
                                        vmm_action_error(c, "The requested operation is not supported after "
                                                            "starting the microVM.");
                                        return;
                                }
                        vmm_action_error(c, "The requested operation is not supported by the firecracker test double.");
                        return;
                }

        _cleanup_sb_ StrBuf msg = {}, dbg = {};
        sb_appendf(&msg, "Invalid request method and/or path: %s %s.", method, path);
        sb_append(&dbg, "InvalidPathMethod(");
        sb_append_rust_str_debug(&dbg, path);
        sb_appendf(&dbg, ", %s)", method_debug(method));
        request_error(c, sb_str(&dbg), sb_str(&msg));
}

static void conn_close(size_t i) {
        safe_close(conns[i].fd);
        sb_free(&conns[i].in);
        conns[i] = conns[--n_conns];
}

/* Processes complete requests in the connection's buffer. Returns false if
 * the connection must be closed. */
static bool conn_process(Conn *c) {
        for (;;) {
                char *s = c->in.s;
                if (!s)
                        return true;
                char *head_end = strstr(s, "\r\n\r\n");
                if (!head_end)
                        return c->in.len < 65536;
                size_t head_len = (size_t) (head_end - s) + 4;

                _cleanup_free_ char *head = strndup(s, head_len - 4);
                char *line_end = strstr(head, "\r\n");
                if (line_end)
                        *line_end = 0;
                char method[16] = "", uri[4096] = "", version[16] = "";
                if (sscanf(head, "%15s %4095s %15s", method, uri, version) != 3 ||
                    (!streq(version, "HTTP/1.0") && !streq(version, "HTTP/1.1")) ||
                    (!streq(method, "GET") && !streq(method, "PUT") && !streq(method, "PATCH") &&
                     !streq(method, "DELETE"))) {
                        http_fault(c, 400, "Invalid request.");
                        return false;
                }

                size_t content_length = 0;
                for (char *h = line_end ? line_end + 2 : NULL; h && *h;) {
                        char *next = strstr(h, "\r\n");
                        if (next)
                                *next = 0;
                        if (strncasecmp(h, "content-length:", 15) == 0) {
                                uint64_t v;
                                const char *why;
                                char *val = h + 15;
                                while (*val == ' ' || *val == '\t')
                                        val++;
                                val[strcspn(val, " \t")] = 0;
                                if (!rust_parse_unsigned(val, UINT32_MAX, &v, &why)) {
                                        http_fault(c, 400, "Invalid value. Key:Content-Length");
                                        return false;
                                }
                                content_length = (size_t) v;
                        }
                        h = next ? next + 2 : NULL;
                }
                if (content_length > api_payload_limit) {
                        _cleanup_sb_ StrBuf m = {};
                        sb_appendf(&m, "Request payload with size %zu is larger than the limit of %zu allowed by "
                                       "server.\nAll previous unanswered requests will be dropped.",
                                   content_length, api_payload_limit);
                        http_fault(c, 413, sb_str(&m));
                        return false;
                }
                if (c->in.len < head_len + content_length)
                        return true;

                /* An absolute URI (http://host/path) is reduced to its path. */
                const char *path = uri;
                if (startswith(path, "http://")) {
                        path = strchr(path + 7, '/') ?: "/";
                }
                _cleanup_free_ char *abs_path = strndup(path, strcspn(path, "?"));
                handle_request(c, method, abs_path, content_length > 0 ? s + head_len : NULL, content_length);

                memmove(c->in.s, c->in.s + head_len + content_length, c->in.len - head_len - content_length + 1);
                c->in.len -= head_len + content_length;
        }
}

/* ---------------------------------------------------------------------------
 * main loop
 * ------------------------------------------------------------------------- */

static int listen_fd = -EBADF;
static bool stdin_active;
static StrBuf stdin_line;

static void serial_input(void) {
        char buf[4096];
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));

        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
                log_vmm(LEVEL_WARN, "Detached the serial input due to peer close/error.");
                stdin_active = false;
                return;
        }
        if (n < 0)
                return;
        if (vm.state == GUEST_HUNG || vm.state == GUEST_HALTED || vm.state == GUEST_PANICKED)
                return;
        sb_append_n(&stdin_line, buf, (size_t) n);
        for (;;) {
                char *nl = memchr(stdin_line.s, '\n', stdin_line.len);
                if (!nl)
                        break;
                *nl = 0;
                char *line = stdin_line.s;
                line[strcspn(line, "\r")] = 0;
                /* The guest's tty echoes what it reads, and obeys two commands. */
                console(false, "%s", line);
                if (vm.state == GUEST_RUNNING && streq(line, "reboot"))
                        guest_begin_shutdown(NULL);
                else if (vm.state == GUEST_RUNNING && streq(line, "poweroff"))
                        guest_poweroff();
                size_t used = (size_t) (nl - stdin_line.s) + 1;
                memmove(stdin_line.s, stdin_line.s + used, stdin_line.len - used + 1);
                stdin_line.len -= used;
        }
}

static bool stdin_is_serial_input(void) {
        struct stat st;
        return isatty(STDIN_FILENO) == 1 || (fstat(STDIN_FILENO, &st) >= 0 && S_ISFIFO(st.st_mode));
}

static void flood_step(void) {
        for (int i = 0; i < 256 && vm.flood_left != 0; i++) {
                if (!console(true, "fcdouble: flood line %" PRIu64 " 0123456789abcdefghijklmnopqrstuvwxyz",
                             vm.flood_n++))
                        vm.flood_dropped++;
                if (vm.flood_left > 0 && --vm.flood_left == 0)
                        vm.flood_report = true;
        }
}

/* One line of long_line bytes, no newline, 64 KiB per turn of the event
 * loop: what the non-blocking console cannot take is dropped. */
static void long_line_step(void) {
        static char chunk[65536];
        size_t want = (size_t) MIN(vm.long_line_left, (int64_t) sizeof chunk);
        ssize_t n;

        if (chunk[0] == '\0')
                memset(chunk, 'x', sizeof chunk);
        n = write(STDOUT_FILENO, chunk, want);
        if (n < 0)
                n = 0;
        vm.long_line_dropped += want - (size_t) n;
        vm.long_line_left -= (int64_t) want;
        if (vm.long_line_left == 0)
                vm.long_line_report = true;
}

/* A wedged VMM: the socket stays bound and accepts into its backlog, but
 * nobody answers. Only signals end this. */
_noreturn_ static void vmm_wedge(void) {
        log_vmm(LEVEL_INFO, "fcdouble: hang=vmm: the VMM event loop is wedged from now on");
        for (;;)
                pause();
}

_noreturn_ static void event_loop(void) {
        stdin_active = vm.console && stdin_is_serial_input();

        if (vm.knobs.hang_vmm)
                vmm_wedge();

        for (;;) {
                uint64_t now = now_us();
                int64_t timeout = -1;

#define DUE(t) ((t) != 0 && (t) <= now)
                /* hang_vmm_after_ms: after it has answered what it was
                 * asked until then (a start's readiness check included). */
                if (vm.knobs.hang_vmm_after_ms > 0 && now >= vm.boot_us + (uint64_t) vm.knobs.hang_vmm_after_ms * 1000)
                        vmm_wedge();
#define WAIT_FOR(t)                                                             \
        do {                                                                    \
                if ((t) != 0) {                                                 \
                        int64_t ms = (int64_t) (((t) - now + 999) / 1000);      \
                        if (timeout < 0 || ms < timeout)                        \
                                timeout = ms;                                   \
                }                                                               \
        } while (0)

                if (vm.paused) {
                        /* The vCPUs stand still: no guest time passes. */
                        goto wait;
                }
                if (DUE(vm.crash_at)) {
                        log_vmm(LEVEL_INFO, "fcdouble: crashing with signal %d as configured", vm.knobs.crash_signal);
                        (void) signal(vm.knobs.crash_signal, SIG_DFL);
                        raise(vm.knobs.crash_signal);
                        _exit(FC_EXIT_GENERIC);
                }
                if (DUE(vm.tick_at)) {
                        vm.mem.ticks++;
                        console(true, "fcdouble: tick %" PRIu64 " (boot token %s)", vm.mem.ticks, vm.mem.token);
                        vm.tick_at += (uint64_t) vm.knobs.tick_ms * 1000;
                        if (vm.tick_at <= now)
                                vm.tick_at = now + (uint64_t) vm.knobs.tick_ms * 1000;
                }
                if (DUE(vm.cad_exit_at))
                        guest_reboot_now();
                if (DUE(vm.login_at)) {
                        vm.login_at = 0;
                        if (vm.state == GUEST_BOOTING)
                                guest_login_prompt();
                }
                if (DUE(vm.reboot_at)) {
                        vm.reboot_at = 0;
                        if (vm.state == GUEST_RUNNING || vm.state == GUEST_BOOTING) {
                                console(true, "systemd-shutdown[1]: Rebooting.");
                                guest_reboot_now();
                        }
                        if (vm.state == GUEST_PANICKED)
                                guest_reboot_now();
                }
                if (DUE(vm.poweroff_at)) {
                        vm.poweroff_at = 0;
                        if (vm.state == GUEST_RUNNING || vm.state == GUEST_BOOTING)
                                guest_poweroff();
                }
                if (vm.flood_left != 0 && vm.state == GUEST_RUNNING) {
                        flood_step();
                        timeout = 0;
                }
                if (vm.long_line_left != 0 && vm.state == GUEST_RUNNING) {
                        long_line_step();
                        timeout = 0;
                }
                WAIT_FOR(vm.tick_at);
                WAIT_FOR(vm.crash_at);
                WAIT_FOR(vm.cad_exit_at);
                WAIT_FOR(vm.login_at);
                WAIT_FOR(vm.reboot_at);
                WAIT_FOR(vm.poweroff_at);
wait:;
                /* PeriodicMetrics: a line at start, then every period. */
                if (vm.metrics_fd >= 0 && (vm.metrics_at == 0 || DUE(vm.metrics_at))) {
                        flush_metrics();
                        vm.metrics_at = now + (uint64_t) vm.knobs.metrics_period_ms * 1000;
                }
                WAIT_FOR(vm.metrics_at);
                if (vm.knobs.hang_vmm_after_ms > 0)
                        WAIT_FOR(vm.boot_us + (uint64_t) vm.knobs.hang_vmm_after_ms * 1000);

                struct pollfd pfd[MAX_CONNECTIONS + 3];
                size_t n = 0;
                int listen_idx = -1, stdin_idx = -1, stdout_idx = -1;
                if (vm.flood_report || vm.long_line_report) {
                        /* Reported once the reader has caught up, so that the
                         * report itself is not among the dropped lines. */
                        stdout_idx = (int) n;
                        pfd[n++] = (struct pollfd) { .fd = STDOUT_FILENO, .events = POLLOUT };
                }
                if (listen_fd >= 0 && n_conns < MAX_CONNECTIONS) {
                        listen_idx = (int) n;
                        pfd[n++] = (struct pollfd) { .fd = listen_fd, .events = POLLIN };
                }
                if (stdin_active) {
                        stdin_idx = (int) n;
                        pfd[n++] = (struct pollfd) { .fd = STDIN_FILENO, .events = POLLIN };
                }
                size_t conn_base = n;
                for (size_t i = 0; i < n_conns; i++)
                        pfd[n++] = (struct pollfd) { .fd = conns[i].fd, .events = POLLIN };

                int r = poll(pfd, n, timeout > INT32_MAX ? INT32_MAX : (int) timeout);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        rust_panic("src/vmm/src/lib.rs", "EventManager events driver fatal error");
                }

                if (stdin_idx >= 0 && pfd[stdin_idx].revents)
                        serial_input();
                if (stdout_idx >= 0 && (pfd[stdout_idx].revents & POLLOUT)) {
                        /* Retried only while the reader is merely slow (EAGAIN). */
                        if (vm.flood_report &&
                            (console(true, "fcdouble: flood of %" PRIu64 " lines done, %" PRIu64
                                           " dropped by the non-blocking console",
                                     vm.flood_n, vm.flood_dropped) ||
                             console_errno != EAGAIN))
                                vm.flood_report = false;
                        if (vm.long_line_report &&
                            (console(false, "\nfcdouble: long line of %" PRId64 " bytes done, %" PRIu64
                                            " dropped by the non-blocking console",
                                     vm.knobs.long_line, vm.long_line_dropped) ||
                             console_errno != EAGAIN))
                                vm.long_line_report = false;
                }
                if (stdout_idx >= 0 && (pfd[stdout_idx].revents & (POLLERR | POLLHUP)))
                        vm.flood_report = vm.long_line_report = false;

                /* Connections, walked backwards because conn_close() swaps in the last one. */
                for (size_t i = n_conns; i-- > 0;) {
                        if (conn_base + i >= n || !pfd[conn_base + i].revents)
                                continue;
                        char buf[8192];
                        ssize_t l = recv(conns[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
                        if (l == 0 || (l < 0 && errno != EAGAIN && errno != EINTR)) {
                                conn_close(i);
                                continue;
                        }
                        if (l < 0)
                                continue;
                        sb_append_n(&conns[i].in, buf, (size_t) l);
                        if (!conn_process(&conns[i]))
                                conn_close(i);
                }

                if (listen_idx >= 0 && (pfd[listen_idx].revents & POLLIN)) {
                        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                        if (fd >= 0)
                                conns[n_conns++] = (Conn) { .fd = fd };
                }
        }
}

/* HttpServer::new(): bind + listen, never unlinking what is there. */
static void bind_api_socket(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        Err e = {};
        int err = 0;

        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd < 0)
                err = errno;
        else if (strlen(path) >= sizeof(sa.sun_path)) {
                /* Rust's UnixListener::bind refuses it before the syscall. */
                err_wrap(&e, "RunWithApi", "RunWithApiError error: ");
                err_wrap(&e, "FailedToBindAndRunHttpServer", "Failed to bind and run the HTTP server: ");
                sb_append(&e.display, "IO error: path must be shorter than SUN_LEN");
                sb_append(&e.debug, "IOError(Custom { kind: InvalidInput, error: \"path must be shorter than SUN_LEN\" })");
                fail_main(&e, FC_EXIT_GENERIC);
        } else {
                memcpy(sa.sun_path, path, strlen(path));
                if (bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 || listen(listen_fd, 128) < 0)
                        err = errno;
        }
        if (err == EADDRINUSE) {
                err_wrap(&e, "RunWithApi", "RunWithApiError error: ");
                _cleanup_sb_ StrBuf m = {};
                sb_appendf(&m, "Failed to open the API socket at: %s. Check that it is not already used.", path);
                sb_append(&e.display, sb_str(&m));
                sb_append(&e.debug, "FailedToBindSocket(");
                sb_append_rust_str_debug(&e.debug, path);
                sb_append(&e.debug, ")");
                fail_main(&e, FC_EXIT_GENERIC);
        }
        if (err != 0) {
                err_wrap(&e, "RunWithApi", "RunWithApiError error: ");
                err_wrap(&e, "FailedToBindAndRunHttpServer", "Failed to bind and run the HTTP server: ");
                err_io(&e, "IOError", "IO error: ", err);
                fail_main(&e, FC_EXIT_GENERIC);
        }
        _cleanup_sb_ StrBuf q = {};
        sb_append_rust_str_debug(&q, path);
        log_main(LEVEL_INFO, "Listening on API socket (%s).", sb_str(&q));
        log_api(LEVEL_INFO, "API server started.");
}

static char *read_config_or_panic(const char *path, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        _cleanup_sb_ StrBuf sb = {};
        int err = 0;

        if (fd < 0)
                err = errno;
        while (err == 0) {
                char buf[65536];
                ssize_t n = read(fd, buf, sizeof(buf));
                if (n < 0)
                        err = errno;
                else if (n == 0)
                        break;
                else
                        sb_append_n(&sb, buf, (size_t) n);
        }
        if (err != 0) {
                _cleanup_sb_ StrBuf m = {};
                sb_append(&m, "Unable to open or read from the configuration file: ");
                sb_append_io_debug(&m, err);
                rust_panic("src/firecracker/src/main.rs", sb_str(&m));
        }
        if (!utf8_valid(sb_str(&sb), sb.len))
                rust_panic("src/firecracker/src/main.rs",
                           "Unable to open or read from the configuration file: Error { kind: InvalidData, message: "
                           "\"stream did not contain valid UTF-8\" }");
        *ret_len = sb.len;
        if (!sb.s)
                sb_append(&sb, "");
        return TAKE_PTR(sb.s);
}

int main(int argc, char **argv) {
        ArgError ae;
        Err e = {};
        int extra;

        switch (arg_parse(arguments, ELEMENTSOF(arguments), argc, argv, &extra, &ae)) {
        case ARGS_HELP: {
                _cleanup_sb_ StrBuf help = {};
                arg_format_help(&help, arguments, ELEMENTSOF(arguments));
                printf("Firecracker v%s\n\n%s\n", FIRECRACKER_VERSION, sb_str(&help));
                return FC_EXIT_OK;
        }
        case ARGS_VERSION:
                printf("Firecracker v%s\n\n", FIRECRACKER_VERSION);
                return FC_EXIT_OK;
        case ARGS_ERROR: {
                _cleanup_sb_ StrBuf m = {};
                arg_error_display(&m, &ae);
                sb_append(&e.display, "Arguments parsing error: ");
                sb_append(&e.display, sb_str(&m));
                sb_append(&e.display, " \n\nFor more information try --help.");
                sb_append(&e.debug, "ParseArguments(");
                arg_error_debug(&e.debug, &ae);
                sb_append(&e.debug, ")");
                fail_main(&e, FC_EXIT_ARG_PARSING);
        }
        case ARGS_OK:
                break;
        }

        if (flag("snapshot-version") || arg_find(arguments, ELEMENTSOF(arguments), "describe-snapshot")->present)
                fail_unsupported("snapshots");

        /* validate_instance_id(...).expect("Invalid instance ID") */
        vm.id = arg("id");
        size_t id_len = strlen(vm.id);
        if (id_len < 1 || id_len > 64) {
                _cleanup_sb_ StrBuf m = {};
                sb_appendf(&m, "Invalid instance ID: InvalidLen(%zu, 1, 64)", id_len);
                rust_panic("src/firecracker/src/main.rs", sb_str(&m));
        }
        for (size_t i = 0; i < id_len; i++) {
                char c = vm.id[i];
                /* Simplification: ASCII only, as in the jailer double. */
                if (!(c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) {
                        _cleanup_sb_ StrBuf m = {};
                        sb_append(&m, "Invalid instance ID: InvalidChar(");
                        sb_append_rust_char_debug(&m, (unsigned char) c);
                        sb_appendf(&m, ", %zu)", i);
                        rust_panic("src/firecracker/src/main.rs", sb_str(&m));
                }
        }
        snprintf(logger.instance_id, sizeof(logger.instance_id), "%s", vm.id);

        /* Logger from the command line. */
        if (arg("level") && !parse_level(arg("level"), &logger.max_level)) {
                _cleanup_sb_ StrBuf m = {};
                sb_appendf(&m, "Invalid value for logger level: Failed to parse string to level filter: %s."
                               "Possible values: [Error, Warning, Info, Debug]", arg("level"));
                sb_append(&e.display, sb_str(&m));
                sb_append(&e.debug, "InvalidLogLevel(LevelFilterFromStrError(");
                sb_append_rust_str_debug(&e.debug, arg("level"));
                sb_append(&e.debug, "))");
                fail_main(&e, FC_EXIT_BAD_CONFIGURATION);
        }
        if (arg("log-path")) {
                int fd = open_file_nonblock(arg("log-path"));
                if (fd < 0) {
                        err_wrap(&e, "LoggerInitialization", "Could not initialize logger: ");
                        err_io(&e, "LoggerUpdateError", "Failed to open target file: ", errno);
                        fail_main(&e, FC_EXIT_GENERIC);
                }
                logger.fd = fd;
        }
        logger.show_level = flag("show-level");
        logger.show_origin = flag("show-log-origin");
        if (arg("module"))
                logger.module = strdup(arg("module"));

        log_main(LEVEL_INFO, "Running Firecracker v%s", FIRECRACKER_VERSION);
        register_signal_handlers();

        if (arg("metrics-path"))
                init_metrics(arg("metrics-path"), false);

        /* Simplification: no seccomp at all, so --seccomp-filter cannot be honoured. */
        if (arg("seccomp-filter"))
                fail_unsupported("--seccomp-filter");

        size_t config_len = 0;
        _cleanup_free_ char *config = arg("config-file") ? read_config_or_panic(arg("config-file"), &config_len) : NULL;

        if (arg("metadata"))
                fail_unsupported("--metadata");

        api_payload_limit = (size_t) parse_u64_or_panic(
                arg("http-api-max-payload-size"), SIZE_MAX,
                "'http-api-max-payload-size' parameter expected to be of 'usize' type.");
        if (arg("mmds-size-limit"))
                (void) parse_u64_or_panic(arg("mmds-size-limit"), SIZE_MAX,
                                          "'mmds-size-limit' parameter expected to be of 'usize' type.");

        api_enabled = !flag("no-api");
        if (api_enabled) {
                static const char *const times[] = { "start-time-us", "start-time-cpu-us", "parent-cpu-time-us" };
                for (size_t i = 0; i < ELEMENTSOF(times); i++)
                        if (arg(times[i])) {
                                _cleanup_sb_ StrBuf m = {};
                                sb_appendf(&m, "'%s' parameter expected to be of 'u64' type.", times[i]);
                                (void) parse_u64_or_panic(arg(times[i]), UINT64_MAX, sb_str(&m));
                        }
                bind_api_socket(arg("api-sock"));
        }

        /* Without --config-file the VMM waits, "Not started", for its API:
         * PUT /snapshot/load (our resume). Simplification: configuring a VM
         * over the API and InstanceStart are refused as unsupported. */
        if (!config && !api_enabled)
                fail_unsupported("--no-api without --config-file");
        if (config)
                build_microvm_from_json(config, config_len);
        event_loop();
}
