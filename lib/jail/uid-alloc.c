/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <sys/file.h>

#include "util.h"
#include "names.h"
#include "parse-util.h"
#include "test-hook.h"
#include "uid-alloc.h"

#define UID_RECORD_MAX 32
#define SUBID_FILE_MAX (16U * 1024 * 1024)
#define SUBUID_PATH "/etc/subuid"
#define SUBGID_PATH "/etc/subgid"
/* "nobody" and the 16-bit "-1": never a VM's uid, whatever NSS says. */
#define UID_NOBODY ((uid_t) 65534)
#define UID_INVALID16 ((uid_t) 65535)

/* ---- pure ------------------------------------------------------------------ */

int uid_record_parse(const char *text, size_t size, uid_t *ret) {
        char buf[UID_RECORD_MAX];
        uint32_t v;

        if (size == 0 || size >= sizeof buf || memchr(text, '\0', size))
                return -EBADMSG;
        memcpy(buf, text, size);
        buf[size] = '\0';
        if (buf[size - 1] == '\n')
                buf[size - 1] = '\0';
        if (parse_u32(buf, &v) < 0 || v == 0 || v == (uint32_t) UID_INVALID)
                return -EBADMSG;
        *ret = (uid_t) v;
        return 0;
}

static int cmp_owner(const void *a, const void *b) {
        const UidOwner *x = a, *y = b;
        return x->uid < y->uid ? -1 : x->uid > y->uid;
}

uid_t uid_owners_sort(UidOwner *owners, size_t n) {
        if (n == 0)
                return UID_INVALID;
        qsort(owners, n, sizeof *owners, cmp_owner);
        for (size_t i = 1; i < n; i++)
                if (owners[i].uid == owners[i - 1].uid)
                        return owners[i].uid;
        return UID_INVALID;
}

static const UidOwner *find_owner(const UidOwner *taken, size_t n, uid_t uid) {
        UidOwner key = { .uid = uid };

        if (n == 0)
                return NULL;
        return bsearch(&key, taken, n, sizeof *taken, cmp_owner);
}

int uid_pick(uid_t min, uid_t max, const UidOwner *taken, size_t n_taken, uid_t wanted, UidInUseFunc in_use,
             void *userdata, uid_t *ret, const UidOwner **ret_owner) {
        size_t i = 0;
        int r;

        if (min == 0 || min > max || max == UID_INVALID)
                return -EINVAL;

        if (wanted != UID_INVALID) {
                const UidOwner *o;

                if (wanted < min || wanted > max)
                        return -ERANGE;
                o = find_owner(taken, n_taken, wanted);
                if (o) {
                        if (ret_owner)
                                *ret_owner = o;
                        return -EBUSY;
                }
                if (wanted == UID_NOBODY || wanted == UID_INVALID16)
                        return -EEXIST;
                if (in_use) {
                        r = in_use(wanted, userdata);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                return -EEXIST;
                }
                *ret = wanted;
                return 0;
        }

        /* First fit: the lowest uid nobody has. taken[] is sorted, so one
         * pass over it alongside the candidates. */
        for (uint64_t u = min; u <= max; u++) {
                while (i < n_taken && taken[i].uid < u)
                        i++;
                if (i < n_taken && taken[i].uid == u)
                        continue;
                if (u == UID_NOBODY || u == UID_INVALID16)
                        continue;
                if (in_use) {
                        r = in_use((uid_t) u, userdata);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                continue;
                }
                *ret = (uid_t) u;
                return 0;
        }
        return -ENOSPC;
}

int subid_ranges_parse(const char *text, SubidRange **ret, size_t *ret_n) {
        _cleanup_free_ SubidRange *v = NULL;
        size_t n = 0, allocated = 0;

        for (const char *line = text; line && *line;) {
                const char *end = strchrnul(line, '\n');
                char buf[512], *first, *count;
                size_t l = (size_t) (end - line);
                uint64_t f, c;

                if (l > 0 && l < sizeof buf && line[0] != '#') {
                        memcpy(buf, line, l);
                        buf[l] = '\0';
                        /* name:first:count — name may be a user name or uid */
                        first = strchr(buf, ':');
                        count = first ? strchr(first + 1, ':') : NULL;
                        if (first && count && !strchr(count + 1, ':')) {
                                *first++ = '\0';
                                *count++ = '\0';
                                if (buf[0] != '\0' && parse_u64(first, &f) >= 0 && parse_u64(count, &c) >= 0 &&
                                    c > 0) {
                                        if (greedy_realloc((void **) &v, &allocated, n + 1, sizeof *v) < 0)
                                                return -ENOMEM;
                                        v[n++] = (SubidRange) { .first = f, .count = c };
                                }
                        }
                }
                line = *end ? end + 1 : NULL;
        }
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

bool subid_ranges_contain(const SubidRange *r, size_t n, uid_t uid) {
        for (size_t i = 0; i < n; i++)
                if (uid >= r[i].first && (uint64_t) uid - r[i].first < r[i].count)
                        return true;
        return false;
}

/* ---- impure ------------------------------------------------------------------ */

static int load_subids(const char *path, SubidRange **ret, size_t *ret_n, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *data = NULL, *err = NULL;
        struct stat st;
        size_t done = 0;
        int r;

        /* Same trust rule as for our own directories: a subuid file that
         * anyone but root can write says nothing. */
        r = safe_root_open(path, SAFE_ROOT_REGULAR, 0, &fd, &err);
        if (r == -ENOENT) {
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        if (r < 0)
                return error_setf(ret_error, r, "Cannot read %s: %s", path, strna(err));
        if (fstat(fd, &st) < 0)
                return error_setf(ret_error, -errno, "Cannot stat %s: %m", path);
        if ((uint64_t) st.st_size > SUBID_FILE_MAX)
                return error_setf(ret_error, -EFBIG, "%s is larger than %u bytes", path, SUBID_FILE_MAX);
        data = malloc((size_t) st.st_size + 1);
        if (!data)
                return -ENOMEM;
        while (done < (size_t) st.st_size) {
                ssize_t k = read(fd, data + done, (size_t) st.st_size - done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return error_setf(ret_error, -errno, "Cannot read %s: %m", path);
                }
                if (k == 0)
                        break;
                done += (size_t) k;
        }
        data[done] = '\0';
        return subid_ranges_parse(data, ret, ret_n);
}

typedef struct InUseCtx {
        SubidRange *subuid, *subgid;
        size_t n_subuid, n_subgid;
        int nss_error;          /* the errno of a failed lookup, for the message */
} InUseCtx;

static int nss_lookup(uid_t uid, bool group) {
        long hint = sysconf(group ? _SC_GETGR_R_SIZE_MAX : _SC_GETPW_R_SIZE_MAX);
        size_t size = hint > 0 ? (size_t) hint : 4096;

        for (;;) {
                _cleanup_free_ char *buf = malloc(size);
                int r;

                if (!buf)
                        return -ENOMEM;
                if (group) {
                        struct group gr, *res = NULL;
                        r = getgrgid_r((gid_t) uid, &gr, buf, size, &res);
                        if (r == 0 && res)
                                return 1;
                } else {
                        struct passwd pw, *res = NULL;
                        r = getpwuid_r(uid, &pw, buf, size, &res);
                        if (r == 0 && res)
                                return 1;
                }
                if (r == ERANGE && size < 1024 * 1024) {
                        size *= 2;
                        continue;
                }
                /* "Not found" is 0 with no result; some modules say ENOENT
                 * or ESRCH. Anything else (EPERM from a seccomp filter,
                 * EIO, EAGAIN from an unreachable daemon) means we do not
                 * know: fail closed. */
                if (r == 0 || r == ENOENT || r == ESRCH)
                        return 0;
                return -r;
        }
}

static int uid_in_use(uid_t uid, void *userdata) {
        InUseCtx *c = userdata;
        int r;

        if (subid_ranges_contain(c->subuid, c->n_subuid, uid) || subid_ranges_contain(c->subgid, c->n_subgid, uid))
                return 1;
        r = nss_lookup(uid, false);
        if (r == 0)
                r = nss_lookup(uid, true);
        if (r < 0) {
                c->nss_error = -r;
                return -EIO;
        }
        return r;
}

static const char *in_use_reason(InUseCtx *c, uid_t uid) {
        if (uid == UID_NOBODY || uid == UID_INVALID16)
                return "is reserved (nobody, or the 16-bit -1)";
        if (subid_ranges_contain(c->subuid, c->n_subuid, uid))
                return "is inside a subordinate uid range in " SUBUID_PATH " (containers of another user run as it)";
        if (subid_ranges_contain(c->subgid, c->n_subgid, uid))
                return "is inside a subordinate gid range in " SUBGID_PATH;
        if (nss_lookup(uid, false) > 0)
                return "is a user known to NSS (getpwuid)";
        return "is a group known to NSS (getgrgid)";
}

int uid_alloc_lock(int state_fd, int *ret_lock_fd) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        /* The state dir is trusted (safe_root_open): only root creates
         * entries in it. O_NOFOLLOW and the checks below are for mistakes,
         * not attackers. */
        fd = openat(state_fd, STATE_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
                    0600);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if (st.st_uid != 0)
                return -EPERM;
        if (st.st_nlink != 1)
                return -EMLINK;
        /* flock(): per open file description, so every caller opens its own
         * and concurrent processes (or threads) exclude each other. */
        while (flock(fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        *ret_lock_fd = TAKE_FD(fd);
        return 0;
}

static void record_path(const char *id, char buf[static VM_ID_MAX + 2 + sizeof(STATE_UID_FILE)]) {
        snprintf(buf, VM_ID_MAX + 2 + sizeof(STATE_UID_FILE), "%s/%s", id, STATE_UID_FILE);
}

int uid_record_read(int state_fd, const char *id, uid_t *ret) {
        char path[VM_ID_MAX + 2 + sizeof(STATE_UID_FILE)];
        _cleanup_free_ char *data = NULL;
        size_t size;
        int r;

        if (!vm_id_valid(id))
                return -EINVAL;
        record_path(id, path);
        r = safe_read_root_file_at(state_fd, path, UID_RECORD_MAX, &data, &size);
        if (r == -EFBIG)
                return -EBADMSG;
        if (r < 0)
                return r;
        return uid_record_parse(data, size, ret);
}

/* ---- the uid index ------------------------------------------------------------ */

/* <state_dir>/.uids/<uid> is a symlink (never followed, only read) whose
 * target is the id of the VM whose record names that uid. It lets a restart
 * check one entry instead of reading every other VM's record (about 12 µs
 * per VM, so 12 ms with a thousand VMs, all under the exclusive lock that
 * concurrent starts queue on), and an allocation list the taken uids with
 * one directory read.
 *
 * The records stay the truth; the index follows them, under the lock: an
 * entry is created before a record names its uid and removed after the
 * record is gone, so every recorded uid has its entry. An entry is checked
 * against its VM's record wherever a conflict would be reported. An entry
 * whose VM records another uid or none is no reservation: a kill between
 * the entry and the record of a first start, or state removed by hand,
 * leaves one. Every allocation of a new uid reads every record anyway, and
 * then removes each such entry (index_sweep()), so none withholds its uid
 * for longer than until the next new uid is handed out; a restart replaces
 * one it finds under its own uid. A missing entry (a record written by
 * hand) sends the restart back to reading every record. The index is built from the records when it does
 * not exist (first run after an upgrade, or removed): into .uids.new,
 * renamed into place once complete. */
#define UID_INDEX_DIR ".uids"
#define UID_INDEX_NEW ".uids.new"

/* An entry's name: the uid in decimal. */
typedef struct IndexName {
        char s[16];
} IndexName;

static IndexName index_name(uid_t uid) {
        IndexName n;

        snprintf(n.s, sizeof n.s, "%u", (unsigned) uid);
        return n;
}

static int index_owner(int index_fd, uid_t uid, char owner[static VM_ID_MAX + 1]) {
        char target[VM_ID_MAX + 2];
        ssize_t n;

        n = readlinkat(index_fd, index_name(uid).s, target, sizeof target);
        if (n < 0)
                return errno == EINVAL ? -EBADMSG : -errno; /* EINVAL: not a symlink */
        if ((size_t) n >= sizeof target)
                return -EBADMSG;
        target[n] = '\0';
        if (!vm_id_valid(target))
                return -EBADMSG;
        strcpy(owner, target);
        return 0;
}

/* Whether VM owner's record still names uid. */
static bool record_names(int state_fd, const char *owner, uid_t uid) {
        uid_t u;

        return uid_record_read(state_fd, owner, &u) >= 0 && u == uid;
}

/* uid -> id. -EEXIST when the entry names another VM. */
static int index_add(int index_fd, uid_t uid, const char *id) {
        char owner[VM_ID_MAX + 1];
        int r;

        if (symlinkat(id, index_fd, index_name(uid).s) >= 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        r = index_owner(index_fd, uid, owner);
        if (r < 0)
                return r;
        return streq(owner, id) ? 0 : -EEXIST;
}

static int index_unlink(int index_fd, uid_t uid) {
        if (unlinkat(index_fd, index_name(uid).s, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* Replaces an entry that names another VM (only after record_names() said
 * that VM no longer records the uid). */
static int index_replace(int index_fd, uid_t uid, const char *id) {
        int r = index_unlink(index_fd, uid);

        return r < 0 ? r : index_add(index_fd, uid, id);
}

/* Removes uid's entry if it names id. */
static int index_remove(int index_fd, uid_t uid, const char *id) {
        char owner[VM_ID_MAX + 1];
        int r;

        r = index_owner(index_fd, uid, owner);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        return streq(owner, id) ? index_unlink(index_fd, uid) : 0;
}

static int scan_records(int state_fd, const char *self, UidOwner **ret, size_t *ret_n, char **ret_error);

/* Builds the index from every record, into UID_INDEX_NEW, renamed into
 * place once complete. Under the lock. */
static int index_build(int state_fd, char **ret_error) {
        _cleanup_free_ UidOwner *all = NULL;
        _cleanup_close_ int nfd = -EBADF;
        size_t n = 0;
        int r;

        r = scan_records(state_fd, "", &all, &n, ret_error);
        if (r < 0)
                return r;
        r = safe_rm_rf_at(state_fd, UID_INDEX_NEW, 0, NULL, NULL);
        if (r < 0 && r != -ENOENT)
                return error_setf(ret_error, r, "Cannot remove the unfinished uid index %s: %s", UID_INDEX_NEW,
                                  strerror(-r));
        r = safe_mkdir_at(state_fd, UID_INDEX_NEW, 0700, 0, 0, 0, &nfd);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot create the uid index %s: %s", UID_INDEX_NEW, strerror(-r));
        for (size_t i = 0; i < n; i++) {
                /* Two records naming one uid: the first gets the entry; the
                 * other VM's start finds the conflict (record_names()). */
                r = index_add(nfd, all[i].uid, all[i].id);
                if (r < 0 && r != -EEXIST)
                        return error_setf(ret_error, r, "Cannot write the uid index: %s", strerror(-r));
        }
        if (renameat(state_fd, UID_INDEX_NEW, state_fd, UID_INDEX_DIR) < 0)
                return error_setf(ret_error, -errno, "Cannot put the uid index %s in place: %m", UID_INDEX_DIR);
        return 0;
}

/* Opens the index, building it first if it does not exist. Under the lock. */
static int index_open(int state_fd, int *ret_fd, char **ret_error) {
        int r;

        r = safe_open_dir_at(state_fd, UID_INDEX_DIR, ret_fd);
        if (r == -ENOENT) {
                r = index_build(state_fd, ret_error);
                if (r < 0)
                        return r;
                r = safe_open_dir_at(state_fd, UID_INDEX_DIR, ret_fd);
        }
        if (r < 0)
                return error_setf(ret_error, r, "Cannot open the uid index %s in the state directory: %s",
                                  UID_INDEX_DIR, strerror(-r));
        return 0;
}

/* Whether VM id's record names uid, per records[] (sorted by uid). */
static bool records_name(const UidOwner *records, size_t n, uid_t uid, const char *id) {
        const UidOwner *o = find_owner(records, n, uid);

        if (!o)
                return false;
        /* bsearch() finds one of the records naming uid (two VMs sharing a
         * uid is refused at their start, not here): look at all of them. */
        while (o > records && o[-1].uid == uid)
                o--;
        for (; o < records + n && o->uid == uid; o++)
                if (streq(o->id, id))
                        return true;
        return false;
}

/* Removes every entry that is no reservation: its VM's record (records[],
 * every VM but self, sorted by uid; self_uid for self) names another uid or
 * none, or the entry is not a symlink to a VM id. Under the lock, after
 * every record was read. Returns the number removed. */
static int index_sweep(int index_fd, const UidOwner *records, size_t n, const char *self, uid_t self_uid,
                       char **ret_error) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int fd, removed = 0, r;

        fd = openat(index_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return error_setf(ret_error, -errno, "Cannot read the uid index: %m");
        d = fdopendir(fd);
        if (!d) {
                safe_close(fd);
                return error_setf(ret_error, -errno, "Cannot read the uid index: %m");
        }
        while ((errno = 0, de = readdir(d))) {
                char owner[VM_ID_MAX + 1];
                uint32_t u;

                if (de->d_name[0] == '.' || parse_u32(de->d_name, &u) < 0 || u == 0 || u == UID_INVALID)
                        continue;
                r = index_owner(index_fd, (uid_t) u, owner);
                if (r == -ENOENT)
                        continue;
                if (r < 0 && r != -EBADMSG)
                        return error_setf(ret_error, r, "Cannot read the uid index entry %s: %s", de->d_name,
                                          strerror(-r));
                if (r == 0 && (streq(owner, self) ? self_uid == (uid_t) u
                                                  : records_name(records, n, (uid_t) u, owner)))
                        continue;
                r = index_unlink(index_fd, (uid_t) u);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot remove the stale uid index entry %s: %s",
                                          de->d_name, strerror(-r));
                removed++;
        }
        if (errno > 0)
                return error_setf(ret_error, -errno, "Cannot read the uid index: %m");
        return removed;
}

/* Every other VM's recorded uid. A directory without a record is not a VM
 * (or not yet); a record we cannot read is an error: its uid might be
 * handed out twice otherwise. */
static int scan_records(int state_fd, const char *self, UidOwner **ret, size_t *ret_n, char **ret_error) {
        _cleanup_free_ UidOwner *v = NULL;
        size_t n = 0, allocated = 0;
        struct dirent *de;
        DIR *d;
        int fd, r = 0;

        fd = openat(state_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return error_setf(ret_error, -errno, "Cannot open the state directory: %m");
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                safe_close(fd);
                return error_setf(ret_error, r, "Cannot read the state directory: %s", strerror(-r));
        }

        for (;;) {
                struct stat st;
                uid_t u;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                r = error_setf(ret_error, -errno, "Cannot read the state directory: %m");
                        break;
                }
                if (!vm_id_valid(de->d_name) || streq(de->d_name, self))
                        continue;
                if (fstatat(state_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                r = uid_record_read(state_fd, de->d_name, &u);
                if (r == -ENOENT) {
                        r = 0;
                        continue;
                }
                if (r < 0) {
                        r = error_setf(ret_error, r == -EBADMSG ? -EBADMSG : r,
                                       "The uid record %s/%s of VM %s in the state directory is unreadable or "
                                       "corrupt (%s); refusing to allocate uids until it is fixed or removed",
                                       de->d_name, STATE_UID_FILE, de->d_name, strerror(-r));
                        break;
                }
                if (greedy_realloc((void **) &v, &allocated, n + 1, sizeof *v) < 0) {
                        r = -ENOMEM;
                        break;
                }
                v[n].uid = u;
                /* vm_id_valid(): at most VM_ID_MAX bytes */
                memcpy(v[n].id, de->d_name, strlen(de->d_name) + 1);
                n++;
        }
        closedir(d);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(v);
        *ret_n = n;
        return 0;
}

static int write_record(int state_fd, const char *id, uid_t uid, char **ret_error) {
        char path[VM_ID_MAX + 2 + sizeof(STATE_UNLAUNCHED_FILE)], buf[16];
        bool new_dir;
        int r, n;

        new_dir = faccessat(state_fd, id, F_OK, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT;
        r = safe_mkdir_at(state_fd, id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot create the state directory of VM %s: %s", id, strerror(-r));
        if (new_dir) {
                /* A brand-new VM: nothing of its uid has run yet. Before the
                 * record, so that no new record is ever without it (see
                 * lib/vm/vm-first-run.h, which moves it on). */
                snprintf(path, sizeof path, "%s/%s", id, STATE_UNLAUNCHED_FILE);
                r = safe_write_file_at(state_fd, path, "", 0, 0644, 0, 0, SAFE_WRITE_REPLACE | SAFE_WRITE_SYNC);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot write %s in the state directory: %s", path,
                                          strerror(-r));
        }
        record_path(id, path);
        n = snprintf(buf, sizeof buf, "%u\n", (unsigned) uid);
        r = safe_write_file_at(state_fd, path, buf, (size_t) n, 0644, 0, 0, SAFE_WRITE_REPLACE | SAFE_WRITE_SYNC);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot write the uid record %s in the state directory: %s", path,
                                  strerror(-r));
        return 0;
}

static int nss_fail(char **ret_error, const InUseCtx *c, uid_t uid) {
        return error_setf(ret_error, -EIO,
                          "Looking up uid %u in NSS (getpwuid/getgrgid) failed: %s. Allocation needs working NSS "
                          "lookups: run it before any seccomp filter or chroot",
                          (unsigned) uid, strerror(c->nss_error ?: EIO));
}

/* The restart path: VM id keeps its recorded uid cur if no other VM
 * records it (one index entry, or every record when the entry is missing)
 * and nobody else (NSS, subordinate ranges) has it. */
static int keep_recorded(int state_fd, int index_fd, const char *id, uid_t cur, InUseCtx *ctx, char **ret_error) {
        _cleanup_free_ UidOwner *taken = NULL;
        char owner[VM_ID_MAX + 1];
        const char *other = NULL;
        int r;

        r = index_owner(index_fd, cur, owner);
        if (r == 0 && streq(owner, id))
                other = NULL; /* ours alone: every recorded uid has its entry */
        else if (r == 0)
                /* another VM's entry: a conflict, or stale (that VM moved on) */
                other = record_names(state_fd, owner, cur) ? owner : NULL;
        else if (r == -ENOENT || r == -EBADMSG) {
                /* Not indexed (a record written by hand?): read them all. */
                const UidOwner *o;
                size_t n = 0;

                r = scan_records(state_fd, id, &taken, &n, ret_error);
                if (r < 0)
                        return r;
                (void) uid_owners_sort(taken, n);
                o = find_owner(taken, n, cur);
                other = o ? o->id : NULL;
                strcpy(owner, ""); /* the entry is to be made */
        } else
                return error_setf(ret_error, r, "Cannot read the uid index for VM %s: %s", id, strerror(-r));

        if (other)
                return error_setf(ret_error, -EBUSY,
                                  "uid %u of VM %s is also recorded for VM %s: two VMs must never share a uid; "
                                  "remove the state of one of them",
                                  (unsigned) cur, id, other);
        if (!streq(owner, id)) {
                r = index_replace(index_fd, cur, id);
                if (r < 0)
                        return error_setf(ret_error, r, "Cannot update the uid index for VM %s: %s", id,
                                          strerror(-r));
        }

        r = cur == UID_NOBODY || cur == UID_INVALID16 ? 1 : uid_in_use(cur, ctx);
        if (r == -EIO)
                return nss_fail(ret_error, ctx, cur);
        if (r < 0)
                return r;
        if (r > 0)
                return error_setf(ret_error, -EEXIST,
                                  "uid %u recorded for VM %s %s: it would not be isolated; remove that "
                                  "user/range or the VM's state",
                                  (unsigned) cur, id, in_use_reason(ctx, cur));
        return 0;
}

/* How many of the recorded uids lie in [min, max]: the exhaustion message
 * counts only those (VMs recorded from an earlier, other range do not fill
 * this one). */
static size_t count_in_range(const UidOwner *v, size_t n, uid_t min, uid_t max) {
        size_t k = 0;

        for (size_t i = 0; i < n; i++)
                if (v[i].uid >= min && v[i].uid <= max)
                        k++;
        return k;
}

int uid_allocate(int state_fd, const char *id, uid_t uid_min, uid_t uid_max, uid_t wanted, UidAllocation *ret,
                 char **ret_error) {
        _cleanup_close_ int lock = -EBADF, index_fd = -EBADF;
        _cleanup_free_ UidOwner *taken = NULL;
        _cleanup_free_ SubidRange *subuid = NULL, *subgid = NULL;
        InUseCtx ctx = {};
        const UidOwner *owner = NULL;
        uid_t cur = UID_INVALID, pick = UID_INVALID;
        size_t n_taken = 0;
        int r;

        if (!vm_id_valid(id))
                return error_setf(ret_error, -EINVAL, "\"%s\" is not a valid VM id", strna(id));
        if (uid_min == 0 || uid_min > uid_max || uid_max == UID_INVALID)
                return error_setf(ret_error, -EINVAL, "Invalid uid_range %u-%u", (unsigned) uid_min,
                                  (unsigned) uid_max);
        if (wanted != UID_INVALID && (wanted < uid_min || wanted > uid_max))
                return error_setf(ret_error, -ERANGE, "VM %s: uid = %u is outside the host's uid_range %u-%u", id,
                                  (unsigned) wanted, (unsigned) uid_min, (unsigned) uid_max);

        r = load_subids(SUBUID_PATH, &subuid, &ctx.n_subuid, ret_error);
        if (r < 0)
                return r;
        r = load_subids(SUBGID_PATH, &subgid, &ctx.n_subgid, ret_error);
        if (r < 0)
                return r;
        ctx.subuid = subuid;
        ctx.subgid = subgid;

        r = uid_alloc_lock(state_fd, &lock);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot lock %s in the state directory: %s", STATE_LOCK_FILE,
                                  strerror(-r));

        r = uid_record_read(state_fd, id, &cur);
        if (r == -ENOENT)
                cur = UID_INVALID;
        else if (r < 0)
                return error_setf(ret_error, r,
                                  "The uid record %s/%s of VM %s in the state directory is unreadable or corrupt "
                                  "(%s): fix or remove it",
                                  id, STATE_UID_FILE, id, strerror(-r));

        r = index_open(state_fd, &index_fd, ret_error);
        if (r < 0)
                return r;

        if (cur != UID_INVALID && (wanted == UID_INVALID || wanted == cur)) {
                /* A restart: keep the uid, but only if it is still ours
                 * alone. Files in state_dir/<id>/ belong to it, so it is
                 * never silently swapped for another. */
                if (cur < uid_min || cur > uid_max)
                        return error_setf(ret_error, -ERANGE,
                                          "VM %s has uid %u recorded, outside the host's uid_range %u-%u: restore "
                                          "the range, or remove the VM's state to get a new uid",
                                          id, (unsigned) cur, (unsigned) uid_min, (unsigned) uid_max);
                r = keep_recorded(state_fd, index_fd, id, cur, &ctx, ret_error);
                if (r < 0)
                        return r;
                *ret = (UidAllocation) {
                        .uid = cur,
                        .gid = (gid_t) cur,
                        .created = false,
                        .previous = UID_INVALID,
                };
                return 0;
        }

        /* A new uid is rare (a VM's first start, or uid = N changed): every
         * record is read, as if there were no index, so that a corrupt one
         * fails the allocation (its uid is unknown). The records are the
         * truth: they say which uids are taken, a record without an entry
         * (written by hand) gets one, and an entry without its record (a
         * kill between the two, state removed by hand) goes. */
        r = scan_records(state_fd, id, &taken, &n_taken, ret_error);
        if (r < 0)
                return r;
        (void) uid_owners_sort(taken, n_taken);
        r = index_sweep(index_fd, taken, n_taken, id, cur, ret_error);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n_taken; i++) {
                /* -EEXIST: two records naming one uid; that VM's start
                 * refuses (keep_recorded()). */
                r = index_add(index_fd, taken[i].uid, taken[i].id);
                if (r < 0 && r != -EEXIST)
                        return error_setf(ret_error, r, "Cannot update the uid index: %s", strerror(-r));
        }

        r = uid_pick(uid_min, uid_max, taken, n_taken, wanted, uid_in_use, &ctx, &pick, &owner);
        switch (r) {
        case 0:
                break;
        case -EBUSY:
                return error_setf(ret_error, r, "VM %s: uid = %u is already the uid of VM %s", id,
                                  (unsigned) wanted, owner->id);
        case -EEXIST:
                return error_setf(ret_error, r, "VM %s: uid = %u %s; choose another uid", id, (unsigned) wanted,
                                  in_use_reason(&ctx, wanted));
        case -ENOSPC:
                return error_setf(ret_error, r,
                                  "VM %s: no free uid left in uid_range %u-%u (%zu taken by VMs, the rest known to "
                                  "NSS or in subordinate ranges): widen uid_range in the host config",
                                  id, (unsigned) uid_min, (unsigned) uid_max,
                                  count_in_range(taken, n_taken, uid_min, uid_max));
        case -EIO:
                return nss_fail(ret_error, &ctx, wanted);
        default:
                return error_setf(ret_error, r, "VM %s: cannot allocate a uid: %s", id, strerror(-r));
        }

        /* The entry first: every recorded uid has one. A kill between the
         * two leaves an entry without its record: no reservation, swept by
         * the next allocation of a new uid (index_sweep()). */
        r = index_add(index_fd, pick, id);
        if (r < 0)
                return error_setf(ret_error, r, "Cannot update the uid index for VM %s: %s", id, strerror(-r));
        test_hook("uid-index-written");
        r = write_record(state_fd, id, pick, ret_error);
        if (r < 0)
                return r;
        if (cur != UID_INVALID && cur != pick)
                (void) index_remove(index_fd, cur, id); /* left behind, it only wastes cur */
        *ret = (UidAllocation) {
                .uid = pick,
                .gid = (gid_t) pick,
                .created = true,
                .previous = cur,
        };
        return 0;
}

int uid_allocate_for_vm(int state_fd, const HostConfig *h, const VmConfig *c, UidAllocation *ret,
                        char **ret_error) {
        return uid_allocate(state_fd, c->id, h->uid_min, h->uid_max, c->uid_auto ? UID_INVALID : c->uid, ret,
                            ret_error);
}

/* After a record is gone: its index entry (if any) goes too. */
static void index_forget(int state_fd, uid_t uid, const char *id) {
        _cleanup_close_ int index_fd = -EBADF;

        if (uid != UID_INVALID && safe_open_dir_at(state_fd, UID_INDEX_DIR, &index_fd) >= 0)
                (void) index_remove(index_fd, uid, id); /* left behind, it only wastes the uid */
}

int uid_release(int state_fd, const char *id) {
        _cleanup_close_ int lock = -EBADF, pfd = -EBADF;
        char path[VM_ID_MAX + 2 + sizeof(STATE_UID_FILE)];
        const char *name;
        uid_t uid;
        int r;

        if (!vm_id_valid(id))
                return -EINVAL;
        r = uid_alloc_lock(state_fd, &lock);
        if (r < 0)
                return r;
        if (uid_record_read(state_fd, id, &uid) < 0)
                uid = UID_INVALID;
        record_path(id, path);
        r = safe_open_parent_at(state_fd, path, &pfd, &name);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (unlinkat(pfd, name, 0) < 0)
                return errno == ENOENT ? 0 : -errno;
        index_forget(state_fd, uid, id);
        return 1;
}

int vm_state_remove(int state_fd, const char *id, SafeRmReport *report) {
        _cleanup_close_ int lock = -EBADF, dfd = -EBADF;
        _cleanup_strv_free_ char **names = NULL;
        size_t n = 0;
        uid_t uid;
        DIR *d;
        int r, first = 0;

        if (!vm_id_valid(id))
                return -EINVAL;
        r = uid_alloc_lock(state_fd, &lock);
        if (r < 0)
                return r;

        r = safe_open_dir_at(state_fd, id, &dfd);
        if (r == -ENOENT)
                return 0;
        if (r == -ELOOP || r == -ENOTDIR)
                /* Not a state dir we made: only the name goes. */
                return safe_rm_rf_at(state_fd, id, 0, NULL, report);
        if (r < 0)
                return r;

        /* Collect first, remove after: readdir() and our own unlinks do not
         * mix well with the uid record being kept for last. */
        {
                int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
                struct dirent *de;

                if (fd < 0)
                        return -errno;
                d = fdopendir(fd);
                if (!d) {
                        safe_close(fd);
                        return -errno;
                }
                while ((de = readdir(d))) {
                        char **nl;

                        if (streq(de->d_name, ".") || streq(de->d_name, "..") || streq(de->d_name, STATE_UID_FILE))
                                continue;
                        nl = realloc(names, (n + 2) * sizeof(char *));
                        if (!nl) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        names = nl;
                        names[n] = strdup(de->d_name);
                        names[n + 1] = NULL;
                        if (!names[n]) {
                                closedir(d);
                                return -ENOMEM;
                        }
                        n++;
                }
                closedir(d);
        }

        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *p = NULL;

                if (asprintf(&p, "%s/%s", id, names[i]) < 0)
                        return -ENOMEM;
                r = safe_rm_rf_at(state_fd, p, 0, NULL, report);
                if (r < 0 && first == 0)
                        first = r;
        }
        /* Something owned by the VM's uid may be left: keep the uid
         * recorded so it is not handed to another VM. */
        if (first < 0)
                return first;

        if (uid_record_read(state_fd, id, &uid) < 0)
                uid = UID_INVALID;
        if (unlinkat(dfd, STATE_UID_FILE, 0) < 0 && errno != ENOENT)
                return -errno;
        index_forget(state_fd, uid, id);
        if (unlinkat(state_fd, id, AT_REMOVEDIR) < 0)
                return errno == ENOENT ? 1 : -errno;
        return 1;
}
