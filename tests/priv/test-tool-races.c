/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Races between the real tools (issue 14), each made deterministic with the
 * injection points of test builds (MICROVM_TEST_PAUSE_AT holds a tool at a
 * named point until the test lets it go) and with kernel state the test
 * waits for (a waiter in /proc/locks, a zombie), never with sleeps:
 *  - two microvm-stage of one VM at once, by hand: the second refuses,
 *    naming the VM, and removes nothing of the first, which completes;
 *  - a second microvm-launch of a running VM: its jailer fails on the
 *    first one's jail without changing it, the first VM runs on;
 *  - two VMs racing for the last uid of the range: exactly one gets it,
 *    the other fails naming the range, no uid is handed out twice;
 *  - microvm-cleanup racing a dying firecracker: stopped (SIGSTOP) or
 *    exited but not yet reaped (a zombie of the unit's process): cleanup
 *    succeeds, nothing of the VM is left, its cgroups included.
 * The e2e scenarios (tests/e2e/scenarios-races.sh) race under systemd. */

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "priv-util.h"
#include "tool-util.h"

#define HOLD_WAIT (30 * USEC_PER_SEC)

static char hold[4200], reached[4200];

static void setup(void) {
        tool_sandbox();
        snprintf(hold, sizeof hold, "%s/hold", S.root);
        snprintf(reached, sizeof reached, "%s/hold.reached", S.root);
        cr_assert_eq(mkfifo(hold, 0600), 0, "%s: %m", hold);
        cr_assert_eq(mkfifo(reached, 0600), 0, "%s: %m", reached);
        victims_snapshot();
}

static void teardown(void) {
        host_leaks_check();
}

typedef struct Spawned {
        pid_t pid;
        int err;        /* read end of its stderr */
} Spawned;

/* Starts tool ID; with point, held there (MICROVM_TEST_PAUSE_AT). */
static Spawned spawn_tool(int cg_fd, const char *tool, const char *id, const char *point) {
        int p[2];
        Spawned s;

        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        if (point) {
                cr_assert_eq(setenv("MICROVM_TEST_PAUSE_AT", point, 1), 0);
                cr_assert_eq(setenv("MICROVM_TEST_PAUSE_FIFO", hold, 1), 0);
        }
        s.pid = tool_spawn_cg(cg_fd, tool, id, -1, p[1]);
        unsetenv("MICROVM_TEST_PAUSE_AT");
        unsetenv("MICROVM_TEST_PAUSE_FIFO");
        close(p[1]);
        s.err = p[0];
        return s;
}

/* Waits until the held tool reports the point (reading the FIFO blocks
 * until it opens it for writing: an event, not a sleep). */
static void hold_reached(const char *point) {
        char buf[256] = "";
        int fd = open(reached, O_RDONLY | O_CLOEXEC);
        ssize_t k;

        cr_assert_geq(fd, 0, "%s: %m", reached);
        k = read(fd, buf, sizeof buf - 1);
        close(fd);
        cr_assert_gt(k, 0, "the tool ended before it reached %s", point);
        buf[k] = '\0';
        cr_assert(strstr(buf, point), "held at %s, not %s", buf, point);
}

static void hold_release(void) {
        int fd = open(hold, O_WRONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0, "%s: %m", hold);
        cr_assert_eq(write(fd, "go\n", 3), 3);
        close(fd);
}

/* Exit status and stderr of a spawned tool. */
static int finish(Spawned *s, char **ret_err) {
        char buf[65536];
        size_t len = 0;
        ssize_t k;
        int st;

        while (len < sizeof buf - 1 && (k = read(s->err, buf + len, sizeof buf - 1 - len)) > 0)
                len += (size_t) k;
        buf[len] = '\0';
        close(s->err);
        st = wait_exit_bounded(s->pid, TOOL_TIMEOUT);
        *ret_err = strdup(buf);
        return st;
}

/* Whether pid waits for a lock (a "->" line of /proc/locks). */
static bool waits_for_lock(pid_t pid) {
        _cleanup_free_ char *locks = read_file("/proc/locks");
        char needle[64];

        for (char *l = locks; l && *l;) {
                char *nl = strchr(l, '\n');
                if (nl)
                        *nl = '\0';
                snprintf(needle, sizeof needle, " %d ", (int) pid);
                if (strstr(l, "->") && strstr(l, needle))
                        return true;
                l = nl ? nl + 1 : NULL;
        }
        return false;
}

static void wait_for_lock_waiter(pid_t pid) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + HOLD_WAIT;
        int status;

        /* Polled: /proc/locks has no change notification. Bounded. */
        while (!waits_for_lock(pid)) {
                cr_assert_eq(waitpid(pid, &status, WNOHANG), 0, "the second stage ended without waiting for the lock");
                cr_assert_lt(now_usec(CLOCK_MONOTONIC), deadline, "the second stage never waited for the uid lock");
                (void) poll(NULL, 0, 5);
        }
}

static unsigned count_dir(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                return 0;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

Test(races, two_stages_of_one_vm, .init = setup, .fini = teardown, .timeout = 180) {
        _cleanup_free_ char *err_a = NULL;
        Spawned a;
        ToolRun b;
        uid_t uid;
        int st;

        vm_config_write("twice", NULL);
        /* A is held with its jail built, before its taps and its proof. */
        a = spawn_tool(-1, "microvm-stage", "twice", "stage-jail");
        hold_reached("stage-jail");
        uid = vm_uid("twice");
        b = tool_run("microvm-stage", "twice", NULL);
        cr_assert_neq(b.status, 0, "a second microvm-stage of one VM ran beside the first:\n%s", b.err);
        cr_assert(strstr(b.err, "Another microvm-stage of twice is running"), "%s", b.err);
        tool_run_done(&b);
        /* Nothing of A's was removed while it was held. */
        cr_assert(exists(pf("%s/drive-root", jail_root("twice"))), "the second stage removed the first one's jail");
        cr_assert_eq(vm_uid("twice"), uid);
        hold_release();
        st = finish(&a, &err_a);
        cr_assert_eq(st, 0, "the first stage failed after the second was refused:\n%s", err_a);
        assert_staged("twice");
        cr_assert_eq(vm_uid("twice"), uid);
        tool_ok("microvm-cleanup", "twice");
        assert_nothing_left("twice");
        victims_check();
}

Test(races, two_vms_race_for_the_last_uid, .init = setup, .fini = teardown, .timeout = 180) {
        _cleanup_free_ char *err_a = NULL, *err_b = NULL;
        const uid_t last = VM_RANGE_MIN;
        Spawned a, b;
        int st_a, st_b;

        /* A range of one uid. */
        cr_assert_eq(unlink(S.host_conf), 0);
        write_file(S.host_conf, pf("[host]\njailer = %s/jailer\nfirecracker = %s/firecracker\nchroot_base = %s\n"
                                   "state_dir = %s\nrun_dir = %s\nuid_range = %u-%u\n",
                                   S.bin, S.bin, S.base, S.state, S.run, (unsigned) last, (unsigned) last),
                   0644, 0);
        vm_config_write("lasta", NULL);
        vm_config_write("lastb", NULL);
        /* A holds the allocation lock with the uid taken in the index and
         * not yet recorded; B must wait for that lock, then find the range
         * full. */
        a = spawn_tool(-1, "microvm-stage", "lasta", "uid-index-written");
        hold_reached("uid-index-written");
        b = spawn_tool(-1, "microvm-stage", "lastb", NULL);
        wait_for_lock_waiter(b.pid);
        hold_release();
        st_a = finish(&a, &err_a);
        st_b = finish(&b, &err_b);
        cr_assert_eq(st_a, 0, "the stage holding the lock failed:\n%s", err_a);
        cr_assert_neq(st_b, 0, "both VMs got a uid from a range of one:\n%s", err_b);
        cr_assert(strstr(err_b, pf("no free uid left in uid_range %u-%u", (unsigned) last, (unsigned) last)),
                  "the loser's error does not name the range:\n%s", err_b);
        cr_assert_eq(vm_uid("lasta"), last);
        cr_assert_not(exists(pf("%s/lastb/uid", S.state)), "the loser has a uid record");
        cr_assert_eq(count_dir(pf("%s/.uids", S.state)), 1, "the uid index has %u entries, not 1",
                     count_dir(pf("%s/.uids", S.state)));
        assert_staged("lasta");
        assert_nothing_left("lastb");
        tool_ok("microvm-cleanup", "lastb");
        tool_ok("microvm-cleanup", "lasta");
        assert_nothing_left("lasta");
        victims_check();
}

/* ---- cleanup racing a dying firecracker ---------------------------------- */

#define RID "dying"
#define RUNIT "microvm.slice/microvm@" RID ".service"

typedef struct Vm {
        pid_t pid;
        int out;
} Vm;

static int unit_fd = -1, control_fd = -1;

static void setup_cg(void) {
        setup();
        cgroup_sandbox();
        int self = cgroup_mkdir("test-runner");
        int f = openat(self, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        cr_assert(f >= 0 && write(f, "0", 1) == 1, "moving into test-runner: %m");
        close(f);
        close(self);
        unit_fd = cgroup_mkdir(RUNIT);
        control_fd = cgroup_mkdir(RUNIT "/.control");
}

static void teardown_cg(void) {
        if (unit_fd >= 0)
                close(unit_fd);
        if (control_fd >= 0)
                close(control_fd);
        unit_fd = control_fd = -1;
        cgroup_sandbox_done();
        teardown();
}

static Vm launch_vm(void) {
        char buf[8192];
        size_t len = 0;
        int p[2];
        Vm vm;

        vm_config_write(RID, NULL);
        stage_ok(RID);
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        vm.pid = tool_spawn_cg(unit_fd, "microvm-launch", RID, p[1], p[1]);
        close(p[1]);
        vm.out = p[0];
        for (;;) {
                struct pollfd pfd = { .fd = vm.out, .events = POLLIN };
                ssize_t k;

                cr_assert_gt(poll(&pfd, 1, 30000), 0, "no output from firecracker");
                k = read(vm.out, buf + len, sizeof buf - 1 - len);
                cr_assert_gt(k, 0, "firecracker ended early:\n%.*s", (int) len, buf);
                len += (size_t) k;
                buf[len] = '\0';
                if (strstr(buf, "Successfully started microvm"))
                        return vm;
                cr_assert_lt(len, sizeof buf - 1);
        }
}

static void cleanup_ok_and_nothing_left(void) {
        ToolRun r = tool_run_cg(control_fd, "microvm-cleanup", RID, NULL);
        cr_assert_eq(r.status, 0, "microvm-cleanup: %s", r.err);
        tool_run_done(&r);
        cr_assert_not(exists(pf("%s/" RUNIT "/" RID, cgroup_sandbox_mount())), "the VM's leaf cgroup is left");
        assert_nothing_left(RID);
        victims_check();
}

Test(races, cleanup_while_firecracker_is_stopped, .init = setup_cg, .fini = teardown_cg, .timeout = 180) {
        Vm vm = launch_vm();

        /* Alive but not running: cgroup.kill must still end it. */
        cr_assert_eq(kill(vm.pid, SIGSTOP), 0);
        cleanup_ok_and_nothing_left();
        cr_assert_eq(wait_exit_bounded(vm.pid, 10 * USEC_PER_SEC), 128 + SIGKILL);
        close(vm.out);
}

Test(races, cleanup_while_firecracker_is_a_zombie, .init = setup_cg, .fini = teardown_cg, .timeout = 180) {
        Vm vm = launch_vm();
        siginfo_t si = {};

        /* Dead, not reaped (its parent, here the test, as systemd may be,
         * has not waited yet): cleanup runs now. */
        cr_assert_eq(kill(vm.pid, SIGKILL), 0);
        cr_assert_eq(waitid(P_PID, (id_t) vm.pid, &si, WEXITED | WNOWAIT), 0, "%m");
        cr_assert_eq(si.si_code, CLD_KILLED);
        cleanup_ok_and_nothing_left();
        cr_assert_eq(wait_exit_bounded(vm.pid, 10 * USEC_PER_SEC), 128 + SIGKILL);
        close(vm.out);
}

Test(races, two_launches_of_one_vm, .init = setup_cg, .fini = teardown_cg, .timeout = 180) {
        Vm vm = launch_vm();
        _cleanup_free_ char *pid_before = read_file(pf("%s/" EXEC_NAME ".pid", jail_root(RID)));
        _cleanup_free_ char *pid_after = NULL;
        ToolRun r;

        /* A second microvm-launch by hand of the running VM: its jailer
         * fails on the jail the first one made (the firecracker copy is
         * busy: ETXTBSY, or the pid file exists) before changing anything. */
        r = tool_run_cg(unit_fd, "microvm-launch", RID, NULL);
        cr_assert_neq(r.status, 0, "a second launch of a running VM succeeded:\n%s%s", r.out, r.err);
        tool_run_done(&r);
        cr_assert_eq(kill(vm.pid, 0), 0, "the first firecracker died");
        pid_after = read_file(pf("%s/" EXEC_NAME ".pid", jail_root(RID)));
        cr_assert_str_eq(pid_after, pid_before, "the second launch changed the pid file");
        cr_assert(exists(pf("%s/run/firecracker.socket", jail_root(RID))), "the first VM's API socket is gone");
        cr_assert_eq(kill(vm.pid, SIGKILL), 0);
        cr_assert_eq(wait_exit_bounded(vm.pid, 10 * USEC_PER_SEC), 128 + SIGKILL);
        close(vm.out);
        cleanup_ok_and_nothing_left();
}

int main(int argc, char *argv[]) {
        return priv_criterion_main(argc, argv);
}
