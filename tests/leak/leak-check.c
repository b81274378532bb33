/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* leak-check: lists everything of ours that exists on this host and should
 * not, one line per object ("KIND: object (why)"), and exits 1 when it
 * listed anything, 0 when nothing is left, 2 on a usage or setup error.
 * Used at teardown by the privileged tool suites, after every e2e scenario,
 * and by bench/. What it looks at (the host config names the places):
 *
 *   jail      <chroot_base>/<exec>/<id> of a VM that is not running
 *   run       <run_dir>/<id>, and block claims <run_dir>/.storage/block-*,
 *             of a VM that is not running
 *   state     <state_dir>/<id> (a dir with a uid record) of a VM with no
 *             config (its data: a leftover only where the VM was deleted)
 *   uid       <state_dir>/.uids/<uid> entries that no record backs
 *   cgroup    <cgroup2>/<slice>/microvm@<id>.service of a VM not running
 *   loop      loop devices we attached (lo_file_name "microvm:...") whose
 *             backing file is in a stopped VM's state, or any of ours when
 *             no VM runs
 *   dm        dm devices with our UUID prefix (MICROVM-<id>-...) of a VM not
 *             running (the thin pool has its own prefix and is not a leak)
 *   tap       tun/tap interfaces owned by a uid of the VM range that is not
 *             a running VM's
 *   machine   systemd-machined registrations of microvm@ units not running
 *   process   processes whose real or effective uid is in the VM range and
 *             not a running VM's
 *
 * "Running" VMs are the ones named with --running (the caller knows them:
 * the e2e passes the active units); everything else must be gone. */

#include <ctype.h>
#include <stdarg.h>
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cgroup.h"
#include "config-files.h"
#include "loop.h"
#include "names.h"
#include "parse-util.h"
#include "storage-util.h"
#include "uid-alloc.h"
#include "util.h"

typedef struct Check {
        HostConfig *host;
        char **running;                 /* ids */
        uid_t *running_uids;
        size_t n_running_uids, allocated_uids;
        const char *slice;              /* below the cgroup2 mount */
        const char *sysfs;
        const char *machines;           /* machined's state dir */
        char **only;                    /* kinds to look at (NULL: all) */
        unsigned found;
} Check;

static void found(Check *c, const char *kind, const char *fmt, ...) _printf_(3, 4);
static void found(Check *c, const char *kind, const char *fmt, ...) {
        va_list ap;

        printf("%s: ", kind);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        c->found++;
}

static bool is_running(const Check *c, const char *id) {
        for (char **r = c->running; r && *r; r++)
                if (streq(*r, id))
                        return true;
        return false;
}

static int parse_uid(const char *s, uid_t *ret) {
        uint32_t u;
        int r = parse_u32(s, &u);
        if (r < 0)
                return r;
        *ret = (uid_t) u;
        return 0;
}

/* A small file (sysfs, procfs, a claim) as a string, without a trailing
 * newline, into a buffer of size bytes. */
static int read_text(const char *path, char *buf, size_t size) {
        int n = read_small_file_at(AT_FDCWD, path, 0, buf, size);
        if (n < 0)
                return n;
        buf[strcspn(buf, "\n")] = '\0';
        return n;
}

/* The rest of path below dir ("" for dir itself), or NULL. */
static const char *path_below(const char *path, const char *dir) {
        size_t n = strlen(dir);
        if (strncmp(path, dir, n) != 0 || (path[n] != '/' && path[n] != '\0'))
                return NULL;
        return path + n + (path[n] == '/');
}

static bool uid_is_running(const Check *c, uid_t uid) {
        for (size_t i = 0; i < c->n_running_uids; i++)
                if (c->running_uids[i] == uid)
                        return true;
        return false;
}

static bool uid_in_range(const Check *c, uid_t uid) {
        return uid >= c->host->uid_min && uid <= c->host->uid_max;
}

static DIR *opendir_or_null(const char *path) {
        DIR *d = opendir(path);
        if (!d && errno != ENOENT)
                fprintf(stderr, "leak-check: cannot list %s: %m\n", path);
        return d;
}

static void check_jails(Check *c) {
        _cleanup_(closedirp) DIR *base = opendir_or_null(c->host->chroot_base);
        struct dirent *e;

        while (base && (e = readdir(base))) {
                _cleanup_free_ char *exec_dir = NULL;
                _cleanup_(closedirp) DIR *d = NULL;
                struct dirent *v;

                if (e->d_name[0] == '.' || asprintf(&exec_dir, "%s/%s", c->host->chroot_base, e->d_name) < 0)
                        continue;
                d = opendir_or_null(exec_dir);
                while (d && (v = readdir(d)))
                        if (v->d_name[0] != '.' && !is_running(c, v->d_name))
                                found(c, "jail", "%s/%s (VM not running)", exec_dir, v->d_name);
        }
}

static void check_run_dir(Check *c) {
        _cleanup_(closedirp) DIR *d = opendir_or_null(c->host->run_dir);
        _cleanup_free_ char *storage = NULL;
        _cleanup_(closedirp) DIR *s = NULL;
        struct dirent *e;

        while (d && (e = readdir(d))) {
                /* The reclaim lock, the block claims' directory and the
                 * runtime config directory (/run/microvm/vms) are the
                 * host's, not a VM's. */
                if (e->d_name[0] == '.' || streq(e->d_name, "vms"))
                        continue;
                if (!is_running(c, e->d_name))
                        found(c, "run", "%s/%s (VM not running)", c->host->run_dir, e->d_name);
        }
        if (asprintf(&storage, "%s/.storage", c->host->run_dir) < 0)
                return;
        s = opendir_or_null(storage);
        while (s && (e = readdir(s))) {
                _cleanup_free_ char *p = NULL;
                char id[VM_ID_MAX + 1], drive[17], text[256];
                int size;

                if (!startswith(e->d_name, "block-") || asprintf(&p, "%s/%s", storage, e->d_name) < 0)
                        continue;
                size = read_small_file_at(AT_FDCWD, p, 0, text, sizeof text);
                if (size < 0 || block_claim_parse(text, (size_t) size, id, drive) < 0)
                        found(c, "run", "%s (unreadable block claim)", p);
                else if (!is_running(c, id))
                        found(c, "run", "%s (block claim of %s, not running)", p, id);
        }
}

static bool has_config(const char *id) {
        _cleanup_free_ char *path = NULL;
        return vm_config_find(id, &path) >= 0;
}

static void check_state_dir(Check *c) {
        _cleanup_close_ int state_fd = open(c->host->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;

        if (state_fd < 0)
                return;
        d = opendir_or_null(c->host->state_dir);
        while (d && (e = readdir(d))) {
                uid_t uid;
                if (e->d_name[0] == '.' || !vm_id_valid(e->d_name))
                        continue;
                /* A VM's state dir has its uid record; images and the pool
                 * an administrator keeps here have none. */
                if (uid_record_read(state_fd, e->d_name, &uid) == -ENOENT)
                        continue;
                if (!has_config(e->d_name))
                        found(c, "state", "%s/%s (no config for VM %s)", c->host->state_dir, e->d_name, e->d_name);
        }
}

static void check_uid_index(Check *c) {
        _cleanup_close_ int state_fd = open(c->host->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _cleanup_(closedirp) DIR *u = NULL;
        _cleanup_free_ char *uids = NULL;
        struct dirent *e;

        if (state_fd < 0)
                return;
        if (asprintf(&uids, "%s/.uids", c->host->state_dir) < 0)
                return;
        u = opendir_or_null(uids);
        while (u && (e = readdir(u))) {
                char target[PATH_MAX];
                ssize_t n;
                uid_t want, have;

                if (e->d_name[0] == '.')
                        continue;
                n = readlinkat(dirfd(u), e->d_name, target, sizeof target - 1);
                if (n < 0 || parse_uid(e->d_name, &want) < 0) {
                        found(c, "uid", "%s/%s (not a uid index entry)", uids, e->d_name);
                        continue;
                }
                target[n] = '\0';
                if (!vm_id_valid(target) || uid_record_read(state_fd, target, &have) < 0 || have != want)
                        found(c, "uid", "%s/%s -> %s (no uid record of that VM names uid %s)", uids, e->d_name,
                              target, e->d_name);
        }
}

static void check_cgroups(Check *c) {
        _cleanup_free_ char *mount = NULL, *slice = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;

        if (cgroup2_find_mount(&mount) < 0 || asprintf(&slice, "%s/%s", mount, c->slice) < 0)
                return;
        d = opendir_or_null(slice);
        while (d && (e = readdir(d))) {
                char id[VM_ID_MAX + 1];
                const char *rest = startswith(e->d_name, UNIT_PREFIX);
                const char *dot = rest ? strrchr(rest, '.') : NULL;

                if (!dot || !streq(dot, ".service") || (size_t) (dot - rest) > VM_ID_MAX)
                        continue;
                memcpy(id, rest, (size_t) (dot - rest));
                id[dot - rest] = '\0';
                if (!is_running(c, id))
                        found(c, "cgroup", "%s/%s (VM not running)", slice, e->d_name);
        }
}

/* <sysfs>/<class>/<dev>/<attr> into buf. */
static int read_sysfs(Check *c, const char *class, const char *dev, const char *attr, char *buf, size_t size) {
        _cleanup_free_ char *p = NULL;

        if (asprintf(&p, "%s/%s/%s/%s", c->sysfs, class, dev, attr) < 0)
                return -ENOMEM;
        return read_text(p, buf, size);
}

static void check_block_devices(Check *c) {
        _cleanup_free_ char *block = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;

        if (asprintf(&block, "%s/block", c->sysfs) < 0)
                return;
        d = opendir_or_null(block);
        while (d && (e = readdir(d))) {
                _cleanup_free_ char *dev = NULL;
                char text[PATH_MAX];

                if (startswith(e->d_name, "dm-") &&
                    read_sysfs(c, "block", e->d_name, "dm/uuid", text, sizeof text) >= 0) {
                        char id[VM_ID_MAX + 1];
                        if (startswith(text, DM_UUID_PREFIX) && (!dm_uuid_parse(text, id) || !is_running(c, id)))
                                found(c, "dm", "/dev/%s (uuid %s, VM not running)", e->d_name, text);
                        continue;
                }
                if (!startswith(e->d_name, "loop") ||
                    read_sysfs(c, "block", e->d_name, "loop/backing_file", text, sizeof text) < 0)
                        continue;
                /* Ours only if we marked it: the backing file alone could be
                 * anybody's loop of the same image. */
                struct loop_info64 info = {};
                _cleanup_close_ int fd = -EBADF;
                if (asprintf(&dev, "/dev/%s", e->d_name) < 0)
                        continue;
                fd = open(dev, O_RDONLY | O_CLOEXEC);
                if (fd < 0 || ioctl(fd, LOOP_GET_STATUS64, &info) < 0 ||
                    !loop_file_name_is_ours((const char *) info.lo_file_name))
                        continue;
                const char *rest = path_below(text, c->host->state_dir);
                char id[VM_ID_MAX + 1] = "";
                if (rest) {
                        size_t n = strcspn(rest, "/");
                        if (n <= VM_ID_MAX) {
                                memcpy(id, rest, n);
                                id[n] = '\0';
                        }
                }
                if (rest ? !is_running(c, id) : !c->running)
                        found(c, "loop", "%s (backing %s, %s)", dev, text,
                              rest ? "VM not running" : "shared base loop with no VM running");
        }
}

static void check_taps(Check *c) {
        _cleanup_free_ char *net = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;

        if (asprintf(&net, "%s/class/net", c->sysfs) < 0)
                return;
        d = opendir_or_null(net);
        while (d && (e = readdir(d))) {
                char flags[64], owner[64];
                uid_t uid;

                if (e->d_name[0] == '.' ||
                    read_sysfs(c, "class/net", e->d_name, "tun_flags", flags, sizeof flags) < 0 ||
                    read_sysfs(c, "class/net", e->d_name, "owner", owner, sizeof owner) < 0)
                        continue;
                if (parse_uid(owner, &uid) >= 0 && uid_in_range(c, uid) && !uid_is_running(c, uid))
                        found(c, "tap", "%s (owned by uid %s, no running VM has it)", e->d_name, owner);
        }
}

static void check_machines(Check *c) {
        _cleanup_(closedirp) DIR *d = opendir_or_null(c->machines);
        struct dirent *e;

        while (d && (e = readdir(d))) {
                _cleanup_free_ char *p = NULL;
                char id[VM_ID_MAX + 1], text[8192];
                const char *unit, *end;

                if (e->d_name[0] == '.' || startswith(e->d_name, "unit:") ||
                    asprintf(&p, "%s/%s", c->machines, e->d_name) < 0 ||
                    read_small_file_at(AT_FDCWD, p, 0, text, sizeof text) < 0)
                        continue;
                /* machined (systemd 252 and later) records the unit of a
                 * registered machine as SCOPE= (the name of its old
                 * scope-only days), whatever the unit's type; UNIT= for a
                 * machined that ever renames it. */
                if ((unit = strstr(text, "\nSCOPE=" UNIT_PREFIX)))
                        unit += strlen("\nSCOPE=" UNIT_PREFIX);
                else if ((unit = strstr(text, "\nUNIT=" UNIT_PREFIX)))
                        unit += strlen("\nUNIT=" UNIT_PREFIX);
                else
                        continue;
                end = strstr(unit, ".service\n");
                if (!end || (size_t) (end - unit) > VM_ID_MAX)
                        continue;
                memcpy(id, unit, (size_t) (end - unit));
                id[end - unit] = '\0';
                if (!is_running(c, id))
                        found(c, "machine", "%s (registered for microvm@%s, not running)", e->d_name, id);
        }
}

static void check_processes(Check *c) {
        _cleanup_(closedirp) DIR *d = opendir_or_null("/proc");
        struct dirent *e;

        while (d && (e = readdir(d))) {
                _cleanup_free_ char *p = NULL, *comm = NULL;
                unsigned long ruid, euid;
                const char *line;
                char text[8192];

                if (!isdigit((unsigned char) e->d_name[0]) || asprintf(&p, "/proc/%s/status", e->d_name) < 0 ||
                    read_small_file_at(AT_FDCWD, p, 0, text, sizeof text) < 0)
                        continue;
                line = strstr(text, "\nUid:");
                if (!line || sscanf(line, "\nUid: %lu %lu", &ruid, &euid) != 2)
                        continue;
                uid_t u = uid_in_range(c, (uid_t) ruid) ? (uid_t) ruid : (uid_t) euid;
                if (!uid_in_range(c, u) || uid_is_running(c, u))
                        continue;
                const char *name = strstr(text, "Name:");
                if (name)
                        comm = strndup(name + 6, strcspn(name + 6, "\n"));
                found(c, "process", "pid %s (%s) as uid %u, no running VM has it", e->d_name, strna(comm),
                      (unsigned) u);
        }
}

static bool wanted(const Check *c, const char *kind) {
        if (!c->only)
                return true;
        for (char **k = c->only; *k; k++)
                if (streq(*k, kind))
                        return true;
        return false;
}

static void help(void) {
        printf("leak-check [OPTIONS]\n"
               "\n"
               "Lists what microvm left on this host that it should not have (see the\n"
               "source for what is looked at); exits 1 if anything, 0 if nothing.\n"
               "\n"
               "  -r --running=ID     a VM that runs: its objects are expected (repeat)\n"
               "     --slice=PATH     the VMs' slice below the cgroup2 mount (microvm.slice)\n"
               "     --sysfs=DIR      where sysfs is mounted (/sys)\n"
               "     --machines=DIR   machined's state directory (/run/systemd/machines)\n"
               "     --only=KIND,...  look only for these kinds (jail, run, state, uid, cgroup,\n"
               "                      block (loop and dm), tap, machine, process)\n"
               "  -h --help\n"
               "The host config and VM configs are found as the tools find them\n"
               "(MICROVM_HOST_CONFIG, MICROVM_CONFIG_PATH).\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "running", required_argument, NULL, 'r' },
                { "slice", required_argument, NULL, 's' },
                { "sysfs", required_argument, NULL, 'y' },
                { "machines", required_argument, NULL, 'm' },
                { "only", required_argument, NULL, 'o' },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        Check c = { .slice = "microvm.slice", .sysfs = "/sys", .machines = "/run/systemd/machines" };
        _cleanup_close_ int state_fd = -EBADF;
        Problems problems = {};
        int o;

        while ((o = getopt_long(argc, argv, "r:h", options, NULL)) >= 0)
                switch (o) {
                case 'r':
                        if (!vm_id_valid(optarg) || strv_push(&c.running, optarg) < 0) {
                                fprintf(stderr, "leak-check: bad VM id \"%s\"\n", optarg);
                                return 2;
                        }
                        break;
                case 's':
                        c.slice = optarg;
                        break;
                case 'y':
                        c.sysfs = optarg;
                        break;
                case 'm':
                        c.machines = optarg;
                        break;
                case 'o':
                        for (char *k = strtok(optarg, ","); k; k = strtok(NULL, ","))
                                if (strv_push(&c.only, k) < 0)
                                        return 2;
                        break;
                case 'h':
                        help();
                        return 0;
                default:
                        return 2;
                }
        if (optind < argc) {
                fprintf(stderr, "leak-check: unexpected argument \"%s\"\n", argv[optind]);
                return 2;
        }
        if (host_config_load(&c.host, &problems) < 0) {
                fprintf(stderr, "leak-check: cannot load the host config %s\n", host_config_path());
                return 2;
        }
        problems_done(&problems);

        state_fd = open(c.host->state_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (char **id = c.running; id && *id; id++) {
                uid_t uid;
                if (state_fd >= 0 && uid_record_read(state_fd, *id, &uid) >= 0 &&
                    greedy_realloc((void **) &c.running_uids, &c.allocated_uids, c.n_running_uids + 1,
                                   sizeof(uid_t)) >= 0)
                        c.running_uids[c.n_running_uids++] = uid;
        }

        static const struct {
                const char *kind;
                void (*check)(Check *c);
        } checks[] = {
                { "jail", check_jails },
                { "run", check_run_dir },
                { "state", check_state_dir },
                { "uid", check_uid_index },
                { "cgroup", check_cgroups },
                { "block", check_block_devices },
                { "tap", check_taps },
                { "machine", check_machines },
                { "process", check_processes },
        };
        for (size_t i = 0; i < ELEMENTSOF(checks); i++)
                if (wanted(&c, checks[i].kind))
                        checks[i].check(&c);

        host_config_free(c.host);
        strv_free(c.running);
        strv_free(c.only);
        free(c.running_uids);
        return c.found > 0 ? 1 : 0;
}
