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
         * initrd and read-only drive are copied into the jail, one page
         * each; there is room for one. */
        vm_config_write(ID, NULL);
        tiny_tmpfs(S.base, "8k");
        start_fails_naming(ID, (const char *const[]) { "space", NULL });
        cr_assert_eq(count_entries(S.base), 0, "the chroot base is not empty after the cleanup");
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

Test(exhaustion, low_fd_limit, .init = setup, .fini = teardown, .timeout = 300) {
        struct rlimit old;
        ToolRun r;

        vm_config_write(ID, NULL);
        cr_assert_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
        /* inherited by the tool; ours back at once (criterion needs its own) */
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &(struct rlimit) { .rlim_cur = 8, .rlim_max = old.rlim_max }), 0);
        r = tool_run("microvm-stage", ID, NULL);
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
        cr_assert_neq(r.status, 0, "microvm-stage succeeded with 8 fds; the test needs a lower limit");
        cr_assert(strstr(r.err, "Too many open files"), "the error does not say the fds ran out:\n%s", r.err);
        cr_log_info("%s", r.err);
        tool_run_done(&r);
        tool_ok("microvm-cleanup", ID);
        assert_nothing_left(ID);
}
