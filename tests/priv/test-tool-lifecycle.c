/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The tools over a VM's life, run for real as subprocesses (see
 * tool-util.h): idempotence (cleanup twice, cleanup of a VM never staged,
 * reclaim of nothing), a start SIGKILLed at random points followed by the
 * next stage and cleanup (nothing leaks, no half-made drive copy ever
 * under its final name), 200 concurrent stages getting 200 distinct uids
 * that survive a restart, and the cgroup side: leftover processes killed
 * by cleanup and stage from the unit's ".control" cgroup, a running VM
 * never touched by reclaim. Cgroups live in a cgroup namespace of the
 * test's own (cgroup_sandbox()), never in the host's microvm.slice.
 * Whether a VM's unit runs, the tools judge here by its cgroup, the system
 * bus explicitly absent (tool_sandbox()), and each answer says so ("per
 * cgroup"); systemd's answer over the bus is tested in the e2e suite. */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "names.h"
#include "priv-util.h"
#include "tap.h"
#include "tool-util.h"

#define ID "vm1"

static void setup(void) {
        tool_sandbox();
        cgroup_sandbox();
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
        ParameterizedTest(bool *fallback, suite, name, .init = setup, .fini = teardown, .timeout = 1200, \
                          ##__VA_ARGS__)

static const char *outcome(const ToolRun *r) {
        return pf("exit %d, stderr:\n%s", r->status, r->err);
}

/* ---- idempotence -------------------------------------------------------------------- */

Test(idempotence, cleanup_twice, .init = setup, .fini = teardown, .timeout = 300) {
        struct stat before, after;
        uid_t uid;

        vm_config_write(ID, NULL);
        stage_ok(ID);
        uid = vm_uid(ID);
        jailer_simulate(ID);
        cr_assert_eq(stat(pf("%s/" ID "/drives/root.img", S.state), &before), 0);

        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);
        tool_ok("microvm-reclaim", NULL);
        assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);

        /* A restart keeps the uid and the VM's own drive copy. */
        stage_ok(ID);
        cr_assert_eq(vm_uid(ID), uid);
        cr_assert_eq(stat(pf("%s/" ID "/drives/root.img", S.state), &after), 0);
        cr_assert_eq(before.st_ino, after.st_ino, "the drive copy was made again");
        tool_ok("microvm-cleanup", ID);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
        victims_check();
}

Test(idempotence, never_staged, .init = setup, .fini = teardown, .timeout = 300) {
        ToolRun r;

        vm_config_write(ID, NULL);
        /* Nothing exists yet, not even the chroot base, state or run dir:
         * every tool succeeds and creates nothing. */
        tool_ok("microvm-cleanup", ID);
        tool_ok("microvm-cleanup", "no-such-vm");
        tool_ok("microvm-reclaim", NULL);
        tool_ok("microvm-reclaim", "no-such-vm");
        r = tool_run("microvm-reclaim", "--dry-run", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert_str_empty(r.out, "reclaim of nothing would remove: %s", r.out);
        tool_run_done(&r);
        cr_assert_not(exists(S.base));
        cr_assert_not(exists(S.state));
        cr_assert_not(exists(S.run));

        /* The dirs exist (another VM ran), this one never did. */
        vm_config_write("other", NULL);
        stage_ok("other");
        tool_ok("microvm-cleanup", "other");
        tool_ok("microvm-cleanup", ID);
        tool_ok("microvm-reclaim", NULL);
        cr_assert_not(exists(pf("%s/" ID, S.state)), "cleanup of a VM never staged made state");
        assert_nothing_left(ID);

        /* A bad id is refused by stage before anything else, with the rule
         * it broke; for cleanup that means nothing to clean: success
         * (issue 12.8), touching nothing (victims_check below). */
        r = tool_run("microvm-stage", "Bad_Id", NULL);
        cr_assert_neq(r.status, 0);
        cr_assert(strstr(r.err, "\"Bad_Id\" is not a valid VM id"), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-cleanup", "Bad_Id", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "\"Bad_Id\" is not a valid VM id"), "%s", outcome(&r));
        cr_assert(strstr(r.err, "Nothing to clean up"), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-cleanup", "../../etc", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "is not a valid VM id"), "%s", outcome(&r));
        tool_run_done(&r);
        r = tool_run("microvm-reclaim", "-x", NULL);
        cr_assert_neq(r.status, 0);
        tool_run_done(&r);
        victims_check();
}

/* A fixed tap name that is already someone else's interface (here a
 * persistent tap of root's, as the host or another program would have):
 * stage refuses it naming the interface, and the cleanup after that
 * failed start leaves it alone, with a notice, yet removes everything of
 * the VM's own: it is not a leftover of ours. */
Test(idempotence, foreign_tap_left_alone, .init = setup, .fini = teardown, .timeout = 300) {
        const char *tap = "mvfrgn0";
        TapInfo info;
        ToolRun r;

        (void) tap_delete(tap, 0);
        cr_assert_eq(tap_create(tap, 0, 0, 0, NULL), 0, "cannot make the foreign tap %s", tap);
        vm_config_write(ID, pf("\n[net.eth0]\ntap = %s\n", tap));

        r = tool_run("microvm-stage", ID, NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "the interface mvfrgn0 exists and is not this VM's tap"), "%s", outcome(&r));
        /* Its first start: stage tears down and gives the uid back. */
        cr_assert(strstr(r.err, "tap mvfrgn0: left alone, it is not a tap of uid"), "%s", outcome(&r));
        cr_assert_not(strstr(r.err, "Not removed"), "%s", outcome(&r));
        cr_assert(strstr(r.err, "Gave back uid"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_not(exists(pf("%s/" ID, S.state)), "the failed first start kept its state and uid");
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);

        /* Staged with the name free, then the name taken by someone else
         * (the VM's tap gone, a foreign one in its place): cleanup leaves
         * that one alone and still finishes. */
        cr_assert_eq(tap_delete(tap, 0), 1);
        stage_ok(ID);
        cr_assert_eq(tap_delete(tap, vm_uid(ID)), 1);
        cr_assert_eq(tap_create(tap, 0, 0, 0, NULL), 0);
        r = tool_run("microvm-cleanup", ID, NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "tap mvfrgn0: left alone, it is not a tap of uid"), "%s", outcome(&r));
        tool_run_done(&r);
        assert_nothing_left(ID);

        cr_assert_eq(tap_inspect(tap, &info), 0);
        cr_assert(info.exists && info.is_tap && info.owner == 0, "the foreign tap was touched");
        cr_assert_eq(tap_delete(tap, 0), 1);
        victims_check();
}

Test(idempotence, reclaim_dry_run, .init = setup, .fini = teardown, .timeout = 300) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        ToolRun r;

        vm_config_write(ID, NULL);
        stage_ok(ID);
        jailer_simulate(ID);
        before = snapshot_tree(S.root);
        r = tool_run("microvm-reclaim", "--dry-run", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.out, ID ": would remove its jail and run directory"), "dry run said: %s", r.out);
        tool_run_done(&r);
        after = snapshot_tree(S.root);
        assert_same_snapshot(before, after, "the host after reclaim --dry-run");
        tool_ok("microvm-reclaim", NULL);
        assert_nothing_left(ID);
        assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);
        victims_check();
}

/* ---- SIGKILL at random points -------------------------------------------------------- */

#define KILL_ROUNDS 200
#define KILL_DRIVES 6
#define KILL_DRIVE_SIZE (2U << 20)

static uint64_t rng;

static uint64_t rnd(void) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static const char *const *kill_drives(void) {
        static char t[KILL_DRIVES][PATH_MAX], n[KILL_DRIVES][32];
        static const char *d[2 * KILL_DRIVES + 1];

        for (unsigned i = 0; i < KILL_DRIVES; i++) {
                snprintf(n[i], sizeof n[i], "d%u.img", i);
                snprintf(t[i], sizeof t[i], "%s/big-%u.img", S.images, i);
                d[2 * i] = n[i];
                d[2 * i + 1] = t[i];
        }
        d[2 * KILL_DRIVES] = NULL;
        return d;
}

static unsigned count_entries(const char *dir) {
        unsigned n = 0;
        DIR *d = opendir(dir);
        struct dirent *de;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

BOTH_MODES(kill, stage_sigkilled_at_random_points) {
        const char *id = "kv";
        unsigned killed = 0, finished = 0, mid_copy = 0, fresh = 0, temporaries = 0;
        usec_t t_full = 0, t_est;

        tools_use_fallback(*fallback);
        if (getrandom(&rng, sizeof rng, 0) != sizeof rng || rng == 0)
                rng = (uint64_t) now_usec(CLOCK_REALTIME) | 1;
        cr_log_info("kill loop (%s): seed %llu", *fallback ? "walk" : "openat2", (unsigned long long) rng);
        big_images_create(KILL_DRIVES, KILL_DRIVE_SIZE);
        victims_snapshot();
        vm_config_write_many(id, KILL_DRIVES);

        /* How long a first start takes (it copies every drive): the
         * random kill delays spread over that. The fastest of a few runs:
         * a loaded machine then only makes more kills land. */
        for (unsigned i = 0; i < 5; i++) {
                ToolRun r;
                rm_rf_as_root(pf("%s/%s", S.state, id));
                r = tool_run("microvm-stage", id, NULL);
                cr_assert_eq(r.status, 0, "%s", outcome(&r));
                t_full = i == 0 ? r.usec : MIN(t_full, r.usec);
                tool_run_done(&r);
                tool_ok("microvm-cleanup", id);
        }
        cr_log_info("a first start takes %llu us", (unsigned long long) t_full);
        t_est = t_full;

        for (unsigned i = 0; i < KILL_ROUNDS; i++) {
                unsigned scenario = (unsigned) (rnd() % 3), delay;
                bool had_uid;
                pid_t pid;
                int st;

                /* 0: a restart (copies exist); 1: the copies were lost
                 * (made again); 2: a first start (uid allocated too). */
                if (scenario == 1)
                        rm_rf_as_root(pf("%s/%s/drives", S.state, id));
                else if (scenario == 2) {
                        rm_rf_as_root(pf("%s/%s", S.state, id));
                        fresh++;
                }

                delay = (unsigned) (rnd() % (t_est + 1));
                pid = tool_spawn("microvm-stage", id);
                /* A random delay only picks the point of the kill; nothing
                 * below relies on the stage having got anywhere. */
                usleep(delay);
                (void) kill(pid, SIGKILL);
                st = wait_exit_bounded(pid, TOOL_TIMEOUT);
                cr_assert(st == 0 || st == 128 + SIGKILL, "round %u: stage exited with %d", i, st);
                /* Keep the delays spread over a whole stage as the load on
                 * the machine changes: a stage that finished first means the
                 * range is too long, a kill that it is maybe too short
                 * (about one in seven stages finishes at equilibrium). */
                if (st == 0) {
                        finished++;
                        t_est = MAX(t_est * 3 / 4, (usec_t) 200);
                } else {
                        killed++;
                        t_est = MIN(t_est * 21 / 20, 10 * USEC_PER_SEC);
                }
                {
                        unsigned n = count_entries(pf("%s/%s/drives", S.state, id));
                        if (st != 0 && scenario != 0 && n > 0 && n < KILL_DRIVES)
                                mid_copy++;
                }

                /* Whatever the kill interrupted: every copy under its
                 * final name is complete, nothing half-made is left. */
                had_uid = exists(pf("%s/%s/uid", S.state, id));
                if (assert_state_is(id, had_uid, kill_drives(), STATE_TEMPORARIES_OK) > 0)
                        temporaries++;

                if (i % 2) {
                        /* cleanup after the killed start (ExecStopPost=);
                         * the VM never ran (no launch here): its uid and
                         * state go with it (issue 12) */
                        bool never_ran = exists(pf("%s/%s/" STATE_UNLAUNCHED_FILE, S.state, id));
                        tool_ok("microvm-cleanup", id);
                        assert_nothing_left(id);
                        assert_state_is(id, had_uid && !never_ran, kill_drives(), 0);
                }
                /* the next start works, and builds a complete jail */
                tool_ok("microvm-stage", id);
                for (unsigned k = 0; k < KILL_DRIVES; k++)
                        cr_assert(exists(pf("%s/drive-d%u", jail_root(id), k)), "round %u: drive-d%u missing", i, k);
                cr_assert(exists(pf("%s/vm-config.json", jail_root(id))));
                cr_assert(exists(pf("%s/plan", run_dir(id))));
                /* and once the VM ran, cleanup then leaves nothing but the
                 * uid and the copies */
                jailer_simulate(id);
                tool_ok("microvm-cleanup", id);
                assert_nothing_left(id);
                assert_state_is(id, true, kill_drives(), STATE_ALL_DRIVES);
                cr_assert_eq(count_entries(pf("%s/%s/drives", S.state, id)), KILL_DRIVES);
        }
        cr_log_info("kill loop (%s): %u rounds, %u stages killed (%u of them in the middle of copying drives, %u "
                    "leaving a named temporary for the next run to sweep), %u finished before the kill; %u first "
                    "starts",
                    *fallback ? "walk" : "openat2", KILL_ROUNDS, killed, mid_copy, temporaries, finished, fresh);
        cr_expect_gt(killed, KILL_ROUNDS / 4, "too few kills landed: the loop tested little");
        cr_expect_gt(mid_copy, 0, "no kill landed while drives were being copied");
        victims_check();
}

/* ---- uids through the tool ------------------------------------------------------------ */

#define NSTAGE 200

/* How many of pids[] /proc/locks lists as flock(2) waiters for this file
 * ("1:   -> FLOCK  ADVISORY  WRITE <pid> <major>:<minor>:<inode> 0 EOF",
 * indented by depth when waiters queue behind waiters). Each pid counts
 * once: /proc/locks is no snapshot, and when the locks listed before
 * this file's come and go between two read(2)s, the kernel prints the
 * same waiter tree again (a count of lines saw 591 waiters of 200). */
static unsigned lock_waiters(const struct stat *st, const pid_t *pids, size_t n_pids) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        bool seen[NSTAGE] = {};
        unsigned n = 0;
        char id[64];
        FILE *f = fopen("/proc/locks", "re");

        cr_assert_not_null(f);
        cr_assert_leq(n_pids, NSTAGE);
        snprintf(id, sizeof id, " %02x:%02x:%llu ", major(st->st_dev), minor(st->st_dev),
                 (unsigned long long) st->st_ino);
        while (getline(&line, &size, f) > 0) {
                const char *w = strstr(line, "-> FLOCK ");
                int pid;

                if (!w || !strstr(w, id) || sscanf(w, "-> FLOCK %*s %*s %d ", &pid) != 1)
                        continue;
                for (size_t i = 0; i < n_pids; i++)
                        if (pids[i] == pid && !seen[i]) {
                                seen[i] = true;
                                n++;
                        }
        }
        fclose(f);
        return n;
}

Test(uid, concurrent_stages_distinct_and_stable, .init = setup, .fini = teardown, .timeout = 900) {
        pid_t pids[NSTAGE];
        uid_t uids[NSTAGE];
        int lock_fd;
        struct stat st;
        usec_t deadline;
        unsigned waiting = 0;

        for (unsigned i = 0; i < NSTAGE; i++)
                /* small: a kernel and a shared read-only root drive */
                write_file(pf("%s/c%03u.conf", S.vms, i),
                           pf("[vm]\nkernel = %s/vmlinux\n\n[drive.root]\nmode = file\npath = %s/ro.ext4\n"
                              "root = yes\nread_only = yes\n",
                              S.images, S.images),
                           0644, 0);

        /* Hold the allocation lock while all 200 start, so that they all
         * contend for it at once; release it when /proc/locks shows every
         * one of them waiting (an event, polled with a bound). */
        cr_assert_eq(mkdir(S.state, 0700), 0);
        lock_fd = open(pf("%s/.lock", S.state), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(lock_fd, 0);
        cr_assert_eq(flock(lock_fd, LOCK_EX), 0);
        cr_assert_eq(fstat(lock_fd, &st), 0);
        for (unsigned i = 0; i < NSTAGE; i++)
                pids[i] = tool_spawn("microvm-stage", pf("c%03u", i));
        deadline = now_usec(CLOCK_MONOTONIC) + 120 * USEC_PER_SEC;
        while ((waiting = lock_waiters(&st, pids, NSTAGE)) < NSTAGE && now_usec(CLOCK_MONOTONIC) < deadline)
                usleep(10000);
        cr_log_info("%u stages waiting for the uid lock at once", waiting);
        cr_expect_eq(waiting, NSTAGE, "not every stage reached the uid allocation");
        close(lock_fd);
        for (unsigned i = 0; i < NSTAGE; i++)
                cr_assert_eq(wait_exit_bounded(pids[i], TOOL_TIMEOUT), 0, "concurrent stage of c%03u failed", i);

        for (unsigned i = 0; i < NSTAGE; i++) {
                const char *id = pf("c%03u", i);
                _cleanup_free_ char *plan = read_file(pf("%s/plan", run_dir(id)));
                struct stat js;

                uids[i] = vm_uid(id);
                for (unsigned j = 0; j < i; j++)
                        cr_assert_neq(uids[i], uids[j], "c%03u and c%03u share uid %u", i, j, (unsigned) uids[i]);
                /* the plan and the jail agree with the record */
                cr_assert(strstr(plan, pf("\nUID=%u\n", (unsigned) uids[i])), "plan of %s: %s", id, plan);
                cr_assert_eq(stat(pf("%s/run", jail_root(id)), &js), 0);
                cr_assert_eq(js.st_uid, uids[i]);
        }

        /* A restart of every one (concurrently again) keeps every uid. */
        for (unsigned i = 0; i < NSTAGE; i++)
                pids[i] = tool_spawn("microvm-stage", pf("c%03u", i));
        for (unsigned i = 0; i < NSTAGE; i++)
                cr_assert_eq(wait_exit_bounded(pids[i], TOOL_TIMEOUT), 0, "restart of c%03u failed", i);
        for (unsigned i = 0; i < NSTAGE; i++)
                cr_assert_eq(vm_uid(pf("c%03u", i)), uids[i], "c%03u changed uid on restart", i);

        for (unsigned i = 0; i < NSTAGE; i++)
                pids[i] = tool_spawn("microvm-cleanup", pf("c%03u", i));
        for (unsigned i = 0; i < NSTAGE; i++) {
                cr_assert_eq(wait_exit_bounded(pids[i], TOOL_TIMEOUT), 0, "cleanup of c%03u failed", i);
                assert_nothing_left(pf("c%03u", i));
        }
        victims_check();
}

/* ---- processes and cgroups -------------------------------------------------------------- */

static int pidfd_open_(pid_t pid) {
        return (int) syscall(SYS_pidfd_open, pid, 0);
}

/* true once the process behind pidfd has exited, waiting at most timeout. */
static bool exited_within(int pidfd, usec_t timeout) {
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        return poll(&p, 1, (int) (timeout / USEC_PER_MSEC)) > 0;
}

typedef struct Sleepers {
        pid_t child, grandchild;
        int child_fd, grandchild_fd;    /* pidfds */
} Sleepers;

/* Starts a process in cgroup `leaf` that setsid()s (leaving any process
 * group a kill by group would reach), and a grandchild of it in `deeper`:
 * what a VM's unit leaves behind when firecracker forks. Returns once both
 * sit in their cgroups. */
static Sleepers sleepers_start(int leaf_fd, int deeper_fd) {
        Sleepers s = {};
        int p[2];
        pid_t gc = 0;

        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        s.child = fork();
        cr_assert_geq(s.child, 0);
        if (s.child == 0) {
                int f = openat(leaf_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                if (f < 0 || write(f, "0", 1) != 1 || setsid() < 0)
                        _exit(1);
                close(f);
                gc = fork();
                if (gc < 0)
                        _exit(2);
                if (gc == 0) {
                        f = openat(deeper_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
                        if (f < 0 || write(f, "0", 1) != 1)
                                _exit(3);
                        pid_t me = getpid();
                        if (write(p[1], &me, sizeof me) != sizeof me)
                                _exit(4);
                        for (;;)
                                pause();
                }
                for (;;)
                        pause();
        }
        /* The grandchild reports its pid once it is in place. */
        cr_assert_eq(read(p[0], &gc, sizeof gc), (ssize_t) sizeof gc, "the sleepers did not start");
        close(p[0]);
        close(p[1]);
        s.grandchild = gc;
        s.child_fd = pidfd_open_(s.child);
        s.grandchild_fd = pidfd_open_(s.grandchild);
        cr_assert(s.child_fd >= 0 && s.grandchild_fd >= 0, "pidfd_open: %m");
        return s;
}

static void sleepers_assert_alive(const Sleepers *s) {
        cr_assert_not(exited_within(s->child_fd, 0), "the process in the VM's cgroup was killed");
        cr_assert_not(exited_within(s->grandchild_fd, 0), "the process in the VM's sub-cgroup was killed");
}

static void sleepers_assert_killed(Sleepers *s) {
        /* cleanup waited for "populated 0": they are gone already */
        cr_assert(exited_within(s->child_fd, USEC_PER_SEC), "the process in the VM's cgroup survived");
        cr_assert(exited_within(s->grandchild_fd, USEC_PER_SEC), "the setsid()ed grandchild survived");
        cr_assert_eq(wait_exit_bounded(s->child, TOOL_TIMEOUT), 128 + SIGKILL);
        close(s->child_fd);
        close(s->grandchild_fd);
        /* the grandchild was reparented to us (subreaper): reap it */
        (void) waitpid(s->grandchild, NULL, WNOHANG);
        *s = (Sleepers) {};
}

#define UNIT(id) "microvm.slice/microvm@" id ".service"

static bool cg_exists(const char *rel) {
        return exists(pf("%s/%s", cgroup_sandbox_mount(), rel));
}

Test(cgroup, cleanup_kills_what_is_left, .init = setup, .fini = teardown, .timeout = 300) {
        int leaf, deeper, control;
        Sleepers s;
        ToolRun r;

        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        vm_config_write(ID, NULL);
        stage_ok(ID);
        jailer_simulate(ID);
        /* What a run leaves: <unit>/<id> (launch's leaf, the jailer's
         * parent) with firecracker in it, deeper cgroups, and .control
         * where systemd runs ExecStopPost=. */
        cgroup_mkdir(UNIT(ID));
        leaf = cgroup_mkdir(UNIT(ID) "/" ID);
        deeper = cgroup_mkdir(UNIT(ID) "/" ID "/vcpu/deeper");
        control = cgroup_mkdir(UNIT(ID) "/.control");
        s = sleepers_start(leaf, deeper);

        /* Not inside the unit (someone ran it by hand) while the unit's
         * cgroup has processes, i.e. the VM runs: refused, and nothing at
         * all is touched — not the processes, not the cgroups, not the
         * jail the running VM uses. */
        r = tool_run("microvm-cleanup", ID, NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "microvm@" ID ".service is running (per cgroup)"), "%s", outcome(&r));
        tool_run_done(&r);
        sleepers_assert_alive(&s);
        cr_assert(cg_exists(UNIT(ID) "/" ID "/vcpu/deeper"));
        cr_assert(exists(pf("%s/vm-config.json", jail_root(ID))), "the running VM's jail was removed");

        /* As ExecStopPost=, from .control: everything below the unit but
         * .control is killed (cgroup.kill reaches the setsid()ed one too)
         * and removed, deepest first. */
        r = tool_run_cg(control, "microvm-cleanup", ID, NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "Killed processes left in 1 cgroup(s) of " ID), "%s", outcome(&r));
        tool_run_done(&r);
        sleepers_assert_killed(&s);
        cr_assert_not(cg_exists(UNIT(ID) "/" ID), "the VM's cgroup was not removed");
        cr_assert(cg_exists(UNIT(ID) "/.control"), "cleanup removed the cgroup it runs in");
        assert_nothing_left(ID);

        /* Again: nothing to do, still success. */
        r = tool_run_cg(control, "microvm-cleanup", ID, NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert_null(strstr(r.err, "Killed"), "%s", outcome(&r));
        tool_run_done(&r);
        close(leaf);
        close(deeper);
        close(control);
        victims_check();
}

Test(cgroup, stage_kills_what_an_earlier_run_left, .init = setup, .fini = teardown, .timeout = 300) {
        int leaf, control;
        Sleepers s;
        ToolRun r;

        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        vm_config_write(ID, NULL);
        stage_ok(ID);
        jailer_simulate(ID);
        /* A crashed run: no cleanup ran, its processes still sit there. */
        cgroup_mkdir(UNIT(ID));
        leaf = cgroup_mkdir(UNIT(ID) "/" ID);
        control = cgroup_mkdir(UNIT(ID) "/.control");
        s = sleepers_start(leaf, leaf);

        /* By hand, outside the unit: the processes may be a running VM's,
         * so stage refuses and touches nothing; they stay alive. */
        r = tool_run("microvm-stage", ID, NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "microvm@" ID ".service is running (per cgroup)"), "%s", outcome(&r));
        tool_run_done(&r);
        sleepers_assert_alive(&s);
        cr_assert(exists(pf("%s/dev", jail_root(ID))), "the running VM's jail was rebuilt");

        /* As ExecStartPre=, from .control: the leftovers are killed first. */
        r = tool_run_cg(control, "microvm-stage", ID, NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "Removed what an earlier run of " ID " left behind"), "%s", outcome(&r));
        tool_run_done(&r);
        sleepers_assert_killed(&s);
        cr_assert_not(cg_exists(UNIT(ID) "/" ID));
        cr_assert(cg_exists(UNIT(ID) "/.control"));
        cr_assert(exists(pf("%s/vm-config.json", jail_root(ID))));
        cr_assert_not(exists(pf("%s/dev", jail_root(ID))), "the old jail was not replaced");
        tool_ok("microvm-cleanup", ID);
        close(leaf);
        close(control);
        victims_check();
}

Test(cgroup, reclaim_leaves_running_vms_alone, .init = setup, .fini = teardown, .timeout = 300) {
        _cleanup_free_ char *before = NULL, *after = NULL;
        int leaf, control;
        Sleepers s;
        ToolRun r;

        cr_assert_eq(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
        /* running: its unit's cgroup has a process */
        vm_config_write("running", NULL);
        stage_ok("running");
        jailer_simulate("running");
        cgroup_mkdir(UNIT("running"));
        leaf = cgroup_mkdir(UNIT("running") "/running");
        s = sleepers_start(leaf, leaf);
        /* stopped: a unit cgroup without processes, never cleaned up */
        vm_config_write("stopped", NULL);
        stage_ok("stopped");
        jailer_simulate("stopped");
        close(cgroup_mkdir(UNIT("stopped") "/stopped/deeper"));
        /* crashed before a reboot: only the jail and run dir */
        vm_config_write("gone", NULL);
        stage_ok("gone");
        jailer_simulate("gone");

        before = snapshot_tree(S.root);
        r = tool_run("microvm-reclaim", "--dry-run", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.out, "stopped: would remove its jail, run directory and cgroup (unit not running, per cgroup)"), "%s", r.out);
        cr_assert(strstr(r.out, "gone: would remove its jail and run directory (unit not running, per cgroup)"), "%s", r.out);
        cr_assert_null(strstr(r.out, "running: "), "%s", r.out);
        tool_run_done(&r);
        after = snapshot_tree(S.root);
        assert_same_snapshot(before, after, "the host after reclaim --dry-run");

        tool_ok("microvm-reclaim", NULL);
        assert_nothing_left("stopped");
        assert_nothing_left("gone");
        /* Its leftover cgroups go; the unit cgroup itself is systemd's
         * (a start may be creating it right now), so it stays, empty. */
        cr_assert_not(cg_exists(UNIT("stopped") "/stopped"), "the stopped VM's leftover cgroup is left");
        /* the running one: untouched, processes alive */
        sleepers_assert_alive(&s);
        cr_assert(exists(pf("%s/dev/kvm", jail_root("running"))));
        cr_assert(exists(pf("%s/plan", run_dir("running"))));
        cr_assert(cg_exists(UNIT("running") "/running"));
        /* also when named */
        tool_ok("microvm-reclaim", "running");
        sleepers_assert_alive(&s);
        cr_assert(exists(pf("%s/dev/kvm", jail_root("running"))));

        /* Its own ExecStopPost= ends it. */
        control = cgroup_mkdir(UNIT("running") "/.control");
        r = tool_run_cg(control, "microvm-cleanup", "running", NULL);
        cr_assert_eq(r.status, 0, "%s", outcome(&r));
        tool_run_done(&r);
        sleepers_assert_killed(&s);
        assert_nothing_left("running");
        close(leaf);
        close(control);
        victims_check();
}

/* ---- injection points (issue 21) ---------------------------------------------------- */

/* A hold at a test-build injection point (MICROVM_TEST_PAUSE_AT, see
 * lib/basic/test-hook.h): the FIFOs <root>/hold and <root>/hold.reached. */
typedef struct Hold {
        char fifo[PATH_MAX], reached[PATH_MAX];
} Hold;

static void hold_init(Hold *h, const char *point) {
        if (!priv_test_hooks_built())
                cr_skip_test("needs a build with -Dtest-hooks=true (the injection point %s)", point);
        snprintf(h->fifo, sizeof h->fifo, "%s/hold", S.root);
        snprintf(h->reached, sizeof h->reached, "%s/hold.reached", S.root);
        (void) unlink(h->fifo);
        (void) unlink(h->reached);
        cr_assert_eq(mkfifo(h->fifo, 0600), 0, "%m");
        cr_assert_eq(mkfifo(h->reached, 0600), 0, "%m");
        cr_assert_eq(setenv("MICROVM_TEST_PAUSE_AT", point, 1), 0);
        cr_assert_eq(setenv("MICROVM_TEST_PAUSE_FIFO", h->fifo, 1), 0);
}

/* Call after spawning the tool: its environment is taken. */
static void hold_env_done(void) {
        (void) unsetenv("MICROVM_TEST_PAUSE_AT");
        (void) unsetenv("MICROVM_TEST_PAUSE_FIFO");
}

/* Blocks until the tool is at the point (it opens hold.reached). */
static void hold_wait(Hold *h, const char *point) {
        char buf[128] = {};
        ssize_t n;
        int fd = open(h->reached, O_RDONLY | O_CLOEXEC);

        cr_assert_geq(fd, 0, "%s: %m", h->reached);
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        cr_assert_gt(n, 0, "the tool never reached %s", point);
        cr_assert(strncmp(buf, point, strlen(point)) == 0, "reached \"%s\", not %s", buf, point);
}

/* Lets the tool (pid) go on; returns at once if it ended at the hold (a
 * signal killed it there) instead of waiting for a reader forever. */
static void hold_release(Hold *h, pid_t pid) {
        int pidfd = (int) syscall(SYS_pidfd_open, pid, 0);

        cr_assert_geq(pidfd, 0, "pidfd_open: %m");
        for (unsigned i = 0; i < 6000; i++) {
                int fd = open(h->fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                struct pollfd p = { .fd = pidfd, .events = POLLIN };

                if (fd >= 0) {
                        cr_assert_eq(write(fd, "go\n", 3), 3);
                        close(fd);
                        close(pidfd);
                        return;
                }
                cr_assert_eq(errno, ENXIO, "%s: %m", h->fifo);
                /* Not open for reading yet: wait for the tool to open it,
                 * or to end (pidfd readable) — whichever comes. */
                if (poll(&p, 1, 10) > 0)
                        break;
        }
        close(pidfd);
}

static char *memfd_text(int fd) {
        static char buf[1 << 16];
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);

        buf[n > 0 ? n : 0] = '\0';
        return buf;
}

/* Waits (poll on cgroup.events, an event) until the cgroup is populated. */
static void wait_populated(int cg_fd) {
        for (unsigned i = 0; i < 100; i++) {
                char buf[256] = {};
                int fd = openat(cg_fd, "cgroup.events", O_RDONLY | O_CLOEXEC);
                struct pollfd p = { .fd = fd, .events = POLLPRI };

                cr_assert_geq(fd, 0);
                cr_assert_gt(read(fd, buf, sizeof buf - 1), 0);
                if (strstr(buf, "populated 1")) {
                        close(fd);
                        return;
                }
                (void) poll(&p, 1, 100);
                close(fd);
        }
        cr_assert_fail("the cgroup never got a process");
}

/* issue 21.2: reclaim decided that microvm@vm1 is not running (its cgroup
 * is empty); right then a start begins: systemd creates the unit cgroup
 * and runs microvm-stage in it, which waits for reclaim's lock. Reclaim
 * must leave it alone: the stage lives and then stages the VM. */
Test(cgroup, reclaim_spares_a_start_begun_after_its_decision, .init = setup, .fini = teardown, .timeout = 300) {
        int unit, err, serr, st;
        pid_t rp, sp;
        Hold h;

        hold_init(&h, "reclaim-decided");
        vm_config_write(ID, NULL);
        stage_ok(ID);
        jailer_simulate(ID);
        tool_ok("microvm-cleanup", ID); /* a stopped VM... */
        stage_ok(ID);                   /* ...whose next start was killed */
        unit = cgroup_mkdir(UNIT(ID));
        close(cgroup_mkdir(UNIT(ID) "/" ID "/deeper"));

        err = memfd_create("reclaim-stderr", MFD_CLOEXEC);
        serr = memfd_create("stage-stderr", MFD_CLOEXEC);
        cr_assert(err >= 0 && serr >= 0);
        rp = tool_spawn_cg(-1, "microvm-reclaim", ID, -1, err);
        hold_env_done();
        hold_wait(&h, "reclaim-decided");

        /* The start: microvm-stage in the unit's cgroup, as systemd 252
         * runs ExecStartPre= of a delegated unit. */
        sp = tool_spawn_cg(unit, "microvm-stage", ID, -1, serr);
        wait_populated(unit);
        hold_release(&h, rp);

        st = wait_exit_bounded(rp, 60 * USEC_PER_SEC);
        cr_assert_eq(st, 0, "microvm-reclaim exited %d:\n%s", st, memfd_text(err));
        st = wait_exit_bounded(sp, 120 * USEC_PER_SEC);
        cr_assert_eq(st, 0, "the racing microvm-stage exited %d%s:\n%s\nreclaim said:\n%s", st,
                     st == 128 + SIGKILL ? " (SIGKILLed by reclaim)" : "", memfd_text(serr), memfd_text(err));
        cr_assert(strstr(memfd_text(err), "microvm@" ID ".service is starting"),
                  "reclaim did not skip the starting VM:\n%s", memfd_text(err));
        assert_staged(ID);
        cr_assert(cg_exists(UNIT(ID)), "reclaim removed the unit cgroup of a starting VM");

        /* Without a start, the same reclaim removes the leftovers below the
         * unit cgroup, never the unit cgroup itself (systemd's). */
        close(cgroup_mkdir(UNIT(ID) "/" ID "/deeper"));
        /* stage is gone from the unit cgroup: it exited */
        tool_ok("microvm-reclaim", ID);
        assert_nothing_left(ID);
        cr_assert_not(cg_exists(UNIT(ID) "/" ID), "reclaim left the VM's leftover cgroup");
        cr_assert(cg_exists(UNIT(ID)));
        close(unit);
        close(err);
        close(serr);
        victims_check();
}

/* issue 21.3: a stop (SIGTERM) while microvm-stage runs ends it cleanly:
 * it tears down what it built, gives back the uid of a VM that never ran,
 * and exits 0 (systemd then ends the unit inactive, not failed). */
Test(stage, sigterm_ends_it_cleanly, .init = setup, .fini = teardown, .timeout = 300) {
        int serr, st;
        pid_t sp;
        Hold h;

        vm_config_write(ID, NULL);
        for (unsigned round = 0; round < 2; round++) {
                /* round 0: the VM's first start; round 1: a VM that ran */
                hold_init(&h, "stage-uid-allocated");
                serr = memfd_create("stage-stderr", MFD_CLOEXEC);
                cr_assert_geq(serr, 0);
                sp = tool_spawn_cg(-1, "microvm-stage", ID, -1, serr);
                hold_env_done();
                hold_wait(&h, "stage-uid-allocated");
                cr_assert_eq(kill(sp, SIGTERM), 0);
                hold_release(&h, sp);
                st = wait_exit_bounded(sp, 120 * USEC_PER_SEC);
                cr_assert_eq(st, 0, "round %u: microvm-stage exited %d%s:\n%s", round, st,
                             st == 128 + SIGTERM ? " (killed by the SIGTERM)" : "", memfd_text(serr));
                cr_assert(strstr(memfd_text(serr), "Stopped while staging " ID), "%s", memfd_text(serr));
                assert_nothing_left(ID);
                if (round == 0) {
                        cr_assert_not(exists(pf("%s/" ID, S.state)), "round 0: the uid of a VM that never ran is kept");
                        cr_assert(strstr(memfd_text(serr), "Gave back uid"), "%s", memfd_text(serr));
                        stage_ok(ID);
                        jailer_simulate(ID); /* it runs: round 1's VM has run */
                        tool_ok("microvm-cleanup", ID);
                } else
                        cr_assert_eq(vm_uid(ID), VM_RANGE_MIN, "round 1: a VM that ran lost its uid");
                close(serr);
        }
        victims_check();
}

/* issue 12.7: a first start that fails before the VM ever ran gives its uid
 * back (and the drive copies it made); a VM that ran keeps its uid. */
Test(stage, failed_first_start_gives_back_the_uid, .init = setup, .fini = teardown, .timeout = 300) {
        char ro[PATH_MAX], moved[PATH_MAX];
        ToolRun r;

        snprintf(ro, sizeof ro, "%s/ro.ext4", S.images);
        snprintf(moved, sizeof moved, "%s.away", ro);
        vm_config_write(ID, NULL);
        vm_config_write("other", NULL);
        cr_assert_eq(rename(ro, moved), 0);
        r = tool_run("microvm-stage", ID, NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert(strstr(r.err, "Gave back uid"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_not(exists(pf("%s/" ID, S.state)), "a start that failed before the VM ran kept its state and uid");
        assert_nothing_left(ID);
        cr_assert_eq(rename(moved, ro), 0);

        /* the uid is free: the next VM gets the lowest */
        stage_ok("other");
        cr_assert_eq(vm_uid("other"), VM_RANGE_MIN);
        jailer_simulate("other"); /* it runs */
        tool_ok("microvm-cleanup", "other");

        /* a VM that ran keeps its uid when a later start fails */
        cr_assert_eq(rename(ro, moved), 0);
        r = tool_run("microvm-stage", "other", NULL);
        cr_assert_neq(r.status, 0, "%s", outcome(&r));
        cr_assert_null(strstr(r.err, "Gave back uid"), "%s", outcome(&r));
        tool_run_done(&r);
        cr_assert_eq(vm_uid("other"), VM_RANGE_MIN);
        cr_assert_eq(rename(moved, ro), 0);
        tool_ok("microvm-cleanup", "other");
        victims_check();
}

PRIV_TEST_MAIN
