/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* The doubles reject what the real jailer and firecracker reject, with the
 * same messages and exit codes. Runs as any user: where a case needs root
 * (switching to a VM uid, /dev/kvm, /dev/net/tun) it adapts or skips with
 * the reason. Every wait is on an event (output, exit) with a deadline. */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "json.h"
#include "test-helpers.h"

#define VM_UID 123456

static char *tmp;       /* per test (criterion runs each test in its own process) */
static char *base;      /* <tmp>/base: a chroot base dir */

static const char *jailer_path(void) {
        const char *p = getenv("JAILER_DOUBLE");
        cr_assert(p, "JAILER_DOUBLE is not set (run through meson test)");
        return p;
}

static const char *firecracker_path(void) {
        const char *p = getenv("FIRECRACKER_DOUBLE");
        cr_assert(p, "FIRECRACKER_DOUBLE is not set (run through meson test)");
        return p;
}

static char *tmp_path(const char *name) {
        char *p;
        cr_assert(asprintf(&p, "%s/%s", tmp, name) >= 0);
        return p;
}

/* The firecracker double for a run as spawned with o. A run that drops to
 * a VM uid executes a copy in the test's own 0755 tree: the build tree may
 * be out of that uid's reach (a checkout in /root, 0700 on a stock Debian),
 * and the real jailer, too, runs a copy inside the jail. */
static const char *fc_exec_path(const SpawnOptions *o) {
        static char *copy;      /* per test process, inside tmp */
        _cleanup_close_ int in = -EBADF, out = -EBADF;
        char buf[65536];
        ssize_t n;

        if (!o || !o->drop_privileges)
                return firecracker_path();
        if (copy && access(copy, X_OK) == 0)
                return copy;
        free(copy);
        copy = tmp_path("bin");
        cr_assert(mkdir(copy, 0755) >= 0 || errno == EEXIST, "mkdir %s: %m", copy);
        free(copy);
        copy = tmp_path("bin/firecracker");
        in = open(firecracker_path(), O_RDONLY | O_CLOEXEC);
        cr_assert(in >= 0, "open %s: %m", firecracker_path());
        out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        cr_assert(out >= 0, "create %s: %m", copy);
        while ((n = read(in, buf, sizeof(buf))) > 0)
                cr_assert(write(out, buf, (size_t) n) == n, "write %s: %m", copy);
        cr_assert(n == 0, "read %s: %m", firecracker_path());
        cr_assert(fchmod(out, 0755) >= 0);
        return copy;
}

static void setup(void) {
        tmp = make_temp_dir("doubles-rules");
        cr_assert(tmp, "mkdtemp: %m");
        base = tmp_path("base");
        cr_assert(mkdir(base, 0755) >= 0);
}

/* Idempotent: also called before cr_skip_test(), after which criterion
 * does not run the suite's .fini. */
static void teardown(void) {
        children_kill_all();
        remove_tree(tmp);
        free(tmp);
        free(base);
        tmp = base = NULL;
}

#define skip_test(...)                          \
        do {                                    \
                teardown();                     \
                cr_skip_test(__VA_ARGS__);      \
        } while (0)

/* Runs prog with args (NULL-terminated) and waits for it to exit. */
static void run(Child *c, const char *prog, const SpawnOptions *o, const char *const *args) {
        const char *argv[64] = { prog };
        size_t n = 1;

        for (; *args; args++) {
                cr_assert(n < ELEMENTSOF(argv) - 1);
                argv[n++] = *args;
        }
        argv[n] = NULL;
        cr_assert(child_spawn(c, (char *const *) argv, o) >= 0, "spawn %s: %m", prog);
        cr_assert(child_wait_exit(c, TEST_TIMEOUT_MS), "%s did not exit", prog);
}

#define JAILER(c, ...) run(c, jailer_path(), NULL, (const char *const[]) { __VA_ARGS__, NULL })

/* The real jailer's failure: exit 1, the error's Display, then "Error: <Debug>". */
static void assert_jailer_error(Child *c, const char *display, const char *debug) {
        _cleanup_free_ char *expected = NULL;

        cr_assert(asprintf(&expected, "%s\nError: %s\n", display, debug) >= 0);
        cr_assert(child_exited_with(c, 1), "jailer did not exit 1 (status %d); stderr:\n%s", c->status,
                  sb_str(&c->err));
        cr_assert_str_eq(sb_str(&c->err), expected);
}

/* Arguments that pass every argv check and stop at a known error of
 * --resource-limit (checked last): proves everything before was accepted. */
#define VALID_UP_TO_LIMITS "--resource-limit", "bogus=1"
#define LIMITS_ERROR "Invalid resource argument: bogus", "ResLimitArgument(\"bogus\")"

static const char *own_uid(void) {
        static char buf[16];
        snprintf(buf, sizeof(buf), "%u", geteuid() == 0 ? VM_UID : (unsigned) geteuid());
        return buf;
}

static const char *own_gid(void) {
        static char buf[16];
        snprintf(buf, sizeof(buf), "%u", geteuid() == 0 ? VM_UID : (unsigned) getegid());
        return buf;
}

TestSuite(jailer_args, .init = setup, .fini = teardown);

Test(jailer_args, flag_equals_value_is_an_unknown_argument) {
        Child c;
        JAILER(&c, "--id=vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Failed to parse arguments: Found argument 'id=vm1' which wasn't expected, or isn't "
                                "valid in this context.",
                            "ArgumentParsing(UnexpectedArgument(\"id=vm1\"))");
        child_done(&c);
}

Test(jailer_args, positional_and_unknown_arguments) {
        Child c;
        JAILER(&c, "foo");
        assert_jailer_error(&c, "Failed to parse arguments: Found argument 'foo' which wasn't expected, or isn't "
                                "valid in this context.",
                            "ArgumentParsing(UnexpectedArgument(\"foo\"))");
        child_done(&c);

        JAILER(&c, "--id", "vm1", "--bogus", "x");
        assert_jailer_error(&c, "Failed to parse arguments: Found argument 'bogus' which wasn't expected, or isn't "
                                "valid in this context.",
                            "ArgumentParsing(UnexpectedArgument(\"bogus\"))");
        child_done(&c);

        JAILER(&c, "-x");
        assert_jailer_error(&c, "Failed to parse arguments: Found argument '-x' which wasn't expected, or isn't "
                                "valid in this context.",
                            "ArgumentParsing(UnexpectedArgument(\"-x\"))");
        child_done(&c);
}

Test(jailer_args, repeating_a_single_value_flag_fails) {
        Child c;
        JAILER(&c, "--uid", "1", "--uid", "2");
        assert_jailer_error(&c, "Failed to parse arguments: The argument 'uid' was provided more than once.",
                            "ArgumentParsing(DuplicateArgument(\"uid\"))");
        child_done(&c);

        JAILER(&c, "--daemonize", "--daemonize");
        assert_jailer_error(&c, "Failed to parse arguments: The argument 'daemonize' was provided more than once.",
                            "ArgumentParsing(DuplicateArgument(\"daemonize\"))");
        child_done(&c);
}

/* Whether /proc/self/mounts lists a cgroup v1 hierarchy: the real jailer's
 * CgroupHierarchies::new(1, ...) finds one exactly then. */
static bool host_has_cgroup_v1(void) {
        _cleanup_free_ char *mounts = read_file("/proc/self/mounts");

        cr_assert(mounts, "read /proc/self/mounts: %m");
        for (char *s = mounts, *line; (line = strsep(&s, "\n"));) {
                char type[64];
                if (sscanf(line, "%*s %*s %63s", type) == 1 && streq(type, "cgroup"))
                        return true;
        }
        return false;
}

/* --cgroup and --resource-limit repeat, with a v1 --cgroup request. The
 * answer depends on the host, and is checked for the host as it is:
 *  - no cgroup v1 hierarchy mounted (a stock host, pure cgroup v2): the
 *    real jailer's own answer, CgroupHierarchyMissing (cgroup.rs:
 *    CgroupHierarchies::new() found no mount point for version 1);
 *  - a v1 hierarchy mounted (a hybrid host): the jailer would go on to
 *    create v1 cgroups, which the double does not implement; it says so.
 * Both come after every --cgroup value was parsed. The two tests after
 * this one produce each host in a mount namespace of their own (root). */
static void assert_v1_cgroup_answer(bool v1_mounted) {
        Child c;

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1",
               "--chroot-base-dir", base, "--resource-limit", "no-file=1024", "--resource-limit", "fsize=1000",
               "--cgroup", "a.b=1", "--cgroup-version", "1", "--cgroup", "a.c=2", "--resource-limit", "bogus=1");
        if (v1_mounted) {
                cr_assert(child_exited_with(&c, 1), "status %d, stderr: %s", c.status, sb_str(&c.err));
                cr_assert_str_eq(sb_str(&c.err), "jailer test double: --cgroup-version 1 with --cgroup values is not "
                                                 "supported by this double\n"
                                                 "Error: Unsupported(\"--cgroup-version 1 with --cgroup values\")\n");
        } else
                assert_jailer_error(&c, "Hierarchy not found: No hierarchy found for this cgroup version.",
                                    "CgroupHierarchyMissing(\"No hierarchy found for this cgroup version.\")");
        child_done(&c);
}

Test(jailer_args, cgroup_and_resource_limit_repeat) {
        Child c;

        assert_v1_cgroup_answer(host_has_cgroup_v1());

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1",
               "--chroot-base-dir", base, "--resource-limit", "no-file=1024", "--resource-limit", "fsize=1000",
               VALID_UP_TO_LIMITS);
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
}

/* This test's process (criterion runs each test in a process of its own)
 * in a mount namespace of its own; the jailer double it spawns inherits it. */
static void private_mount_namespace(void) {
        if (geteuid() != 0)
                skip_test("needs root (a private mount namespace to change which cgroup hierarchies the jailer sees)");
        cr_assert(unshare(CLONE_NEWNS) >= 0, "unshare(CLONE_NEWNS): %m");
        cr_assert(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) >= 0, "make / private: %m");
}

Test(jailer_args, cgroup_v1_request_on_a_pure_v2_host) {
        _cleanup_free_ char *mounts = NULL;
        char *points[64];
        size_t n = 0;

        private_mount_namespace();
        /* Unmount every v1 hierarchy here, deepest (last mounted) first. */
        mounts = read_file("/proc/self/mounts");
        cr_assert(mounts, "read /proc/self/mounts: %m");
        for (char *s = mounts, *line; (line = strsep(&s, "\n"));) {
                char dir[4096], type[64];
                if (sscanf(line, "%*s %4095s %63s", dir, type) == 2 && streq(type, "cgroup")) {
                        cr_assert(n < ELEMENTSOF(points));
                        points[n] = strdup(dir);
                        cr_assert(points[n]);
                        n++;
                }
        }
        while (n > 0) {
                n--;
                cr_assert(umount2(points[n], MNT_DETACH) >= 0, "umount %s: %m", points[n]);
                free(points[n]);
        }
        cr_assert_not(host_has_cgroup_v1());
        assert_v1_cgroup_answer(false);
}

Test(jailer_args, cgroup_v1_request_on_a_host_with_v1) {
        _cleanup_free_ char *dir = tmp_path("cgroup-v1");

        private_mount_namespace();
        if (!host_has_cgroup_v1()) {
                /* A named hierarchy, no controller: gone with the namespace. */
                cr_assert(mkdir(dir, 0755) >= 0);
                if (mount("cgroup", dir, "cgroup", MS_NOSUID | MS_NODEV | MS_NOEXEC, "none,name=microvm-test") < 0)
                        skip_test("cannot mount a cgroup v1 hierarchy here (%m): a kernel without cgroup v1, "
                                  "or a cgroup namespace other than the host's (a container), where no new v1 "
                                  "hierarchy may be made");
        }
        cr_assert(host_has_cgroup_v1());
        assert_v1_cgroup_answer(true);
}

Test(jailer_args, missing_values) {
        Child c;
        JAILER(&c, "--exec-file", firecracker_path(), "--id");
        assert_jailer_error(&c, "Failed to parse arguments: The argument 'id' requires a value, but none was "
                                "supplied.",
                            "ArgumentParsing(MissingValue(\"id\"))");
        child_done(&c);

        /* A value may not start with "--". */
        JAILER(&c, "--id", "--uid", "1");
        assert_jailer_error(&c, "Failed to parse arguments: The argument 'id' requires a value, but none was "
                                "supplied.",
                            "ArgumentParsing(MissingValue(\"id\"))");
        child_done(&c);

        /* "--" ends the jailer's arguments, so it cannot be a value either. */
        JAILER(&c, "--id", "--", "vm1");
        assert_jailer_error(&c, "Failed to parse arguments: The argument 'id' requires a value, but none was "
                                "supplied.",
                            "ArgumentParsing(MissingValue(\"id\"))");
        child_done(&c);
}

Test(jailer_args, required_arguments_in_name_order) {
        Child c;
        JAILER(&c, "--id", "vm1");
        assert_jailer_error(&c, "Failed to parse arguments: Argument 'exec-file' required, but not found.",
                            "ArgumentParsing(MissingArgument(\"exec-file\"))");
        child_done(&c);

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1");
        assert_jailer_error(&c, "Failed to parse arguments: Argument 'gid' required, but not found.",
                            "ArgumentParsing(MissingArgument(\"gid\"))");
        child_done(&c);

        JAILER(&c, "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Failed to parse arguments: Argument 'id' required, but not found.",
                            "ArgumentParsing(MissingArgument(\"id\"))");
        child_done(&c);

        JAILER(&c, "--exec-file", firecracker_path(), "--id", "vm1", "--gid", "1");
        assert_jailer_error(&c, "Failed to parse arguments: Argument 'uid' required, but not found.",
                            "ArgumentParsing(MissingArgument(\"uid\"))");
        child_done(&c);
}

Test(jailer_args, double_dash_ends_jailer_arguments) {
        Child c;
        /* After "--" nothing is parsed: "--id=x" and "--bogus" go to firecracker. */
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1",
               "--chroot-base-dir", base, VALID_UP_TO_LIMITS, "--", "--id=x", "--bogus", "--uid");
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
}

Test(jailer_args, help_and_version_exit_0_and_win) {
        Child c;
        JAILER(&c, "--bogus", "--uid", "1", "--uid", "2", "--help");
        cr_assert(child_exited_with(&c, 0));
        cr_assert(startswith(sb_str(&c.out), "Jailer v" DOUBLES_FIRECRACKER_VERSION "\n\nrequired arguments:\n"),
                  "stdout: %s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "\n  --exec-file <exec-file>   File path to exec into.\n"));
        cr_assert(strstr(sb_str(&c.out), "Any arguments after the -- separator will be supplied to the jailed binary."));
        cr_assert_str_eq(sb_str(&c.err), "");
        child_done(&c);

        JAILER(&c, "-h");
        cr_assert(child_exited_with(&c, 0));
        cr_assert(startswith(sb_str(&c.out), "Jailer v"));
        child_done(&c);

        JAILER(&c, "--id=x", "--version");
        cr_assert(child_exited_with(&c, 0));
        cr_assert_str_eq(sb_str(&c.out), "Jailer v" DOUBLES_FIRECRACKER_VERSION "\n\n");
        child_done(&c);

        /* After "--", --help is firecracker's, not ours. */
        JAILER(&c, "--id", "vm1", "--", "--help");
        assert_jailer_error(&c, "Failed to parse arguments: Argument 'exec-file' required, but not found.",
                            "ArgumentParsing(MissingArgument(\"exec-file\"))");
        child_done(&c);
}

Test(jailer_args, id_rules) {
        Child c;
        char long_id[66];
        memset(long_id, 'a', 65);
        long_id[65] = 0;

        JAILER(&c, "--id", long_id, "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Invalid instance ID: Invalid len (65);  the length must be between 1 and 64",
                            "InvalidInstanceId(InvalidLen(65, 1, 64))");
        child_done(&c);

        JAILER(&c, "--id", "", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Invalid instance ID: Invalid len (0);  the length must be between 1 and 64",
                            "InvalidInstanceId(InvalidLen(0, 1, 64))");
        child_done(&c);

        JAILER(&c, "--id", "web_1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Invalid instance ID: Invalid char (_) at position 3",
                            "InvalidInstanceId(InvalidChar('_', 3))");
        child_done(&c);

        JAILER(&c, "--id", "a.b", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, "Invalid instance ID: Invalid char (.) at position 1",
                            "InvalidInstanceId(InvalidChar('.', 1))");
        child_done(&c);

        /* 64 characters, mixed case, digits and '-' are fine. */
        memset(long_id, 'Z', 64);
        long_id[0] = '-';
        long_id[10] = '7';
        long_id[64] = 0;
        JAILER(&c, "--id", long_id, "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1",
               "--chroot-base-dir", base, VALID_UP_TO_LIMITS);
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
}

Test(jailer_args, exec_file_canonicalized_and_regular) {
        Child c;
        _cleanup_free_ char *missing = tmp_path("nope"), *expect = NULL, *via_link = tmp_path("fc-link");

        JAILER(&c, "--id", "vm1", "--exec-file", missing, "--uid", "1", "--gid", "1");
        cr_assert(asprintf(&expect, "Failed to canonicalize path %s: No such file or directory (os error 2)", missing) >= 0);
        _cleanup_free_ char *dbg = NULL;
        cr_assert(asprintf(&dbg, "Canonicalize(\"%s\", Os { code: 2, kind: NotFound, message: \"No such file or "
                                 "directory\" })", missing) >= 0);
        assert_jailer_error(&c, expect, dbg);
        child_done(&c);

        /* A directory is not a file (the canonical path is reported). */
        free(expect);
        free(dbg);
        cr_assert(asprintf(&expect, "%s is not a file", tmp) >= 0);
        cr_assert(asprintf(&dbg, "NotAFile(\"%s\")", tmp) >= 0);
        _cleanup_free_ char *tmp_dotted = NULL;
        cr_assert(asprintf(&tmp_dotted, "%s/./base/..", tmp) >= 0);
        JAILER(&c, "--id", "vm1", "--exec-file", tmp_dotted, "--uid", "1", "--gid", "1");
        assert_jailer_error(&c, expect, dbg);
        child_done(&c);

        /* Through a symlink, the jail is named after the canonical file:
         * a hard link planted at <base>/firecracker/vm1/root/firecracker is
         * what the jailer trips over. */
        cr_assert(symlink(firecracker_path(), via_link) >= 0);
        _cleanup_free_ char *jail = NULL, *planted = NULL, *victim = tmp_path("victim");
        cr_assert(asprintf(&jail, "%s/firecracker/vm1/root", base) >= 0);
        cr_assert(asprintf(&planted, "%s/firecracker", jail) >= 0);
        cr_assert(mkdir_p(jail, 0755) >= 0);
        cr_assert(write_file(victim, "x", 0644) >= 0);
        cr_assert(link(victim, planted) >= 0);
        JAILER(&c, "--id", "vm1", "--exec-file", via_link, "--uid", own_uid(), "--gid", own_gid(), "--chroot-base-dir", base);
        free(expect);
        free(dbg);
        cr_assert(asprintf(&expect, "Detected hard link at: %s", planted) >= 0);
        cr_assert(asprintf(&dbg, "HardLink(\"%s\")", planted) >= 0);
        assert_jailer_error(&c, expect, dbg);
        child_done(&c);
        /* ... and the victim was not written to (nlink is checked before the copy). */
        _cleanup_free_ char *content = read_file(victim);
        cr_assert_str_eq(content, "x");
}

Test(jailer_args, symlink_in_jail_is_refused) {
        Child c;
        _cleanup_free_ char *jail = NULL, *planted = NULL, *target = tmp_path("target"), *expect = NULL, *dbg = NULL;

        cr_assert(asprintf(&jail, "%s/firecracker/vm1/root", base) >= 0);
        cr_assert(asprintf(&planted, "%s/firecracker", jail) >= 0);
        cr_assert(mkdir_p(jail, 0755) >= 0);
        cr_assert(symlink(target, planted) >= 0);
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", own_uid(), "--gid", own_gid(),
               "--chroot-base-dir", base);
        cr_assert(asprintf(&expect, "Failed to open %s: Too many levels of symbolic links (os error 40)", planted) >= 0);
        cr_assert(asprintf(&dbg, "Open(\"%s\", Os { code: 40, kind: FilesystemLoop, message: \"Too many levels of "
                                 "symbolic links\" })", planted) >= 0);
        assert_jailer_error(&c, expect, dbg);
        child_done(&c);
        cr_assert(access(target, F_OK) < 0, "the symlink target was created");
}

Test(jailer_args, uid_and_gid_are_u32) {
        Child c;
        static const char *const bad[] = { "abc", "-1", "4294967296", "", "+", "1.0" };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *d = NULL, *g = NULL;
                cr_assert(asprintf(&d, "Invalid uid: %s", bad[i]) >= 0);
                cr_assert(asprintf(&g, "Uid(\"%s\")", bad[i]) >= 0);
                JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--chroot-base-dir", base, "--uid", bad[i],
                       "--gid", "1");
                assert_jailer_error(&c, d, g);
                child_done(&c);
        }
        /* Rust's u32 parser takes a leading '+', and 4294967295. */
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--chroot-base-dir", base, "--uid", "+5",
               "--gid", "4294967295x");
        assert_jailer_error(&c, "Invalid gid: 4294967295x", "Gid(\"4294967295x\")");
        child_done(&c);
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--chroot-base-dir", base, "--uid", "+5",
               "--gid", "4294967295", VALID_UP_TO_LIMITS);
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
}

Test(jailer_args, chroot_base_dir_must_exist) {
        Child c;
        _cleanup_free_ char *missing = tmp_path("nope"), *file = tmp_path("file"), *d = NULL, *g = NULL;

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               missing);
        cr_assert(asprintf(&d, "Failed to canonicalize path %s: No such file or directory (os error 2)", missing) >= 0);
        cr_assert(asprintf(&g, "Canonicalize(\"%s\", Os { code: 2, kind: NotFound, message: \"No such file or "
                               "directory\" })", missing) >= 0);
        assert_jailer_error(&c, d, g);
        child_done(&c);

        free(d);
        free(g);
        cr_assert(write_file(file, "", 0644) >= 0);
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               file);
        cr_assert(asprintf(&d, "%s is not a directory", file) >= 0);
        cr_assert(asprintf(&g, "NotADirectory(\"%s\")", file) >= 0);
        assert_jailer_error(&c, d, g);
        child_done(&c);
}

Test(jailer_args, parent_cgroup_relative_without_dots) {
        Child c;
        static const char *const bad[] = { "/microvm.slice", "a/../b", "./a", "..", "a/..", "." };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1",
                       "--chroot-base-dir", base, "--parent-cgroup", bad[i]);
                assert_jailer_error(&c, "Parent cgroup path is invalid. Path should not be absolute or contain '..' "
                                        "or '.'",
                                    "CgroupInvalidParentPath");
                child_done(&c);
        }
        /* Rust's Path::components() drops an inner ".": accepted. */
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               base, "--parent-cgroup", "a/./b", VALID_UP_TO_LIMITS);
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
}

Test(jailer_args, cgroup_version) {
        Child c;

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               base, "--cgroup-version", "two");
        assert_jailer_error(&c, "two is an invalid cgroup version specifier", "CgroupInvalidVersion(\"two\")");
        child_done(&c);

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               base, "--cgroup-version", "256");
        assert_jailer_error(&c, "256 is an invalid cgroup version specifier", "CgroupInvalidVersion(\"256\")");
        child_done(&c);

        /* A version that finds no hierarchy only fails once cgroups are asked for. */
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               base, "--cgroup-version", "3", VALID_UP_TO_LIMITS);
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", "--chroot-base-dir",
               base, "--cgroup-version", "3", "--cgroup", "pids.max=10");
        assert_jailer_error(&c, "Hierarchy not found: No hierarchy found for this cgroup version.",
                            "CgroupHierarchyMissing(\"No hierarchy found for this cgroup version.\")");
        child_done(&c);
}

Test(jailer_args, cgroup_values) {
        Child c;
        _cleanup_free_ char *mount = find_cgroup2_mount();
        if (!mount)
                skip_test("no cgroup2 mount on this host");

#define CG(value) JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", \
                         "--chroot-base-dir", base, "--cgroup-version", "2", "--parent-cgroup",             \
                         "doubles-test-nonexistent", "--cgroup", value)

        CG("memory.max");
        assert_jailer_error(&c, "Invalid format for cgroups: memory.max", "CgroupFormat(\"memory.max\")");
        child_done(&c);
        CG("memory.max=1=2");
        assert_jailer_error(&c, "Invalid format for cgroups: memory.max=1=2", "CgroupFormat(\"memory.max=1=2\")");
        child_done(&c);
        CG("memory.max=");
        assert_jailer_error(&c, "Invalid format for cgroups: memory.max=", "CgroupFormat(\"memory.max=\")");
        child_done(&c);
        CG("/memory.max=1");
        assert_jailer_error(&c, "Cgroup invalid file: /memory.max=1", "CgroupInvalidFile(\"/memory.max=1\")");
        child_done(&c);
        CG("../memory.max=1");
        assert_jailer_error(&c, "Cgroup invalid file: ../memory.max=1", "CgroupInvalidFile(\"../memory.max=1\")");
        child_done(&c);
        CG("memory=1");
        assert_jailer_error(&c, "Cgroup invalid file: memory", "CgroupInvalidFile(\"memory\")");
        child_done(&c);
        CG("nosuchctrl.max=1");
        assert_jailer_error(&c, "Controller nosuchctrl is unavailable", "CgroupControllerUnavailable(\"nosuchctrl\")");
        child_done(&c);
#undef CG
}

Test(jailer_args, resource_limits) {
        Child c;

#define RL(value) JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", "1", "--gid", "1", \
                         "--chroot-base-dir", base, "--resource-limit", value)
        RL("fsize");
        assert_jailer_error(&c, "Invalid format for resources limits: fsize", "ResLimitFormat(\"fsize\")");
        child_done(&c);
        RL("no-file=abc");
        assert_jailer_error(&c, "Invalid limit value for resource: abc: invalid digit found in string",
                            "ResLimitValue(\"abc\", \"invalid digit found in string\")");
        child_done(&c);
        RL("fsize=");
        assert_jailer_error(&c, "Invalid limit value for resource: : cannot parse integer from empty string",
                            "ResLimitValue(\"\", \"cannot parse integer from empty string\")");
        child_done(&c);
        RL("fsize=18446744073709551616");
        assert_jailer_error(&c, "Invalid limit value for resource: 18446744073709551616: number too large to fit in "
                                "target type",
                            "ResLimitValue(\"18446744073709551616\", \"number too large to fit in target type\")");
        child_done(&c);
        /* The value is parsed before the name is looked at. */
        RL("bogus=abc");
        assert_jailer_error(&c, "Invalid limit value for resource: abc: invalid digit found in string",
                            "ResLimitValue(\"abc\", \"invalid digit found in string\")");
        child_done(&c);
        RL("bogus=1");
        assert_jailer_error(&c, LIMITS_ERROR);
        child_done(&c);
#undef RL
}

Test(jailer_args, netns_must_open) {
        Child c;
        _cleanup_free_ char *missing = tmp_path("no-netns"), *d = NULL, *g = NULL;

        /* netns is joined after the jail dir is made and the exec file copied. */
        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", own_uid(), "--gid", own_gid(),
               "--chroot-base-dir", base, "--netns", missing);
        cr_assert(asprintf(&d, "Failed to open file %s: No such file or directory (os error 2)", missing) >= 0);
        cr_assert(asprintf(&g, "FileOpen(\"%s\", Os { code: 2, kind: NotFound, message: \"No such file or "
                               "directory\" })", missing) >= 0);
        assert_jailer_error(&c, d, g);
        child_done(&c);

        _cleanup_free_ char *copied = NULL;
        cr_assert(asprintf(&copied, "%s/firecracker/vm1/root/firecracker", base) >= 0);
        struct stat st, orig;
        cr_assert(stat(copied, &st) >= 0, "exec file not copied into the jail");
        cr_assert(stat(firecracker_path(), &orig) >= 0);
        cr_assert_eq(st.st_size, orig.st_size);
        cr_assert_eq(st.st_nlink, 1);
        cr_assert_neq(st.st_ino, orig.st_ino);
        cr_assert_eq(st.st_uid, (uid_t) atoi(own_uid()));
}

Test(jailer_args, unprivileged_jailer_fails_at_the_mount_namespace) {
        Child c;
        if (geteuid() == 0)
                skip_test("runs as root: the mount namespace would succeed (covered by test-doubles-jail)");

        JAILER(&c, "--id", "vm1", "--exec-file", firecracker_path(), "--uid", own_uid(), "--gid", own_gid(),
               "--chroot-base-dir", base);
        assert_jailer_error(&c, "Failed to unshare into new mount namespace: Operation not permitted (os error 1)",
                            "UnshareNewNs(Os { code: 1, kind: PermissionDenied, message: \"Operation not permitted\" })");
        child_done(&c);
}

/* ------------------------------------------------------------------------- */
/* firecracker: command line */

#define FC(c, o, ...) run(c, fc_exec_path(o), o, (const char *const[]) { __VA_ARGS__, NULL })

static void assert_fc_arg_error(Child *c, const char *display, const char *debug) {
        _cleanup_free_ char *logged = NULL, *err = NULL;

        cr_assert(child_exited_with(c, 153), "firecracker did not exit 153 (status %d)\n%s%s", c->status,
                  sb_str(&c->out), sb_str(&c->err));
        cr_assert(asprintf(&logged, "] Arguments parsing error: %s \n\nFor more information try --help.\n", display) >= 0);
        cr_assert(strstr(sb_str(&c->out), logged), "stdout:\n%s", sb_str(&c->out));
        cr_assert(strstr(sb_str(&c->out), "] Firecracker exiting with error. exit_code=153\n"));
        cr_assert(asprintf(&err, "Error: ParseArguments(%s)\n", debug) >= 0);
        cr_assert_str_eq(sb_str(&c->err), err);
}

TestSuite(firecracker_args, .init = setup, .fini = teardown);

Test(firecracker_args, bad_arguments_exit_153) {
        Child c;

        FC(&c, NULL, "--bogus");
        assert_fc_arg_error(&c, "Found argument 'bogus' which wasn't expected, or isn't valid in this context.",
                            "UnexpectedArgument(\"bogus\")");
        child_done(&c);

        FC(&c, NULL, "--api-sock=/x");
        assert_fc_arg_error(&c, "Found argument 'api-sock=/x' which wasn't expected, or isn't valid in this context.",
                            "UnexpectedArgument(\"api-sock=/x\")");
        child_done(&c);

        FC(&c, NULL, "--api-sock", "/a", "--api-sock", "/b");
        assert_fc_arg_error(&c, "The argument 'api-sock' was provided more than once.", "DuplicateArgument(\"api-sock\")");
        child_done(&c);

        FC(&c, NULL, "--config-file");
        assert_fc_arg_error(&c, "The argument 'config-file' requires a value, but none was supplied.",
                            "MissingValue(\"config-file\")");
        child_done(&c);

        FC(&c, NULL, "--no-api");
        assert_fc_arg_error(&c, "Argument 'config-file' required, but not found.", "MissingArgument(\"config-file\")");
        child_done(&c);

        FC(&c, NULL, "--no-seccomp", "--seccomp-filter", "/f");
        assert_fc_arg_error(&c, "Argument 'seccomp-filter' cannot be used together with argument 'no-seccomp'.",
                            "ForbiddenArgument(\"no-seccomp\", \"seccomp-filter\")");
        child_done(&c);
}

Test(firecracker_args, help_and_version) {
        Child c;

        FC(&c, NULL, "--version", "--bogus");
        cr_assert(child_exited_with(&c, 0));
        cr_assert_str_eq(sb_str(&c.out), "Firecracker v" DOUBLES_FIRECRACKER_VERSION "\n\n");
        child_done(&c);

        FC(&c, NULL, "--help");
        cr_assert(child_exited_with(&c, 0));
        cr_assert(startswith(sb_str(&c.out), "Firecracker v" DOUBLES_FIRECRACKER_VERSION "\n\noptional arguments:\n"));
        cr_assert(strstr(sb_str(&c.out), "  --api-sock <api-sock>"));
        child_done(&c);
}

Test(firecracker_args, invalid_id_panics) {
        Child c;

        FC(&c, NULL, "--id", "vm_1");
        cr_assert(child_killed_by(&c, SIGABRT), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "Firecracker panicked at src/firecracker/src/main.rs:\nInvalid instance ID: "
                                         "InvalidChar('_', 2)"),
                  "stdout: %s", sb_str(&c.out));
        child_done(&c);
}

Test(firecracker_args, unreadable_config_file_panics) {
        Child c;
        _cleanup_free_ char *sock = tmp_path("api.sock"), *cfg = tmp_path("missing.json");

        FC(&c, NULL, "--api-sock", sock, "--config-file", cfg);
        cr_assert(child_killed_by(&c, SIGABRT), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "Unable to open or read from the configuration file: Os { code: 2, kind: "
                                         "NotFound, message: \"No such file or directory\" }"),
                  "stdout: %s", sb_str(&c.out));
        child_done(&c);
}

Test(firecracker_args, existing_api_socket_is_fatal) {
        Child c;
        _cleanup_free_ char *sock = tmp_path("api.sock"), *expect = NULL;

        /* Any file there: firecracker binds without unlinking. */
        cr_assert(write_file(sock, "", 0644) >= 0);
        FC(&c, NULL, "--id", "vm1", "--api-sock", sock);
        cr_assert(child_exited_with(&c, 1), "status %d", c.status);
        cr_assert(asprintf(&expect, "[vm1:main] RunWithApiError error: Failed to open the API socket at: %s. Check "
                                    "that it is not already used.\n", sock) >= 0);
        cr_assert(strstr(sb_str(&c.out), expect), "stdout: %s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.err), "Error: RunWithApi(FailedToBindSocket("), "stderr: %s", sb_str(&c.err));
        child_done(&c);
}

/* ------------------------------------------------------------------------- */
/* firecracker: the --config-file rules */

typedef struct Vm {
        char *kernel;
        char *drive;
        char *sock;
        char *config;
} Vm;

static Vm vm_files(void) {
        Vm v = {
                .kernel = tmp_path("vmlinux"),
                .drive = tmp_path("rootfs.ext4"),
                .sock = tmp_path("run/api.sock"),
                .config = tmp_path("config.json"),
        };
        /* The socket directory must be writable by the VM uid too. */
        _cleanup_free_ char *run_dir = tmp_path("run");
        cr_assert((mkdir(run_dir, 0777) >= 0 || errno == EEXIST) && chmod(run_dir, 0777) >= 0);
        cr_assert(write_file(v.kernel, "not really a kernel\n", 0644) >= 0);
        int fd = open(v.drive, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cr_assert(fd >= 0 && ftruncate(fd, 1 << 20) >= 0);
        close(fd);
        return v;
}

static void vm_files_done(Vm *v) {
        free(v->kernel);
        free(v->drive);
        free(v->sock);
        free(v->config);
}

/* Runs the double on config text until it exits (failure expected). */
static void fc_run_config(Child *c, const Vm *v, const char *config, const SpawnOptions *o) {
        /* A failed run leaves its socket behind (firecracker never unlinks it). */
        (void) unlink(v->sock);
        cr_assert(write_file(v->config, config, 0644) >= 0);
        FC(c, o, "--id", "vm1", "--api-sock", v->sock, "--config-file", v->config);
}

/* The failure of a bad config: exit 1, the message logged on stdout. */
static void assert_config_error(Child *c, const char *fragment) {
        cr_assert(child_exited_with(c, 1), "status %d\nstdout:\n%s\nstderr:\n%s", c->status, sb_str(&c->out),
                  sb_str(&c->err));
        cr_assert(strstr(sb_str(&c->out), fragment), "'%s' not in stdout:\n%s", fragment, sb_str(&c->out));
        cr_assert(strstr(sb_str(&c->out), "] Firecracker exiting with error. exit_code=1\n"));
        cr_assert(startswith(sb_str(&c->err), "Error: RunWithApi("), "stderr: %s", sb_str(&c->err));
}

#define JSON_PREFIX "RunWithApiError error: Failed to build MicroVM from Json: Configuration for VMM from one single json failed: "

TestSuite(firecracker_config, .init = setup, .fini = teardown);

Test(firecracker_config, unknown_field_in_sub_objects) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *cfg = NULL;

        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"bogus\": 1}, \"drives\": []}",
                           v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Invalid JSON: unknown field `bogus`, expected one of `kernel_image_path`, "
                                "`initrd_path`, `boot_args` at line 1 column ");
        child_done(&c);

        free(cfg);
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [{\"drive_id\": "
                                 "\"root\", \"path_on_host\": \"%s\", \"is_root_device\": true, \"readonly\": true}]}",
                           v.kernel, v.drive) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "Invalid JSON: unknown field `readonly`, expected one of `drive_id`, `partuuid`, "
                                "`is_root_device`, `cache_type`, `is_read_only`, `path_on_host`, `rate_limiter`, "
                                "`io_engine`, `socket`");
        child_done(&c);

        free(cfg);
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [], "
                                 "\"machine-config\": {\"vcpu_count\": 1, \"mem_size_mib\": 128, \"vcpus\": 2}}",
                           v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "unknown field `vcpus`, expected one of `vcpu_count`, `mem_size_mib`, `smt`, "
                                "`cpu_template`, `track_dirty_pages`, `huge_pages`");
        child_done(&c);

        free(cfg);
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [], "
                                 "\"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", "
                                 "\"mac\": \"06:00:00:00:00:01\"}]}",
                           v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "unknown field `mac`, expected one of `iface_id`, `host_dev_name`, `guest_mac`, `mtu`, "
                                "`rx_rate_limiter`, `tx_rate_limiter`");
        child_done(&c);

        free(cfg);
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [], "
                                 "\"vsock\": {\"guest_cid\": 3, \"uds_path\": \"/v.sock\", \"cid\": 3}}",
                           v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "unknown field `cid`, expected one of `vsock_id`, `guest_cid`, `uds_path`");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, unknown_top_level_key_is_ignored) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *cfg = NULL, *missing = tmp_path("no-kernel");

        /* The first error is the kernel, so the unknown key passed. */
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [], "
                                 "\"bogus-section\": {\"anything\": [1, 2]}}",
                           missing) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Boot source error: The kernel file cannot be opened: No such file or "
                                "directory (os error 2)\n");
        cr_assert_str_eq(sb_str(&c.err), "Error: RunWithApi(BuildFromJson(ParseFromJson(BootSource(InvalidKernelPath("
                                         "Os { code: 2, kind: NotFound, message: \"No such file or directory\" })))))\n");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, missing_required_sections) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *cfg = NULL;

        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}}", v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Invalid JSON: missing field `drives` at line 1 column ");
        child_done(&c);

        fc_run_config(&c, &v, "{\"drives\": []}", NULL);
        assert_config_error(&c, "Invalid JSON: missing field `boot-source` at line 1 column 14\n");
        child_done(&c);

        fc_run_config(&c, &v, "{\"boot-source\": {}, \"drives\": []}", NULL);
        assert_config_error(&c, "Invalid JSON: missing field `kernel_image_path` at line 1 column 18\n");
        child_done(&c);

        /* The drive's mandatory fields. */
        free(cfg);
        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [{\"drive_id\": "
                                 "\"root\"}]}", v.kernel) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "Invalid JSON: missing field `is_root_device`");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, machine_config_ranges) {
        Child c;
        Vm v = vm_files();
        static const struct {
                const char *mc;
                const char *error;
        } cases[] = {
                { "{\"vcpu_count\": 0, \"mem_size_mib\": 128}",
                  "VM config error: The number of vCPUs must be greater than 0, less than 32 and must be 1 or an even "
                  "number if SMT is enabled.\n" },
                { "{\"vcpu_count\": 33, \"mem_size_mib\": 128}", "VM config error: The number of vCPUs must be" },
                { "{\"vcpu_count\": 3, \"mem_size_mib\": 128, \"smt\": true}", "VM config error: The number of vCPUs must be" },
                { "{\"vcpu_count\": 256, \"mem_size_mib\": 128}",
                  "Invalid JSON: invalid value: integer `256`, expected u8 at line 1 column " },
                { "{\"vcpu_count\": -1, \"mem_size_mib\": 128}", "Invalid JSON: invalid value: integer `-1`, expected u8" },
                { "{\"vcpu_count\": \"2\", \"mem_size_mib\": 128}",
                  "Invalid JSON: invalid type: string \"2\", expected u8" },
                { "{\"vcpu_count\": 1.5, \"mem_size_mib\": 128}",
                  "Invalid JSON: invalid type: floating point `1.5`, expected u8" },
                { "{\"vcpu_count\": 1, \"mem_size_mib\": 0}",
                  "VM config error: The memory size (MiB) is either 0, or not a multiple of the configured page size.\n" },
                { "{\"vcpu_count\": 1, \"mem_size_mib\": 129, \"huge_pages\": \"2M\"}",
                  "VM config error: The memory size (MiB) is either 0" },
                { "{\"vcpu_count\": 1, \"mem_size_mib\": 128, \"huge_pages\": \"1G\"}",
                  "Invalid JSON: unknown variant `1G`, expected one of `None`, `Transparent`, `2M`" },
                { "{\"vcpu_count\": 1}", "Invalid JSON: missing field `mem_size_mib`" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *cfg = NULL;
                cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, \"drives\": [], "
                                         "\"machine-config\": %s}",
                                   v.kernel, cases[i].mc) >= 0);
                fc_run_config(&c, &v, cfg, NULL);
                assert_config_error(&c, cases[i].error);
                child_done(&c);
                unlink(v.sock);
        }
        vm_files_done(&v);
}

Test(firecracker_config, json_syntax_and_types) {
        Child c;
        Vm v = vm_files();
        static const struct {
                const char *config;
                const char *error;
        } cases[] = {
                { "", "Invalid JSON: EOF while parsing a value at line 1 column 0\n" },
                { "{\"drives\": [],}", "Invalid JSON: trailing comma at line 1 column 15\n" },
                { "{\"drives\": []} x", "Invalid JSON: trailing characters at line 1 column 16\n" },
                { "{\n  \"drives\": [\n    01]}", "Invalid JSON: invalid number at line 3 column 6\n" },
                { "{\"drives\": {}}", "Invalid JSON: invalid type: map, expected a sequence at line 1 column 11\n" },
                { "{\"drives\": [], \"drives\": []}", "Invalid JSON: duplicate field `drives` at line 1 column 23\n" },
                { "{\"boot-source\": \"vmlinux\", \"drives\": []}",
                  "Invalid JSON: invalid type: string \"vmlinux\", expected struct BootSourceConfig at line 1 column 25\n" },
                { "{\"boot-source\": {\"kernel_image_path\": null}, \"drives\": []}",
                  "Invalid JSON: invalid type: null, expected a string" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                fc_run_config(&c, &v, cases[i].config, NULL);
                assert_config_error(&c, cases[i].error);
                child_done(&c);
                unlink(v.sock);
        }
        vm_files_done(&v);
}

Test(firecracker_config, drive_and_nic_values) {
        Child c;
        Vm v = vm_files();
        static const struct {
                const char *extra;
                const char *error;
        } cases[] = {
                { "\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"%s\", \"is_root_device\": false, "
                  "\"cache_type\": \"WriteBack\"}]",
                  "Invalid JSON: unknown variant `WriteBack`, expected `Unsafe` or `Writeback`" },
                { "\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"%s\", \"is_root_device\": false, "
                  "\"io_engine\": \"Uring\"}]",
                  "Invalid JSON: unknown variant `Uring`, expected `Async` or `Sync`" },
                { "\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"%s\", \"is_root_device\": \"yes\"}]",
                  "Invalid JSON: invalid type: string \"yes\", expected a boolean" },
                { "\"drives\": [{\"drive_id\": \"a\", \"path_on_host\": \"%s\", \"is_root_device\": true}, "
                  "{\"drive_id\": \"b\", \"path_on_host\": \"%s\", \"is_root_device\": true}]",
                  JSON_PREFIX "Block device error: A root block device already exists!\n" },
                { "\"drives\": [{\"drive_id\": \"a\", \"is_root_device\": true}]",
                  JSON_PREFIX "Block device error: Unable to create the virtio block device: Invalid block config.\n" },
                { "\"drives\": [], \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", "
                  "\"guest_mac\": \"06:00:00:00:00\"}]",
                  "Invalid JSON: The provided MAC address is invalid." },
                { "\"drives\": [], \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"tap0\", "
                  "\"mtu\": 70000}]",
                  "Invalid JSON: invalid value: integer `70000`, expected u16" },
                { "\"drives\": [], \"vsock\": {\"guest_cid\": -3, \"uds_path\": \"/v.sock\"}",
                  "Invalid JSON: invalid value: integer `-3`, expected u32" },
                { "\"drives\": [], \"logger\": {\"level\": \"Loud\"}", "Invalid JSON: Invalid LevelFilter" },
                { "\"drives\": [], \"balloon\": {\"amount_mib\": 1}",
                  "balloon is not supported by the firecracker test double" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *fmt = NULL;
                cr_assert(asprintf(&fmt, "{\"boot-source\": {\"kernel_image_path\": \"%s\"}, %s}", v.kernel,
                                   cases[i].extra) >= 0);
                /* Fill in the drive path wherever the case wants one. */
                _cleanup_sb_ StrBuf sb = {};
                for (const char *p = fmt; *p; p++) {
                        if (p[0] == '%' && p[1] == 's') {
                                sb_append(&sb, v.drive);
                                p++;
                        } else
                                sb_append_n(&sb, p, 1);
                }
                fc_run_config(&c, &v, sb_str(&sb), NULL);
                cr_assert(child_exited_with(&c, 1), "case %zu: status %d\n%s", i, c.status, sb_str(&c.out));
                cr_assert(strstr(sb_str(&c.out), cases[i].error), "case %zu: '%s' not in stdout:\n%s", i, cases[i].error,
                          sb_str(&c.out));
                child_done(&c);
                unlink(v.sock);
        }
        vm_files_done(&v);
}

/* The files are opened as the uid the VMM runs as. As root, the double is run
 * as VM_UID against root-owned 0600 files; unprivileged, against mode 000. */
static void as_vm_user(SpawnOptions *o, const char *path, mode_t root_mode) {
        if (geteuid() == 0) {
                *o = (SpawnOptions) { .drop_privileges = true, .uid = VM_UID, .gid = VM_UID };
                cr_assert(chmod(path, root_mode) >= 0);
        } else
                cr_assert(chmod(path, root_mode & 0044 ? 0444 : 0) >= 0);
}

Test(firecracker_config, unreadable_drive_as_the_vm_user) {
        Child c;
        Vm v = vm_files();
        SpawnOptions o = {};
        _cleanup_free_ char *cfg = make_vm_config(v.kernel, "console=ttyS0", v.drive, false, NULL);
        _cleanup_free_ char *expect = NULL, *dbg = NULL;

        as_vm_user(&o, v.drive, 0600);
        fc_run_config(&c, &v, cfg, &o);
        cr_assert(asprintf(&expect, JSON_PREFIX "Block device error: Unable to create the virtio block device: Virtio "
                                    "backend error: Error manipulating the backing file: Permission denied (os error "
                                    "13) %s\n", v.drive) >= 0);
        assert_config_error(&c, expect);
        cr_assert(asprintf(&dbg, "Error: RunWithApi(BuildFromJson(ParseFromJson(BlockDevice(CreateBlockDevice("
                                 "VirtioBackend(BackingFile(Os { code: 13, kind: PermissionDenied, message: "
                                 "\"Permission denied\" }, \"%s\")))))))\n", v.drive) >= 0);
        cr_assert_str_eq(sb_str(&c.err), dbg);
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, read_only_drive_needs_only_read_access) {
        Child c;
        Vm v = vm_files();
        SpawnOptions o = {};

        /* Readable, not writable: refused read-write ... */
        as_vm_user(&o, v.drive, 0644);
        _cleanup_free_ char *rw = make_vm_config(v.kernel, "console=ttyS0", v.drive, false, NULL);
        fc_run_config(&c, &v, rw, &o);
        assert_config_error(&c, "Error manipulating the backing file: Permission denied (os error 13)");
        child_done(&c);
        unlink(v.sock);

        /* ... accepted read-only: whatever happens next is no block device error. */
        _cleanup_free_ char *ro = make_vm_config(v.kernel, "console=ttyS0", v.drive, true, NULL);
        cr_assert(write_file(v.config, ro, 0644) >= 0);
        const char *argv[] = { fc_exec_path(&o), "--id", "vm1", "--api-sock", v.sock, "--config-file", v.config, NULL };
        cr_assert(child_spawn(&c, (char *const *) argv, &o) >= 0);
        bool started = child_wait_output(&c, "Successfully started microvm", false, TEST_TIMEOUT_MS);
        if (!started) {
                /* Past the drives, Kvm::new() opens /dev/kvm as the VM uid:
                 * no such node on a host without KVM (ENOENT), or a node that
                 * uid may not use (EACCES). */
                _cleanup_free_ char *kvm_error = NULL;
                struct stat kst;
                bool no_kvm = stat("/dev/kvm", &kst) < 0 && errno == ENOENT;
                cr_assert(asprintf(&kvm_error, "Could not Start MicroVM from one single json: Kvm error: Error "
                                               "creating KVM object: %s Make sure the user launching the firecracker "
                                               "process is configured on the /dev/kvm file's ACL.",
                                   no_kvm ? "No such file or directory (os error 2)"
                                          : "Permission denied (os error 13)") >= 0);
                cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
                cr_assert(strstr(sb_str(&c.out), kvm_error), "/dev/kvm %s; expected \"%s\" in stdout: %s",
                          no_kvm ? "missing" : "present", kvm_error, sb_str(&c.out));
        }
        cr_assert_null(strstr(sb_str(&c.out), "Block device error"));
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, kernel_and_initrd_must_open) {
        Child c;
        Vm v = vm_files();
        SpawnOptions o = {};
        _cleanup_free_ char *missing = tmp_path("no-initrd"), *cfg = NULL;

        cr_assert(asprintf(&cfg, "{\"boot-source\": {\"kernel_image_path\": \"%s\", \"initrd_path\": \"%s\"}, "
                                 "\"drives\": []}", v.kernel, missing) >= 0);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Boot source error: The initrd file cannot be opened due to invalid path or "
                                "invalid permissions. No such file or directory (os error 2)\n");
        child_done(&c);
        unlink(v.sock);

        as_vm_user(&o, v.kernel, 0600);
        free(cfg);
        cfg = make_vm_config(v.kernel, NULL, NULL, false, NULL);
        fc_run_config(&c, &v, cfg, &o);
        assert_config_error(&c, JSON_PREFIX "Boot source error: The kernel file cannot be opened: Permission denied "
                                "(os error 13)\n");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, boot_args_rules_and_unknown_knob) {
        Child c;
        Vm v = vm_files();
        /* Cmdline::try_from() checks only the size (with the separator):
         * at most CMDLINE_MAX_SIZE - 1 bytes and the NUL. */
        char big[2048 + 1];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = 0;
        _cleanup_free_ char *cfg = make_vm_config(v.kernel, big, NULL, false, NULL);

        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Boot source error: The kernel command line is invalid: Invalid cmdline "
                                "capacity provided.\n");
        child_done(&c);
        unlink(v.sock);

        free(cfg);
        cfg = make_vm_config(v.kernel, "console=ttyS0 fcdouble.crash_after=5", NULL, false, NULL);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, "Boot source error: The kernel command line is invalid: unknown or malformed test knob "
                                "`fcdouble.crash_after=5`");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, taps_opened_as_the_vm_user) {
        Child c;
        Vm v = vm_files();
        struct stat st;
        _cleanup_free_ char *cfg = make_vm_config(v.kernel, NULL, NULL, false,
                                                  ",\n  \"network-interfaces\": [{\"iface_id\": \"eth0\", "
                                                  "\"host_dev_name\": \"tap-no-such0\"}]");
        SpawnOptions o = {};

        cr_assert(stat("/dev/net/tun", &st) >= 0, "no /dev/net/tun");
        if (geteuid() == 0)
                o = (SpawnOptions) { .drop_privileges = true, .uid = VM_UID, .gid = VM_UID };
        fc_run_config(&c, &v, cfg, &o);
        if ((st.st_mode & 0006) != 0006 && (geteuid() == 0 || st.st_uid != geteuid()))
                /* The host's /dev/net/tun is not ours: open fails. */
                assert_config_error(&c, JSON_PREFIX "Network device error: Could not create the network device: Open "
                                        "tap device failed: Couldn't open /dev/net/tun: Permission denied (os error "
                                        "13)\n");
        else
                /* Usable tun, but no such tap and no CAP_NET_ADMIN to create it. */
                assert_config_error(&c, "Error while creating ifreq structure: Operation not permitted (os error 1). "
                                        "Invalid TUN/TAP Backend provided by tap-no-such0.");
        child_done(&c);
        unlink(v.sock);

        if (geteuid() != 0)
                return;
        /* As root the device opens, and the name length is what fails. */
        free(cfg);
        cfg = make_vm_config(v.kernel, NULL, NULL, false,
                             ",\n  \"network-interfaces\": [{\"iface_id\": \"eth0\", \"host_dev_name\": "
                             "\"tap-0123456789ab\"}]");
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Network device error: Could not create the network device: Open tap "
                                "device failed: Invalid interface name\n");
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_config, existing_vsock_uds_path_is_fatal) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *uds = tmp_path("v.sock"), *extra = NULL, *cfg = NULL;

        cr_assert(write_file(uds, "", 0644) >= 0);
        cr_assert(asprintf(&extra, ",\n  \"vsock\": {\"guest_cid\": 3, \"uds_path\": \"%s\"}", uds) >= 0);
        cfg = make_vm_config(v.kernel, NULL, NULL, false, extra);
        fc_run_config(&c, &v, cfg, NULL);
        assert_config_error(&c, JSON_PREFIX "Vsock device error: Cannot create backend for vsock device: Error binding "
                                "to the host-side Unix socket: Address already in use (os error 98)\n");
        child_done(&c);
        vm_files_done(&v);
}

/* ------------------------------------------------------------------------- */
/* firecracker: a running VM (needs /dev/kvm permission, checked like the
 * real one checks it) */

static void require_kvm_access(void) {
        if (access("/dev/kvm", R_OK | W_OK) < 0) {
                if (errno == ENOENT)
                        skip_test("no /dev/kvm on this host: the double refuses to boot, like the real one");
                skip_test("no read-write access to /dev/kvm for uid %u: the double refuses to boot, like the "
                             "real one (run the suite as root)", (unsigned) geteuid());
        }
}

static void fc_start(Child *c, Vm *v, const char *boot_args, const char *extra, const SpawnOptions *o) {
        _cleanup_free_ char *cfg = make_vm_config(v->kernel, boot_args, v->drive, false, extra);
        const char *argv[] = { fc_exec_path(o), "--id", "vm1", "--api-sock", v->sock, "--config-file", v->config,
                               "--start-time-us", "1", "--start-time-cpu-us", "2", "--parent-cpu-time-us", "3", NULL };

        cr_assert(write_file(v->config, cfg, 0644) >= 0);
        cr_assert(child_spawn(c, (char *const *) argv, o) >= 0);
        cr_assert(child_wait_output(c, "] Successfully started microvm that was configured from one single json\n",
                                    false, TEST_TIMEOUT_MS),
                  "did not boot:\n%s\n%s", sb_str(&c->out), sb_str(&c->err));
}

static void request(int fd, const char *method, const char *uri, const char *body, int expect_status,
                    const char *expect_body) {
        int status;
        _cleanup_free_ char *resp = NULL;

        cr_assert_eq(http_request(fd, method, uri, body, &status, &resp), 0, "%s %s failed", method, uri);
        cr_assert_eq(status, expect_status, "%s %s: %d %s", method, uri, status, resp);
        if (expect_body)
                cr_assert_str_eq(resp, expect_body);
}

TestSuite(firecracker_vm, .init = setup, .fini = teardown);

Test(firecracker_vm, api_and_ctrl_alt_del) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k panic=1", NULL, NULL);
        int fd = unix_connect(v.sock);
        cr_assert(fd >= 0, "connect: %s", strerror(-fd));

        /* One connection, many requests: the server keeps it alive. */
        int status;
        _cleanup_free_ char *body = NULL;
        cr_assert_eq(http_request(fd, "GET", "/", NULL, &status, &body), 0);
        cr_assert_eq(status, 200);
        _cleanup_json_ JsonValue *info = NULL;
        cr_assert_eq(json_parse(body, strlen(body), &info, NULL), 0, "not JSON: %s", body);
        cr_assert_str_eq(json_get(info, "id")->string, "vm1");
        cr_assert_str_eq(json_get(info, "state")->string, "Running");
        cr_assert_str_eq(json_get(info, "app_name")->string, "Firecracker");
        cr_assert_str_eq(json_get(info, "vmm_version")->string, DOUBLES_FIRECRACKER_VERSION);

        request(fd, "GET", "/version", NULL, 200, "{\"firecracker_version\":\"" DOUBLES_FIRECRACKER_VERSION "\"}");
        request(fd, "GET", "/machine-config", NULL, 200,
                "{\"vcpu_count\":2,\"mem_size_mib\":256,\"smt\":false,\"track_dirty_pages\":false,\"huge_pages\":\"None\"}");
        request(fd, "GET", "/no/such/path", NULL, 400,
                "{\"fault_message\":\"Invalid request method and/or path: GET no.\"}");
        request(fd, "PUT", "/actions", NULL, 400, "{\"fault_message\":\"Empty PUT request.\"}");
        request(fd, "PUT", "/actions", "{\"action_type\": \"InstanceStart\"}", 400,
                "{\"fault_message\":\"The requested operation is not supported after starting the microVM.\"}");
        request(fd, "PUT", "/actions", "{\"action_type\": \"Reboot\"}", 400,
                "{\"fault_message\":\"An error occurred when deserializing the json body of a request: unknown "
                "variant `Reboot`, expected one of `FlushMetrics`, `InstanceStart`, `SendCtrlAltDel` at line 1 "
                "column 24.\"}");
        request(fd, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\", \"x\": 1}", 400, NULL);
        request(fd, "PUT", "/machine-config", "{\"vcpu_count\": 4}", 400,
                "{\"fault_message\":\"The requested operation is not supported after starting the microVM.\"}");
        request(fd, "PUT", "/actions", "{\"action_type\": \"FlushMetrics\"}", 204, "");
        request(fd, "PUT", "/actions", "{\"action_type\": \"SendCtrlAltDel\"}", 204, "");

        /* The guest shuts down and reboots; with reboot=k that ends firecracker, exit 0. */
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d\n%s", c.status, sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] reboot: Restarting system\n"));
        cr_assert(strstr(sb_str(&c.out), "] The API server received a Put request on \"/actions\" with body "
                                         "\"{\\\"action_type\\\": \\\"SendCtrlAltDel\\\"}\".\n"));
        cr_assert(strstr(sb_str(&c.out), "] Firecracker exiting successfully. exit_code=0\n"));
        close(fd);
        /* Nobody removes the socket: that is the caller's job. */
        struct stat st;
        cr_assert(lstat(v.sock, &st) >= 0 && S_ISSOCK(st.st_mode));
        child_done(&c);
        vm_files_done(&v);
}

/* Firecracker's own parameters go before linux-loader's " -- " (the first
 * one outside quotes); the kernel stops at its own "--", which may be
 * elsewhere: what the guest then does shows it. */
Test(firecracker_vm, kernel_cmdline_as_firecracker_builds_it) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k panic=1 -- single", NULL, NULL);
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] Command line: console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw "
                                         "virtio_mmio.device=4K@0xd0000000:5 -- single\n"),
                  "%s", sb_str(&c.out));
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        child_done(&c);
        unlink(v.sock);

        /* console=ttyS0 after "--" is init's argument: no serial console. */
        fc_start(&c, &v, "panic=1 -- single console=ttyS0 reboot=k", NULL, NULL);
        cr_assert_null(strstr(sb_str(&c.out), "Command line:"), "%s", sb_str(&c.out));
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        child_done(&c);
        unlink(v.sock);

        /* "--" between tabs: linux-loader does not split there, firecracker
         * appends root= after it, the kernel finds no root= of its own,
         * panics and (panic=1) reboots: firecracker exits 0. Control
         * characters pass: try_from() does not check characters. */
        fc_start(&c, &v, "console=ttyS0 reboot=k panic=1\t--\tsingle", NULL, NULL);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        cr_assert(child_exited_with(&c, 0), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "] Command line: console=ttyS0 reboot=k panic=1\t--\tsingle pci=off "
                                         "root=/dev/vda rw virtio_mmio.device=4K@0xd0000000:5\n"),
                  "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] VFS: Cannot open root device \"\" or unknown-block(0,0): error -6\n"),
                  "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] Kernel panic - not syncing: VFS: Unable to mount root fs"), "%s",
                  sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] reboot: Restarting system\n"), "%s", sb_str(&c.out));
        cr_assert_null(strstr(sb_str(&c.out), "login:"), "%s", sb_str(&c.out));
        child_done(&c);
        vm_files_done(&v);
}

/* A root image with a partition table: MBR (disk signature 0eaa91a0,
 * partition 1 Linux) or GPT (one partition, unique GUID
 * 6f1e2d3c-4b5a-4978-8a9b-0c1d2e3f4a5b). */
static void write_partition_table(const char *path, bool gpt) {
        uint8_t s[2048] = {};
        int fd = open(path, O_WRONLY | O_CLOEXEC);

        cr_assert(fd >= 0);
        if (gpt) {
                static const uint8_t guid[16] = { 0x3c, 0x2d, 0x1e, 0x6f, 0x5a, 0x4b, 0x78, 0x49,
                                                  0x8a, 0x9b, 0x0c, 0x1d, 0x2e, 0x3f, 0x4a, 0x5b };
                s[446 + 4] = 0xee; /* the protective MBR */
                memcpy(s + 512, "EFI PART", 8);
                s[512 + 72] = 2;   /* entries at LBA 2 */
                s[512 + 80] = 4;   /* 4 entries */
                s[512 + 84] = 128; /* of 128 bytes */
                memset(s + 1024, 0xaf, 16); /* a type GUID */
                memcpy(s + 1024 + 16, guid, 16);
        } else {
                s[440] = 0xa0, s[441] = 0x91, s[442] = 0xaa, s[443] = 0x0e;
                s[446 + 4] = 0x83;
        }
        s[510] = 0x55, s[511] = 0xaa;
        cr_assert_eq(pwrite(fd, s, sizeof s, 0), (ssize_t) sizeof s);
        close(fd);
}

static void fc_start_root(Child *c, Vm *v, const char *boot_args, const char *partuuid) {
        _cleanup_sb_ StrBuf cfg = {};
        const char *argv[] = { firecracker_path(), "--id", "vm1", "--api-sock", v->sock, "--config-file", v->config,
                               "--start-time-us", "1", "--start-time-cpu-us", "2", "--parent-cpu-time-us", "3", NULL };

        sb_append(&cfg, "{\"boot-source\": {\"kernel_image_path\": ");
        json_append_string(&cfg, v->kernel);
        sb_append(&cfg, ", \"boot_args\": ");
        json_append_string(&cfg, boot_args);
        sb_append(&cfg, "}, \"drives\": [{\"drive_id\": \"root\", \"path_on_host\": ");
        json_append_string(&cfg, v->drive);
        if (partuuid) {
                sb_append(&cfg, ", \"partuuid\": ");
                json_append_string(&cfg, partuuid);
        }
        sb_append(&cfg, ", \"is_root_device\": true, \"is_read_only\": false}]}\n");
        cr_assert(write_file(v->config, sb_str(&cfg), 0644) >= 0);
        cr_assert(child_spawn(c, (char *const *) argv, NULL) >= 0);
        cr_assert(child_wait_output(c, "] Successfully started microvm that was configured from one single json\n",
                                    false, TEST_TIMEOUT_MS),
                  "did not boot:\n%s\n%s", sb_str(&c->out), sb_str(&c->err));
}

static void fc_stop(Child *c, Vm *v) {
        kill(c->pid, SIGKILL);
        child_wait_exit(c, TEST_TIMEOUT_MS);
        child_done(c);
        unlink(v->sock);
}

/* Firecracker appends root=/dev/vda, or root=PARTUUID=<partuuid> when the
 * root drive has one, after the boot args; the kernel takes the last root=. */
Test(firecracker_vm, root_device_and_partuuid) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        write_partition_table(v.drive, false);
        /* A root= in boot_args loses to firecracker's root=/dev/vda: a
         * partition table where the root filesystem should be. panic=0:
         * the guest hangs. */
        fc_start_root(&c, &v, "console=ttyS0 reboot=k panic=0 root=PARTUUID=0eaa91a0-01", NULL);
        cr_assert(child_wait_output(&c, "Kernel panic - not syncing: VFS: Unable to mount root fs on \"/dev/vda\"",
                                    false, TEST_TIMEOUT_MS),
                  "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] Command line: console=ttyS0 reboot=k panic=0 root=PARTUUID=0eaa91a0-01 "
                                         "pci=off root=/dev/vda rw "),
                  "%s", sb_str(&c.out));
        cr_assert_null(strstr(sb_str(&c.out), "login:"));
        fc_stop(&c, &v);

        fc_start_root(&c, &v, "console=ttyS0 reboot=k panic=0", "0eaa91a0-01");
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] Command line: console=ttyS0 reboot=k panic=0 pci=off "
                                         "root=PARTUUID=0eaa91a0-01 rw virtio_mmio.device=4K@0xd0000000:5\n"),
                  "%s", sb_str(&c.out));
        fc_stop(&c, &v);

        fc_start_root(&c, &v, "console=ttyS0 reboot=k panic=0", "0eaa91a0-02");
        cr_assert(child_wait_output(&c, "VFS: Cannot open root device \"PARTUUID=0eaa91a0-02\" or "
                                        "unknown-block(0,0): error -6\n",
                                    false, TEST_TIMEOUT_MS),
                  "%s", sb_str(&c.out));
        fc_stop(&c, &v);

        write_partition_table(v.drive, true);
        fc_start_root(&c, &v, "console=ttyS0 reboot=k panic=0", "6F1E2D3C-4B5A-4978-8A9B-0C1D2E3F4A5B");
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        fc_stop(&c, &v);
        vm_files_done(&v);
}

Test(firecracker_vm, console_lines_and_sigterm) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k panic=1", NULL, NULL);
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        const char *out = sb_str(&c.out);
        cr_assert(strstr(out, "] Linux version "));
        cr_assert(strstr(out, "] Command line: console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda rw "
                              "virtio_mmio.device=4K@0xd0000000:5\n"), "%s", out);
        cr_assert(strstr(out, "] virtio_blk virtio0: [vda] 2048 512-byte logical blocks"), "%s", out);

        /* No SIGTERM handler: it dies at once, by the signal. */
        kill(c.pid, SIGTERM);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_killed_by(&c, SIGTERM), "status %d", c.status);
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, no_console_without_ttyS0) {
        static const char *const variants[] = { "reboot=k panic=1", NULL };
        require_kvm_access();

        for (size_t i = 0; i < ELEMENTSOF(variants); i++) {
                Child c;
                Vm v = vm_files();
                fc_start(&c, &v, variants[i], NULL, NULL);
                int fd = unix_connect(v.sock);
                cr_assert(fd >= 0);
                request(fd, "GET", "/", NULL, 200, NULL);
                request(fd, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", 204, "");
                cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
                cr_assert(child_exited_with(&c, 0));
                cr_assert_null(strstr(sb_str(&c.out), "Linux version"), "%s", sb_str(&c.out));
                cr_assert_null(strstr(sb_str(&c.out), "Command line:"));
                cr_assert_null(strstr(sb_str(&c.out), "login:"));
                cr_assert(strstr(sb_str(&c.out), "] Running Firecracker v"));
                close(fd);
                child_done(&c);
                remove_tree(v.sock);
                unlink(v.config);
                vm_files_done(&v);
        }
}

Test(firecracker_vm, serial_input_from_a_fifo) {
        Child c;
        Vm v = vm_files();
        SpawnOptions o = { .stdin_mode = STDIN_PIPE };
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k", NULL, &o);
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS));
        cr_assert(write(c.in_fd, "hello serial\n", 13) == 13);
        cr_assert(child_wait_output(&c, "\nhello serial\n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        cr_assert(write(c.in_fd, "reboot\n", 7) == 7);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "] reboot: Restarting system\n"));
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, regular_file_stdin_is_not_serial_input) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *in = tmp_path("stdin.txt");
        SpawnOptions o = { .stdin_mode = STDIN_FILE, .stdin_file = in };
        require_kvm_access();

        cr_assert(write_file(in, "not-echoed-marker\nreboot\n", 0644) >= 0);
        fc_start(&c, &v, "console=ttyS0 reboot=k", NULL, &o);
        cr_assert(child_wait_output(&c, "vm1 login: \n", false, TEST_TIMEOUT_MS));
        /* A round trip through the event loop: stdin, if polled, would have been read by now. */
        int fd = unix_connect(v.sock);
        cr_assert(fd >= 0);
        request(fd, "GET", "/", NULL, 200, NULL);
        child_poll(&c);
        cr_assert_null(strstr(sb_str(&c.out), "not-echoed-marker"));
        cr_assert(!c.exited);
        close(fd);
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, sighup_exits_156) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0", NULL, NULL);
        kill(c.pid, SIGHUP);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 156), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "] Shutting down VM after intercepting signal 1, code 0.\n"), "%s",
                  sb_str(&c.out));
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, knob_crash) {
        require_kvm_access();
        static const struct {
                const char *args;
                int sig;
        } cases[] = {
                { "console=ttyS0 fcdouble.crash_after_ms=0", SIGKILL },
                { "console=ttyS0 fcdouble.crash_after_ms=1 fcdouble.crash_signal=abort", SIGABRT },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                Child c;
                Vm v = vm_files();
                fc_start(&c, &v, cases[i].args, NULL, NULL);
                cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
                cr_assert(child_killed_by(&c, cases[i].sig), "case %zu: status %d", i, c.status);
                child_done(&c);
                remove_tree(v.sock);
                vm_files_done(&v);
        }
}

Test(firecracker_vm, knob_guest_reboot) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k fcdouble.reboot_after_ms=0", NULL, NULL);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 0), "status %d", c.status);
        cr_assert(strstr(sb_str(&c.out), "] reboot: Restarting system\n"));
        child_done(&c);
        vm_files_done(&v);
}

/* The VMM is alive and serving: a round trip through its event loop. */
static void assert_still_running(Child *c, int fd) {
        request(fd, "GET", "/", NULL, 200, NULL);
        child_poll(c);
        cr_assert(!c->exited, "exited with status %d", c->status);
}

Test(firecracker_vm, knob_guest_poweroff_keeps_the_vmm_running) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 reboot=k fcdouble.poweroff_after_ms=0", NULL, NULL);
        cr_assert(child_wait_output(&c, "] reboot: Power down\n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c.out));
        int fd = unix_connect(v.sock);
        cr_assert(fd >= 0);
        assert_still_running(&c, fd);
        /* A halted guest does nothing with Ctrl-Alt-Del. */
        request(fd, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", 204, "");
        assert_still_running(&c, fd);
        cr_assert_null(strstr(sb_str(&c.out), "Restarting system"));
        close(fd);
        kill(c.pid, SIGTERM);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_killed_by(&c, SIGTERM));
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, knob_guest_ignores_ctrl_alt_del) {
        static const char *const variants[] = { "console=ttyS0 fcdouble.ignore_cad=1", "console=ttyS0 fcdouble.hang=guest" };
        require_kvm_access();

        for (size_t i = 0; i < ELEMENTSOF(variants); i++) {
                Child c;
                Vm v = vm_files();
                fc_start(&c, &v, variants[i], NULL, NULL);
                int fd = unix_connect(v.sock);
                cr_assert(fd >= 0);
                request(fd, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", 204, "");
                assert_still_running(&c, fd);
                cr_assert_null(strstr(sb_str(&c.out), "Ctrl-Alt-Del pressed"));
                if (strstr(variants[i], "hang=guest")) {
                        cr_assert(strstr(sb_str(&c.out), "] Command line: "));
                        cr_assert_null(strstr(sb_str(&c.out), "login:"));
                }
                close(fd);
                kill(c.pid, SIGTERM);
                cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
                child_done(&c);
                remove_tree(v.sock);
                vm_files_done(&v);
        }
}

Test(firecracker_vm, knob_vmm_hangs) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 fcdouble.hang=vmm", NULL, NULL);
        cr_assert(child_wait_output(&c, "fcdouble: hang=vmm", false, TEST_TIMEOUT_MS));
        /* The socket still accepts into its backlog; nobody will answer. */
        int fd = unix_connect(v.sock);
        cr_assert(fd >= 0, "connect: %s", strerror(-fd));
        close(fd);
        kill(c.pid, SIGTERM);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_killed_by(&c, SIGTERM));
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, knob_flood) {
        Child c;
        Vm v = vm_files();
        require_kvm_access();

        fc_start(&c, &v, "console=ttyS0 fcdouble.flood=3000", NULL, NULL);
        /* More than the pipe holds: lines are dropped, never blocking the VMM. */
        cr_assert(child_wait_output(&c, "] fcdouble: flood of 3000 lines done, ", false, TEST_TIMEOUT_MS),
                  "%s", sb_str(&c.out));
        cr_assert(strstr(sb_str(&c.out), "] fcdouble: flood line 0 "));
        int fd = unix_connect(v.sock);
        cr_assert(fd >= 0);
        assert_still_running(&c, fd);
        close(fd);
        child_done(&c);
        vm_files_done(&v);
}

Test(firecracker_vm, vsock_socket_is_bound) {
        Child c;
        Vm v = vm_files();
        _cleanup_free_ char *uds = tmp_path("run/v.sock"), *extra = NULL;
        require_kvm_access();

        cr_assert(asprintf(&extra, ",\n  \"vsock\": {\"guest_cid\": 3, \"uds_path\": \"%s\"}", uds) >= 0);
        fc_start(&c, &v, "console=ttyS0", extra, NULL);
        struct stat st;
        cr_assert(lstat(uds, &st) >= 0 && S_ISSOCK(st.st_mode));
        cr_assert(strstr(sb_str(&c.out), "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6\n"),
                  "%s", sb_str(&c.out));
        child_done(&c);
        vm_files_done(&v);
}
