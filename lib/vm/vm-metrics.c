/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The impure half of vm-metrics.h: gathering the figures. Everything that can
 * wait (the bus, firecracker's API) is bounded by the scrape's deadline; a VM
 * whose figures cannot be read is reported with what could be. */
#include <assert.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cgroup.h"
#include "config-files.h"
#include "dm.h"
#include "fc-api.h"
#include "manager.h"
#include "manager-props.h"
#include "names.h"
#include "parse-util.h"
#include "plan.h"
#include "safe-fs.h"
#include "storage-util.h"
#include "util.h"
#include "vm-metrics.h"
#include "vm-teardown.h"

/* At most this much of a metrics file is read per scrape (about 200 lines of
 * a VM with a few devices; firecracker writes one a minute): a scrape after a
 * long pause catches up over the next ones instead of taking long. */
#define FC_READ_MAX (1024U * 1024U)
#define FC_SUM_FILE "fc-metrics.sum"

static int cmp_vm(const void *a, const void *b) {
        return strcmp(((const VmMetrics *) a)->id, ((const VmMetrics *) b)->id);
}

static VmMetrics *vm_add(HostMetrics *h, size_t *allocated, const char *id) {
        for (size_t i = 0; i < h->n_vms; i++)
                if (streq(h->vms[i].id, id))
                        return &h->vms[i];
        if (!vm_id_valid(id) || greedy_realloc((void **) &h->vms, allocated, h->n_vms + 1, sizeof *h->vms) < 0)
                return NULL;
        VmMetrics *v = &h->vms[h->n_vms++];
        *v = (VmMetrics) {};
        snprintf(v->id, sizeof v->id, "%s", id);
        return v;
}

static void vm_load_config(const HostConfig *host, VmMetrics *v, uint64_t *configured) {
        _cleanup_vm_config_ VmConfig *c = NULL;
        Problems problems = {};

        if (vm_config_load(host, v->id, &c, &problems) >= 0 && c) {
                v->has_config = true;
                v->vcpus = c->vcpus;
                v->memory_bytes = c->memory;
                for (size_t i = 0; i < c->n_drives; i++)
                        (void) strv_push(&v->drives, c->drives[i].name);
                for (size_t i = 0; i < c->n_nics; i++)
                        (void) strv_push(&v->nics, c->nics[i].name);
                (*configured)++;
        }
        problems_done(&problems);
}

static int read_cg_file(int cg_fd, const char *name, char *buf, size_t size) {
        int n = read_small_file_at(cg_fd, name, O_NOFOLLOW, buf, size);
        if (n > 0 && buf[n - 1] == '\n')
                buf[n - 1] = '\0';
        return n;
}

/* slice_fd: microvm.slice in the cgroup2 mount (this tool never runs inside
 * a VM's unit, so each VM's cgroup is its unit's, right below). */
static void vm_load_cgroup(int slice_fd, VmMetrics *v) {
        _cleanup_close_ int cg_fd = -EBADF;
        char buf[4096], unit[sizeof UNIT_PREFIX + VM_ID_MAX + sizeof ".service"];
        uint64_t x;

        snprintf(unit, sizeof unit, UNIT_PREFIX "%s.service", v->id);
        if (cgroup_open_child(slice_fd, unit, false, &cg_fd) < 0)
                return;
        /* cpu.stat's usage_usec is there with or without the cpu
         * controller; the others only with theirs. */
        if (read_cg_file(cg_fd, "cpu.stat", buf, sizeof buf) >= 0 && cgroup_stat_field(buf, "usage_usec", &x) >= 0) {
                v->has_cpu = true;
                v->cpu_usage_usec = x;
        }
        if (read_cg_file(cg_fd, "memory.current", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_memory = true;
                v->memory_current = x;
        }
        if (read_cg_file(cg_fd, "memory.peak", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_memory_peak = true;
                v->memory_peak = x;
        }
        if (read_cg_file(cg_fd, "io.stat", buf, sizeof buf) >= 0) {
                v->has_io = true;
                (void) cgroup_io_stat_sum(buf, &v->io_rbytes, &v->io_wbytes, &v->io_rios, &v->io_wios);
        }
        if (read_cg_file(cg_fd, "pids.current", buf, sizeof buf) >= 0 && parse_u64(buf, &x) >= 0) {
                v->has_pids = true;
                v->pids_current = x;
        }
}

/* ---- FlushMetrics to every running VM at once, one deadline for all ---- */

typedef struct Flush {
        int fd;
        char resp[64];
        size_t got;
        bool sent, done;
} Flush;

static const char flush_req[] = "PUT /actions HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                                "Content-Type: application/json\r\nContent-Length: 30\r\n\r\n"
                                "{\"action_type\":\"FlushMetrics\"}";
static_assert(sizeof "{\"action_type\":\"FlushMetrics\"}" - 1 == 30, "Content-Length");

static void flush_send(Flush *f) {
        /* A request this small goes out in one send on a fresh AF_UNIX
         * stream; EAGAIN (a full backlog) is retried from the poll loop. */
        ssize_t s = send(f->fd, flush_req, sizeof flush_req - 1, MSG_NOSIGNAL);
        if (s == (ssize_t) (sizeof flush_req - 1))
                f->sent = true;
        else if (!(s < 0 && (errno == EAGAIN || errno == EINTR)))
                f->done = true;
}

/* Connects to a VMM (its jail: jail_rel, NULL for none) and sends
 * FlushMetrics, without waiting: the VMMs answer while the rest is
 * collected (flush_finish()). */
static void flush_start(int chroot_fd, Flush *f, const char *jail_rel) {
        _cleanup_free_ char *sock = NULL;

        *f = (Flush) { .fd = -EBADF, .done = true };
        if (!jail_rel || asprintf(&sock, "%s" JAIL_API_SOCKET, jail_rel) < 0)
                return;
        /* Non-blocking, through an O_PATH fd of the socket inode (fc-api.h
         * says why). */
        if (fc_api_connect(chroot_fd, sock, &f->fd) < 0)
                return;
        f->done = false;
        flush_send(f);
}

/* Waits for the answers until deadline, calling answered(i) for each VM
 * whose VMM has answered (its file is read while the others still write
 * theirs): a VMM that does not answer in time (hung) keeps fc_flushed
 * false, and its figures are those of its last flush. */
static void flush_finish(Flush *fl, HostMetrics *h, usec_t deadline, void (*answered)(size_t i, void *userdata),
                         void *userdata) {
        _cleanup_close_ int ep = -EBADF;
        size_t pending = 0;

        if (!fl)
                return;
        /* epoll, not poll: a hundred VMMs answer one by one, and poll(2)
         * would queue on every socket again for each answer. */
        ep = epoll_create1(EPOLL_CLOEXEC);
        for (size_t i = 0; ep >= 0 && i < h->n_vms; i++) {
                struct epoll_event ev = { .events = fl[i].sent ? EPOLLIN : EPOLLOUT, .data.u64 = i };
                if (!fl[i].done && epoll_ctl(ep, EPOLL_CTL_ADD, fl[i].fd, &ev) >= 0)
                        pending++;
        }
        while (ep >= 0 && pending > 0) {
                struct epoll_event evs[32];
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        break;
                int r = epoll_wait(ep, evs, (int) ELEMENTSOF(evs), (int) ((deadline - now + 999) / 1000));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                for (int k = 0; k < r; k++) {
                        size_t i = (size_t) evs[k].data.u64;
                        Flush *f = &fl[i];
                        if (f->done)
                                continue;
                        if (!f->sent) {
                                flush_send(f);
                                struct epoll_event ev = { .events = EPOLLIN, .data.u64 = i };
                                if (f->sent && epoll_ctl(ep, EPOLL_CTL_MOD, f->fd, &ev) < 0)
                                        f->done = true;
                                if (f->done) {
                                        f->fd = safe_close(f->fd);
                                        pending--;
                                }
                                continue;
                        }
                        ssize_t got = recv(f->fd, f->resp + f->got, sizeof f->resp - 1 - f->got, 0);
                        if (got < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (got > 0)
                                f->got += (size_t) got;
                        f->resp[f->got] = '\0';
                        if (got <= 0 || memchr(f->resp, '\n', f->got) || f->got >= sizeof f->resp - 1) {
                                f->done = true;
                                f->fd = safe_close(f->fd);
                                pending--;
                                h->vms[i].fc_flushed = fc_http_parse_status(f->resp, f->got) == 204;
                                if (answered)
                                        answered(i, userdata);
                        }
                }
        }
        for (size_t i = 0; i < h->n_vms; i++)
                safe_close(fl[i].fd);
        free(fl);
}

/* ---- the metrics file and its running sum ---- */

static void vm_load_fc(int chroot_fd, int run_fd, const char *jail_rel, uid_t uid, VmMetrics *v,
                       const MetricsOptions *opts) {
        _cleanup_free_ char *rel = NULL, *sum_rel = NULL, *text = NULL, *buf = NULL, *out = NULL;
        _cleanup_close_ int fd = -EBADF, dir_fd = -EBADF;
        FcMetricsSum sum = {};
        struct stat st;
        size_t size = 0;
        ssize_t n;
        int r;

        if (asprintf(&rel, "%s" JAIL_METRICS_FILE, jail_rel) < 0 || asprintf(&sum_rel, "%s/" FC_SUM_FILE, v->id) < 0)
                return;
        /* In the jail, written by the VM's uid: a regular file, reached
         * without following any symlink, read (and, for the hole below,
         * written) by us, never trusted for more than its bytes. */
        r = safe_open_at(chroot_fd, rel, (opts->write_sums ? O_RDWR : O_RDONLY) | O_NONBLOCK, S_IFREG, &fd);
        /* The VM's own file, one link: not some other file its uid could
         * link in, whose blocks the hole below would give away. */
        if (r < 0 || safe_fd_verify(fd, S_IFREG, uid) < 0 || fstat(fd, &st) < 0)
                return;
        /* One scrape at a time sums a VM's file: the lock is on the run
         * directory, which is ours (root-owned), not on anything the VM's
         * uid can hold. */
        if (safe_open_dir_at(run_fd, v->id, &dir_fd) < 0)
                return;
        for (;;) {
                if (flock(dir_fd, LOCK_EX | LOCK_NB) >= 0)
                        break;
                if (errno != EWOULDBLOCK || now_usec(CLOCK_MONOTONIC) >= opts->deadline)
                        return;
                sleep_usec(2 * USEC_PER_MSEC);
        }
        if (safe_read_root_file_at(run_fd, sum_rel, 16U << 20, &text, &size) < 0 || fc_metrics_sum_parse(text, size, &sum) < 0)
                sum = (FcMetricsSum) {};
        if (sum.dev != (uint64_t) st.st_dev || sum.ino != (uint64_t) st.st_ino || sum.offset > (uint64_t) st.st_size) {
                /* Another file (a new start of the VM) or one cut short:
                 * its counters start from zero again. */
                fc_metrics_sum_done(&sum);
                sum = (FcMetricsSum) { .dev = st.st_dev, .ino = st.st_ino };
        }
        uint64_t start = sum.offset;
        size_t want = (uint64_t) st.st_size - start > FC_READ_MAX ? FC_READ_MAX : (size_t) ((uint64_t) st.st_size - start);
        buf = malloc(want + 1);
        n = buf && want > 0 ? pread(fd, buf, want, (off_t) start) : 0;
        if (n > 0)
                (void) fc_metrics_sum_feed(&sum, buf, (size_t) n);
        if (opts->write_sums && sum.offset != start && (out = fc_metrics_sum_serialize(&sum))) {
                (void) safe_write_file_at(run_fd, sum_rel, out, strlen(out), 0600, 0, 0, SAFE_WRITE_REPLACE);
                /* What is summed is not needed again: give its blocks
                 * back (the file keeps its size, firecracker its offset;
                 * reads of the hole are zeros, which the feed skips). */
                (void) fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t) sum.offset);
        }
        v->has_fc = true;
        v->fc = sum;
}

/* Firecracker's half of a scrape, shared by two threads: the one that asks
 * the VMMs (fc_work()) and, once done with its own half, the main one. Each
 * VM's file is read once, by whichever thread claims it first. */
typedef struct FcShare {
        HostMetrics *h;
        int chroot_fd, run_fd;
        char **jail_rel;                /* filled in by fc_work(), as is uid */
        uid_t *uid;
        atomic_bool *claimed;
        atomic_bool *answered;          /* its VMM answered FlushMetrics */
        const MetricsOptions *opts;
        const char *chroot_base;
        bool flush;
        usec_t flush_deadline;
        usec_t flush_usec, fc_usec;     /* fc_work()'s own time in each */
} FcShare;

/* Reads VM i's metrics file, unless another thread has; returns the time
 * it took. */
static usec_t fc_load_one(FcShare *s, size_t i) {
        usec_t t = now_usec(CLOCK_MONOTONIC);

        if (!s->jail_rel[i] || s->run_fd < 0 || t >= s->opts->deadline || atomic_exchange(&s->claimed[i], true))
                return 0;
        vm_load_fc(s->chroot_fd, s->run_fd, s->jail_rel[i], s->uid[i], &s->h->vms[i], s->opts);
        return now_usec(CLOCK_MONOTONIC) - t;
}

static void fc_answered(size_t i, void *userdata) {
        FcShare *s = userdata;

        atomic_store(&s->answered[i], true);
        s->fc_usec += fc_load_one(s, i);
}

/* The jail and uid of VM i from its launch plan: only VMs with one (staged
 * or running) have a jail, and only those whose unit runs a VMM to ask. */
static void fc_plan(FcShare *s, size_t i) {
        _cleanup_plan_ Plan *plan = NULL;

        if (!streq_ptr(s->h->vms[i].active_state, "active") || s->run_fd < 0 ||
            vm_plan_read_at(s->run_fd, s->h->vms[i].id, &plan, NULL) < 0 || !streq_ptr(plan->chroot_base, s->chroot_base))
                return;
        if (asprintf(&s->jail_rel[i], "%s/%s/root", plan->exec_name, s->h->vms[i].id) < 0)
                s->jail_rel[i] = NULL;
        s->uid[i] = plan->uid;
}

static void *fc_work(void *userdata) {
        FcShare *s = userdata;
        usec_t t = now_usec(CLOCK_MONOTONIC);
        Flush *fl = s->flush ? calloc(s->h->n_vms + 1, sizeof *fl) : NULL;

        /* Each VMM is asked as soon as its plan is read. */
        for (size_t i = 0; i < s->h->n_vms; i++) {
                fc_plan(s, i);
                if (fl)
                        flush_start(s->chroot_fd, &fl[i], s->jail_rel[i]);
        }
        flush_finish(fl, s->h, s->flush_deadline, fc_answered, s);
        /* The VMMs that did not answer (or were not asked): their files as
         * they are. */
        for (size_t i = 0; i < s->h->n_vms; i++)
                s->fc_usec += fc_load_one(s, i);
        s->flush_usec = now_usec(CLOCK_MONOTONIC) - t - s->fc_usec;
        return NULL;
}

int vm_metrics_lock_run_dir(const char *run_dir, const char *id) {
        _cleanup_close_ int run_fd = -EBADF, dir_fd = -EBADF;
        int r;

        r = safe_root_open(run_dir, 0, 0, &run_fd, NULL);
        if (r >= 0)
                r = safe_open_dir_at(run_fd, id, &dir_fd);
        if (r < 0)
                return r;
        while (flock(dir_fd, LOCK_EX) < 0)
                if (errno != EINTR)
                        return -errno;
        return TAKE_FD(dir_fd);
}

/* ---- host-wide ---- */

static void load_uids(const HostConfig *host, HostMetrics *h, VmMetrics *unused) {
        _cleanup_close_ int state_fd = -EBADF;
        DIR *d;
        uint64_t used = 0;

        (void) unused;
        h->uids_total = (uint64_t) host->uid_max - host->uid_min + 1;
        if (safe_root_open(host->state_dir, 0, 0, &state_fd, NULL) < 0) {
                /* No state dir yet: no VM has a uid. */
                h->has_uids = true;
                h->uids_free = h->uids_total;
                return;
        }
        int dfd = dup(state_fd);
        if (dfd < 0 || !(d = fdopendir(dfd))) {
                safe_close(dfd);
                return;
        }
        /* A uid is taken while a VM's record names it (uid-alloc.h); the
         * record's presence is enough here (a stat, not a read: one scrape
         * looks at every VM). */
        for (struct dirent *de; (de = readdir(d));) {
                char rel[sizeof de->d_name + sizeof STATE_UID_FILE + 1];
                struct stat st;
                if (!vm_id_valid(de->d_name))
                        continue;
                snprintf(rel, sizeof rel, "%s/" STATE_UID_FILE, de->d_name);
                if (fstatat(state_fd, rel, &st, AT_SYMLINK_NOFOLLOW) >= 0 && S_ISREG(st.st_mode))
                        used++;
        }
        closedir(d);
        h->has_uids = true;
        h->uids_free = used > h->uids_total ? 0 : h->uids_total - used;
}

static void load_pool(const HostConfig *host, HostMetrics *h) {
        _cleanup_free_ char *type = NULL, *status = NULL, *ttype = NULL, *params = NULL;
        uint64_t len;
        ThinPoolStatus ps;
        unsigned long long block_sectors = 0;

        if (!host->thin_pool.configured || !host->thin_pool.name)
                return;
        if (dm_check_available(NULL) < 0 || dm_get_status(host->thin_pool.name, &type, &status, &len) < 0 ||
            !streq_ptr(type, "thin-pool") || thin_pool_status_parse(status, &ps) < 0)
                return;
        /* Table: "<metadata dev> <data dev> <data block size> ..." in
         * sectors; metadata blocks are 4 KiB (dm-thin's fixed size). */
        if (dm_get_table(host->thin_pool.name, &ttype, &params, &len) < 0 ||
            sscanf(params, "%*s %*s %llu", &block_sectors) != 1)
                return;
        h->pool = strdup(host->thin_pool.name);
        h->pool_data_used = ps.used_data_blocks * block_sectors * 512;
        h->pool_data_size = ps.total_data_blocks * block_sectors * 512;
        h->pool_metadata_used = ps.used_metadata_blocks * 4096;
        h->pool_metadata_size = ps.total_metadata_blocks * 4096;
}

static void lap(HostMetrics *h, size_t collector, usec_t *t) {
        usec_t now = now_usec(CLOCK_MONOTONIC);
        h->collector_usec[collector] += now - *t;
        *t = now;
}

int vm_metrics_collect(const HostConfig *host, sd_bus *bus, char *const *ids, size_t n_ids,
                       const MetricsOptions *opts, HostMetrics *ret, char **ret_error) {
        _cleanup_(host_metrics_done) HostMetrics h = {};
        _cleanup_free_ char *mount = NULL;
        _cleanup_close_ int chroot_fd = -EBADF, run_fd = -EBADF, slice_fd = -EBADF;
        ManagerUnit *units = NULL;
        size_t n_units = 0, allocated = 0;
        usec_t begin = now_usec(CLOCK_MONOTONIC), t = begin;
        char **jail_rel = NULL;
        int r;

        /* The manager lists the units while the configs are enumerated. */
        ManagerListCall *list_call = NULL;
        if (bus) {
                r = manager_list_units_send(bus, UNIT_PREFIX "*.service", &list_call, ret_error);
                if (r < 0)
                        return r;
                /* Out now if the handshake is done (the connection was
                 * opened before the request was read), not at the wait. */
                (void) manager_kick(bus);
        }
        if (ids) {
                for (size_t i = 0; i < n_ids; i++)
                        if (!vm_add(&h, &allocated, ids[i])) {
                                manager_list_call_free(list_call);
                                return -ENOMEM;
                        }
        } else {
                VmConfigFile *files = NULL;
                size_t n_files = 0;
                if (vm_config_enumerate(&files, &n_files) >= 0) {
                        for (size_t i = 0; i < n_files; i++)
                                if (!files[i].masked && vm_id_valid(files[i].name) && !vm_add(&h, &allocated, files[i].name)) {
                                        vm_config_files_free(files, n_files);
                                        manager_list_call_free(list_call);
                                        return -ENOMEM;
                                }
                        vm_config_files_free(files, n_files);
                }
        }
        if (bus) {
                r = manager_list_units_wait(bus, list_call, &units, &n_units, ret_error);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < n_units; i++) {
                const char *id = startswith(units[i].name, UNIT_PREFIX);
                char buf[VM_ID_MAX + 1];
                size_t len = id ? strlen(id) : 0;
                if (!id || len <= 8 || len - 8 > VM_ID_MAX || !endswith(id, ".service"))
                        continue;
                memcpy(buf, id, len - 8);
                buf[len - 8] = '\0';
                VmMetrics *v = NULL;
                if (ids) {
                        for (size_t k = 0; k < h.n_vms; k++)
                                if (streq(h.vms[k].id, buf))
                                        v = &h.vms[k];
                } else if (!streq(units[i].load_state, "not-found") || !streq(units[i].active_state, "inactive"))
                        v = vm_add(&h, &allocated, buf);
                if (!v)
                        continue;
                free(v->active_state);
                v->active_state = strdup(units[i].active_state);
        }
        qsort(h.vms, h.n_vms, sizeof *h.vms, cmp_vm);

        jail_rel = calloc(h.n_vms + 1, sizeof *jail_rel);
        _cleanup_free_ uid_t *vm_uid = calloc(h.n_vms + 1, sizeof *vm_uid);
        if (!jail_rel || !vm_uid) {
                free(jail_rel);
                manager_units_free(units, n_units);
                return -ENOMEM;
        }
        if (safe_root_open(host->chroot_base, 0, 0, &chroot_fd, NULL) < 0 ||
            safe_root_open(host->run_dir, 0, 0, &run_fd, NULL) < 0)
                run_fd = safe_close(run_fd); /* no jails to look at */
        lap(&h, 0, &t);

        /* Firecracker's half (FlushMetrics to every VMM, each metrics file
         * read as soon as its VMM has answered, then those of the VMMs that
         * did not) on a thread of its own, beside the manager, the configs
         * and the cgroups here: the VMMs answer meanwhile, and another CPU
         * reads their files. The halves fill different fields of each
         * VmMetrics and different collectors. */
        _cleanup_free_ atomic_bool *claimed = calloc(h.n_vms + 1, sizeof *claimed);
        _cleanup_free_ atomic_bool *answered = calloc(h.n_vms + 1, sizeof *answered);
        usec_t flush_deadline = now_usec(CLOCK_MONOTONIC) + opts->flush_timeout;
        FcShare fs = {
                .h = &h, .chroot_fd = chroot_fd, .run_fd = run_fd, .jail_rel = jail_rel, .uid = vm_uid,
                .claimed = claimed, .answered = answered, .opts = opts, .chroot_base = host->chroot_base,
                .flush = opts->flush_timeout > 0 && chroot_fd >= 0,
                .flush_deadline = flush_deadline < opts->deadline ? flush_deadline : opts->deadline,
        };
        bool have_share = claimed && answered;
        pthread_t fc_thread;
        bool threaded = have_share && pthread_create(&fc_thread, NULL, fc_work, &fs) == 0;
        if (have_share && !threaded)
                (void) fc_work(&fs);

        for (size_t i = 0; i < h.n_vms; i++) {
                VmMetrics *v = &h.vms[i];
                vm_load_config(host, v, &h.vms_configured);
                if (v->active_state && (streq(v->active_state, "active") || streq(v->active_state, "activating") ||
                                        streq(v->active_state, "deactivating") || streq(v->active_state, "reloading")))
                        h.vms_running++;
                if (streq_ptr(v->active_state, "failed"))
                        h.vms_failed++;
        }
        lap(&h, 1, &t);

        if (cgroup2_find_mount(&mount) >= 0 && cgroup_open(mount, "/" UNIT_SLICE, &slice_fd) >= 0)
                for (size_t i = 0; i < h.n_vms; i++)
                        vm_load_cgroup(slice_fd, &h.vms[i]);
        lap(&h, 2, &t);

        /* Unit facts, one pipelined round for all. */
        if (bus && n_units > 0) {
                _cleanup_free_ ManagerPropQuery *q = calloc(2 * n_units + 1, sizeof *q);
                _cleanup_free_ bool *ok = calloc(2 * n_units + 1, sizeof *ok);
                size_t nq = 0;
                if (!q || !ok) {
                        manager_units_free(units, n_units);
                        if (threaded)
                                (void) pthread_join(fc_thread, NULL);
                        strv_free(jail_rel);
                        return -ENOMEM;
                }
                for (size_t i = 0; i < n_units; i++)
                        for (size_t k = 0; k < h.n_vms; k++) {
                                VmMetrics *v = &h.vms[k];
                                const char *id = startswith(units[i].name, UNIT_PREFIX);
                                if (!id || strncmp(id, v->id, strlen(v->id)) != 0 || !streq(id + strlen(v->id), ".service"))
                                        continue;
                                q[nq++] = (ManagerPropQuery) { units[i].path, "org.freedesktop.systemd1.Service",
                                                               "ExecMainStartTimestamp", 't', &v->start_usec, NULL };
                                q[nq] = (ManagerPropQuery) { units[i].path, "org.freedesktop.systemd1.Service",
                                                             "NRestarts", 'u', &v->restarts, &ok[nq] };
                                nq++;
                        }
                (void) manager_get_many(bus, q, nq, opts->deadline, NULL);
                for (size_t j = 0; j < nq; j++)
                        if (ok[j])
                                for (size_t k = 0; k < h.n_vms; k++)
                                        if (q[j].value == &h.vms[k].restarts)
                                                h.vms[k].has_restarts = true;
        }
        manager_units_free(units, n_units);
        lap(&h, 0, &t);

        /* Done here: help with the files of the VMMs that have answered. */
        usec_t helped = 0;
        for (size_t i = 0; threaded && i < h.n_vms; i++)
                if (atomic_load(&answered[i]))
                        helped += fc_load_one(&fs, i);
        if (threaded)
                (void) pthread_join(fc_thread, NULL);
        h.collector_usec[3] += fs.flush_usec;
        h.collector_usec[4] += fs.fc_usec + helped;
        strv_free(jail_rel);
        t = now_usec(CLOCK_MONOTONIC);

        load_uids(host, &h, NULL);
        load_pool(host, &h);
        lap(&h, 5, &t);
        h.duration_usec = now_usec(CLOCK_MONOTONIC) - begin;
        *ret = h;
        h = (HostMetrics) {};
        return 0;
}
