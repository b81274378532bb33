/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* jailer — a faithful test double of Firecracker's jailer (v1.16 era).
 *
 * Built only with -Dtests=true, installed nowhere. It behaves like the real
 * jailer (firecracker src/jailer/src/{main,env,cgroup,chroot,
 * resource_limits}.rs and src/utils/src/arg_parser.rs) wherever our tools,
 * systemd or a user can observe it; ../../../shared/JAILER-CONTRACT.md is the
 * spec. In short, in the real jailer's order:
 *
 *   close fds >= 3, clear the environment; parse argv (ArgParser rules:
 *   "--flag value" only, duplicates refused except --cgroup and
 *   --resource-limit, the first "--" ends our flags); validate --id,
 *   canonicalize --exec-file, --chroot-base-dir, --uid/--gid, --parent-cgroup,
 *   --cgroup-version, and (cgroup v2, no --cgroup values) move into
 *   <mount>/<parent> if it exists; validate --cgroup and --resource-limit;
 *   mkdir -p <base>/<exec>/<id>/root; copy the exec file in; join --netns;
 *   set rlimits; set up cgroups; unshare a mount namespace and pivot_root into
 *   the jail; create /, /dev, /dev/net, /run (0700, uid:gid); mknod
 *   /dev/net/tun, /dev/kvm, /dev/urandom (warn only) and /dev/userfaultfd;
 *   write /<exec>.pid (O_EXCL); drop to uid/gid and exec /<exec> in place.
 *
 * Every failure prints the real jailer's two stderr lines — the error's
 * Display, then "Error: " and its Debug form — and exits 1.
 *
 * Where this double simplifies (each also noted at the spot):
 *   - cgroup v1 with --cgroup values is refused ("not supported by this
 *     double"); v1 without values does nothing, like the real one.
 *   - --id accepts only ASCII alphanumerics and '-'; the real one also
 *     accepts Unicode alphanumerics (char::is_alphanumeric).
 *   - The ≤ 1.12 rule that the exec file name contains "firecracker" is not
 *     enforced (newer jailers dropped it).
 *   - If pivot_root(2) is impossible (EINVAL: the current root is the
 *     initramfs rootfs, which cannot be pivoted away from), it falls back to
 *     chroot(2) and says so on stderr; the real jailer fails there.
 *   - aarch64 cache-info copying is not done (x86_64 only).
 */

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <grp.h>
#include <inttypes.h>
#include <time.h>
#include <unistd.h>

#include "arg-parser.h"
#include "doubles-util.h"

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

#define JAILER_VERSION DOUBLES_FIRECRACKER_VERSION
#define PROC_MOUNTS "/proc/mounts"

/* ---- errors: Display on one line, "Error: <Debug>" on the next, exit 1 ---- */

_noreturn_ static void die(const StrBuf *display, const StrBuf *debug) {
        /* main() prints the Display with eprintln!, then returning Err from
         * main makes the Rust runtime print "Error: {:?}" and exit 1. */
        fflush(stdout);
        fprintf(stderr, "%s\nError: %s\n", sb_str(display), sb_str(debug));
        /* _exit: after pivot_root there is no /proc, and a sanitizer's
         * atexit leak check would fail there for reasons of its own. */
        _exit(EXIT_FAILURE);
}

_noreturn_ static void die_args(const ArgError *e) {
        _cleanup_sb_ StrBuf d = {}, g = {};

        sb_append(&d, "Failed to parse arguments: ");
        arg_error_display(&d, e);
        sb_append(&g, "ArgumentParsing(");
        arg_error_debug(&g, e);
        sb_append(&g, ")");
        die(&d, &g);
}

/* Errors of the form Variant(PathBuf, io::Error) whose Display is
 * "<prefix><path>: <io error>" (thiserror prints the path without quotes). */
_noreturn_ static void die_path_io(const char *variant, const char *prefix, const char *path, int err) {
        _cleanup_sb_ StrBuf d = {}, g = {};

        sb_appendf(&d, "%s%s: ", prefix, path);
        sb_append_io_display(&d, err);
        sb_appendf(&g, "%s(", variant);
        sb_append_rust_str_debug(&g, path);
        sb_append(&g, ", ");
        sb_append_io_debug(&g, err);
        sb_append(&g, ")");
        die(&d, &g);
}

/* Errors of the form Variant(io::Error): "<prefix><io error>". */
_noreturn_ static void die_io(const char *variant, const char *prefix, int err) {
        _cleanup_sb_ StrBuf d = {}, g = {};

        sb_appendf(&d, "%s", prefix);
        sb_append_io_display(&d, err);
        sb_appendf(&g, "%s(", variant);
        sb_append_io_debug(&g, err);
        sb_append(&g, ")");
        die(&d, &g);
}

/* Errors of the form Variant(String): "<display>" given whole. */
_noreturn_ static void die_str(const char *variant, const char *display, const char *value) {
        _cleanup_sb_ StrBuf d = {}, g = {};

        sb_append(&d, display);
        sb_appendf(&g, "%s(", variant);
        sb_append_rust_str_debug(&g, value);
        sb_append(&g, ")");
        die(&d, &g);
}

/* Failure modes this double does not implement; never printed by the real
 * jailer, so say clearly who is talking. */
_noreturn_ static void die_unsupported(const char *what) {
        fflush(stdout);
        fprintf(stderr, "jailer test double: %s is not supported by this double\n"
                        "Error: Unsupported(\"%s\")\n", what, what);
        _exit(EXIT_FAILURE);
}

/* ---- arguments, as the real jailer's build_arg_parser() declares them ---- */

/* Sorted by name: the parser checks requirements in this order, so
 * "--exec-file" is reported missing before "--id". */
static Argument arguments[] = {
        { .name = "cgroup", .allow_multiple = true, .takes_value = true,
          .help = "Cgroup and value to be set by the jailer. It must follow this format: "
                  "<cgroup_file>=<value> (e.g cpu.shares=10). This argument can be used multiple "
                  "times to add multiple cgroups." },
        { .name = "cgroup-version", .takes_value = true, .default_value = "1",
          .help = "Select the cgroup version used by the jailer." },
        { .name = "chroot-base-dir", .takes_value = true, .default_value = "/srv/jailer",
          .help = "The base folder where chroot jails are located." },
        { .name = "daemonize",
          .help = "Daemonize the jailer before exec, by invoking setsid(), and redirecting the "
                  "standard I/O file descriptors to /dev/null." },
        { .name = "exec-file", .required = true, .takes_value = true, .help = "File path to exec into." },
        { .name = "gid", .required = true, .takes_value = true,
          .help = "The group identifier the jailer switches to after exec." },
        { .name = "id", .required = true, .takes_value = true, .help = "Jail ID." },
        { .name = "netns", .takes_value = true,
          .help = "Path to the network namespace this microVM should join." },
        { .name = "new-pid-ns", .help = "Exec into a new PID namespace." },
        { .name = "parent-cgroup", .takes_value = true,
          .help = "Parent cgroup in which the cgroup of this microvm will be placed." },
        { .name = "resource-limit", .allow_multiple = true, .takes_value = true,
          .help = "Resource limit values to be set by the jailer. It must follow this format: "
                  "<resource>=<value> (e.g no-file=1024). This argument can be used multiple "
                  "times to add multiple resource limits. Current available resource values "
                  "are:\n\t\tfsize: The maximum size in bytes for files created by the "
                  "process.\n\t\tno-file: Specifies a value one greater than the maximum file "
                  "descriptor number that can be opened by this process." },
        { .name = "uid", .required = true, .takes_value = true,
          .help = "The user identifier the jailer switches to after exec." },
        { .name = "version", .help = "Print the binary version number." },
};

static Argument *find_argument(const char *name) {
        return arg_find(arguments, ELEMENTSOF(arguments), name);
}

static const char *single_value(const char *name) {
        return arg_value(arguments, ELEMENTSOF(arguments), name);
}

/* Returns the index of the first extra argument (after "--"), argc if none.
 * Exits for --help/--version and on any parse error. */
static int parse_arguments(int argc, char **argv) {
        ArgError e;
        int extra;

        switch (arg_parse(arguments, ELEMENTSOF(arguments), argc, argv, &extra, &e)) {
        case ARGS_HELP: {
                _cleanup_sb_ StrBuf help = {};
                arg_format_help(&help, arguments, ELEMENTSOF(arguments));
                printf("Jailer v%s\n\n", JAILER_VERSION);
                printf("%s\n\n", sb_str(&help));
                printf("Any arguments after the -- separator will be supplied to the jailed binary.\n\n");
                exit(EXIT_SUCCESS);
        }
        case ARGS_VERSION:
                printf("Jailer v%s\n\n", JAILER_VERSION);
                exit(EXIT_SUCCESS);
        case ARGS_ERROR:
                die_args(&e);
        case ARGS_OK:
                break;
        }
        return extra;
}

/* ---- validators ---- */

static void validate_instance_id(const char *id) {
        size_t len = strlen(id), pos = 0;

        if (len < 1 || len > 64) {
                _cleanup_sb_ StrBuf d = {}, g = {};
                sb_appendf(&d, "Invalid instance ID: Invalid len (%zu);  the length must be between 1 and 64", len);
                sb_appendf(&g, "InvalidInstanceId(InvalidLen(%zu, 1, 64))", len);
                die(&d, &g);
        }
        for (const char *p = id; *p; pos++) {
                uint32_t cp;
                size_t n = utf8_decode(p, strlen(p), &cp);
                if (n == 0) {
                        cp = 0xfffd;
                        n = 1;
                }
                /* Simplification: ASCII only (Rust's is_alphanumeric is Unicode). */
                bool ok = cp == '-' || (cp < 0x80 && ((cp >= 'a' && cp <= 'z') ||
                                                      (cp >= 'A' && cp <= 'Z') ||
                                                      (cp >= '0' && cp <= '9')));
                if (!ok) {
                        _cleanup_sb_ StrBuf d = {}, g = {}, c = {};
                        /* Display uses the char itself, position is in chars. */
                        sb_append_n(&c, p, n);
                        sb_appendf(&d, "Invalid instance ID: Invalid char (%s) at position %zu", sb_str(&c), pos);
                        sb_append(&g, "InvalidInstanceId(InvalidChar(");
                        sb_append_rust_char_debug(&g, cp);
                        sb_appendf(&g, ", %zu))", pos);
                        die(&d, &g);
                }
                p += n;
        }
}

/* Rust Path::components() check used for --parent-cgroup and --cgroup files:
 * RootDir (leading '/'), CurDir (only a leading "." component survives
 * normalisation) or ParentDir ("..") anywhere is refused. */
static bool path_has_dot_or_root_components(const char *p) {
        if (p[0] == '/')
                return true;
        if (p[0] == '.' && (p[1] == '/' || p[1] == 0))
                return true;
        for (const char *c = p; *c;) {
                size_t n = strcspn(c, "/");
                if (n == 2 && c[0] == '.' && c[1] == '.')
                        return true;
                c += n;
                c += strspn(c, "/");
        }
        return false;
}

static char *path_join3(const char *a, const char *b, const char *c) {
        _cleanup_sb_ StrBuf sb = {};

        sb_append(&sb, a);
        if (b) {
                if (sb.len == 0 || sb.s[sb.len - 1] != '/')
                        sb_append(&sb, "/");
                sb_append(&sb, b);
        }
        if (c) {
                if (sb.len == 0 || sb.s[sb.len - 1] != '/')
                        sb_append(&sb, "/");
                sb_append(&sb, c);
        }
        if (!sb.s)
                sb_append(&sb, "");
        return TAKE_PTR(sb.s);
}

/* Path::parent(): NULL for "/" (and for a bare name, which we never have). */
static char *path_parent(const char *p) {
        size_t len = strlen(p);

        while (len > 1 && p[len - 1] == '/')
                len--;
        if (len <= 1)
                return NULL;
        while (len > 0 && p[len - 1] != '/')
                len--;
        while (len > 1 && p[len - 1] == '/')
                len--;
        if (len == 0)
                return NULL;
        return strndup(p, len);
}

static bool path_exists(const char *p) {
        struct stat st;
        return stat(p, &st) >= 0;
}

/* ---- cgroups (cgroup.rs) ---- */

/* CgroupHierarchies::new(): parses /proc/mounts with the real jailer's regex
 * ^([a-z2]*) (?P<dir>.*) cgroup(?P<ver>2?) (?P<options>.*) 0 0$; for v2 the
 * first cgroup2 line wins. Returns the v2 mount, or NULL for version 1 (the
 * caller only needs to know that some v1 hierarchy exists). */
static char *cgroup_find_hierarchy(unsigned version, bool *ret_v1_found) {
        _cleanup_fclose_ FILE *f = fopen(PROC_MOUNTS, "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;
        bool v1_found = false;

        if (!f)
                die_path_io("FileOpen", "Failed to open file ", PROC_MOUNTS, errno);

        while (getline(&line, &n, f) > 0) {
                char *fields[64];
                size_t nf = 0;
                line[strcspn(line, "\n")] = 0;
                for (char *s = line, *tok; nf < ELEMENTSOF(fields) && (tok = strsep(&s, " "));)
                        fields[nf++] = tok;
                if (nf < 6 || !streq(fields[nf - 1], "0") || !streq(fields[nf - 2], "0"))
                        continue;
                if (fields[0][strspn(fields[0], "abcdefghijklmnopqrstuvwxyz2")] != 0)
                        continue;
                const char *fstype = fields[2];
                if (version == 2 && streq(fstype, "cgroup2"))
                        return strdup(fields[1]);
                if (version == 1 && streq(fstype, "cgroup"))
                        v1_found = true;
        }
        if (version == 1 && v1_found) {
                *ret_v1_found = true;
                return NULL;
        }
        die_str("CgroupHierarchyMissing", "Hierarchy not found: No hierarchy found for this cgroup version.",
                "No hierarchy found for this cgroup version.");
}

/* writeln_special(): fs::write(path, "value\n"). */
static void cgroup_writeln(const char *path, const char *value) {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
        _cleanup_free_ char *line = NULL;

        if (fd < 0)
                die_path_io("Write", "Failed to write to ", path, errno);
        if (asprintf(&line, "%s\n", value) < 0)
                abort();
        ssize_t l = write(fd, line, strlen(line));
        if (l < 0)
                die_path_io("Write", "Failed to write to ", path, errno);
        if ((size_t) l != strlen(line))
                die_path_io("Write", "Failed to write to ", path, EIO);
}

/* CgroupV2::write_all_subtree_control(): enable +controller in the
 * cgroup.subtree_control of path and of every ancestor that has one, top
 * down (so from the mount root to path). */
static void cgroup_write_all_subtree_control(const char *path, const char *controller) {
        _cleanup_free_ char *file = path_join3(path, "cgroup.subtree_control", NULL);
        _cleanup_free_ char *parent = NULL, *value = NULL;

        if (!path_exists(file))
                return;
        if (asprintf(&value, "+%s", controller) < 0)
                abort();
        parent = path_parent(path);
        if (parent)
                cgroup_write_all_subtree_control(parent, controller);
        cgroup_writeln(file, value);
}

typedef struct CgroupProperty {
        char *file;
        char *value;
} CgroupProperty;

typedef struct CgroupConf {
        char *location;         /* <mount>/<parent>/<id> */
        CgroupProperty *properties;
        size_t n_properties;
} CgroupConf;

/* get_controller_from_filename(): the text before the first '.' (the caller
 * has checked there is one). */
static char *controller_from_filename(const char *file) {
        char *c = strndup(file, strcspn(file, "."));
        if (!c)
                abort();
        return c;
}

static bool controller_available(const char *mount, const char *controller) {
        _cleanup_free_ char *path = path_join3(mount, "cgroup.controllers", NULL);
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;

        /* An unreadable list means no controllers, as in detect_available_controllers(). */
        if (!f)
                return false;
        while (getline(&line, &n, f) > 0) {
                line[strcspn(line, "\n")] = 0;
                char *s = line, *tok;
                while ((tok = strsep(&s, " ")))
                        if (streq(tok, controller))
                                return true;
        }
        return false;
}

static void cgroup_setup(const CgroupConf *conf) {
        _cleanup_free_ char *parent = path_parent(conf->location);
        char **enabled = calloc(conf->n_properties + 1, sizeof(char *));
        size_t n_enabled = 0;

        if (!enabled)
                abort();

        /* create_dir_all(location) */
        for (char *p = conf->location + 1;; p++) {
                if (*p != '/' && *p != 0)
                        continue;
                char saved = *p;
                *p = 0;
                if (mkdir(conf->location, 0777) < 0 && errno != EEXIST) {
                        int err = errno;
                        *p = saved;
                        die_path_io("CreateDir", "Failed to create directory ", conf->location, err);
                }
                *p = saved;
                if (saved == 0)
                        break;
        }

        /* write_values(): enable each controller once along the ancestry, then
         * write the value into the leaf. The kernel refuses "+ctrl" with EBUSY
         * in a non-root cgroup that holds processes; we see that for free. */
        for (size_t i = 0; i < conf->n_properties; i++) {
                _cleanup_free_ char *controller = strndup(conf->properties[i].file,
                                                          strcspn(conf->properties[i].file, "."));
                bool done = false;
                for (size_t j = 0; j < n_enabled; j++)
                        if (streq(enabled[j], controller))
                                done = true;
                if (!done) {
                        cgroup_write_all_subtree_control(parent, controller);
                        enabled[n_enabled++] = strdup(controller);
                }
                _cleanup_free_ char *file = path_join3(conf->location, conf->properties[i].file, NULL);
                cgroup_writeln(file, conf->properties[i].value);
        }
        for (size_t j = 0; j < n_enabled; j++)
                free(enabled[j]);
        free(enabled);

        /* attach_pid() */
        _cleanup_free_ char *procs = path_join3(conf->location, "cgroup.procs", NULL);
        char pid[32];
        snprintf(pid, sizeof(pid), "%d", (int) getpid());
        cgroup_writeln(procs, pid);
}

/* ---- the environment: Env::new() and Env::run() ---- */

typedef struct Env {
        const char *id;
        char *exec_file_path;   /* canonical */
        const char *exec_file_name;
        char *chroot_dir;       /* <base>/<exec>/<id>/root */
        uid_t uid;
        gid_t gid;
        const char *netns;
        bool daemonize;
        bool new_pid_ns;
        uint64_t start_time_us;
        uint64_t start_time_cpu_us;
        uint64_t jailer_cpu_time_us;
        char **extra_args;
        size_t n_extra_args;
        CgroupConf *cgroup_conf;
        bool has_fsize;
        uint64_t fsize;
        uint64_t no_file;
        bool has_uffd;
        unsigned uffd_minor;
} Env;

static uint32_t parse_id_or_die(const char *name) {
        const char *s = single_value(name);
        const char *why;
        uint64_t v;

        if (!rust_parse_unsigned(s, UINT32_MAX, &v, &why)) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "Invalid %s: %s", name, s);
                die_str(streq(name, "uid") ? "Uid" : "Gid", sb_str(&d), s);
        }
        return (uint32_t) v;
}

/* get_userfaultfd_minor_dev_number(): "<minor> userfaultfd" in /proc/misc,
 * split on single spaces exactly like the real one (so right-aligned minors
 * below 100 are not found — faithfully). */
static bool userfaultfd_minor(unsigned *ret) {
        _cleanup_fclose_ FILE *f = fopen("/proc/misc", "re");
        _cleanup_free_ char *line = NULL;
        size_t n = 0;

        if (!f)
                return false;
        while (getline(&line, &n, f) > 0) {
                line[strcspn(line, "\n")] = 0;
                char *s = line;
                char *f0 = strsep(&s, " ");
                char *f1 = s ? strsep(&s, " ") : NULL;
                if (!f1 || !streq(f1, "userfaultfd"))
                        continue;
                uint64_t v;
                const char *why;
                if (!rust_parse_unsigned(f0, UINT32_MAX, &v, &why))
                        return false;
                *ret = (unsigned) v;
                return true;
        }
        return false;
}

static void env_new(Env *env, int extra, int argc, char **argv) {
        /* --id */
        env->id = single_value("id");
        validate_instance_id(env->id);

        /* --exec-file: canonicalized, must be a regular file; its canonical
         * basename names the jail directory, parent cgroup and pid file. */
        const char *exec_file = single_value("exec-file");
        env->exec_file_path = realpath(exec_file, NULL);
        if (!env->exec_file_path)
                die_path_io("Canonicalize", "Failed to canonicalize path ", exec_file, errno);
        struct stat st;
        if (stat(env->exec_file_path, &st) < 0 || !S_ISREG(st.st_mode)) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "%s is not a file", env->exec_file_path);
                die_str("NotAFile", sb_str(&d), env->exec_file_path);
        }
        env->exec_file_name = strrchr(env->exec_file_path, '/') + 1;
        /* Versions <= 1.12 also required "firecracker" in the name: not enforced. */

        /* --chroot-base-dir: must exist (canonicalize) and be a directory. */
        const char *chroot_base = single_value("chroot-base-dir");
        _cleanup_free_ char *base = realpath(chroot_base, NULL);
        if (!base)
                die_path_io("Canonicalize", "Failed to canonicalize path ", chroot_base, errno);
        if (stat(base, &st) < 0 || !S_ISDIR(st.st_mode)) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "%s is not a directory", base);
                die_str("NotADirectory", sb_str(&d), base);
        }
        _cleanup_free_ char *exec_dir = path_join3(base, env->exec_file_name, env->id);
        env->chroot_dir = path_join3(exec_dir, "root", NULL);

        env->uid = parse_id_or_die("uid");
        env->gid = parse_id_or_die("gid");
        env->netns = single_value("netns");
        env->daemonize = find_argument("daemonize")->present;
        env->new_pid_ns = find_argument("new-pid-ns")->present;

        /* --parent-cgroup: default is the exec file name. */
        const char *parent_cgroup = single_value("parent-cgroup") ?: env->exec_file_name;
        if (path_has_dot_or_root_components(parent_cgroup)) {
                _cleanup_sb_ StrBuf d = {}, g = {};
                sb_append(&d, "Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'");
                sb_append(&g, "CgroupInvalidParentPath");
                die(&d, &g);
        }

        /* --cgroup-version: a u8; which values work is decided later. */
        const char *ver_str = single_value("cgroup-version");
        uint64_t ver;
        const char *why;
        if (!rust_parse_unsigned(ver_str, UINT8_MAX, &ver, &why)) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "%s is an invalid cgroup version specifier", ver_str);
                die_str("CgroupInvalidVersion", sb_str(&d), ver_str);
        }

        Argument *cgroup_arg = find_argument("cgroup");

        /* cgroup v2 without --cgroup values: move into <mount>/<parent> if it
         * exists, else silently stay. The real jailer does this here, while
         * validating arguments — before creating the jail — not in run(). */
        if (!cgroup_arg->present && ver == 2) {
                _cleanup_free_ char *mount = cgroup_find_hierarchy(2, NULL);
                _cleanup_free_ char *cg_parent = path_join3(mount, parent_cgroup, NULL);
                if (path_exists(cg_parent)) {
                        _cleanup_free_ char *procs = path_join3(cg_parent, "cgroup.procs", NULL);
                        char pid[32];
                        int fd, err = 0;
                        snprintf(pid, sizeof(pid), "%d", (int) getpid());
                        /* fs::write() of the bare pid, no newline. */
                        fd = open(procs, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
                        if (fd < 0)
                                err = errno;
                        else if (write(fd, pid, strlen(pid)) < 0)
                                err = errno;
                        safe_close(fd);
                        if (err != 0) {
                                _cleanup_sb_ StrBuf d = {}, g = {};
                                sb_appendf(&d, "Failed to move process to cgroup (%s): ", cg_parent);
                                sb_append_io_display(&d, err);
                                sb_appendf(&d, ".\nHint: If you intended to create a child cgroup under %s, "
                                               "pass any --cgroup parameters.", cg_parent);
                                sb_append(&g, "CgroupMove(");
                                sb_append_rust_str_debug(&g, cg_parent);
                                sb_append(&g, ", ");
                                sb_append_io_debug(&g, err);
                                sb_append(&g, ")");
                                die(&d, &g);
                        }
                }
        }

        /* --cgroup <file>=<value>... */
        if (cgroup_arg->present) {
                bool v1 = false;
                /* Any version other than 1 and 2 finds no hierarchy and fails here. */
                _cleanup_free_ char *mount = cgroup_find_hierarchy((unsigned) ver, &v1);

                CgroupConf *conf = calloc(1, sizeof(CgroupConf));
                if (!conf)
                        abort();
                conf->properties = calloc(cgroup_arg->n_values, sizeof(CgroupProperty));
                if (!conf->properties)
                        abort();
                if (mount) {
                        _cleanup_free_ char *p = path_join3(mount, parent_cgroup, NULL);
                        conf->location = path_join3(p, env->id, NULL);
                }

                for (size_t i = 0; i < cgroup_arg->n_values; i++) {
                        const char *cg = cgroup_arg->values[i];
                        const char *eq = strchr(cg, '=');
                        /* cg.split('=') must give exactly two parts, the value non-empty. */
                        if (!eq || strchr(eq + 1, '=') || eq[1] == 0) {
                                _cleanup_sb_ StrBuf d = {};
                                sb_appendf(&d, "Invalid format for cgroups: %s", cg);
                                die_str("CgroupFormat", sb_str(&d), cg);
                        }
                        _cleanup_free_ char *file = strndup(cg, (size_t) (eq - cg));
                        if (path_has_dot_or_root_components(file)) {
                                _cleanup_sb_ StrBuf d = {};
                                sb_appendf(&d, "Cgroup invalid file: %s", cg);
                                die_str("CgroupInvalidFile", sb_str(&d), cg);
                        }
                        if (!strchr(file, '.')) {
                                _cleanup_sb_ StrBuf d = {};
                                sb_appendf(&d, "Cgroup invalid file: %s", file);
                                die_str("CgroupInvalidFile", sb_str(&d), file);
                        }
                        if (v1)
                                /* Simplification: only cgroup v2 placement is implemented. */
                                die_unsupported("--cgroup-version 1 with --cgroup values");

                        _cleanup_free_ char *controller = controller_from_filename(file);
                        if (!controller_available(mount, controller)) {
                                _cleanup_sb_ StrBuf d = {};
                                sb_appendf(&d, "Controller %s is unavailable", controller);
                                die_str("CgroupControllerUnavailable", sb_str(&d), controller);
                        }
                        conf->properties[conf->n_properties++] = (CgroupProperty) {
                                .file = TAKE_PTR(file),
                                .value = strdup(eq + 1),
                        };
                }
                env->cgroup_conf = conf;
        }

        /* --resource-limit <name>=<u64>: the value is parsed before the name is checked. */
        env->no_file = 2048;
        Argument *rl = find_argument("resource-limit");
        for (size_t i = 0; i < rl->n_values; i++) {
                const char *arg = rl->values[i];
                const char *eq = strchr(arg, '=');
                if (!eq) {
                        _cleanup_sb_ StrBuf d = {};
                        sb_appendf(&d, "Invalid format for resources limits: %s", arg);
                        die_str("ResLimitFormat", sb_str(&d), arg);
                }
                _cleanup_free_ char *name = strndup(arg, (size_t) (eq - arg));
                uint64_t v;
                if (!rust_parse_unsigned(eq + 1, UINT64_MAX, &v, &why)) {
                        _cleanup_sb_ StrBuf d = {}, g = {};
                        sb_appendf(&d, "Invalid limit value for resource: %s: %s", eq + 1, why);
                        sb_append(&g, "ResLimitValue(");
                        sb_append_rust_str_debug(&g, eq + 1);
                        sb_append(&g, ", ");
                        sb_append_rust_str_debug(&g, why);
                        sb_append(&g, ")");
                        die(&d, &g);
                }
                if (streq(name, "fsize")) {
                        env->has_fsize = true;
                        env->fsize = v;
                } else if (streq(name, "no-file"))
                        env->no_file = v;
                else {
                        _cleanup_sb_ StrBuf d = {};
                        sb_appendf(&d, "Invalid resource argument: %s", name);
                        die_str("ResLimitArgument", sb_str(&d), name);
                }
        }

        env->has_uffd = userfaultfd_minor(&env->uffd_minor);

        env->extra_args = argv + extra;
        env->n_extra_args = (size_t) (argc - extra);
}

static void mkdir_p_or_die(const char *path, mode_t mode) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                abort();
        for (char *c = p + 1;; c++) {
                if (*c != '/' && *c != 0)
                        continue;
                char saved = *c;
                *c = 0;
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        die_path_io("CreateDir", "Failed to create directory ", path, errno);
                *c = saved;
                if (saved == 0)
                        break;
        }
        /* create_dir_all() fails if the final component exists but is no directory. */
        struct stat st;
        if (stat(path, &st) < 0)
                die_path_io("CreateDir", "Failed to create directory ", path, errno);
        if (!S_ISDIR(st.st_mode))
                die_path_io("CreateDir", "Failed to create directory ", path, EEXIST);
}

/* copy_exec_to_chroot(): a copy, never a hard link (no page sharing between
 * VMMs). O_CREAT|O_NOFOLLOW without O_TRUNC: a symlink in the jail fails
 * (ELOOP), an existing file is overwritten in place, and a file with more
 * than one link is refused; then fchown to the VM uid. */
static void copy_exec_to_chroot(const Env *env) {
        _cleanup_free_ char *dst = path_join3(env->chroot_dir, env->exec_file_name, NULL);
        _cleanup_close_ int src_fd = -EBADF, dst_fd = -EBADF;
        struct stat st;

        src_fd = open(env->exec_file_path, O_RDONLY | O_CLOEXEC);
        if (src_fd < 0)
                die_path_io("Open", "Failed to open ", env->exec_file_path, errno);
        if (fstat(src_fd, &st) < 0)
                die_path_io("Metadata", "Cannot get metadata for a file: ", env->exec_file_path, errno);

        dst_fd = open(dst, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777);
        if (dst_fd < 0)
                die_path_io("Open", "Failed to open ", dst, errno);
        struct stat dst_st;
        if (fstat(dst_fd, &dst_st) < 0)
                die_path_io("Metadata", "Cannot get metadata for a file: ", dst, errno);
        if (dst_st.st_nlink > 1) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "Detected hard link at: %s", dst);
                die_str("HardLink", sb_str(&d), dst);
        }
        if (fchown(dst_fd, env->uid, env->gid) < 0)
                die_path_io("ChangeFileOwner", "Failed to change owner for ", dst, errno);

        char buf[65536];
        for (;;) {
                ssize_t n = read(src_fd, buf, sizeof(buf));
                if (n < 0) {
                        int err = errno;
                        _cleanup_sb_ StrBuf d = {}, g = {};
                        sb_appendf(&d, "Failed to copy %s to %s: ", env->exec_file_path, dst);
                        sb_append_io_display(&d, err);
                        sb_append(&g, "Copy(");
                        sb_append_rust_str_debug(&g, env->exec_file_path);
                        sb_append(&g, ", ");
                        sb_append_rust_str_debug(&g, dst);
                        sb_append(&g, ", ");
                        sb_append_io_debug(&g, err);
                        sb_append(&g, ")");
                        die(&d, &g);
                }
                if (n == 0)
                        break;
                for (ssize_t off = 0; off < n;) {
                        ssize_t w = write(dst_fd, buf + off, (size_t) (n - off));
                        if (w < 0) {
                                int err = errno;
                                _cleanup_sb_ StrBuf d = {}, g = {};
                                sb_appendf(&d, "Failed to copy %s to %s: ", env->exec_file_path, dst);
                                sb_append_io_display(&d, err);
                                sb_append(&g, "Copy(");
                                sb_append_rust_str_debug(&g, env->exec_file_path);
                                sb_append(&g, ", ");
                                sb_append_rust_str_debug(&g, dst);
                                sb_append(&g, ", ");
                                sb_append_io_debug(&g, err);
                                sb_append(&g, ")");
                                die(&d, &g);
                        }
                        off += w;
                }
        }
}

static void join_netns(const char *path) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                die_path_io("FileOpen", "Failed to open file ", path, errno);
        if (setns(fd, CLONE_NEWNET) < 0)
                die_io("SetNetNs", "Failed to join network namespace: netns: ", errno);
}

static void set_limit(int resource, uint64_t value, const char *what) {
        struct rlimit rl = { .rlim_cur = value, .rlim_max = value };

        if (setrlimit(resource, &rl) < 0) {
                _cleanup_sb_ StrBuf d = {};
                sb_appendf(&d, "Failed to set limit for resource: %s", what);
                die_str("Setrlimit", sb_str(&d), what);
        }
}

/* chroot.rs: new mount namespace, everything slave, bind the jail onto
 * itself (pivot_root needs the new root to be a mount point), pivot_root
 * into it, detach the old root. Nothing is mounted inside: no /proc, /sys
 * or /dev/null in the jail. */
static void enter_jail(const char *path) {
        /* Safe: this unshare affects only this process, which is about to
         * become the VMM; the host's mount table is untouched. */
        if (unshare(CLONE_NEWNS) < 0)
                die_io("UnshareNewNs", "Failed to unshare into new mount namespace: ", errno);
        /* MS_SLAVE|MS_REC: nothing we do below propagates back to the host. */
        if (mount(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL) < 0)
                die_io("MountPropagationSlave", "Failed to change the propagation type to slave: ", errno);
        if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
                die_io("MountBind", "Failed to bind mount the jail root directory: ", errno);
        if (chdir(path) < 0)
                die_io("SetCurrentDir", "Failed to change current directory: ", errno);
        if (mkdir("old_root", S_IRUSR | S_IWUSR) < 0)
                die_io("MkdirOldRoot", "Failed to create the jail root directory before pivoting root: ", errno);

        if (syscall(SYS_pivot_root, ".", "old_root") < 0) {
                if (errno != EINVAL)
                        die_io("PivotRoot", "Failed to pivot root: ", errno);
                /* Simplification: pivot_root is impossible when the current
                 * root is the initramfs rootfs (EINVAL). The real jailer
                 * fails here; the double falls back to chroot(2), which is
                 * weaker (the old root stays reachable to a root process)
                 * but keeps the observable layout identical. */
                fprintf(stderr, "jailer test double: pivot_root impossible (%s), falling back to chroot\n",
                        strerror(errno));
                (void) rmdir("old_root");
                if (chroot(".") < 0)
                        die_io("PivotRoot", "Failed to pivot root: ", errno);
                if (chdir("/") < 0)
                        die_io("ChdirNewRoot", "Failed to chdir into chroot directory: ", errno);
                return;
        }
        if (chdir("/") < 0)
                die_io("ChdirNewRoot", "Failed to chdir into chroot directory: ", errno);
        /* Safe: MNT_DETACH of the old root only in our private namespace. */
        if (umount2("old_root", MNT_DETACH) < 0)
                die_io("UmountOldRoot", "Failed to unmount the old jail root: ", errno);
        if (rmdir("old_root") < 0)
                die_io("RmOldRootDir", "Failed to remove old jail root directory: ", errno);
}

static void setup_jailed_folder(const Env *env, const char *folder) {
        mkdir_p_or_die(folder, 0777);
        if (chmod(folder, 0700) < 0)
                die_path_io("Chmod", "Failed to change permissions on ", folder, errno);
        if (chown(folder, env->uid, env->gid) < 0)
                die_path_io("ChangeFileOwner", "Failed to change owner for ", folder, errno);
}

/* mknod_and_own_dev(): char device, 0600, owned by the VM uid. An existing
 * node is EEXIST and fatal: a second start over an old jail fails here. */
static int mknod_and_own_dev(const Env *env, const char *path, unsigned major, unsigned minor, StrBuf *ret_display,
                             StrBuf *ret_debug) {
        if (mknod(path, S_IFCHR | S_IRUSR | S_IWUSR, makedev(major, minor)) < 0) {
                int err = errno;
                sb_appendf(ret_display, "Failed to create %s via mknod inside the jail: ", path);
                sb_append_io_display(ret_display, err);
                sb_append(ret_debug, "MknodDev(");
                sb_append_io_debug(ret_debug, err);
                sb_append(ret_debug, ", ");
                sb_append_rust_str_debug(ret_debug, path);
                sb_append(ret_debug, ")");
                return -err;
        }
        if (chown(path, env->uid, env->gid) < 0) {
                int err = errno;
                sb_appendf(ret_display, "Failed to change owner for %s: ", path);
                sb_append_io_display(ret_display, err);
                sb_append(ret_debug, "ChangeFileOwner(");
                sb_append_rust_str_debug(ret_debug, path);
                sb_append(ret_debug, ", ");
                sb_append_io_debug(ret_debug, err);
                sb_append(ret_debug, ")");
                return -err;
        }
        return 0;
}

static void mknod_and_own_dev_or_die(const Env *env, const char *path, unsigned major, unsigned minor) {
        _cleanup_sb_ StrBuf d = {}, g = {};

        if (mknod_and_own_dev(env, path, major, minor, &d, &g) < 0)
                die(&d, &g);
}

/* save_exec_file_pid(): /<exec>.pid, O_EXCL (an old pid file is fatal),
 * created by root, the bare pid without a newline. */
static void save_exec_file_pid(const Env *env, pid_t pid) {
        _cleanup_free_ char *path = NULL;
        char buf[32];

        if (asprintf(&path, "/%s.pid", env->exec_file_name) < 0)
                abort();
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0)
                die_path_io("FileOpen", "Failed to open file ", path, errno);
        snprintf(buf, sizeof(buf), "%d", (int) pid);
        if (write(fd, buf, strlen(buf)) != (ssize_t) strlen(buf))
                die_path_io("Write", "Failed to write to ", path, errno ?: EIO);
}

_noreturn_ static void exec_command(const Env *env) {
        _cleanup_free_ char *prog = NULL;
        char start_us[32], cpu_us[32], parent_cpu_us[32];
        size_t n = 0;

        if (asprintf(&prog, "/%s", env->exec_file_name) < 0)
                abort();
        snprintf(start_us, sizeof(start_us), "%" PRIu64, env->start_time_us);
        /* --start-time-cpu-us is the CPU time at exec, as the real one computes it. */
        snprintf(cpu_us, sizeof(cpu_us), "%" PRIu64, clock_us(CLOCK_PROCESS_CPUTIME_ID));
        snprintf(parent_cpu_us, sizeof(parent_cpu_us), "%" PRIu64, env->jailer_cpu_time_us);

        const char **args = calloc(10 + env->n_extra_args, sizeof(char *));
        if (!args)
                abort();
        args[n++] = prog;
        args[n++] = "--id";
        args[n++] = env->id;
        args[n++] = "--start-time-us";
        args[n++] = start_us;
        args[n++] = "--start-time-cpu-us";
        args[n++] = cpu_us;
        args[n++] = "--parent-cpu-time-us";
        args[n++] = parent_cpu_us;
        for (size_t i = 0; i < env->n_extra_args; i++)
                args[n++] = env->extra_args[i];
        args[n] = NULL;

        /* Rust's Command::exec() with .uid()/.gid(): setgid, drop
         * supplementary groups (setgroups(0) while still root), setuid; reset
         * the signal mask and SIGPIPE; then execve in place, so the VMM keeps
         * our pid. Any failure is reported as the exec error. */
        int err = 0;
        if (setgid(env->gid) < 0)
                err = errno;
        if (err == 0 && getuid() == 0 && setgroups(0, NULL) < 0 && errno != EPERM)
                err = errno;
        if (err == 0 && setuid(env->uid) < 0)
                err = errno;
        if (err == 0) {
                sigset_t empty;
                sigemptyset(&empty);
                (void) sigprocmask(SIG_SETMASK, &empty, NULL);
                (void) signal(SIGPIPE, SIG_DFL);
                execve(prog, (char **) args, environ);
                err = errno;
        }
        free(args);
        die_io("Exec", "Failed to exec into Firecracker: ", err);
}

_noreturn_ static void env_run(Env *env) {
        copy_exec_to_chroot(env);

        if (env->netns)
                join_netns(env->netns);

        if (env->has_fsize)
                set_limit(RLIMIT_FSIZE, env->fsize, "size of file");
        set_limit(RLIMIT_NOFILE, env->no_file, "number of file descriptors");

        /* Cgroups now: after pivot_root the cgroupfs is out of reach. */
        if (env->cgroup_conf)
                cgroup_setup(env->cgroup_conf);

        _cleanup_close_ int dev_null = -EBADF;
        if (env->daemonize) {
                dev_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (dev_null < 0)
                        die_path_io("Open", "Failed to open ", "/dev/null", errno);
        }

        enter_jail(env->chroot_dir);

        static const char *const folders[] = { "/", "/dev", "/dev/net", "/run" };
        for (size_t i = 0; i < ELEMENTSOF(folders); i++)
                setup_jailed_folder(env, folders[i]);

        mknod_and_own_dev_or_die(env, "/dev/net/tun", 10, 200);
        mknod_and_own_dev_or_die(env, "/dev/kvm", 10, 232);
        {
                /* /dev/urandom only warns (on stdout), even for EEXIST. */
                _cleanup_sb_ StrBuf d = {}, g = {};
                if (mknod_and_own_dev(env, "/dev/urandom", 1, 9, &d, &g) < 0) {
                        printf("Warning! Could not create /dev/urandom device inside jailer: %s.\n", sb_str(&d));
                        printf("MMDS version 2 will not be available to use.\n");
                        fflush(stdout);
                }
        }
        if (env->has_uffd)
                mknod_and_own_dev_or_die(env, "/dev/userfaultfd", 10, env->uffd_minor);

        env->jailer_cpu_time_us = clock_us(CLOCK_PROCESS_CPUTIME_ID) - env->start_time_cpu_us;

        if (env->daemonize) {
                /* Double fork: the first child is no process group leader and
                 * can setsid(); the grandchild is no session leader and can
                 * never reacquire a controlling terminal. */
                fflush(stdout);
                pid_t pid = fork();
                if (pid < 0)
                        die_io("Daemonize", "Failed to daemonize: ", errno);
                /* _exit after flushing: we are past pivot_root, where a
                 * sanitizer's atexit leak check cannot read /proc. */
                if (pid != 0)
                        _exit(EXIT_SUCCESS);
                if (setsid() < 0)
                        die_io("SetSid", "Failed to daemonize: setsid: ", errno);
                env->jailer_cpu_time_us += clock_us(CLOCK_PROCESS_CPUTIME_ID);
                pid = fork();
                if (pid < 0)
                        die_io("Daemonize", "Failed to daemonize: ", errno);
                if (pid != 0)
                        _exit(EXIT_SUCCESS);
                if (dup2(dev_null, STDIN_FILENO) < 0 || dup2(dev_null, STDOUT_FILENO) < 0 ||
                    dup2(dev_null, STDERR_FILENO) < 0)
                        die_io("Dup2", "Failed to duplicate fd: ", errno);
                env->jailer_cpu_time_us += clock_us(CLOCK_PROCESS_CPUTIME_ID);
        }

        if (env->new_pid_ns) {
                /* The VMM becomes pid 1 of a new pid namespace. A session
                 * leader hands leadership to the child (setsid there), so the
                 * child gets no SIGHUP when we exit. */
                bool is_session_leader = false;
                if (!env->daemonize) {
                        pid_t sid = getsid(0);
                        if (sid < 0)
                                die_io("GetSid", "Failed to get SID (getsid): ", errno);
                        is_session_leader = sid == getpid();
                }
                fflush(stdout);
                /* Raw clone with a NULL stack and no exit signal, like the
                 * real one: fork semantics in a new pid namespace. */
                long pid = syscall(SYS_clone, (unsigned long) CLONE_NEWPID, NULL, NULL, NULL, 0UL);
                if (pid < 0)
                        die_io("Clone", "Failed cloning into a new child process: ", errno);
                if (pid == 0) {
                        if (is_session_leader && setsid() < 0)
                                die_io("SetSid", "Failed to daemonize: setsid: ", errno);
                        exec_command(env);
                }
                save_exec_file_pid(env, (pid_t) pid);
                _exit(EXIT_SUCCESS);
        }

        save_exec_file_pid(env, getpid());
        exec_command(env);
}

int main(int argc, char **argv) {
        Env env = {
                .start_time_us = clock_us(CLOCK_MONOTONIC),
                .start_time_cpu_us = clock_us(CLOCK_PROCESS_CPUTIME_ID),
        };

        /* sanitize_process(): no inherited fd but stdio, no environment, so
         * firecracker never sees NOTIFY_SOCKET or LISTEN_FDS. */
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_UNSHARE) < 0) {
                fprintf(stderr, "thread 'main' panicked at src/jailer/src/main.rs:\n"
                                "Failed to sanitize the Jailer process: Failed to call close range syscall: %s (os error %d)\n",
                        strerror(errno), errno);
                abort();
        }
        if (clearenv() != 0)
                abort();

        int extra = parse_arguments(argc, argv);
        env_new(&env, extra, argc, argv);

        /* main(): create_dir_all(chroot_dir), then run(). An existing jail is fine. */
        mkdir_p_or_die(env.chroot_dir, 0777);
        env_run(&env);
}
