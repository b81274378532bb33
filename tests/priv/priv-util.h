/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Helpers for privileged tests (tests/priv): skip logic, a private mount
 * namespace with a scratch tmpfs, running code as an unprivileged uid (the
 * attacker: a compromised firecracker runs as the VM's uid), and tree
 * snapshots to prove that victims outside a jail did not change. */

#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

bool is_root(void);

/* Whether this build has the test hooks (-Dtest-hooks=true). A function,
 * not the macro, so that a test that skips without them is not taken for
 * one that never returns (clang's -Wmissing-noreturn). */
bool priv_test_hooks_built(void);

/* NULL when this machine can run privileged tests (root, and a private
 * mount namespace with a tmpfs can be made), else why not. */
const char *priv_skip_reason(void);

/* Runs a criterion test program's tests one at a time, or, when why is not
 * NULL, reports the whole program skipped: the reason on stderr, and exit
 * 77, or "1..0 # SKIP why" with exit 0 under --tap (which is how meson's
 * TAP parser counts a skip). */
int criterion_run_or_skip(int argc, char *argv[], const char *why);
/* main() for a criterion test program in tests/priv: skips when
 * priv_skip_reason() says so, else runs the tests. */
int priv_criterion_main(int argc, char *argv[]);
#define PRIV_TEST_MAIN                                            \
        int main(int argc, char *argv[]) {                        \
                return priv_criterion_main(argc, argv);           \
        }

/* Enters a private mount namespace and mounts a fresh tmpfs (root:root
 * 0755) on a directory directly below "/", so that the whole path is
 * trusted by safe_root_open(). Returns that path. Criterion runs each test
 * in its own process, so each test gets its own namespace and tmpfs. */
const char *priv_sandbox(void);
/* Mounts another fresh tmpfs at path (for mount-crossing tests). */
void priv_mount_tmpfs(const char *path);

/* Forks; the child drops to uid:gid (no supplementary groups), runs
 * fn(arg) and exits 0 (or with what fn _exit()s). */
pid_t run_as(uid_t uid, void (*fn)(void *arg), void *arg);
/* Waits for pid; returns its exit status, or 128+signal. */
int wait_exit(pid_t pid);
/* run_as() + wait_exit(), asserting exit 0. */
void run_as_wait(uid_t uid, void (*fn)(void *arg), void *arg);
/* run_as() for a helper that runs until killed (an attacker): returns once
 * the child called child_ready(), and fails the test when the child exits
 * first or stays silent for 60 s. An event (a pipe), not a poll: on a
 * loaded machine the child may wait long for a CPU. */
pid_t run_as_until_ready(uid_t uid, void (*fn)(void *arg), void *arg);
/* In a child started by run_as_until_ready(): "I am set up". Once. */
void child_ready(void);

/* A canonical text listing of everything below dir (path, type, mode,
 * owner, size, sha256 of file contents, symlink target), sorted. Never
 * opens anything but regular files and directories, and not across mounts. */
char *snapshot_tree(const char *dir);
/* Asserts that two snapshots are identical; names the first difference. */
void assert_same_snapshot(const char *before, const char *after, const char *what);

/* printf into one of a few rotating static buffers: a path for the next
 * call or two. */
const char *pf(const char *fmt, ...) _printf_(1, 2);

/* Helpers that abort the test on failure. */
void write_file(const char *path, const char *content, mode_t mode, uid_t uid);
char *read_file(const char *path);
