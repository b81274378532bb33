/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* microvm-launch and microvm-stop for real: the tools as subprocesses, the
 * jailer and firecracker doubles (which join cgroups and enable
 * controllers exactly as JAILER-CONTRACT.md says), in a cgroup namespace of
 * the test's own laid out as systemd lays out a delegated unit. Proves:
 *  - firecracker ends up in the leaf <unit cgroup>/<id> and the unit cgroup
 *    holds no process, both without jailer --cgroup values and with a
 *    value of a domain controller (hugetlb, the one this host's cgroup2
 *    hierarchy has; memory behaves the same): no EBUSY, because launch
 *    leaves the unit cgroup before the jailer enables the controller;
 *  - the VMM runs as the VM's uid with the serial console on launch's
 *    stdout;
 *  - microvm-stop takes the graceful path (SendCtrlAltDel over the API
 *    socket, reached through an O_PATH fd) and firecracker exits 0;
 *  - microvm-stop returns at once for a VM without a main process. */

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "cgroup.h"
#include "priv-util.h"
#include "tool-util.h"

#define ID "vm1"
#define UNIT "microvm.slice/microvm@" ID ".service"
#define READY_LINE "Successfully started microvm"

static char root_subtree_before[256];
/* The real root's cgroup.subtree_control, opened before we enter our cgroup
 * namespace (from inside it the real root is out of sight). */
static int root_subtree_fd = -1;

/* Enables hugetlb for the children of the real cgroup2 root (where our
 * sandbox cgroup will live), as systemd enables controllers down to a
 * delegated unit. Restored at teardown. */
static bool enable_hugetlb_at_host_root(void) {
        _cleanup_free_ char *mount = NULL;
        char path[PATH_MAX], buf[256] = "";
        int fd;
        ssize_t n;

        if (cgroup2_find_mount(&mount) < 0)
                return false;
        snprintf(path, sizeof path, "%s/cgroup.controllers", mount);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
                close(fd);
        if (n <= 0 || !strstr(buf, "hugetlb"))
                return false;
        snprintf(path, sizeof path, "%s/cgroup.subtree_control", mount);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd >= 0 ? read(fd, root_subtree_before, sizeof root_subtree_before - 1) : -1;
        if (fd >= 0)
                close(fd);
        root_subtree_before[n > 0 ? n : 0] = '\0';
        root_subtree_fd = open(path, O_WRONLY | O_CLOEXEC);
        cr_assert_geq(root_subtree_fd, 0, "%s: %m", path);
        cr_assert_eq(write(root_subtree_fd, "+hugetlb", 8), 8, "enabling hugetlb at the cgroup2 root: %m");
        return true;
}

static void restore_host_root(void) {
        if (root_subtree_fd < 0)
                return;
        /* Only what we enabled; a controller enabled before stays. EBUSY if a
         * test running next to us still has a cgroup using it: it restores. */
        if (!strstr(root_subtree_before, "hugetlb") && write(root_subtree_fd, "-hugetlb", 8) < 0) {
        }
        close(root_subtree_fd);
        root_subtree_fd = -1;
}

static bool hugetlb = false;

static void setup(void) {
        tool_sandbox();
        hugetlb = enable_hugetlb_at_host_root();
        cgroup_sandbox();
        /* The namespace root is an ordinary (non-root) cgroup: like any unit's
         * ancestor it must hold no process, or no controller could be
         * enabled below it. We live in a leaf of our own. */
        int self = cgroup_mkdir("test-runner");
        int f = openat(self, "cgroup.procs", O_WRONLY | O_CLOEXEC);
        cr_assert(f >= 0 && write(f, "0", 1) == 1, "moving into test-runner: %m");
        close(f);
        close(self);
        victims_snapshot();
}

static void teardown(void) {
        cgroup_sandbox_done();
        restore_host_root();
        host_leaks_check();
}

typedef struct Vm {
        pid_t pid;
        int out;        /* read end of launch's (and so firecracker's) stdout */
        char console[16384];
        size_t len;
} Vm;

/* Reads the console until line shows up, at most timeout. */
static bool console_wait(Vm *vm, const char *line, usec_t timeout) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;

        for (;;) {
                struct pollfd p = { .fd = vm->out, .events = POLLIN };
                usec_t now;
                ssize_t k;

                if (strstr(vm->console, line))
                        return true;
                now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return false;
                if (poll(&p, 1, (int) ((deadline - now) / USEC_PER_MSEC + 1)) <= 0)
                        continue;
                if (vm->len + 1 >= sizeof vm->console)
                        return false;
                k = read(vm->out, vm->console + vm->len, sizeof vm->console - 1 - vm->len);
                if (k <= 0)
                        return strstr(vm->console, line) != NULL;
                vm->len += (size_t) k;
                vm->console[vm->len] = '\0';
        }
}

static Vm launch(int unit_fd) {
        int pipefd[2];
        Vm vm = {};

        cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
        vm.pid = tool_spawn_cg(unit_fd, "microvm-launch", ID, pipefd[1], pipefd[1]);
        close(pipefd[1]);
        vm.out = pipefd[0];
        cr_assert(console_wait(&vm, READY_LINE, 30 * USEC_PER_SEC), "firecracker did not start; output:\n%s",
                  vm.console);
        return vm;
}

static char *proc_cgroup(pid_t pid) {
        _cleanup_free_ char *text = read_file(pf("/proc/%d/cgroup", (int) pid));
        char *p = NULL;
        cr_assert_eq(cgroup_path_from_proc(text, &p), 0);
        return p;
}

static void assert_vmm_in_leaf(const Vm *vm) {
        _cleanup_free_ char *cg = proc_cgroup(vm->pid), *procs = NULL, *status = NULL;
        char uid_line[64];

        cr_assert_str_eq(cg, "/" UNIT "/" ID, "the VMM runs in %s, not in the leaf below its unit", cg);
        procs = read_file(pf("%s/" UNIT "/cgroup.procs", cgroup_sandbox_mount()));
        cr_assert_str_empty(procs, "the unit cgroup holds processes: %s", procs);
        status = read_file(pf("/proc/%d/status", (int) vm->pid));
        snprintf(uid_line, sizeof uid_line, "Uid:\t%u\t%u\t%u\t%u", (unsigned) vm_uid(ID), (unsigned) vm_uid(ID),
                 (unsigned) vm_uid(ID), (unsigned) vm_uid(ID));
        cr_assert(strstr(status, uid_line), "the VMM does not run as the VM's uid %u:\n%s", (unsigned) vm_uid(ID),
                  status);
}

static void stop_and_clean(Vm *vm, int control_fd) {
        char pid[16];
        ToolRun r;
        int st;

        snprintf(pid, sizeof pid, "%d", (int) vm->pid);
        cr_assert_eq(setenv("MAINPID", pid, 1), 0);
        r = tool_run_cg(control_fd, "microvm-stop", ID, NULL);
        unsetenv("MAINPID");
        cr_assert_eq(r.status, 0, "microvm-stop: %s", r.err);
        cr_assert(strstr(r.err, "sent Ctrl-Alt-Del to the guest"), "no graceful stop:\n%s", r.err);
        cr_assert(strstr(r.err, "the guest shut down after"), "the guest did not shut down:\n%s", r.err);
        tool_run_done(&r);
        st = wait_exit_bounded(vm->pid, 10 * USEC_PER_SEC);
        cr_assert_eq(st, 0, "firecracker exited with %d after Ctrl-Alt-Del; console:\n%s", st, vm->console);
        cr_assert(console_wait(vm, "reboot: Restarting system", USEC_PER_SEC), "no guest shutdown lines:\n%s",
                  vm->console);
        close(vm->out);

        r = tool_run_cg(control_fd, "microvm-cleanup", ID, NULL);
        cr_assert_eq(r.status, 0, "microvm-cleanup: %s", r.err);
        tool_run_done(&r);
        assert_nothing_left(ID);
        victims_check();
}

Test(launch, leaf_without_cgroup_values, .init = setup, .fini = teardown, .timeout = 120) {
        int unit, control;
        Vm vm;

        vm_config_write(ID, NULL);
        stage_ok(ID);
        unit = cgroup_mkdir(UNIT);
        control = cgroup_mkdir(UNIT "/.control");
        vm = launch(unit);
        assert_vmm_in_leaf(&vm);
        cr_assert(strstr(vm.console, "Command line: console=ttyS0"), "no console on stdout:\n%s", vm.console);
        stop_and_clean(&vm, control);
        close(unit);
        close(control);
}

Test(launch, leaf_with_domain_controller_values, .init = setup, .fini = teardown, .timeout = 120) {
        _cleanup_free_ char *plan = NULL, *value = NULL;
        int unit, control;
        Vm vm;

        if (!hugetlb)
                cr_skip_test("the cgroup2 hierarchy here offers no hugetlb controller to stand in for memory");
        vm_config_write(ID, NULL);
        stage_ok(ID);
        /* A jailer --cgroup value of a domain controller, as a plan can
         * carry (stage puts cpuset.mems there for numa_node). */
        plan = read_file(pf("%s/plan", run_dir(ID)));
        cr_assert_eq(unlink(pf("%s/plan", run_dir(ID))), 0);
        write_file(pf("%s/plan", run_dir(ID)), pf("%sCGROUP=hugetlb.2MB.max=0\n", plan), 0600, 0);
        unit = cgroup_mkdir(UNIT);
        control = cgroup_mkdir(UNIT "/.control");
        vm = launch(unit);
        assert_vmm_in_leaf(&vm);
        value = read_file(pf("%s/" UNIT "/" ID "/hugetlb.2MB.max", cgroup_sandbox_mount()));
        cr_assert_str_eq(value, "0\n", "the jailer's value did not reach the leaf: %s", value);
        stop_and_clean(&vm, control);
        close(unit);
        close(control);
}

Test(stop, returns_at_once_without_a_main_process, .init = setup, .fini = teardown, .timeout = 120) {
        ToolRun r;

        /* A long stop timeout, so that "at once" is told apart from
         * "waited for the guest" with room for a loaded machine. */
        vm_config_write(ID, "stop_timeout = 60s");
        stage_ok(ID);
        unsetenv("MAINPID");
        r = tool_run("microvm-stop", ID, NULL);
        cr_assert_eq(r.status, 0, "%s", r.err);
        cr_assert(strstr(r.err, "has no running main process"), "%s", r.err);
        cr_assert_lt(r.usec, 20 * USEC_PER_SEC, "microvm-stop took %llu us", (unsigned long long) r.usec);
        tool_run_done(&r);
        tool_ok("microvm-cleanup", ID);
}

int main(int argc, char *argv[]) {
        return priv_criterion_main(argc, argv);
}
