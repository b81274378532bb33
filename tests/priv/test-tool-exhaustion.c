/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Resource exhaustion through the real tools, on the scratch host of
 * tool-util.h: a state dir, a chroot base and a run dir on tiny tmpfs
 * mounts (ENOSPC before and in the middle of a copy), the uid range used
 * up, a low fd limit. Each start fails with an error that names the
 * resource, and after the unit's cleanup (microvm-cleanup, as
 * ExecStopPost= runs it) nothing half-built is left. (Loop device
 * exhaustion concerns only snapshot and thin drives, which need
 * device-mapper: not covered here.) */

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "priv-util.h"
#include "tool-util.h"

#define ID "full"

static void setup(void) {
        tool_sandbox();
        cgroup_sandbox();
}

static void teardown(void) {
        cgroup_sandbox_done();
        host_leaks_check();
}

/* A tmpfs of size bytes at dir (created), in the sandbox's mount namespace. */
static void tiny_tmpfs(const char *dir, const char *size) {
        (void) mkdir(dir, 0700);
        cr_assert_eq(mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, pf("size=%s,mode=0700", size)), 0,
                     "mount a %s tmpfs on %s: %m", size, dir);
}

/* Names in dir and below, for the failure messages (empty: nothing). */
static unsigned count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;
        unsigned n = 0;

        while (d && (e = readdir(d)))
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
                        n++;
        if (d)
                closedir(d);
        return n;
}

/* The start failed with stderr naming every want; then the unit's cleanup
 * leaves nothing of the VM. */
static void start_fails_naming(const char *id, const char *const *want) {
        ToolRun r = tool_run("microvm-stage", id, NULL);

        cr_assert_neq(r.status, 0, "microvm-stage %s succeeded on an exhausted host:\n%s", id, r.err);
        for (const char *const *w = want; *w; w++)
                cr_assert(strstr(r.err, *w), "the error does not name \"%s\":\n%s", *w, r.err);
        cr_log_info("%s", r.err);
        tool_run_done(&r);
        tool_ok("microvm-cleanup", id);
        assert_nothing_left(id);
}

Test(exhaustion, state_dir_full, .init = setup, .fini = teardown, .timeout = 300) {
        /* a 4 MiB writable drive; 256 KiB of room for its copy */
        big_images_create(1, 4 << 20);
        vm_config_write_many(ID, 1);
        tiny_tmpfs(S.state, "256k");
        start_fails_naming(ID, (const char *const[]) { "space", pf("%s/big-0.img", S.images), NULL });
        cr_assert(!exists(pf("%s/" ID "/drives/d0.img", S.state)), "a half-made drive copy is left");
}

Test(exhaustion, chroot_base_full_mid_copy, .init = setup, .fini = teardown, .timeout = 300) {
        /* The chroot base on another file system than the images: kernel,
         * initrd and the read-only root drive are copied into the jail, a
         * page each; there is room for two. (No writable drive: those are
         * hardlinked from the state dir, which would have to share the
         * chroot base's file system.) */
        (void) unlink(pf("%s/" ID ".conf", S.vms));
        write_file(pf("%s/" ID ".conf", S.vms),
                   pf("[vm]\nkernel = %s/vmlinux\ninitrd = %s/initrd.img\n\n"
                      "[drive.root]\nmode = file\npath = %s/ro.ext4\nroot = yes\nread_only = yes\n",
                      S.images, S.images, S.images),
                   0644, 0);
        tiny_tmpfs(S.base, "8k");
        start_fails_naming(ID, (const char *const[]) { "space", "read-only drive image", NULL });
        /* <base>/firecracker stays, as on every host; no jail below it */
        cr_assert_eq(count_entries(pf("%s/" EXEC_NAME, S.base)), 0, "a jail is left after the cleanup");
}

Test(exhaustion, run_dir_full, .init = setup, .fini = teardown, .timeout = 300) {
        int fd;

        vm_config_write(ID, NULL);
        tiny_tmpfs(S.run, "4k");
        /* /run is full: one page, taken */
        fd = open(pf("%s/ballast", S.run), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        cr_assert_geq(fd, 0);
        char page[4096] = { 1 };
        cr_assert_eq(write(fd, page, sizeof page), (ssize_t) sizeof page);
        close(fd);
        start_fails_naming(ID, (const char *const[]) { "launch plan", S.run, "No space left on device", NULL });
        cr_assert(!exists(jail_dir(ID)), "a jail was built without a launch plan");
}

Test(exhaustion, uid_range_used_up, .init = setup, .fini = teardown, .timeout = 300) {
        /* a range of one uid: the first VM takes it */
        (void) unlink(S.host_conf);
        write_file(S.host_conf,
                   pf("[host]\njailer = %s/jailer\nfirecracker = %s/firecracker\nchroot_base = %s\n"
                      "state_dir = %s\nrun_dir = %s\nuid_range = %u-%u\n",
                      S.bin, S.bin, S.base, S.state, S.run, VM_RANGE_MIN, VM_RANGE_MIN),
                   0644, 0);

        vm_config_write("first", NULL);
        vm_config_write("second", NULL);
        stage_ok("first");
        start_fails_naming("second", (const char *const[]) { "uid", pf("%u-%u", VM_RANGE_MIN, VM_RANGE_MIN), NULL });
        cr_assert(!exists(pf("%s/second/uid", S.state)), "the VM that got no uid has a uid record");
        tool_ok("microvm-cleanup", "first");
}

/* Runs microvm-stage ID with at most nofile open files (in the child only:
 * the test needs its own), its stderr into *ret_err; returns the exit
 * status. */
static int stage_with_nofile(const char *id, rlim_t nofile, char **ret_err) {
        int pipefd[2];
        pid_t pid;
        int status;
        FILE *f;
        size_t len = 0;

        cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                struct rlimit low = { .rlim_cur = nofile, .rlim_max = nofile };
                if (dup2(pipefd[1], STDERR_FILENO) < 0 || setrlimit(RLIMIT_NOFILE, &low) < 0)
                        _exit(120);
                execl(pf("%s/tools/microvm-stage", getenv("MICROVM_BUILD_ROOT")), "microvm-stage", id, (char *) NULL);
                _exit(121);
        }
        close(pipefd[1]);
        f = fdopen(pipefd[0], "re");
        cr_assert_not_null(f);
        *ret_err = NULL;
        if (getdelim(ret_err, &len, '\0', f) < 0) {
                free(*ret_err);
                *ret_err = strdup("");
        }
        fclose(f);
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

Test(exhaustion, low_fd_limit, .init = setup, .fini = teardown, .timeout = 300) {
        char *err = NULL;
        int status;

        vm_config_write(ID, NULL);
        status = stage_with_nofile(ID, 8, &err);
        cr_assert_neq(status, 0, "microvm-stage succeeded with 8 fds; the test needs a lower limit");
        cr_assert(strstr(err, "Too many open files"), "the error does not say the fds ran out:\n%s", err);
        cr_log_info("%s", err);
        free(err);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
}
