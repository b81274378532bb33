/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvmctl — the operator's command line. It talks to systemd over
 * D-Bus (sd-bus), reads the journal (sd-journal) and reuses lib/ for
 * configs and plans; it never runs another program. One file per group of
 * verbs: tools/microvmctl-*.c. */

#include <getopt.h>

#include "config-files.h"
#include "log.h"
#include "manager.h"
#include "microvmctl.h"

const char *arg_host_config = NULL;
const char *arg_host = NULL;
bool arg_json = false;
bool arg_offline = false;
bool arg_all = false;
bool arg_follow = false;
bool arg_until_stop = false;
unsigned arg_lines = 0;
bool arg_lines_set = false;
uint64_t arg_since = 0;
bool arg_dry_run = false;
bool arg_restart_changed = false;

static void help(void) {
        printf("Usage: microvmctl [OPTIONS] COMMAND ...\n"
               "\n"
               "Manage Firecracker microVMs run as microvm@ID.service units.\n"
               "\n"
               "Commands:\n"
               "  list                    One line per VM: configured, loaded or orphaned\n"
               "  status ID...            Everything about VMs, with their last console lines\n"
               "  start ID...             Start VMs and wait until each start is done\n"
               "  stop ID...              Stop VMs and wait until each stop is done\n"
               "  restart ID...           Restart VMs and wait until each restart is done\n"
               "  logs ID                 Show the serial console of a VM from the journal\n"
               "  console ID              Attach to the serial console of a VM (Ctrl-] detaches)\n"
               "  metrics [ID...]         The figures microvm-metrics.socket gives Prometheus\n"
               "  sync                    Start autostart VMs that are down, stop orphans,\n"
               "                          list (or restart) VMs whose config changed\n"
               "  gc                      Remove what VMs whose unit is not running left\n"
               "                          behind (jails, run dirs, cgroups, taps, devices)\n"
               "  validate [ID|FILE...]   Check the host config and VM configs (all VMs in\n"
               "                          the config search path when none are named)\n"
               "  suspend ID...           Suspend running VMs to disk (their next start\n"
               "                          resumes them)\n"
               "  resume ID...            Start suspended VMs from their snapshots\n"
               "  discard-snapshot ID...  Remove the snapshots of stopped VMs (the next\n"
               "                          start boots)\n"
               "\n"
               "Options:\n"
               "  -h --help               Show this help\n"
               "     --version            Show the version\n"
               "  -H --host=[USER@]HOST   Act on a remote host (systemd's bus over ssh)\n"
               "     --json               list, status, metrics: print JSON\n"
               "     --host-config=FILE   Use FILE instead of %s\n"
               "     --offline            validate: skip the checks of this host (files,\n"
               "                          bridges, uid range)\n"
               "     --all                validate: every config, and what two VMs must not\n"
               "                          share (MACs, taps, uids, vsock CIDs, disks)\n"
               "     --dry-run            sync, gc: print the plan only\n"
               "     --restart-changed    sync: restart VMs whose config changed, one by one\n"
               "  -f --follow             logs: follow new lines until Ctrl-C\n"
               "     --until-stop         logs: follow (implies -f) until the VM stops\n"
               "  -n --lines=N            logs: the last N lines (default 10)\n"
               "     --since=TIME         logs: lines since TIME (\"YYYY-MM-DD [HH:MM[:SS]]\",\n"
               "                          or -N[s|m|h|d] ago)\n"
               "\n"
               "See microvmctl(1) and microvm.conf(5).\n",
               HOST_CONFIG_PATH);
}

/* Which options each verb takes; anything else is a usage error. */
enum {
        OPT_JSON = 1 << 0,
        OPT_OFFLINE = 1 << 1,
        OPT_FOLLOW = 1 << 2,
        OPT_LINES = 1 << 3,
        OPT_SINCE = 1 << 4,
        OPT_REMOTE = 1 << 5,
        OPT_ALL = 1 << 6,
        OPT_DRY_RUN = 1 << 7,
        OPT_RESTART_CHANGED = 1 << 8,
        OPT_UNTIL_STOP = 1 << 9,
        OPT_LAST = OPT_UNTIL_STOP,
};

static const struct {
        const char *name;
        int (*run)(int argc, char **argv);
        int min_args, max_args;         /* -1: any */
        unsigned options;
} verbs[] = {
        { "list", verb_list, 0, 0, OPT_JSON | OPT_REMOTE },
        { "status", verb_status, 1, -1, OPT_JSON | OPT_REMOTE },
        { "start", verb_start, 1, -1, OPT_REMOTE },
        { "stop", verb_stop, 1, -1, OPT_REMOTE },
        { "restart", verb_restart, 1, -1, OPT_REMOTE },
        { "logs", verb_logs, 1, 1, OPT_FOLLOW | OPT_LINES | OPT_SINCE | OPT_UNTIL_STOP },
        { "console", verb_console, 1, 1, 0 },
        { "metrics", verb_metrics, 0, -1, OPT_JSON },
        { "validate", verb_validate, 0, -1, OPT_OFFLINE | OPT_ALL },
        { "sync", verb_sync, 0, 0, OPT_DRY_RUN | OPT_RESTART_CHANGED },
        { "gc", verb_gc, 0, 0, OPT_DRY_RUN },
        { "suspend", verb_suspend, 1, -1, 0 },
        { "resume", verb_resume, 1, -1, 0 },
        { "discard-snapshot", verb_discard_snapshot, 1, -1, 0 },
};

static const char *option_name(unsigned o) {
        switch (o) {
        case OPT_JSON: return "--json";
        case OPT_OFFLINE: return "--offline";
        case OPT_FOLLOW: return "--follow";
        case OPT_LINES: return "--lines";
        case OPT_SINCE: return "--since";
        case OPT_REMOTE: return "--host";
        case OPT_ALL: return "--all";
        case OPT_DRY_RUN: return "--dry-run";
        case OPT_RESTART_CHANGED: return "--restart-changed";
        case OPT_UNTIL_STOP: return "--until-stop";
        }
        return "?";
}

void ctl_log_problems(const Problems *problems) {
        for (size_t i = 0; i < problems->n; i++) {
                _cleanup_free_ char *m = problem_format(&problems->items[i]);
                if (!m)
                        (void) log_oom();
                else
                        log_error("%s", m);
        }
        if (problems->oom)
                (void) log_oom();
}

int ctl_load_host(HostConfig **ret) {
        Problems problems = {};
        int r;

        if (arg_host_config)
                setenv("MICROVM_HOST_CONFIG", arg_host_config, 1);
        r = host_config_load(ret, &problems);
        ctl_log_problems(&problems);
        problems_done(&problems);
        if (r < 0 && r != -EINVAL)
                return log_error_errno(r, "Failed to load host config %s: %m", host_config_path());
        return r;
}

int ctl_bus_open(sd_bus **ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = sd_lib_load(&error);
        if (r < 0)
                return log_error_errno(r, "Cannot talk to systemd: %s", error);
        r = manager_open(arg_host, ret, &error);
        if (r < 0)
                return log_error_errno(r, "Cannot talk to systemd: %s", error);
        return 0;
}

int ctl_check_id(const char *id) {
        const char *why = vm_id_invalid_reason(id);
        if (why)
                return log_error_errno(EINVAL, "\"%s\" is not a VM id: %s.", id, why);
        return 0;
}

int ctl_check_ids(int argc, char **argv) {
        for (int i = 0; i < argc; i++) {
                int r = ctl_check_id(argv[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

void json_string(FILE *f, const char *s) {
        if (!s) {
                fputs("null", f);
                return;
        }
        fputc('"', f);
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                switch (*p) {
                case '"': fputs("\\\"", f); break;
                case '\\': fputs("\\\\", f); break;
                case '\n': fputs("\\n", f); break;
                case '\r': fputs("\\r", f); break;
                case '\t': fputs("\\t", f); break;
                default:
                        if (*p < 0x20)
                                fprintf(f, "\\u%04x", *p);
                        else
                                fputc(*p, f);
                }
        fputc('"', f);
}

const char *yes_no(bool b) {
        return b ? "yes" : "no";
}

void json_bool(FILE *f, const char *key, bool b) {
        fprintf(f, ",\"%s\":%s", key, b ? "true" : "false");
}

void json_uint_or_null(FILE *f, const char *key, bool known, uint64_t v) {
        if (known)
                fprintf(f, ",\"%s\":%" PRIu64, key, v);
        else
                fprintf(f, ",\"%s\":null", key);
}

const char *format_timestamp(uint64_t usec, char buf[static 32]) {
        time_t t = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (usec == 0 || !gmtime_r(&t, &tm) || strftime(buf, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
                return "-";
        return buf;
}

const char *format_bytes_short(uint64_t bytes, char buf[static 32]) {
        static const char suffix[] = "KMGTPE";
        double v = (double) bytes;
        int i = -1;

        while (v >= 1024 && i < (int) sizeof suffix - 2) {
                v /= 1024;
                i++;
        }
        if (i < 0)
                snprintf(buf, 32, "%" PRIu64 "B", bytes);
        else if (v == (double) (uint64_t) v)
                snprintf(buf, 32, "%" PRIu64 "%c", (uint64_t) v, suffix[i]);
        else
                snprintf(buf, 32, "%.1f%c", v, suffix[i]);
        return buf;
}

/* "2026-12-07", "2026-12-07 10:00", "2026-12-07 10:00:05" (UTC) or "-30m". */
static int parse_since(const char *s, uint64_t *ret) {
        struct tm tm = {};
        const char *end;

        if (s[0] == '-') {
                char *e;
                errno = 0;
                unsigned long long n = strtoull(s + 1, &e, 10);
                uint64_t mult = USEC_PER_SEC;
                if (errno || e == s + 1)
                        return -EINVAL;
                if (streq(e, "m"))
                        mult *= 60;
                else if (streq(e, "h"))
                        mult *= 3600;
                else if (streq(e, "d"))
                        mult *= 86400;
                else if (!streq(e, "s") && !streq(e, ""))
                        return -EINVAL;
                uint64_t nowu = now_usec(CLOCK_REALTIME);
                *ret = n * mult >= nowu ? 1 : nowu - n * mult;
                return 0;
        }
        end = strptime(s, "%Y-%m-%d", &tm);
        if (!end)
                return -EINVAL;
        if (*end == ' ' || *end == 'T') {
                const char *e2 = strptime(end + 1, "%H:%M:%S", &tm);
                if (!e2)
                        e2 = strptime(end + 1, "%H:%M", &tm);
                if (!e2)
                        return -EINVAL;
                end = e2;
        }
        if (*end)
                return -EINVAL;
        time_t t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

int main(int argc, char **argv) {
        enum { ARG_VERSION = 0x100, ARG_HOST_CONFIG, ARG_JSON, ARG_OFFLINE, ARG_SINCE, ARG_ALL, ARG_DRY_RUN,
               ARG_RESTART_CHANGED, ARG_UNTIL_STOP };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "host", required_argument, NULL, 'H' },
                { "host-config", required_argument, NULL, ARG_HOST_CONFIG },
                { "json", no_argument, NULL, ARG_JSON },
                { "offline", no_argument, NULL, ARG_OFFLINE },
                { "all", no_argument, NULL, ARG_ALL },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "restart-changed", no_argument, NULL, ARG_RESTART_CHANGED },
                { "follow", no_argument, NULL, 'f' },
                { "until-stop", no_argument, NULL, ARG_UNTIL_STOP },
                { "lines", required_argument, NULL, 'n' },
                { "since", required_argument, NULL, ARG_SINCE },
                {}
        };
        unsigned given = 0;
        int c, r;

        log_set_program_name("microvmctl");
        log_parse_environment(false);

        /* Options anywhere on the line ("validate --offline web1"), and
         * getopt's own messages replaced by ours (with our prefix). */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hH:fn:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("microvmctl %s\n", PROJECT_VERSION);
                        return EXIT_SUCCESS;
                case 'H':
                        arg_host = optarg;
                        given |= OPT_REMOTE;
                        break;
                case ARG_HOST_CONFIG:
                        arg_host_config = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        given |= OPT_JSON;
                        break;
                case ARG_OFFLINE:
                        arg_offline = true;
                        given |= OPT_OFFLINE;
                        break;
                case ARG_ALL:
                        arg_all = true;
                        given |= OPT_ALL;
                        break;
                case ARG_DRY_RUN:
                        arg_dry_run = true;
                        given |= OPT_DRY_RUN;
                        break;
                case ARG_RESTART_CHANGED:
                        arg_restart_changed = true;
                        given |= OPT_RESTART_CHANGED;
                        break;
                case 'f':
                        arg_follow = true;
                        given |= OPT_FOLLOW;
                        break;
                case ARG_UNTIL_STOP:
                        arg_until_stop = true;
                        given |= OPT_UNTIL_STOP;
                        break;
                case 'n': {
                        char *e;
                        errno = 0;
                        unsigned long v = strtoul(optarg, &e, 10);
                        if (errno || e == optarg || *e || optarg[0] == '-' || v > 1000000) {
                                log_error("--lines: \"%s\" is not a number of lines (0-1000000).", optarg);
                                return EXIT_USAGE;
                        }
                        arg_lines = (unsigned) v;
                        arg_lines_set = true;
                        given |= OPT_LINES;
                        break;
                }
                case ARG_SINCE:
                        if (parse_since(optarg, &arg_since) < 0) {
                                log_error("--since: \"%s\" is not a time (\"YYYY-MM-DD [HH:MM[:SS]]\" in UTC, or -N[s|m|h|d]).",
                                          optarg);
                                return EXIT_USAGE;
                        }
                        given |= OPT_SINCE;
                        break;
                case ':':
                        log_error("Option %s needs a value (see --help).", argv[optind - 1]);
                        return EXIT_USAGE;
                default:
                        if (optopt)
                                log_error("Unknown option -%c (see --help).", optopt);
                        else
                                log_error("Unknown option %s (see --help).", argv[optind - 1]);
                        return EXIT_USAGE;
                }

        if (optind >= argc) {
                log_error("Missing command (see --help).");
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++) {
                int n = argc - optind - 1;

                if (!streq(argv[optind], verbs[i].name))
                        continue;
                for (unsigned o = 1; o <= OPT_LAST; o <<= 1)
                        if ((given & o) && !(verbs[i].options & o)) {
                                log_error("%s does not take %s (see --help).", verbs[i].name, option_name(o));
                                return EXIT_USAGE;
                        }
                if (arg_all && n > 0) {
                        log_error("validate --all checks every config: it takes no ids or files (see --help).");
                        return EXIT_USAGE;
                }
                if (n < verbs[i].min_args || (verbs[i].max_args >= 0 && n > verbs[i].max_args)) {
                        log_error("%s takes %s (see --help).", verbs[i].name,
                                  verbs[i].max_args == 0 ? "no arguments" :
                                  verbs[i].max_args == 1 ? "exactly one VM id" : "at least one VM id");
                        return EXIT_USAGE;
                }
                r = verbs[i].run(n, argv + optind + 1);
                return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }
        log_error("Unknown command \"%s\" (see --help).", argv[optind]);
        return EXIT_USAGE;
}
