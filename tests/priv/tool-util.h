/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for the tool-level privileged tests (test-tool-attacks,
 * test-tool-lifecycle): the real microvm-stage, microvm-cleanup and
 * microvm-reclaim run as subprocesses against a scratch host:
 *
 *   <T>/                    a fresh tmpfs (priv_sandbox()), root:root 0755
 *       bin/jailer, bin/firecracker    copies of the test doubles (the build
 *                                      dir is below /tmp, which the tools
 *                                      rightly refuse to trust)
 *       etc/microvm.conf    the host config (MICROVM_HOST_CONFIG)
 *       vms/<id>.conf       VM configs (MICROVM_CONFIG_PATH)
 *       images/             kernel, initrd, drive templates (the admin's)
 *       jailer/ state/ run/ chroot base, state dir, run dir
 *       victim/             what an attacker would like root to write,
 *                           chown or delete: must never change
 *
 * Every wait is bounded (a hang is a test failure, not a stuck suite), and
 * nothing waits on a fixed sleep. */

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"
#include "priv-util.h"

#define VM_RANGE_MIN 3000000000U /* a uid range no NSS database knows (checked) */
#define VM_RANGE_MAX 3000099999U
#define ADMIN_UID ((uid_t) 1000999)
#define EXEC_NAME "firecracker"
#define TOOL_TIMEOUT (120 * USEC_PER_SEC)

typedef struct ToolSandbox {
        char root[4096];
        char bin[4096];
        char etc[4096];
        char host_conf[4096];
        char vms[4096];
        char images[4096];
        char base[4096];        /* chroot base */
        char state[4096];
        char run[4096];
        char victim[4096];
} ToolSandbox;

extern ToolSandbox S;


/* An address no system bus listens on: the tools' sd_bus_open_system()
 * fails, and they judge whether a VM's unit runs by its cgroup. */
#define NO_SYSTEM_BUS "unix:path=/nonexistent/microvm-test-no-bus"

/* The scratch host above: a private mount namespace with a tmpfs, the
 * doubles copied in, images, victims, a host config, and the environment
 * the tools read (MICROVM_HOST_CONFIG, MICROVM_CONFIG_PATH, and
 * DBUS_SYSTEM_BUS_ADDRESS = NO_SYSTEM_BUS: no system bus). */
void tool_sandbox(void);
/* MICROVM_SAFE_FS_FALLBACK=1 for the tools run from now on: they then use
 * the component walk instead of openat2() (both are tested). The hook is
 * compiled only with -Dtest-hooks=true; without it a fallback run is
 * skipped, with that reason. */
void tools_use_fallback(bool fallback);

/* Rewrites the host config with these chroot base, state and run dirs. */
void host_config_write(const char *base, const char *state, const char *run);

/* A VM config: kernel, initrd, writable file drives "root" and "data", a
 * read-only file drive "ro"; extra is appended to the [vm] section. */
void vm_config_write(const char *id, const char *extra);
/* A VM config with n_drives writable file drives d0..dN (d0 the root
 * drive), each a copy of images/big-N.img, for the kill loop. */
void vm_config_write_many(const char *id, unsigned n_drives);
/* Writes n fully written (non-sparse) pseudo-random templates
 * images/big-N.img of size bytes. */
void big_images_create(unsigned n, size_t size);

/* What a tool run gave. */
typedef struct ToolRun {
        int status;     /* exit status; 128+signal; -ETIMEDOUT if it hung (then killed) */
        char *err;      /* its stderr */
        char *out;      /* its stdout */
        usec_t usec;    /* wall time */
} ToolRun;
void tool_run_done(ToolRun *r);

/* Runs tool ("microvm-stage", ...) from the build dir with the given
 * arguments (NULL-terminated). cg_fd >= 0: the child moves into that cgroup
 * before exec (as systemd places ExecStopPost= in ".control"). */
ToolRun tool_run_cg(int cg_fd, const char *tool, ...);
#define tool_run(tool, ...) tool_run_cg(-1, tool, __VA_ARGS__)
/* Starts it and returns the pid; stderr/stdout to /dev/null. */
pid_t tool_spawn(const char *tool, const char *arg);
/* The same, in cgroup cg_fd (-1: ours), with stdout/stderr on the given fds
 * (-1: /dev/null). */
pid_t tool_spawn_cg(int cg_fd, const char *tool, const char *arg, int out_fd, int err_fd);
/* Waits for pid, at most timeout (then SIGKILLs it and returns
 * -ETIMEDOUT); returns exit status or 128+signal. */
int wait_exit_bounded(pid_t pid, usec_t timeout);

/* Asserts exit status 0 with stderr in the message. */
void tool_ok(const char *tool, const char *id);
/* At teardown: nothing of the sandbox's VMs (loop or dm devices, taps,
 * processes of the VM uid range) is left on the host (tests/leak). */
void host_leaks_check(void);
/* Asserts that id is staged as microvm-stage leaves it: the jail with
 * exactly the objects it makes (owners, modes, hardlinks of the right
 * files; no dev/, no pid file), the plan and the FIFO. */
void assert_staged(const char *id);
/* Stages id (asserting success) and assert_staged(). */
void stage_ok(const char *id);
/* The drive copies a vm_config_write() VM keeps in <state>/<id>/drives/,
 * with their templates, for assert_state_is(). */
const char *const *vm_drive_templates(void);

/* The VM's uid from <state>/<id>/uid. */
uid_t vm_uid(const char *id);
/* Paths of a VM. */
const char *jail_dir(const char *id);   /* <base>/firecracker/<id> */
const char *jail_root(const char *id);  /* <base>/firecracker/<id>/root */
const char *run_dir(const char *id);    /* <run>/<id> */

/* Does to the jail what the jailer does before exec'ing firecracker
 * (JAILER-CONTRACT.md, steps 3, 6-8): root, dev, dev/net, run chowned to
 * the VM's uid and 0700; the firecracker copy; dev/ nodes; the pid file.
 * From then on the VM's uid owns the jail. First, what microvm-launch does
 * before it execs the jailer: the first-run marker moves on, so the VM
 * counts as one that may have run (it keeps its uid). */
void jailer_simulate(const char *id);
/* Only what microvm-launch does before it execs the jailer (the first-run
 * marker moves on): for tests whose VM "runs" by writing to its drives. */
void launch_simulate(const char *id);

/* Victims: snapshot <T>/victim and <T>/images now; victims_check()
 * asserts that neither changed (content, owner, mode, existence). */
void victims_snapshot(void);
void victims_check(void);

bool exists(const char *p);
/* rm -rf as root, for the test's own trees (nftw, no mount crossing). */
void rm_rf_as_root(const char *p);
/* Asserts nothing of id is left: no jail dir, no run dir. */
void assert_nothing_left(const char *id);
/* Asserts <state>/<id> holds nothing but: the uid record (exactly when
 * want_uid) and drives/ with copies of the listed drives (name, template,
 * name, template, ..., NULL), each complete: the same bytes as its
 * template. With STATE_ALL_DRIVES every listed copy must be there; else
 * some may be missing (a start killed before making them), never
 * half-made. With STATE_TEMPORARIES_OK, safe-fs temporaries (".#...", what
 * a killed copy leaves, never under the final name) are counted, not
 * refused, and a first-run marker "unlaunched" may stand without the uid
 * record (a kill between the two writes); returns the temporaries' number. */
typedef enum StateFlags {
        STATE_ALL_DRIVES = 1 << 0,
        STATE_TEMPORARIES_OK = 1 << 1,
} StateFlags;
unsigned assert_state_is(const char *id, bool want_uid, const char *const *drive_templates, StateFlags flags);

/* An isolated cgroup tree: moves this process into a fresh cgroup below
 * the cgroup2 root, unshares a cgroup namespace and remounts cgroup2 (in
 * the private mount namespace), so the tools see a cgroup2 root of their
 * own: microvm.slice there is ours alone, whatever the host runs.
 * cgroup_sandbox_done() (a .fini) kills and removes it all. Returns the
 * mount point. */
const char *cgroup_sandbox(void);
void cgroup_sandbox_done(void);
const char *cgroup_sandbox_mount(void);
/* mkdir -p of a cgroup below the sandbox root; returns an O_DIRECTORY fd. */
int cgroup_mkdir(const char *rel);
