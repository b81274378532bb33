/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The firecracker double's snapshot API (PATCH /vm, PUT /snapshot/create,
 * PUT /snapshot/load, a VMM started without --config-file), against the
 * rules of Firecracker's swagger (src/firecracker/swagger/firecracker.yaml)
 * and its VMM (rpc_interface.rs, persist.rs): a resumed guest goes on with
 * the boot token and console counter of the one that was snapshotted, a
 * cold boot gets a new token. Runs as the invoking user (needs /dev/kvm
 * access, like the double itself, else skips). */

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "test-helpers.h"

static char *tmp;

static char *tmp_path(const char *name) {
        char *p;
        cr_assert(asprintf(&p, "%s/%s", tmp, name) >= 0);
        return p;
}

static void setup(void) {
        tmp = make_temp_dir("doubles-snapshot");
        cr_assert(tmp, "mkdtemp: %m");
}

static void teardown(void) {
        children_kill_all();
        remove_tree(tmp);
        free(tmp);
        tmp = NULL;
}

#define skip_test(...)                          \
        do {                                    \
                teardown();                     \
                cr_skip_test(__VA_ARGS__);      \
        } while (0)

static const char *fc(void) {
        const char *p = getenv("FIRECRACKER_DOUBLE");
        cr_assert(p, "FIRECRACKER_DOUBLE is not set (run through meson test)");
        return p;
}

static void request(int fd, const char *method, const char *uri, const char *body, int expect_status,
                    const char *expect_body) {
        _cleanup_free_ char *resp = NULL;
        int status;

        cr_assert_eq(http_request(fd, method, uri, body, &status, &resp), 0, "%s %s failed", method, uri);
        cr_assert_eq(status, expect_status, "%s %s: %d %s", method, uri, status, resp);
        if (expect_body)
                cr_assert_str_eq(resp, expect_body);
}

static char *state_of(int fd) {
        _cleanup_free_ char *body = NULL;
        _cleanup_json_ JsonValue *info = NULL;
        int status;

        cr_assert_eq(http_request(fd, "GET", "/", NULL, &status, &body), 0);
        cr_assert_eq(status, 200);
        cr_assert_eq(json_parse(body, strlen(body), &info, NULL), 0, "not JSON: %s", body);
        return strdup(json_get(info, "state")->string);
}

/* The token the guest printed ("fcdouble: boot token T" or "... restored
 * from a snapshot, boot token T"), newly allocated. */
static char *token_in(const char *out) {
        const char *p = strstr(out, "boot token ");
        cr_assert(p, "no boot token in:\n%s", out);
        return strndup(p + strlen("boot token "), 32);
}

static void boot(Child *c, const char *sock, const char *config, const char *knobs) {
        _cleanup_free_ char *kernel = tmp_path("vmlinux"), *drive = tmp_path("disk"), *cfg = NULL, *args = NULL;
        const char *argv[] = { fc(), "--id", "vm1", "--api-sock", sock, "--config-file", config, NULL };

        (void) unlink(sock);
        cr_assert(write_file(kernel, "not a kernel\n", 0644) >= 0);
        if (access(drive, F_OK) < 0) {
                int fd = open(drive, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
                cr_assert(fd >= 0 && ftruncate(fd, 1 << 20) >= 0);
                close(fd);
        }
        cr_assert(asprintf(&args, "console=ttyS0 reboot=k panic=1 fcdouble.tick_ms=50 %s", knobs) >= 0);
        cfg = make_vm_config(kernel, args, drive, false, NULL);
        cr_assert(write_file(config, cfg, 0644) >= 0);
        cr_assert(child_spawn(c, (char *const *) argv, NULL) >= 0);
        cr_assert(child_wait_output(c, "fcdouble: tick 2 ", false, TEST_TIMEOUT_MS), "%s", sb_str(&c->out));
}

static void start_bare(Child *c, const char *sock) {
        const char *argv[] = { fc(), "--id", "vm1", "--api-sock", sock, NULL };

        (void) unlink(sock);
        cr_assert(child_spawn(c, (char *const *) argv, NULL) >= 0);
        cr_assert(child_wait_output(c, "API server started.\n", false, TEST_TIMEOUT_MS), "%s", sb_str(&c->out));
}

static void require_kvm_access(void) {
        if (access("/dev/kvm", R_OK | W_OK) < 0)
                skip_test("no read-write access to /dev/kvm for uid %u: the double refuses to boot, like the real "
                          "one", (unsigned) geteuid());
}

TestSuite(firecracker_snapshot, .init = setup, .fini = teardown);

Test(firecracker_snapshot, create_pause_load_resume) {
        _cleanup_free_ char *sock = tmp_path("api.sock"), *config = tmp_path("config.json"),
                            *state = tmp_path("vmstate"), *mem = tmp_path("memory"), *body = NULL,
                            *load = NULL, *token = NULL, *token2 = NULL, *st = NULL;
        Child c, r;
        struct stat sb;
        int fd;

        require_kvm_access();
        boot(&c, sock, config, "");
        token = token_in(sb_str(&c.out));
        fd = unix_connect(sock);
        cr_assert(fd >= 0);

        cr_assert(asprintf(&body, "{\"snapshot_type\":\"Full\",\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}",
                           state, mem) >= 0);
        /* Running vCPUs cannot be saved. */
        request(fd, "PUT", "/snapshot/create", body, 400,
                "{\"fault_message\":\"Create snapshot error: Cannot save the microVM state: Operation not allowed: "
                "save/restore unavailable while running\"}");
        request(fd, "PATCH", "/vm", "{\"state\":\"Stopped\"}", 400, NULL);
        request(fd, "PATCH", "/vm", "{\"state\":\"Paused\"}", 204, "");
        st = state_of(fd);
        cr_assert_str_eq(st, "Paused");
        request(fd, "PUT", "/snapshot/create", "{\"snapshot_path\":\"/x\"}", 400, NULL);
        request(fd, "PUT", "/snapshot/create", body, 204, "");
        /* Loading is pre-boot only. */
        cr_assert(asprintf(&load, "{\"snapshot_path\":\"%s\",\"mem_backend\":{\"backend_type\":\"File\","
                                  "\"backend_path\":\"%s\"},\"resume_vm\":true}", state, mem) >= 0);
        request(fd, "PUT", "/snapshot/load", load, 400,
                "{\"fault_message\":\"The requested operation is not supported after starting the microVM.\"}");
        close(fd);
        /* A Full snapshot writes all of the guest memory (256 MiB here). */
        cr_assert(stat(mem, &sb) >= 0 && sb.st_size == 256 << 20 && sb.st_blocks * 512 >= (256 << 20));
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        /* The "ticks so far" the snapshot holds: counted before the pause. */
        cr_assert_null(strstr(sb_str(&c.out), "fcdouble: tick 1000 "));
        child_done(&c);

        /* Without --config-file: "Not started" until the load. */
        start_bare(&r, sock);
        fd = unix_connect(sock);
        cr_assert(fd >= 0);
        free(st);
        st = state_of(fd);
        cr_assert_str_eq(st, "Not started");
        request(fd, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", 400,
                "{\"fault_message\":\"The requested operation is not supported before starting the microVM.\"}");
        request(fd, "PATCH", "/vm", "{\"state\":\"Paused\"}", 400,
                "{\"fault_message\":\"The requested operation is not supported before starting the microVM.\"}");
        request(fd, "PUT", "/snapshot/load", "{\"snapshot_path\":\"/x\"}", 400,
                "{\"fault_message\":\"An error occurred when deserializing the json body of a request: missing "
                "field: either `mem_backend` or `mem_file_path` is required.\"}");
        request(fd, "PUT", "/snapshot/load", load, 204, "");
        free(st);
        st = state_of(fd);
        cr_assert_str_eq(st, "Running");
        cr_assert(child_wait_output(&r, "fcdouble: restored from a snapshot, boot token ", false, TEST_TIMEOUT_MS));
        token2 = token_in(sb_str(&r.out));
        cr_assert_str_eq(token2, token, "resumed with another token");
        /* The counter goes on: the first tick after the resume is the one
         * after the last before the snapshot, never 1 again. */
        cr_assert(child_wait_output(&r, "fcdouble: tick ", false, TEST_TIMEOUT_MS));
        cr_assert_null(strstr(sb_str(&r.out), "fcdouble: tick 1 "), "%s", sb_str(&r.out));
        cr_assert_null(strstr(sb_str(&r.out), "Linux version"), "a restored guest does not boot");
        request(fd, "PUT", "/snapshot/load", load, 400,
                "{\"fault_message\":\"The requested operation is not supported after starting the microVM.\"}");
        /* Ctrl-Alt-Del works on the restored guest. */
        request(fd, "PUT", "/actions", "{\"action_type\":\"SendCtrlAltDel\"}", 204, "");
        cr_assert(child_wait_exit(&r, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&r, 0));
        close(fd);
        child_done(&r);

        /* A cold boot has a new token. */
        (void) unlink(sock);
        boot(&c, sock, config, "");
        free(token2);
        token2 = token_in(sb_str(&c.out));
        cr_assert_str_neq(token2, token);
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        child_done(&c);
}

Test(firecracker_snapshot, knobs_and_bad_files) {
        _cleanup_free_ char *sock = tmp_path("api.sock"), *config = tmp_path("config.json"),
                            *state = tmp_path("vmstate"), *mem = tmp_path("memory"), *body = NULL,
                            *load = NULL;
        Child c;
        int fd;

        require_kvm_access();
        /* fail_create: the memory file fills the disk half way, a 400. */
        boot(&c, sock, config, "fcdouble.fail_create=1");
        fd = unix_connect(sock);
        cr_assert(asprintf(&body, "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\"}", state, mem) >= 0);
        request(fd, "PATCH", "/vm", "{\"state\":\"Paused\"}", 204, "");
        request(fd, "PUT", "/snapshot/create", body, 400,
                "{\"fault_message\":\"Create snapshot error: Cannot write memory file: Cannot perform write on the "
                "memory backing file: No space left on device (os error 28)\"}");
        /* It can be resumed and goes on. */
        request(fd, "PATCH", "/vm", "{\"state\":\"Resumed\"}", 204, "");
        close(fd);
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        child_done(&c);
        (void) unlink(sock);

        /* A truncated memory file: the load fails and the VMM exits 1. (A
         * failed create, like the real one, leaves a file of the full size
         * that only the 400 tells apart.) */
        cr_assert(truncate(mem, 1 << 20) >= 0);
        cr_assert(asprintf(&load, "{\"snapshot_path\":\"%s\",\"mem_file_path\":\"%s\",\"resume_vm\":true}", state,
                           mem) >= 0);
        start_bare(&c, sock);
        fd = unix_connect(sock);
        request(fd, "PUT", "/snapshot/load", load, 400,
                "{\"fault_message\":\"Load snapshot error: Failed to restore from snapshot: Failed to load guest "
                "memory: Error creating guest memory from file: the memory file's size is not the guest memory "
                "size (truncated)\"}");
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 1));
        close(fd);
        child_done(&c);

        /* fail_load, stored with the guest's command line. */
        boot(&c, sock, config, "fcdouble.fail_load=1");
        fd = unix_connect(sock);
        request(fd, "PATCH", "/vm", "{\"state\":\"Paused\"}", 204, "");
        request(fd, "PUT", "/snapshot/create", body, 204, "");
        close(fd);
        kill(c.pid, SIGKILL);
        child_wait_exit(&c, TEST_TIMEOUT_MS);
        child_done(&c);
        start_bare(&c, sock);
        fd = unix_connect(sock);
        request(fd, "PUT", "/snapshot/load", load, 400,
                "{\"fault_message\":\"Load snapshot error: Failed to restore from snapshot: Failed to build microVM "
                "from snapshot: fcdouble.fail_load=1\"}");
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        close(fd);
        child_done(&c);

        /* A truncated state file. */
        cr_assert(truncate(state, 30) >= 0);
        start_bare(&c, sock);
        fd = unix_connect(sock);
        request(fd, "PUT", "/snapshot/load", load, 400, NULL);
        cr_assert(child_wait_exit(&c, TEST_TIMEOUT_MS));
        cr_assert(child_exited_with(&c, 1));
        close(fd);
        child_done(&c);
}
