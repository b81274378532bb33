/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* uid allocation on a real state dir (tmpfs, private mount namespace):
 * concurrency under the lock, stability across restarts, explicit uids,
 * NSS, exhaustion, release with the state, and failing closed on records
 * we cannot trust. */

/* Test paths live in PATH_MAX buffers; truncation would fail an assertion. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "names.h"
#include "priv-util.h"
#include "uid-alloc.h"

/* A range no NSS database or subordinate range is expected to know; the
 * tests check that assumption for the uids they use. */
#define R0 ((uid_t) 3000000000U)
#define NPROC 200

static char T[PATH_MAX], S[PATH_MAX];
static int state_fd = -1;

static void setup(void) {
        _cleanup_free_ char *err = NULL;

        snprintf(T, sizeof T, "%s", priv_sandbox());
        snprintf(S, sizeof S, "%s/var/lib/microvm", T);
        cr_assert_eq(safe_root_open(S, SAFE_ROOT_CREATE, 0700, &state_fd, &err), 0, "%s", err);
}

static const char *pathf_join(const char *a, const char *b) {
        return pf("%s/%s", a, b);
}

static bool nss_knows(uid_t u) {
        return getpwuid(u) || getgrgid((gid_t) u);
}

static uid_t alloc_ok(const char *id, uid_t min, uid_t max, uid_t wanted, bool *ret_created) {
        _cleanup_free_ char *err = NULL;
        UidAllocation a = {};
        int r;

        r = uid_allocate(state_fd, id, min, max, wanted, &a, &err);
        cr_assert_eq(r, 0, "allocating for %s: %d %s", id, r, strna(err));
        cr_assert_eq(a.uid, a.gid);
        if (ret_created)
                *ret_created = a.created;
        return a.uid;
}

static void alloc_fail(const char *id, uid_t min, uid_t max, uid_t wanted, int want, const char *needle) {
        _cleanup_free_ char *err = NULL;
        UidAllocation a = {};
        int r;

        r = uid_allocate(state_fd, id, min, max, wanted, &a, &err);
        cr_assert_eq(r, want, "allocating for %s: got %d (%s), wanted %d", id, r, strna(err), want);
        cr_assert_not_null(err);
        cr_assert(strstr(err, needle), "message \"%s\" lacks \"%s\"", err, needle);
}

Test(uid, concurrent_distinct_and_stable, .init = setup, .timeout = 300) {
        int go[2], res[2];
        pid_t pids[NPROC];
        uid_t got[NPROC];
        char buf[64];
        FILE *f;

        for (unsigned i = 0; i < 1000; i++)
                cr_assert_not(nss_knows(R0 + i), "test range assumption broken: %u is known to NSS", R0 + i);

        cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(res, O_CLOEXEC), 0);
        for (unsigned i = 0; i < NPROC; i++) {
                pids[i] = fork();
                cr_assert_geq(pids[i], 0);
                if (pids[i] == 0) {
                        _cleanup_free_ char *err = NULL;
                        char id[32], line[64];
                        UidAllocation a;
                        int fd = -1, n;

                        close(go[1]);
                        /* All start together: wait for the parent to
                         * close its end of the pipe (an event, not a
                         * sleep). */
                        if (read(go[0], line, 1) < 0)
                                _exit(5);
                        if (safe_root_open(S, 0, 0, &fd, &err) < 0)
                                _exit(2);
                        snprintf(id, sizeof id, "vm-%u", i);
                        if (uid_allocate(fd, id, R0, R0 + 999, UID_INVALID, &a, &err) < 0) {
                                fprintf(stderr, "%s: %s\n", id, strna(err));
                                _exit(3);
                        }
                        /* one short write per child: atomic on a pipe */
                        n = snprintf(line, sizeof line, "%u %u\n", i, (unsigned) a.uid);
                        if (write(res[1], line, (size_t) n) != n)
                                _exit(4);
                        _exit(0);
                }
        }
        close(go[0]);
        close(res[1]);
        close(go[1]);   /* go */
        for (unsigned i = 0; i < NPROC; i++)
                cr_assert_eq(wait_exit(pids[i]), 0, "child %u failed", i);

        for (unsigned i = 0; i < NPROC; i++)
                got[i] = UID_INVALID;
        f = fdopen(res[0], "r");
        cr_assert_not_null(f);
        while (fgets(buf, sizeof buf, f)) {
                unsigned idx, uid;
                cr_assert_eq(sscanf(buf, "%u %u", &idx, &uid), 2);
                cr_assert_lt(idx, NPROC);
                cr_assert_eq(got[idx], UID_INVALID);
                got[idx] = uid;
        }
        fclose(f);

        for (unsigned i = 0; i < NPROC; i++) {
                cr_assert_neq(got[i], UID_INVALID, "no result from child %u", i);
                cr_assert(got[i] >= R0 && got[i] <= R0 + 999);
                for (unsigned j = 0; j < i; j++)
                        cr_assert_neq(got[i], got[j], "vm-%u and vm-%u both got uid %u", i, j, got[i]);
        }
        /* First fit under the lock: exactly the first NPROC uids. */
        for (unsigned u = 0; u < NPROC; u++) {
                bool found = false;
                for (unsigned i = 0; i < NPROC && !found; i++)
                        found = got[i] == R0 + u;
                cr_assert(found, "uid %u not handed out", R0 + u);
        }

        /* A restart keeps each uid. */
        for (unsigned i = 0; i < NPROC; i++) {
                char id[32];
                bool created = true;
                uid_t u;

                snprintf(id, sizeof id, "vm-%u", i);
                cr_assert_eq(uid_record_read(state_fd, id, &u), 0);
                cr_assert_eq(u, got[i]);
                cr_assert_eq(alloc_ok(id, R0, R0 + 999, UID_INVALID, &created), got[i]);
                cr_assert_not(created);
        }
}

Test(uid, same_vm_concurrently_same_uid, .init = setup, .timeout = 120) {
        int go[2], res[2];
        pid_t pids[16];
        char buf[64];
        unsigned first = 0;
        FILE *f;

        cr_assert_eq(pipe2(go, O_CLOEXEC), 0);
        cr_assert_eq(pipe2(res, O_CLOEXEC), 0);
        for (unsigned i = 0; i < ELEMENTSOF(pids); i++) {
                pids[i] = fork();
                cr_assert_geq(pids[i], 0);
                if (pids[i] == 0) {
                        UidAllocation a;
                        char line[32];
                        int n;

                        close(go[1]);
                        if (read(go[0], line, 1) < 0)
                                _exit(5);
                        if (uid_allocate(state_fd, "web1", R0, R0 + 99, UID_INVALID, &a, NULL) < 0)
                                _exit(3);
                        n = snprintf(line, sizeof line, "%u\n", (unsigned) a.uid);
                        _exit(write(res[1], line, (size_t) n) == n ? 0 : 4);
                }
        }
        close(go[0]);
        close(res[1]);
        close(go[1]);
        for (unsigned i = 0; i < ELEMENTSOF(pids); i++)
                cr_assert_eq(wait_exit(pids[i]), 0);
        f = fdopen(res[0], "r");
        while (fgets(buf, sizeof buf, f)) {
                unsigned u = (unsigned) strtoul(buf, NULL, 10);
                if (!first)
                        first = u;
                cr_assert_eq(u, first);
        }
        fclose(f);
        cr_assert_eq(first, R0);
}

Test(uid, explicit_uids, .init = setup, .timeout = 60) {
        bool created;
        UidAllocation a;
        _cleanup_free_ char *err = NULL;

        cr_assert_eq(alloc_ok("web1", R0, R0 + 99, R0 + 50, &created), R0 + 50);
        cr_assert(created);
        /* honoured again on restart */
        cr_assert_eq(alloc_ok("web1", R0, R0 + 99, R0 + 50, &created), R0 + 50);
        cr_assert_not(created);
        /* taken by another VM: the message names it */
        alloc_fail("web2", R0, R0 + 99, R0 + 50, -EBUSY, "web1");
        /* outside the range */
        alloc_fail("web2", R0, R0 + 99, R0 + 100, -ERANGE, "outside");
        alloc_fail("web2", R0, R0 + 99, R0 - 1, -ERANGE, "uid_range");
        /* auto skips it */
        cr_assert_eq(alloc_ok("web2", R0 + 50, R0 + 99, UID_INVALID, NULL), R0 + 51);
        /* a changed explicit uid rewrites the record and says what it was */
        cr_assert_eq(uid_allocate(state_fd, "web1", R0, R0 + 99, R0 + 60, &a, &err), 0, "%s", strna(err));
        cr_assert_eq(a.uid, R0 + 60);
        cr_assert(a.created);
        cr_assert_eq(a.previous, R0 + 50);
        /* back to auto: the recorded uid is kept */
        cr_assert_eq(alloc_ok("web1", R0, R0 + 99, UID_INVALID, &created), R0 + 60);
        cr_assert_not(created);
        /* a recorded uid outside a narrowed range is an error, not a silent reassignment */
        alloc_fail("web1", R0 + 70, R0 + 99, UID_INVALID, -ERANGE, "restore the range");
        alloc_fail("bad_id", R0, R0 + 99, UID_INVALID, -EINVAL, "not a valid VM id");
        alloc_fail("web3", R0 + 10, R0 + 9, UID_INVALID, -EINVAL, "uid_range");
}

Test(uid, nss_known_ids_skipped, .init = setup, .timeout = 60) {
        struct passwd *pw;
        uid_t known = UID_INVALID;

        /* Any user NSS knows (with a free uid right after it). */
        setpwent();
        while ((pw = getpwent()))
                if (pw->pw_uid > 0 && pw->pw_uid < 60000 && !nss_knows(pw->pw_uid + 1)) {
                        known = pw->pw_uid;
                        break;
                }
        endpwent();
        if (known == UID_INVALID)
                cr_skip_test("no NSS user with a free uid after it");

        cr_assert_eq(alloc_ok("web1", known, known + 1, UID_INVALID, NULL), known + 1);
        alloc_fail("web2", known, known + 1, UID_INVALID, -ENOSPC, "no free uid");
        alloc_fail("web3", known, known + 1, known, -EEXIST, "known to NSS");
        /* reserved ids, whatever NSS says */
        alloc_fail("web4", 65000, 66000, 65534, -EEXIST, "reserved");
}

Test(uid, exhaustion, .init = setup, .timeout = 60) {
        /* VMs recorded outside the range (from an earlier uid_range) do not
         * count as filling it: the message says 2, not 4. */
        cr_assert_eq(alloc_ok("old1", R0 + 100, R0 + 101, UID_INVALID, NULL), R0 + 100);
        cr_assert_eq(alloc_ok("old2", R0 + 100, R0 + 101, UID_INVALID, NULL), R0 + 101);
        cr_assert_eq(alloc_ok("a", R0, R0 + 1, UID_INVALID, NULL), R0);
        cr_assert_eq(alloc_ok("b", R0, R0 + 1, UID_INVALID, NULL), R0 + 1);
        alloc_fail("c", R0, R0 + 1, UID_INVALID, -ENOSPC, "widen uid_range");
        alloc_fail("c", R0, R0 + 1, UID_INVALID, -ENOSPC, "(2 taken by VMs,");
        /* no record was left for the VM that got none */
        cr_assert_eq(uid_record_read(state_fd, "c", &(uid_t) { 0 }), -ENOENT);
}

Test(uid, release_with_state, .init = setup, .timeout = 60) {
        SafeRmReport rep = {};
        _cleanup_free_ char *msg = NULL;
        struct stat st;
        uid_t a, b;

        a = alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL);
        b = alloc_ok("b", R0, R0 + 9, UID_INVALID, NULL);
        cr_assert_eq(a, R0);
        cr_assert_eq(b, R0 + 1);

        /* state with VM-owned files in it */
        cr_assert_eq(safe_mkdir_at(state_fd, "a/drives", 0700, 0, 0, 0, NULL), 1);
        cr_assert_eq(safe_write_file_at(state_fd, "a/drives/root", "x", 1, 0600, a, a, 0), 0);
        cr_assert_eq(vm_state_remove(state_fd, "a", &rep), 1);
        cr_assert_eq(rep.n_refused, 0);
        cr_assert_neq(lstat(S, &st), -1);
        cr_assert_eq(fstatat(state_fd, "a", &st, AT_SYMLINK_NOFOLLOW), -1);
        cr_assert_eq(vm_state_remove(state_fd, "a", &rep), 0);
        /* the uid is free again */
        cr_assert_eq(alloc_ok("c", R0, R0 + 9, UID_INVALID, NULL), R0);

        /* State that cannot be removed keeps its uid recorded: a mount
         * point inside it (removal never crosses one). */
        {
                char mnt[PATH_MAX], victim[PATH_MAX];
                uid_t u;

                snprintf(mnt, sizeof mnt, "%s/b/mnt", S);
                snprintf(victim, sizeof victim, "%s/victim", T);
                cr_assert_eq(mkdir(mnt, 0700), 0);
                cr_assert_eq(mkdir(victim, 0755), 0);
                write_file(pathf_join(victim, "keep"), "keep\n", 0644, 0);
                cr_assert_eq(mount(victim, mnt, NULL, MS_BIND, NULL), 0, "%m");

                cr_assert_eq(vm_state_remove(state_fd, "b", &rep), -EXDEV);
                msg = safe_rm_report_format(&rep, S);
                cr_assert_not_null(msg);
                cr_assert(strstr(msg, "b/mnt: mount point"), "%s", msg);
                cr_assert_eq(uid_record_read(state_fd, "b", &u), 0);
                cr_assert_eq(u, b);
                cr_assert_eq(lstat(pathf_join(victim, "keep"), &st), 0);
                /* so a new VM does not get b's uid */
                cr_assert_eq(alloc_ok("d", R0, R0 + 9, UID_INVALID, NULL), R0 + 2);
                cr_assert_eq(umount2(mnt, MNT_DETACH), 0);
                cr_assert_eq(vm_state_remove(state_fd, "b", NULL), 1);
                cr_assert_eq(uid_record_read(state_fd, "b", &u), -ENOENT);
        }
        safe_rm_report_done(&rep);

        /* uid_release(): just the record */
        cr_assert_eq(uid_release(state_fd, "d"), 1);
        cr_assert_eq(uid_release(state_fd, "d"), 0);
        cr_assert_eq(uid_release(state_fd, "never"), 0);
}

static void write_at(const char *rel, const char *content) {
        write_file(pathf_join(S, rel), content, 0644, 0);
}

Test(uid, fail_closed_on_bad_records, .init = setup, .timeout = 60) {
        uid_t u;

        cr_assert_eq(alloc_ok("good", R0, R0 + 9, UID_INVALID, NULL), R0);
        /* a corrupt record of another VM blocks allocation, naming it */
        cr_assert_eq(mkdir(pathf_join(S, "broken"), 0700), 0);
        write_at("broken/uid", "3000000001 oops\n");
        cr_assert_eq(uid_record_read(state_fd, "broken", &u), -EBADMSG);
        alloc_fail("new", R0, R0 + 9, UID_INVALID, -EBADMSG, "broken/uid");
        /* ... and the broken VM itself cannot start. A restart of a VM with
         * a good record is not blocked by it: the uid index says good's uid
         * is good's alone (whatever broken's record says, broken cannot run
         * with it), so a restart reads no other VM's record. */
        alloc_fail("broken", R0, R0 + 9, UID_INVALID, -EBADMSG, "broken/uid");
        cr_assert_eq(alloc_ok("good", R0, R0 + 9, UID_INVALID, NULL), R0);
        cr_assert_eq(unlink(pathf_join(S, "broken/uid")), 0);

        /* a record that is a symlink is refused, not followed */
        cr_assert_eq(symlink(pathf_join(S, "good/uid"), pathf_join(S, "broken/uid")), 0);
        cr_assert_eq(uid_record_read(state_fd, "broken", &u), -ELOOP);
        alloc_fail("new", R0, R0 + 9, UID_INVALID, -ELOOP, "broken/uid");
        cr_assert_eq(unlink(pathf_join(S, "broken/uid")), 0);

        /* entries that are not VM state dirs are ignored: files, symlinks,
         * dirs without a record, names that are no VM id */
        write_at("images", "not a dir");
        cr_assert_eq(symlink("/", pathf_join(S, "link")), 0);
        cr_assert_eq(mkdir(pathf_join(S, "Not_An_Id"), 0700), 0);
        write_at("Not_An_Id/uid", "garbage");
        cr_assert_eq(alloc_ok("new", R0, R0 + 9, UID_INVALID, NULL), R0 + 1);

        /* two VMs recorded with one uid (broken's record hand-edited to
         * good's): broken's start refuses, naming good; good keeps it */
        write_at("broken/uid", "3000000000\n");
        alloc_fail("broken", R0, R0 + 9, UID_INVALID, -EBUSY, "also recorded for VM good");
        cr_assert_eq(alloc_ok("good", R0, R0 + 9, UID_INVALID, NULL), R0);
        /* ... and with the index gone too (rebuilt from the records: the
         * first record read gets the entry, the other start refuses) */
        cr_assert_eq(safe_rm_rf_at(state_fd, ".uids", 0, NULL, NULL), 1);
        {
                _cleanup_free_ char *e1 = NULL, *e2 = NULL;
                UidAllocation a1 = {}, a2 = {};
                int r1 = uid_allocate(state_fd, "good", R0, R0 + 9, UID_INVALID, &a1, &e1);
                int r2 = uid_allocate(state_fd, "broken", R0, R0 + 9, UID_INVALID, &a2, &e2);
                cr_assert((r1 == 0) != (r2 == 0), "exactly one of two VMs sharing a uid starts (%d %s, %d %s)", r1,
                          strna(e1), r2, strna(e2));
                cr_assert(r1 == -EBUSY || r2 == -EBUSY);
        }

        /* a symlinked own state dir: the allocation refuses to write through it */
        cr_assert_eq(symlink(T, pathf_join(S, "evil")), 0);
        alloc_fail("evil", R0, R0 + 9, UID_INVALID, -ELOOP, "evil");
}

Test(uid, lock_file_checks, .init = setup, .timeout = 60) {
        int lock = -1;

        cr_assert_eq(uid_alloc_lock(state_fd, &lock), 0);
        close(lock);
        cr_assert_eq(unlink(pathf_join(S, STATE_LOCK_FILE)), 0);
        cr_assert_eq(symlink(pathf_join(T, "elsewhere"), pathf_join(S, STATE_LOCK_FILE)), 0);
        cr_assert_eq(uid_alloc_lock(state_fd, &lock), -ELOOP);
        alloc_fail("a", R0, R0 + 9, UID_INVALID, -ELOOP, STATE_LOCK_FILE);
        cr_assert_eq(access(pathf_join(T, "elsewhere"), F_OK), -1, "created through the symlink");
}

Test(uid, untrusted_state_dir, .init = setup, .timeout = 60) {
        _cleanup_free_ char *err = NULL;
        int fd = -1;

        cr_assert_eq(symlink(S, pathf_join(T, "state-link")), 0);
        cr_assert_eq(safe_root_open(pathf_join(T, "state-link"), 0, 0, &fd, &err), -ELOOP);
        cr_assert(strstr(err, "state-link"), "%s", err);
        free(err);
        err = NULL;
        cr_assert_eq(chmod(pathf_join(T, "var/lib"), 0775), 0);
        cr_assert_eq(safe_root_open(S, 0, 0, &fd, &err), -EPERM);
        cr_assert(strstr(err, "var/lib\" is group-writable"), "%s", err);
}

PRIV_TEST_MAIN

/* The uid index (<state_dir>/.uids/<uid> -> id) follows the records: built
 * from them when missing, an entry per allocation, gone with the record;
 * stale entries are replaced when their uid is asked for, and a record
 * without an entry is noticed. */
static bool index_names(uid_t u, const char *id) {
        char name[PATH_MAX], target[128];
        ssize_t n;

        snprintf(name, sizeof name, "%s/.uids/%u", S, (unsigned) u);
        n = readlink(name, target, sizeof target - 1);
        if (n < 0)
                return false;
        target[n] = '\0';
        return streq(target, id);
}

Test(uid, index_follows_records, .init = setup, .timeout = 60) {
        uid_t u;

        cr_assert_eq(alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL), R0);
        cr_assert_eq(alloc_ok("b", R0, R0 + 9, UID_INVALID, NULL), R0 + 1);
        cr_assert(index_names(R0, "a") && index_names(R0 + 1, "b"));

        /* uid = N moves the entry */
        cr_assert_eq(alloc_ok("b", R0, R0 + 9, R0 + 5, NULL), R0 + 5);
        cr_assert(index_names(R0 + 5, "b") && !index_names(R0 + 1, "b"));

        /* an index that is gone is rebuilt from the records */
        cr_assert_eq(safe_rm_rf_at(state_fd, ".uids", 0, NULL, NULL), 1);
        cr_assert_eq(alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL), R0);
        cr_assert(index_names(R0, "a") && index_names(R0 + 5, "b"));
        /* ... and so is an unfinished one left by a crash */
        cr_assert_eq(rename(pathf_join(S, ".uids"), pathf_join(S, ".uids.new")), 0);
        cr_assert_eq(alloc_ok("c", R0, R0 + 9, UID_INVALID, NULL), R0 + 1);
        cr_assert(index_names(R0, "a") && index_names(R0 + 5, "b") && index_names(R0 + 1, "c"));
        cr_assert_eq(access(pathf_join(S, ".uids.new"), F_OK), -1);

        /* a record written by hand, without an entry: its VM starts (all
         * records read), gets its entry, and nobody else gets its uid */
        cr_assert_eq(mkdir(pathf_join(S, "hand"), 0700), 0);
        write_file(pathf_join(S, "hand/uid"), "3000000002\n", 0644, 0);
        cr_assert_eq(alloc_ok("hand", R0, R0 + 9, UID_INVALID, NULL), R0 + 2);
        cr_assert(index_names(R0 + 2, "hand"));
        cr_assert_eq(mkdir(pathf_join(S, "hand2"), 0700), 0);
        write_file(pathf_join(S, "hand2/uid"), "3000000003\n", 0644, 0);
        cr_assert_eq(alloc_ok("d", R0, R0 + 9, UID_INVALID, NULL), R0 + 4, "a new uid skips hand2's unindexed record");

        /* state removed by hand: its entry is stale, no reservation; the
         * next new uid sweeps it, so the uid is handed out again, by number
         * or as the lowest free one */
        cr_assert_eq(safe_rm_rf_at(state_fd, "c", 0, NULL, NULL), 1);
        cr_assert(index_names(R0 + 1, "c"));
        cr_assert_eq(alloc_ok("f", R0, R0 + 9, R0 + 1, NULL), R0 + 1);
        cr_assert(index_names(R0 + 1, "f"));
        cr_assert_eq(safe_rm_rf_at(state_fd, "f", 0, NULL, NULL), 1);
        cr_assert_eq(alloc_ok("e", R0, R0 + 9, UID_INVALID, NULL), R0 + 1);
        cr_assert(index_names(R0 + 1, "e"));
        cr_assert_eq(alloc_ok("f", R0, R0 + 9, R0 + 6, NULL), R0 + 6);

        /* a stale entry naming another VM under a restart's uid is replaced */
        cr_assert_eq(unlink(pathf_join(S, ".uids/3000000000")), 0);
        cr_assert_eq(symlink("gone", pathf_join(S, ".uids/3000000000")), 0);
        cr_assert_eq(alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL), R0);
        cr_assert(index_names(R0, "a"));

        /* the entry goes with the record */
        cr_assert_eq(vm_state_remove(state_fd, "a", NULL), 1);
        cr_assert(!index_names(R0, "a"));
        cr_assert_eq(access(pathf_join(S, ".uids/3000000000"), F_OK), -1);
        cr_assert_eq(uid_release(state_fd, "e"), 1);
        cr_assert_eq(access(pathf_join(S, ".uids/3000000001"), F_OK), -1);
        cr_assert_eq(uid_record_read(state_fd, "b", &u), 0);
        cr_assert(index_names(u, "b"));
}

/* The index's entries, counted, and those naming id. */
static unsigned index_count(const char *id, unsigned *ret_naming) {
        char dir[PATH_MAX];
        struct dirent *de;
        unsigned n = 0, naming = 0;
        DIR *d;

        snprintf(dir, sizeof dir, "%s/.uids", S);
        d = opendir(dir);
        cr_assert_not_null(d, "%s: %m", dir);
        while ((de = readdir(d))) {
                char target[128];
                ssize_t k;

                if (de->d_name[0] == '.')
                        continue;
                n++;
                k = readlinkat(dirfd(d), de->d_name, target, sizeof target - 1);
                if (k > 0) {
                        target[k] = '\0';
                        if (id && streq(target, id))
                                naming++;
                }
        }
        closedir(d);
        if (ret_naming)
                *ret_naming = naming;
        return n;
}

/* One allocation in a child that SIGKILLs itself at the injection point
 * between the index entry and the record (MICROVM_TEST_KILL_AT). */
static void alloc_killed(const char *id, uid_t min, uid_t max) {
        int status;
        pid_t pid;

        pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
                _cleanup_free_ char *err = NULL;
                UidAllocation a;
                int fd = -1;

                if (setenv("MICROVM_TEST_KILL_AT", "uid-index-written", 1) < 0 ||
                    safe_root_open(S, 0, 0, &fd, &err) < 0)
                        _exit(2);
                if (uid_allocate(fd, id, min, max, UID_INVALID, &a, &err) < 0) {
                        fprintf(stderr, "%s: %s\n", id, strna(err));
                        _exit(3);
                }
                _exit(0); /* the hook did not fire */
        }
        cr_assert_eq(waitpid(pid, &status, 0), pid);
        cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "the allocation for %s was not killed at uid-index-written (status 0x%x)", id, status);
}

/* issue 21.1: a first start SIGKILLed between writing the index entry and
 * the record, again and again, for the same VM and for VMs never started
 * again (their config and state removed): no uid is lost. */
Test(uid, killed_between_entry_and_record, .init = setup, .timeout = 120) {
        if (!priv_test_hooks_built())
                cr_skip_test("needs a build with -Dtest-hooks=true (the injection point uid-index-written)");
        const unsigned rounds = 20;
        unsigned naming, n;
        uid_t got;

        cr_assert_eq(alloc_ok("a", R0, R0 + 99, UID_INVALID, NULL), R0);
        for (unsigned i = 0; i < rounds; i++) {
                char other[32];

                /* the same VM's first start, killed again */
                alloc_killed("k", R0, R0 + 99);
                cr_assert_eq(uid_record_read(state_fd, "k", &got), -ENOENT, "k has a record after the kill");
                (void) index_count("k", &naming);
                cr_assert_geq(naming, 1, "the kill did not land after the index entry");
                /* another VM killed there, never started again (its
                 * state dir, if the kill left one, removed) */
                snprintf(other, sizeof other, "gone-%u", i);
                alloc_killed(other, R0, R0 + 99);
                cr_assert_geq(safe_rm_rf_at(state_fd, other, 0, NULL, NULL), 0);
        }
        got = alloc_ok("k", R0, R0 + 99, UID_INVALID, NULL);
        cr_assert_eq(got, R0 + 1, "after %u killed first starts of k and %u of other VMs, k got uid %u: %u uids lost",
                     rounds, rounds, (unsigned) got, (unsigned) (got - (R0 + 1)));
        cr_assert_eq(alloc_ok("new", R0, R0 + 99, UID_INVALID, NULL), R0 + 2, "a new VM skipped withheld uids");
        n = index_count("k", &naming);
        cr_assert_eq(naming, 1, "k has %u index entries", naming);
        cr_assert_eq(n, 3, "the index has %u entries for 3 VMs", n);
}

/* issue 12.7: a VM's config and state removed by hand, index entry left:
 * the next VM gets that uid. */
Test(uid, state_removed_by_hand_frees_uid, .init = setup, .timeout = 60) {
        unsigned naming;

        cr_assert_eq(alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL), R0);
        cr_assert_eq(alloc_ok("b", R0, R0 + 9, UID_INVALID, NULL), R0 + 1);
        cr_assert_eq(safe_rm_rf_at(state_fd, "b", 0, NULL, NULL), 1);
        cr_assert_eq(alloc_ok("c", R0, R0 + 9, UID_INVALID, NULL), R0 + 1, "b's uid is still withheld");
        (void) index_count("b", &naming);
        cr_assert_eq(naming, 0, "b's stale entry was not swept");
        cr_assert_eq(alloc_ok("a", R0, R0 + 9, UID_INVALID, NULL), R0);
}
