/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* bench-storage: per-VM create + remove of a snapshot drive and of a thin
 * drive through lib/storage/storage (libdevmapper and loop ioctls, in process),
 * and the same device operations done the traditional way, by running
 * losetup and dmsetup — in the same run, on the same kernel. Needs root
 * and dm-snapshot/dm-thin-pool: bench/storage runs it in the dmvm guest.
 *
 *   bench-storage [--vms N] [--dir DIR]
 *
 * Per VM, both sides do the same device work:
 *   snapshot  attach the CoW file to a loop, create the snapshot device
 *             over the (already attached, shared) base loop; remove it,
 *             detach the CoW loop.
 *   thin      create_thin in the pool, create the thin device over the
 *             shared base loop (external origin); remove it, delete the
 *             thin volume.
 * Ours is storage_prepare_drive() + storage_teardown_vm() — everything a
 * start and a stop do for a drive, records, locks and checks included.
 * The baseline is losetup/dmsetup processes (4 per VM for either kind);
 * the CoW file is made by this program for it, as ours makes its own.
 *
 * "kernel" is the wall time spent inside the dm and loop ioctls by our
 * code (storage_kernel_usec()): the device work itself, the same for both
 * sides. The host-side part is the rest: total minus kernel. The target
 * (issue 7) is a host-side part at least 10x smaller than the baseline's. */

#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>

#include "dm.h"
#include "loop.h"
#include "safe-fs.h"
#include "storage.h"

extern char **environ;

#define MiB (UINT64_C(1) << 20)
#define BASE_SIZE (64 * MiB)

static const char *dir = "/run/microvm-bench";
static unsigned n_vms = 20;
static HostConfig *H;
static int state_fd = -1;

static _noreturn_ void die(const char *fmt, ...) _printf_(1, 2);
static void die(const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "bench-storage: ");
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        exit(EXIT_FAILURE);
}

static usec_t now(void) {
        return now_usec(CLOCK_MONOTONIC);
}

static char *path(const char *name) {
        static char bufs[8][PATH_MAX];
        static unsigned i;
        char *p = bufs[i++ % 8];
        snprintf(p, PATH_MAX, "%s/%s", dir, name);
        return p;
}

/* Runs argv (PATH lookup), stdout into out (optional); dies on failure. */
static void run(char *out, size_t out_size, const char *const *argv) {
        posix_spawn_file_actions_t fa;
        int p[2], status;
        pid_t pid;
        size_t len = 0;

        if (pipe2(p, O_CLOEXEC) < 0)
                die("pipe: %m");
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
        if (posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *) argv, environ) != 0)
                die("cannot run %s: %m", argv[0]);
        posix_spawn_file_actions_destroy(&fa);
        close(p[1]);
        for (;;) {
                char buf[256];
                ssize_t n = read(p[0], buf, sizeof buf);
                if (n <= 0)
                        break;
                if (out && len + (size_t) n < out_size) {
                        memcpy(out + len, buf, (size_t) n);
                        len += (size_t) n;
                }
        }
        close(p[0]);
        if (out) {
                out[len] = '\0';
                out[strcspn(out, "\n")] = '\0';
        }
        if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "bench-storage: command failed:");
                for (const char *const *a = argv; *a; a++)
                        fprintf(stderr, " %s", *a);
                die(" (status %d)", status);
        }
}

static void make_file(const char *p, uint64_t size, bool fill) {
        int fd = open(p, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        uint8_t buf[65536];

        if (fd < 0)
                die("%s: %m", p);
        if (fill) {
                memset(buf, 0x5a, sizeof buf);
                for (uint64_t o = 0; o < size; o += sizeof buf)
                        if (pwrite(fd, buf, sizeof buf, (off_t) o) != (ssize_t) sizeof buf)
                                die("%s: %m", p);
        } else if (ftruncate(fd, (off_t) size) < 0)
                die("%s: %m", p);
        close(fd);
}

typedef struct Result {
        usec_t total, kernel;
} Result;

static void vm_for(VmConfig *c, DriveConfig *d, const char *id, DriveMode mode) {
        *c = (VmConfig) { .drives = d, .n_drives = 1 };
        snprintf(c->id, sizeof c->id, "%s", id);
        *d = (DriveConfig) { .mode = mode, .path = path("base.img") };
        strcpy(d->name, "root");
        if (safe_mkdir_at(state_fd, id, 0700, 0, 0, SAFE_MKDIR_EXIST_OK, NULL) < 0)
                die("mkdir %s: %m", id);
}

static Result ours(DriveMode mode) {
        usec_t t0, k0;
        Result r;

        t0 = now();
        k0 = storage_kernel_usec();
        for (unsigned i = 0; i < n_vms; i++) {
                _cleanup_free_ char *err = NULL, *name = NULL;
                StorageReport rep = {};
                VmConfig c;
                DriveConfig d;
                char id[32];
                int fd = -EBADF;

                snprintf(id, sizeof id, "b%s%u", mode == DRIVE_MODE_THIN ? "t" : "s", i);
                vm_for(&c, &d, id, mode);
                if (storage_prepare_drive(H, &c, &d, state_fd, 3000000000U, &fd, &name, &err) < 0)
                        die("prepare %s: %s", id, err);
                close(fd);
                if (storage_teardown_vm(H, state_fd, id, NULL, STORAGE_TEARDOWN_REMOVE_STATE, &rep) < 0)
                        die("teardown %s: %s", id, rep.failed ? rep.failed[0] : "?");
                storage_report_done(&rep);
        }
        r.total = now() - t0;
        r.kernel = storage_kernel_usec() - k0;
        return r;
}

static Result baseline_snapshot(const char *base_loop, uint64_t sectors) {
        usec_t t0 = now();

        for (unsigned i = 0; i < n_vms; i++) {
                char name[64], cow_loop[64], table[256], cow[PATH_MAX];

                snprintf(name, sizeof name, "bench-dmsetup-s%u", i);
                snprintf(cow, sizeof cow, "%s/cow-%u", dir, i);
                make_file(cow, BASE_SIZE + 4 * MiB, false);
                run(cow_loop, sizeof cow_loop, (const char *const[]) { "losetup", "-f", "--show", cow, NULL });
                snprintf(table, sizeof table, "0 %" PRIu64 " snapshot %s %s N 8", sectors, base_loop, cow_loop);
                run(NULL, 0, (const char *const[]) { "dmsetup", "create", name, "--uuid", name, "--table", table, NULL });
                run(NULL, 0, (const char *const[]) { "dmsetup", "remove", name, NULL });
                run(NULL, 0, (const char *const[]) { "losetup", "-d", cow_loop, NULL });
                unlink(cow);
        }
        return (Result) { .total = now() - t0 };
}

static Result baseline_thin(const char *pool, const char *base_loop, uint64_t sectors) {
        usec_t t0 = now();

        for (unsigned i = 0; i < n_vms; i++) {
                char name[64], table[256], msg[64];
                unsigned id = 100000 + i;

                snprintf(name, sizeof name, "bench-dmsetup-t%u", i);
                snprintf(msg, sizeof msg, "create_thin %u", id);
                run(NULL, 0, (const char *const[]) { "dmsetup", "message", pool, "0", msg, NULL });
                snprintf(table, sizeof table, "0 %" PRIu64 " thin /dev/mapper/%s %u %s", sectors, pool, id, base_loop);
                run(NULL, 0, (const char *const[]) { "dmsetup", "create", name, "--table", table, NULL });
                run(NULL, 0, (const char *const[]) { "dmsetup", "remove", name, NULL });
                snprintf(msg, sizeof msg, "delete %u", id);
                run(NULL, 0, (const char *const[]) { "dmsetup", "message", pool, "0", msg, NULL });
        }
        return (Result) { .total = now() - t0 };
}

static void report(const char *what, Result o, Result b) {
        double per_o = (double) o.total / n_vms / 1000, per_b = (double) b.total / n_vms / 1000;
        double per_k = (double) o.kernel / n_vms / 1000;
        double host_o = per_o - per_k, host_b = per_b - per_k;

        printf("%-9s per VM: ours %8.2f ms (kernel %7.2f ms, host-side %6.2f ms) | losetup/dmsetup %8.2f ms (host-side %8.2f ms)\n",
               what, per_o, per_k, host_o, per_b, host_b);
        printf("%-9s ratio: total %.1fx, host-side %.1fx%s\n", what, per_b / per_o,
               host_o > 0 ? host_b / host_o : 0.0, host_o > 0 && host_b / host_o >= 10 ? " (target >= 10x: met)" : " (target >= 10x: NOT met)");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "vms", required_argument, NULL, 'n' },
                { "dir", required_argument, NULL, 'd' },
                {}
        };
        _cleanup_free_ char *err = NULL;
        _cleanup_(loop_device_done) LoopDevice base = LOOP_DEVICE_NULL;
        char pool_base[64];
        int c, lock = -EBADF, bfd;
        Result so, sb, to, tb;
        VmConfig pin;
        DriveConfig pin_d;
        ThinPoolInfo info = {};

        while ((c = getopt_long(argc, argv, "", options, NULL)) >= 0)
                switch (c) {
                case 'n':
                        n_vms = (unsigned) strtoul(optarg, NULL, 10);
                        break;
                case 'd':
                        dir = optarg;
                        break;
                default:
                        return EXIT_FAILURE;
                }
        if (n_vms == 0)
                die("--vms must be positive");
        if (dm_check_available(&err) < 0)
                die("%s", err);

        /* A scratch tree on tmpfs: the CoW and pool files, the state. */
        (void) mkdir(dir, 0755);
        if (mount("bench-storage", dir, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1g") < 0)
                die("mount tmpfs on %s: %m", dir);
        if (host_config_new_default(&H) < 0)
                die("out of memory");
        free(H->state_dir);
        H->state_dir = strdup(path("state"));
        free(H->run_dir);
        H->run_dir = strdup(path("run"));
        H->thin_pool = (ThinPoolConfig) {
                .configured = true,
                .name = strdup("bench-pool"),
                .data = strdup(path("pool/data")),
                .metadata = strdup(path("pool/metadata")),
                .data_size = 512 * MiB,
                .block_size = DEFAULT_THIN_BLOCK_SIZE,
        };
        if (safe_root_open(H->state_dir, SAFE_ROOT_CREATE, 0700, &state_fd, &err) < 0)
                die("%s", err);
        make_file(path("base.img"), BASE_SIZE, true);
        if (thin_pool_activate(H, &info, &err) < 0)
                die("%s", err);
        thin_pool_info_done(&info);

        /* The shared base stays attached for both sides, as in a fleet where
         * other VMs use it: a pinned VM of ours holds it. */
        vm_for(&pin, &pin_d, "pin", DRIVE_MODE_SNAPSHOT);
        {
                int fd = -EBADF;
                if (storage_prepare_drive(H, &pin, &pin_d, state_fd, 3000000000U, &fd, NULL, &err) < 0)
                        die("%s", err);
                close(fd);
        }
        bfd = open(path("base.img"), O_RDONLY | O_CLOEXEC);
        if (bfd < 0 || loop_lock(&lock, &err) < 0 || loop_attach_shared(lock, bfd, &base, &err) < 0 || !base.shared)
                die("cannot find the shared base loop: %s", strna(err));
        close(lock);
        close(bfd);
        snprintf(pool_base, sizeof pool_base, "/dev/loop%u", base.nr);

        {
                char k[128];
                run(k, sizeof k, (const char *const[]) { "uname", "-r", NULL });
                printf("bench-storage: %u VMs per measurement, base image %" PRIu64 " MiB on %s, udev: %s, kernel %s\n",
                       n_vms, BASE_SIZE / MiB, pool_base, dm_udev_mode_to_string(dm_get_udev_mode()), k);
        }
        /* Warm up both paths once (page cache of the binaries, modules). */
        {
                unsigned requested = n_vms;
                n_vms = 1;
                (void) ours(DRIVE_MODE_SNAPSHOT);
                (void) baseline_snapshot(pool_base, BASE_SIZE / 512);
                n_vms = requested;
        }

        so = ours(DRIVE_MODE_SNAPSHOT);
        sb = baseline_snapshot(pool_base, BASE_SIZE / 512);
        to = ours(DRIVE_MODE_THIN);
        tb = baseline_thin("bench-pool", pool_base, BASE_SIZE / 512);

        report("snapshot", so, sb);
        report("thin", to, tb);
        printf("(ours: storage_prepare_drive + storage_teardown_vm; baseline: 4 losetup/dmsetup processes per VM;\n"
               " kernel = wall time inside dm and loop ioctls, measured on our side, the same device work on both)\n");

        loop_device_done(&base);
        {
                StorageReport rep = {};
                (void) storage_teardown_vm(H, state_fd, "pin", NULL, STORAGE_TEARDOWN_REMOVE_STATE, &rep);
                storage_report_done(&rep);
        }
        if (thin_pool_deactivate(H, &err) < 0)
                fprintf(stderr, "bench-storage: %s\n", err);
        host_config_free(H);
        return EXIT_SUCCESS;
}
