/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tool-level attack suite: the real microvm-stage, microvm-cleanup and
 * microvm-reclaim (subprocesses, as systemd runs them) over a jail that a
 * compromised firecracker populated. A VM is staged for real, the jailer's
 * changes are simulated (from then on the VM's uid owns the jail root), and
 * the jail is filled as an attacker would (fork + setresuid to the VM's
 * uid; as root where an attack needs more than the VM has, to prove that
 * the tools do not rely on the attacker's limits either). Then the tools
 * run over it. Every test asserts that no victim changed (content, owner,
 * mode, existence: <T>/victim and the admin's templates), that no tool hung
 * (bounded waits), and what each tool reported.
 *
 * Each test runs twice: with openat2() and with the component walk the
 * tools fall back to (MICROVM_SAFE_FS_FALLBACK=1). */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "priv-util.h"
#include "tool-util.h"

#define ID "vm1"

static void setup(void) {
        tool_sandbox();
        cgroup_sandbox();
        vm_config_write(ID, NULL);
        victims_snapshot();
}

static void teardown(void) {
        cgroup_sandbox_done();
        host_leaks_check();
}

#define BOTH_MODES(suite, name, ...)                                                   \
        ParameterizedTestParameters(suite, name) {                                     \
                static bool modes[] = { false, true };                                 \
                return cr_make_param_array(bool, modes, ELEMENTSOF(modes));            \
        }                                                                              \
        ParameterizedTest(bool *fallback, suite, name, .init = setup, .fini = teardown, .timeout = 600, \
                          ##__VA_ARGS__)

/* In an attacker child: on failure, say which step and exit non-zero
 * (run_as_wait() then fails the test). */
#define P(expr)                                                                         \
        do {                                                                            \
                if ((expr) < 0) {                                                       \
                        fprintf(stderr, "attacker: %s failed: %m (line %d)\n", #expr, __LINE__); \
                        _exit(1);                                                       \
                }                                                                       \
        } while (0)

/* Removes dirfd/name and what is below it (the attacker's own tree: a
 * plain recursive walk is fine here). */
static int rm_tree_at(int dirfd, const char *name) {
        struct dirent *de;
        struct stat st;
        DIR *dir;
        int d;

        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return errno == ENOENT ? 0 : -1;
        if (!S_ISDIR(st.st_mode))
                return unlinkat(dirfd, name, 0);
        d = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        dir = d >= 0 ? fdopendir(d) : NULL;
        if (!dir)
                return -1;
        while ((de = readdir(dir)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..") && rm_tree_at(d, de->d_name) < 0) {
                        closedir(dir);
                        return -1;
                }
        closedir(dir);
        return unlinkat(dirfd, name, AT_REMOVEDIR);
}

/* Replaces name in dirfd by a symlink to target (whatever name was). */
static int plant_link(int dirfd, const char *name, const char *target) {
        if (rm_tree_at(dirfd, name) < 0)
                return -1;
        return symlinkat(target, dirfd, name);
}

static const char *outcome(const ToolRun *r) {
        return pf("exit %d, stderr:\n%s", r->status, r->err);
}

static void expect_clean_run(const char *tool, const char *arg) {
        ToolRun r = tool_run(tool, arg, NULL);
        cr_assert_eq(r.status, 0, "%s over the attacker's jail: %s", tool, outcome(&r));
        tool_run_done(&r);
}

/* Runs cleanup, reclaim and stage in turn over the same planted jail
 * (re-staged and re-planted before each), asserting that each succeeds,
 * leaves no trace of the jail (stage: rebuilds it exactly as on a clean
 * host), keeps the VM's state intact, and changes no victim. */
static void over_each_tool(void (*plant)(void *arg), bool as_root) {
        static const char *const tools[] = { "microvm-cleanup", "microvm-reclaim", "microvm-stage" };

        for (size_t i = 0; i < ELEMENTSOF(tools); i++) {
                stage_ok(ID);
                jailer_simulate(ID);
                if (as_root)
                        plant(NULL);
                else
                        run_as_wait(vm_uid(ID), plant, NULL);
                expect_clean_run(tools[i], streq(tools[i], "microvm-reclaim") ? NULL : ID);
                victims_check();
                if (streq(tools[i], "microvm-stage"))
                        assert_staged(ID);
                else
                        assert_nothing_left(ID);
                /* the drive copies, which the jail's names pointed at */
                assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);
        }
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        victims_check();
}

/* ---- symlinks at every path the tools touch ------------------------------------------ */

static void plant_symlinks(void *arg) {
        int dfd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        P(dfd);
        /* leaves: kernel, initrd, drives, config, the exec copy, pid file */
        P(plant_link(dfd, "vmlinux", pf("%s/secret", S.victim)));
        P(plant_link(dfd, "initrd", "../../../../victim/secret"));
        P(plant_link(dfd, "drive-root", pf("%s/secret", S.victim)));
        P(plant_link(dfd, "drive-data", pf("%s/admin-file", S.victim)));
        P(plant_link(dfd, "drive-ro", pf("%s/shared", S.victim)));
        P(plant_link(dfd, "vm-config.json", pf("%s/public", S.victim)));
        P(plant_link(dfd, EXEC_NAME, pf("%s/admin-file", S.victim)));
        P(plant_link(dfd, EXEC_NAME ".pid", pf("%s/secret", S.victim)));
        /* intermediate: run/ (where sockets go), dev/ */
        P(plant_link(dfd, "run", pf("%s/dir", S.victim)));
        P(plant_link(dfd, "dev", pf("%s/jail/vm1/root", S.victim)));
        /* and links to directories that look like what the tools remove */
        P(symlinkat(pf("%s/dir/sub", S.victim), dfd, "sub"));
        P(symlinkat(pf("%s/jail", S.victim), dfd, EXEC_NAME "-jail"));
        P(symlinkat("/", dfd, "slash"));
        close(dfd);
}

BOTH_MODES(attack, symlinks_at_every_path) {
        tools_use_fallback(*fallback);
        over_each_tool(plant_symlinks, false);
}

/* As root: the objects above the VM-owned root/, which the VM cannot
 * touch, turned into symlinks by whoever could. */
static void plant_root_link(void *arg) {
        /* the real root/ out of the way (root may remove anything) */
        rm_rf_as_root(jail_root(ID));
        cr_assert_eq(symlink(pf("%s/jail/vm1/root", S.victim), jail_root(ID)), 0, "%m");
}

static void plant_id_link(void *arg) {
        ToolRun r = tool_run("microvm-cleanup", ID, NULL); /* the real dir goes first */
        cr_assert_eq(r.status, 0, "%s", r.err);
        tool_run_done(&r);
        cr_assert_eq(symlink(pf("%s/jail/vm1", S.victim), jail_dir(ID)), 0, "%m");
        /* and a run dir without a plan (as a stage SIGKILLed early leaves
         * it), so that reclaim, too, has a reason to look at this VM */
        cr_assert_eq(mkdir(run_dir(ID), 0700), 0);
}

BOTH_MODES(attack, symlinked_jail_dirs) {
        tools_use_fallback(*fallback);
        /* <id>/root → a victim dir */
        over_each_tool(plant_root_link, true);
        /* <id> → a victim dir */
        over_each_tool(plant_id_link, true);
}

/* <chroot_base>/<exec> itself a symlink: nothing can be trusted below it,
 * every tool refuses and says which component is wrong. */
BOTH_MODES(attack, symlinked_exec_dir) {
        const char *exec_dir = strdupa(pf("%s/" EXEC_NAME, S.base));
        const char *aside = strdupa(pf("%s/exec-aside", S.root));
        ToolRun r;

        tools_use_fallback(*fallback);
        stage_ok(ID);
        jailer_simulate(ID);
        cr_assert_eq(rename(exec_dir, aside), 0);
        cr_assert_eq(symlink(pf("%s/jail", S.victim), exec_dir), 0);

        /* The plan names the exec dir: each tool gets there, and stops. */
        r = tool_run("microvm-reclaim", NULL);
        cr_expect_neq(r.status, 0, "reclaim below a symlinked exec dir: %s", outcome(&r));
        cr_expect(strstr(r.err, pf("\"%s\"", exec_dir)) && strstr(r.err, "symlink"), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-stage", ID, NULL);
        cr_expect_neq(r.status, 0, "stage below a symlinked exec dir: %s", outcome(&r));
        cr_expect(strstr(r.err, pf("\"%s\"", exec_dir)) && strstr(r.err, "symlink"), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-cleanup", ID, NULL);
        cr_expect_neq(r.status, 0, "cleanup below a symlinked exec dir: %s", outcome(&r));
        cr_expect(strstr(r.err, pf("\"%s\"", exec_dir)) && strstr(r.err, "symlink"), "%s", outcome(&r));
        tool_run_done(&r);
        victims_check();
        /* Without a plan (cleanup removed the run dir), reclaim's scan
         * does not follow it either, and says so. */
        r = tool_run("microvm-reclaim", NULL);
        cr_expect(strstr(r.err, exec_dir) && strstr(r.err, "symlink"), "%s", outcome(&r));
        tool_run_done(&r);
        victims_check();

        /* Repaired by the admin: everything works again. */
        cr_assert_eq(unlink(exec_dir), 0);
        cr_assert_eq(rename(aside, exec_dir), 0);
        stage_ok(ID);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        victims_check();
}

/* ---- hardlinks -------------------------------------------------------------------------- */

static void plant_hardlinks(void *arg) {
        int dfd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        P(dfd);
        /* Allowed under protected_hardlinks: the victim is world-writable. */
        P(unlinkat(dfd, "drive-data", 0));
        P(linkat(AT_FDCWD, pf("%s/shared", S.victim), dfd, "drive-data", 0));
        P(linkat(AT_FDCWD, pf("%s/shared", S.victim), dfd, "run/firecracker.socket", 0));
        /* A second name for the VM's own drive copy: after the jail is
         * gone, the copy must be usable again (one link). */
        P(linkat(dfd, "drive-root", dfd, "keep-root", 0));
        close(dfd);
}

static void plant_hardlinks_as_root(void *arg) {
        const char *root = strdupa(jail_root(ID));

        /* What the VM could do without protected_hardlinks. */
        run_as_wait(vm_uid(ID), plant_hardlinks, NULL);
        cr_assert_eq(unlink(pf("%s/vm-config.json", root)), 0);
        cr_assert_eq(link(pf("%s/secret", S.victim), pf("%s/vm-config.json", root)), 0);
        cr_assert_eq(unlink(pf("%s/vmlinux", root)), 0);
        cr_assert_eq(link(pf("%s/admin-file", S.victim), pf("%s/vmlinux", root)), 0);
        cr_assert_eq(link(pf("%s/dir/sub/deep", S.victim), pf("%s/dev/deep", root)), 0);
}

BOTH_MODES(attack, hardlinks) {
        tools_use_fallback(*fallback);
        over_each_tool(plant_hardlinks, false);
        over_each_tool(plant_hardlinks_as_root, true);
}

/* ---- FIFOs, sockets and devices where files are expected ---------------------------------- */

static void plant_specials(void *arg) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int dfd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC), s;

        P(dfd);
        /* Opening any of these for reading would block forever. */
        P(unlinkat(dfd, "vm-config.json", 0));
        P(mkfifoat(dfd, "vm-config.json", 0600));
        P(unlinkat(dfd, "vmlinux", 0));
        P(mkfifoat(dfd, "vmlinux", 0666));
        P(unlinkat(dfd, "drive-root", 0));
        P(mkfifoat(dfd, "drive-root", 0600));
        P(mkfifoat(dfd, "run/console.in", 0600));
        /* a bound socket where firecracker's API socket goes */
        snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d/run/firecracker.socket", dfd);
        s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        P(s);
        P(bind(s, (struct sockaddr *) &sa, sizeof sa));
        close(s);
        close(dfd);
}

BOTH_MODES(attack, fifos_and_sockets) {
        tools_use_fallback(*fallback);
        over_each_tool(plant_specials, false);
}

/* ---- a bind mount inside the jail ----------------------------------------------------------- */

static void plant_mountpoints(void *arg) {
        int dfd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        P(dfd);
        P(mkdirat(dfd, "mnt", 0700));
        P(mkdirat(dfd, "junk", 0700));
        P(mkdirat(dfd, "junk/more", 0700));
        close(dfd);
}

BOTH_MODES(attack, bind_mount) {
        const char *root = strdupa(jail_root(ID));
        ToolRun r;

        tools_use_fallback(*fallback);
        stage_ok(ID);
        jailer_simulate(ID);
        run_as_wait(vm_uid(ID), plant_mountpoints, NULL);
        /* Root-only: a mount in the jail (a confused admin, another tool).
         * Removal must stop at it: never enter, never unmount, never empty
         * the victim behind it. */
        cr_assert_eq(mount(pf("%s/dir", S.victim), pf("%s/mnt", root), NULL, MS_BIND, NULL), 0, "%m");
        cr_assert_eq(mount(pf("%s/secret", S.victim), pf("%s/vmlinux", root), NULL, MS_BIND, NULL), 0, "%m");

        r = tool_run("microvm-cleanup", ID, NULL);
        cr_expect_neq(r.status, 0, "cleanup over a bind mount: %s", outcome(&r));
        /* one line per mount, with its full path */
        cr_expect(strstr(r.err, pf("Not removed: jail %s: not completely removed: %s/mnt: mount point, not crossed\n",
                                   jail_dir(ID), root)), "%s", outcome(&r));
        cr_expect(strstr(r.err, pf("Not removed: jail %s: not completely removed: %s/vmlinux: mount point, not "
                                   "crossed\n", jail_dir(ID), root)), "%s", outcome(&r));
        cr_expect(strstr(r.err, "Cleanup of " ID " left objects behind"), "%s", outcome(&r));
        /* the plan stays: it names what is left for the next attempt */
        cr_expect(exists(pf("%s/plan", run_dir(ID))));
        cr_expect(strstr(r.err, pf("run directory %s: kept, its launch plan names what is left", run_dir(ID))),
                  "%s", outcome(&r));
        cr_log_info("microvm-cleanup over a bind mount:\n%s", r.err);
        tool_run_done(&r);
        /* everything else went; the mounts and what is behind them stay */
        cr_expect_not(exists(pf("%s/junk", root)));
        cr_expect_not(exists(pf("%s/drive-root", root)));
        cr_expect(exists(pf("%s/mnt/inner", root)));
        victims_check();

        /* Reclaim and stage refuse the same way, and say so. */
        r = tool_run("microvm-reclaim", NULL);
        cr_expect_neq(r.status, 0, "reclaim over a bind mount: %s", outcome(&r));
        cr_expect(strstr(r.err, pf("%s/mnt: mount point, not crossed", root)), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-stage", ID, NULL);
        cr_expect_neq(r.status, 0, "stage over a bind mount: %s", outcome(&r));
        cr_expect(strstr(r.err, pf("%s/mnt: mount point, not crossed", root)), "%s", outcome(&r));
        cr_expect(strstr(r.err, "Cannot start " ID " over what an earlier run left behind"), "%s", outcome(&r));
        tool_run_done(&r);
        victims_check();
        cr_expect(exists(pf("%s/mnt/inner", root)));

        /* Once the mounts are gone, the next stage works. */
        cr_assert_eq(umount2(pf("%s/mnt", root), MNT_DETACH), 0);
        cr_assert_eq(umount2(pf("%s/vmlinux", root), MNT_DETACH), 0);
        stage_ok(ID);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        victims_check();
}

/* ---- depth -------------------------------------------------------------------------------- */

#define DEEP 10000

static void plant_deep_chain(void *arg) {
        int fd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        P(fd);
        for (unsigned i = 0; i < DEEP; i++) {
                int nfd;

                P(mkdirat(fd, "d", 0700));
                if (i % 1000 == 0) {
                        /* files, FIFOs and links to victims on the way down */
                        int f = openat(fd, "f", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                        P(f);
                        close(f);
                        P(mkfifoat(fd, "fifo", 0600));
                        P(symlinkat(pf("%s/secret", S.victim), fd, "s"));
                        P(symlinkat(pf("%s/dir", S.victim), fd, "r"));
                }
                nfd = openat(fd, "d", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                P(nfd);
                close(fd);
                fd = nfd;
        }
        P(symlinkat(S.victim, fd, "bottom"));
        close(fd);
        /* and wide */
        fd = open(pf("%s/run", jail_root(ID)), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        P(fd);
        for (unsigned i = 0; i < 5000; i++) {
                int f = openat(fd, pf("w%u", i), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                P(f);
                close(f);
        }
        close(fd);
}

BOTH_MODES(attack, deep_chain) {
        tools_use_fallback(*fallback);
        over_each_tool(plant_deep_chain, false);
}

/* ---- races: a directory swapped for a symlink between two steps ---------------------------- */

/* The attacker: a real tree and symlinks to victims, swapped (RENAME_EXCHANGE)
 * under the remover's feet until killed. With arg != NULL it also
 * recreates whatever the remover took, so the jail is never empty. */
_noreturn_ static void swap_forever(void *arg) {
        bool recreate = arg != NULL;
        int dfd = open(jail_root(ID), O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (dfd < 0)
                _exit(1);
        for (unsigned n = 0;; n++) {
                if (n == 0 || recreate) {
                        int f;
                        (void) mkdirat(dfd, "t", 0755);
                        (void) mkdirat(dfd, "t/sub", 0755);
                        f = openat(dfd, "t/sub/file", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
                        if (f >= 0)
                                close(f);
                        if (symlinkat(pf("%s/dir", S.victim), dfd, "t/sub/l") < 0) { /* EEXIST is normal */ }
                        if (symlinkat(pf("%s/jail/vm1/root", S.victim), dfd, "t.lnk") < 0) { /* ditto */ }
                        if (symlinkat(pf("%s/dir", S.victim), dfd, "run.lnk") < 0) { /* ditto */ }
                }
                (void) renameat2(dfd, "run", dfd, "run.lnk", RENAME_EXCHANGE);
                (void) renameat2(dfd, "t", dfd, "t.lnk", RENAME_EXCHANGE);
                (void) renameat2(dfd, "t/sub", dfd, "run.lnk", RENAME_EXCHANGE);
                (void) renameat2(dfd, "dev", dfd, "t.lnk", RENAME_EXCHANGE);
                if (n == 0)
                        child_ready(); /* tell the test we are racing */
        }
}

BOTH_MODES(attack, race_dir_symlink_swap) {
        static const char *const tools[] = { "microvm-cleanup", "microvm-stage", "microvm-reclaim" };
        unsigned left[2] = {}, rounds = 60;

        tools_use_fallback(*fallback);
        for (unsigned i = 0; i < rounds; i++) {
                const char *tool = tools[i % ELEMENTSOF(tools)];
                bool recreate = (i / ELEMENTSOF(tools)) % 2;
                ToolRun r;
                pid_t pid;

                stage_ok(ID);
                jailer_simulate(ID);
                /* returns once the attacker races */
                pid = run_as_until_ready(vm_uid(ID), swap_forever, recreate ? (void *) 1 : NULL);

                r = tool_run(tool, streq(tool, "microvm-reclaim") ? NULL : ID, NULL);
                cr_assert_eq(kill(pid, SIGKILL), 0);
                cr_assert_eq(wait_exit_bounded(pid, TOOL_TIMEOUT), 128 + SIGKILL);
                /* A tool may lose against an attacker who keeps adding
                 * entries (the jail is never empty); it must say so, and
                 * never touch a victim. Against one who only swaps, it
                 * wins. */
                if (r.status != 0) {
                        left[recreate]++;
                        cr_assert(strstr(r.err, "not completely removed") || strstr(r.err, "Not removed"),
                                  "round %u, %s under attack: %s", i, tool, outcome(&r));
                }
                tool_run_done(&r);
                victims_check();
                /* With the attacker gone, cleanup finishes the job. */
                tool_ok("microvm-cleanup", ID);
                assert_nothing_left(ID);
                victims_check();
        }
        cr_log_info("race (%s): %u rounds; the tool reported leftovers in %u of %u rounds against a swapping "
                    "attacker, %u of %u against one that also recreates", *fallback ? "walk" : "openat2", rounds,
                    left[0], rounds / 2, left[1], rounds / 2);
        cr_expect_lt(left[0], rounds / 2, "never won against a swapping attacker");
}

/* ---- the chroot base, state dir and run dir themselves -------------------------------------- */

typedef enum Which { BASE, STATE, RUN, _WHICH_MAX } Which;
static const char *const which_name[] = { "chroot base", "state dir", "run dir" };

typedef enum How { SYMLINK, GROUP_WRITABLE, WORLD_WRITABLE_STICKY, FOREIGN_OWNER, PARENT_GROUP_WRITABLE,
                   PARENT_SYMLINK, _HOW_MAX } How;
static const char *const how_name[] = { "a symlink", "group-writable", "world-writable and sticky (like /tmp)",
                                        "owned by a user", "below a group-writable dir", "below a symlink" };

/* Each of the three dirs has a parent of its own, so that each can be
 * spoilt alone: <T>/p-base/jailer, <T>/p-state/state, <T>/p-run/run. */
static char P[_WHICH_MAX][PATH_MAX], D[_WHICH_MAX][PATH_MAX];

/* Spoils dir `which` in way `how`, in place (the launch plans keep naming
 * it); returns the component the tools must name. undo() repairs it. */
static struct stat saved;

static const char *spoil(Which w, How h) {
        cr_assert_eq(lstat(h >= PARENT_GROUP_WRITABLE ? P[w] : D[w], &saved), 0);
        switch (h) {
        case SYMLINK:
                /* pointing at a tree that looks like what the tools expect */
                cr_assert_eq(rename(D[w], pf("%s.real", D[w])), 0);
                cr_assert_eq(symlink(pf("%s/jail", S.victim), D[w]), 0);
                return D[w];
        case GROUP_WRITABLE:
                cr_assert_eq(chmod(D[w], 0770), 0);
                return D[w];
        case WORLD_WRITABLE_STICKY:
                cr_assert_eq(chmod(D[w], 01777), 0);
                return D[w];
        case FOREIGN_OWNER:
                cr_assert_eq(chown(D[w], ADMIN_UID, 0), 0);
                return D[w];
        case PARENT_GROUP_WRITABLE:
                cr_assert_eq(chmod(P[w], 0775), 0);
                return P[w];
        case PARENT_SYMLINK:
                /* even one that leads to the right place */
                cr_assert_eq(rename(P[w], pf("%s.real", P[w])), 0);
                cr_assert_eq(symlink(pf("%s.real", P[w]), P[w]), 0);
                return P[w];
        default:
                cr_assert_fail();
                return NULL;
        }
}

static void undo(Which w, How h) {
        switch (h) {
        case SYMLINK:
                cr_assert_eq(unlink(D[w]), 0);
                cr_assert_eq(rename(pf("%s.real", D[w]), D[w]), 0);
                break;
        case GROUP_WRITABLE:
        case WORLD_WRITABLE_STICKY:
                cr_assert_eq(chmod(D[w], saved.st_mode & 07777), 0);
                break;
        case FOREIGN_OWNER:
                cr_assert_eq(chown(D[w], saved.st_uid, saved.st_gid), 0);
                break;
        case PARENT_GROUP_WRITABLE:
                cr_assert_eq(chmod(P[w], saved.st_mode & 07777), 0);
                break;
        case PARENT_SYMLINK:
                cr_assert_eq(unlink(P[w]), 0);
                cr_assert_eq(rename(pf("%s.real", P[w]), P[w]), 0);
                break;
        default:
                cr_assert_fail();
        }
}

static void expect_refusal(const char *tool, const char *arg, const char *bad, const char *what) {
        ToolRun r = tool_run(tool, arg, NULL);

        cr_expect_neq(r.status, 0, "%s with %s: %s", tool, what, outcome(&r));
        cr_expect(strstr(r.err, pf("\"%s\"", bad)), "%s with %s does not name \"%s\": %s", tool, what, bad,
                  outcome(&r));
        tool_run_done(&r);
}

BOTH_MODES(roots, untrusted_base_state_run) {
        static const char *const leaf[_WHICH_MAX] = { "jailer", "state", "run" };
        static const char *const parent[_WHICH_MAX] = { "p-base", "p-state", "p-run" };

        tools_use_fallback(*fallback);
        for (Which w = 0; w < _WHICH_MAX; w++) {
                snprintf(P[w], PATH_MAX, "%s/%s", S.root, parent[w]);
                snprintf(D[w], PATH_MAX, "%s/%s/%s", S.root, parent[w], leaf[w]);
                cr_assert_eq(mkdir(P[w], 0755), 0);
        }
        host_config_write(D[BASE], D[STATE], D[RUN]);
        snprintf(S.base, sizeof S.base, "%s", D[BASE]);
        snprintf(S.state, sizeof S.state, "%s", D[STATE]);
        snprintf(S.run, sizeof S.run, "%s", D[RUN]);
        /* An ephemeral VM: cleanup then has a reason to use the state dir too. */
        vm_config_write("eph", "ephemeral = yes");
        vm_config_write("new", NULL);

        for (Which w = 0; w < _WHICH_MAX; w++)
                for (How h = 0; h < _HOW_MAX; h++) {
                        _cleanup_free_ char *before = NULL, *after = NULL;
                        char what[256];
                        const char *bad;

                        snprintf(what, sizeof what, "the %s %s", which_name[w], how_name[h]);
                        /* A working setup first: something to clean up. */
                        stage_ok(ID);
                        stage_ok("eph");
                        jailer_simulate(ID);
                        before = snapshot_tree(P[w]);

                        bad = strdupa(spoil(w, h));
                        expect_refusal("microvm-stage", ID, bad, what);
                        expect_refusal("microvm-stage", "new", bad, what);
                        if (w != STATE)
                                expect_refusal("microvm-cleanup", ID, bad, what);
                        /* the state dir matters to cleanup only where it removes something */
                        expect_refusal("microvm-cleanup", "eph", bad, what);
                        expect_refusal("microvm-reclaim", NULL, bad, what);
                        victims_check();

                        /* Nothing changed in or below the spoilt dir: nothing
                         * created, chowned or removed there (or through it:
                         * victims_check()). The steps elsewhere may well
                         * have run (teardown runs every step), but where a
                         * step failed, the plan that names what is left was
                         * kept. */
                        undo(w, h);
                        after = snapshot_tree(P[w]);
                        assert_same_snapshot(before, after, what);
                        if (w == BASE) {
                                cr_expect(exists(run_dir(ID)) && exists(run_dir("eph")), "%s: plans dropped", what);
                        }

                        tool_ok("microvm-cleanup", ID);
                        tool_ok("microvm-cleanup", "eph");
                        assert_nothing_left(ID);
                        assert_nothing_left("eph");
                }
        victims_check();
}

PRIV_TEST_MAIN
