/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A first start that fails after microvm-stage succeeded but before any
 * process of the VM's uid ran gives that uid back in microvm-cleanup, and
 * only then (issue 12, uid bookkeeping; lib/vm/vm-first-run.h):
 *  - microvm-launch refuses before it execs the jailer: uid given back;
 *  - the jailer fails before it chowns the jail (here: a jailer that exits
 *    1 at once, as the real one does on a bad argument): uid given back;
 *  - the jailer got as far as chowning the jail (it may have exec'd
 *    firecracker): the uid is kept, with the state;
 *  - firecracker ran: the uid is kept;
 *  - a second start after a failed first one, whose cleanup never ran,
 *    still knows the VM never ran.
 * Each run as systemd runs them: launch in the unit cgroup, cleanup in its
 * ".control" child, in a cgroup namespace of the test's own. */

#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "names.h"
#include "priv-util.h"
#include "tool-util.h"
#include "vm-first-run.h"

#define ID "first1"
#define UNIT "microvm.slice/microvm@" ID ".service"

static int unit_fd = -1, control_fd = -1;

static void setup(void) {
        tool_sandbox();
        cgroup_sandbox();
        int self = cgroup_mkdir("test-runner");
        int f = openat(self, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        cr_assert(f >= 0 && write(f, "0", 1) == 1, "moving into test-runner: %m");
        close(f);
        close(self);
        unit_fd = cgroup_mkdir(UNIT);
        control_fd = cgroup_mkdir(UNIT "/.control");
        victims_snapshot();
}

static void teardown(void) {
        if (unit_fd >= 0)
                close(unit_fd);
        if (control_fd >= 0)
                close(control_fd);
        unit_fd = control_fd = -1;
        cgroup_sandbox_done();
        host_leaks_check();
}

static const char *state_file(const char *name) {
        return pf("%s/%s/%s", S.state, ID, name);
}

/* Replaces the jailer the plan names by a copy of src (root's, 0755). */
static void jailer_replace(const char *src) {
        const char *dst = pf("%s/jailer", S.bin);
        int in, out;
        char buf[1 << 16];
        ssize_t k;

        cr_assert_eq(unlink(dst), 0, "%s: %m", dst);
        in = open(src, O_RDONLY | O_CLOEXEC);
        cr_assert_geq(in, 0, "%s: %m", src);
        out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
        cr_assert_geq(out, 0, "%s: %m", dst);
        while ((k = read(in, buf, sizeof buf)) > 0)
                cr_assert_eq(write(out, buf, (size_t) k), k);
        cr_assert_eq(k, 0);
        cr_assert_eq(fchmod(out, 0755), 0);
        close(in);
        close(out);
}

/* Stages a first start and checks the marker. */
static uid_t stage_first(void) {
        vm_config_write(ID, NULL);
        stage_ok(ID);
        cr_assert(exists(state_file(STATE_UNLAUNCHED_FILE)), "a first stage wrote no %s marker",
                  STATE_UNLAUNCHED_FILE);
        return vm_uid(ID);
}

static void cleanup_expect(bool gave_back, uid_t uid) {
        ToolRun r = tool_run_cg(control_fd, "microvm-cleanup", ID, NULL);
        cr_assert_eq(r.status, 0, "microvm-cleanup: %s", r.err);
        if (gave_back) {
                cr_assert(strstr(r.err, pf("Gave back uid %u: " ID " never ran.", (unsigned) uid)),
                          "microvm-cleanup did not give the uid back:\n%s", r.err);
                cr_assert_not(exists(pf("%s/%s", S.state, ID)), "the state dir of a VM that never ran is left");
                cr_assert_not(exists(pf("%s/.uids/%u", S.state, (unsigned) uid)), "its uid index entry is left");
        } else {
                cr_assert_null(strstr(r.err, "Gave back"), "microvm-cleanup gave back the uid of a VM that may "
                               "have run:\n%s", r.err);
                cr_assert_eq(vm_uid(ID), uid, "the uid changed");
                cr_assert_not(exists(state_file(STATE_UNLAUNCHED_FILE)), "a VM that may have run is still "
                              "marked %s", STATE_UNLAUNCHED_FILE);
                cr_assert_not(exists(state_file(STATE_LAUNCHING_FILE)), "%s left", STATE_LAUNCHING_FILE);
                assert_state_is(ID, true, vm_drive_templates(), STATE_ALL_DRIVES);
        }
        tool_run_done(&r);
        assert_nothing_left(ID);
        victims_check();
}

Test(first_run, launch_refused_gives_uid_back, .init = setup, .fini = teardown, .timeout = 120) {
        uid_t uid = stage_first();
        ToolRun r;

        /* A jailer that became group-writable: launch refuses to run it. */
        cr_assert_eq(chmod(pf("%s/jailer", S.bin), 0775), 0);
        r = tool_run_cg(unit_fd, "microvm-launch", ID, NULL);
        cr_assert_neq(r.status, 0, "microvm-launch ran a group-writable jailer:\n%s", r.err);
        cr_assert(strstr(r.err, "Refusing to run the jailer"), "%s", r.err);
        tool_run_done(&r);
        cr_assert(exists(state_file(STATE_UNLAUNCHED_FILE)), "a refused launch moved the marker");
        cr_assert_eq(chmod(pf("%s/jailer", S.bin), 0755), 0);
        cleanup_expect(true, uid);
}

Test(first_run, jailer_failing_early_gives_uid_back, .init = setup, .fini = teardown, .timeout = 120) {
        uid_t uid = stage_first();
        ToolRun r;

        /* A jailer that exits 1 before doing anything (as the real one on a
         * bad argument: JAILER-CONTRACT.md, "Any error ... exit 1"). */
        jailer_replace(exists("/usr/bin/false") ? "/usr/bin/false" : "/bin/false");
        r = tool_run_cg(unit_fd, "microvm-launch", ID, NULL);
        cr_assert_eq(r.status, 1, "the failing jailer: %d\n%s", r.status, r.err);
        tool_run_done(&r);
        cr_assert(exists(state_file(STATE_LAUNCHING_FILE)), "launch exec'd the jailer without moving the marker");
        struct stat st;
        cr_assert_eq(stat(jail_root(ID), &st), 0);
        cr_assert(st.st_uid == 0 && st.st_gid == 0, "the jail root is not root's before the jailer ran");
        cleanup_expect(true, uid);
}

Test(first_run, jailer_that_chowned_the_jail_keeps_uid, .init = setup, .fini = teardown, .timeout = 120) {
        _cleanup_close_ int state_fd = -1;
        uid_t uid = stage_first();

        /* As if launch had exec'd the jailer and it died after step 6 (the
         * jail chowned), maybe after exec'ing firecracker: nothing proves
         * that no process of the uid ran. */
        state_fd = open(S.state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(state_fd, 0);
        cr_assert_eq(vm_first_run_launching(state_fd, ID), 1);
        jailer_simulate(ID);
        cleanup_expect(false, uid);
}

Test(first_run, jail_removed_keeps_uid, .init = setup, .fini = teardown, .timeout = 120) {
        _cleanup_close_ int state_fd = -1;
        uid_t uid = stage_first();

        /* The jail went before anyone looked (e.g. reclaim after a crash): no
         * proof either way, so the uid stays. */
        state_fd = open(S.state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        cr_assert_geq(state_fd, 0);
        cr_assert_eq(vm_first_run_launching(state_fd, ID), 1);
        rm_rf_as_root(jail_dir(ID));
        cleanup_expect(false, uid);
}

Test(first_run, vm_that_ran_keeps_uid, .init = setup, .fini = teardown, .timeout = 120) {
        uid_t uid = stage_first();
        int pipefd[2];
        char buf[4096];
        size_t len = 0;
        pid_t pid;

        cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
        pid = tool_spawn_cg(unit_fd, "microvm-launch", ID, pipefd[1], pipefd[1]);
        close(pipefd[1]);
        /* firecracker (the double) is up once it prints its first line. */
        for (;;) {
                struct pollfd p = { .fd = pipefd[0], .events = POLLIN };
                ssize_t k;

                cr_assert_gt(poll(&p, 1, 30000), 0, "no output from firecracker");
                k = read(pipefd[0], buf + len, sizeof buf - 1 - len);
                cr_assert_gt(k, 0, "firecracker ended without output");
                len += (size_t) k;
                buf[len] = '\0';
                if (strstr(buf, "Successfully started microvm"))
                        break;
                cr_assert_lt(len, sizeof buf - 1, "%s", buf);
        }
        cr_assert_eq(kill(pid, SIGKILL), 0);
        cr_assert_eq(wait_exit_bounded(pid, 10 * USEC_PER_SEC), 128 + SIGKILL);
        close(pipefd[0]);
        cleanup_expect(false, uid);
}

Test(first_run, restart_after_failed_first_start_still_never_ran, .init = setup, .fini = teardown, .timeout = 120) {
        uid_t uid = stage_first();
        ToolRun r;

        cr_assert_eq(link(pf("%s/jailer", S.bin), pf("%s/jailer.double", S.root)), 0, "%m");
        jailer_replace(exists("/usr/bin/false") ? "/usr/bin/false" : "/bin/false");
        r = tool_run_cg(unit_fd, "microvm-launch", ID, NULL);
        cr_assert_eq(r.status, 1, "%s", r.err);
        tool_run_done(&r);
        /* No cleanup (it was killed, say): the next stage settles the marker
         * before it removes the jail, and keeps the uid for this start. */
        jailer_replace(pf("%s/jailer.double", S.root));
        cr_assert_eq(unlink(pf("%s/jailer.double", S.root)), 0);
        stage_ok(ID);
        cr_assert_eq(vm_uid(ID), uid);
        cr_assert(exists(state_file(STATE_UNLAUNCHED_FILE)), "the second stage lost the proof");
        cleanup_expect(true, uid);
}

int main(int argc, char *argv[]) {
        return priv_criterion_main(argc, argv);
}
