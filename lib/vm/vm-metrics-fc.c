/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Firecracker's half of a collection (vm-metrics-fc.h): FlushMetrics to
 * every VMM at once, each metrics file summed as soon as its VMM has
 * answered, on a thread of its own that is begun before the rest of the
 * scrape (the manager, the configs, the cgroups) and runs beside it. The
 * VMMs to ask are those with a launch plan in the run directory (staged or
 * running); the figures are kept only for VMs whose unit is active. */
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

#include "fc-api.h"
#include "names.h"
#include "plan.h"
#include "safe-fs.h"
#include "util.h"
#include "vm-metrics-fc.h"
#include "vm-teardown.h"

/* At most this much of a metrics file is read per scrape (about 200 lines of
 * a VM with a few devices; firecracker writes one a minute): a scrape after a
 * long pause catches up over the next ones instead of taking long. */
#define FC_READ_MAX (1024U * 1024U)
#define FC_SUM_FILE "fc-metrics.sum"

typedef struct Flush {
        int fd;
        char resp[64];
        size_t got;
        bool sent, done;
} Flush;

/* One VM with a launch plan. */
typedef struct FcVm {
        char id[VM_ID_MAX + 1];
        char *jail_rel;         /* under the chroot base; NULL: no plan (or another base) */
        uid_t uid;
        Flush flush;
        atomic_bool answered;   /* its VMM answered FlushMetrics */
        atomic_bool claimed;    /* its file is being read or was */
        bool flushed;           /* ... with 204 */
        bool has_fc;
        FcMetricsSum sum;
} FcVm;

struct FcScrape {
        FcVm *vms;
        size_t n_vms;
        int chroot_fd, run_fd;
        char *chroot_base;
        MetricsOptions opts;
        bool flush;
        usec_t flush_deadline;
        pthread_t thread;
        bool threaded;
        /* The thread tells the other of each answer (seq) and of the end
         * of the flush (over: the files left are read as they are). */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        unsigned seq;
        bool over;
        usec_t flush_usec, fc_usec;     /* the thread's own time in each */
        usec_t helped_usec;             /* the other thread's, reading files */
};

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

/* Connects to a VMM (its jail: jail_rel) and sends FlushMetrics, without
 * waiting: the VMMs answer while the rest is collected (flush_finish()). */
static void flush_start(int chroot_fd, Flush *f, const char *jail_rel) {
        _cleanup_free_ char *sock = NULL;

        *f = (Flush) { .fd = -EBADF, .done = true };
        if (asprintf(&sock, "%s" JAIL_API_SOCKET, jail_rel) < 0)
                return;
        /* Non-blocking, through an O_PATH fd of the socket inode (fc-api.h
         * says why). */
        if (fc_api_connect(chroot_fd, sock, &f->fd) < 0)
                return;
        f->done = false;
        flush_send(f);
}

/* ---- the metrics file and its running sum ---- */

static void vm_load_fc(const FcScrape *s, FcVm *v) {
        _cleanup_free_ char *rel = NULL, *text = NULL, *buf = NULL, *out = NULL;
        _cleanup_close_ int fd = -EBADF, dir_fd = -EBADF;
        const MetricsOptions *opts = &s->opts;
        FcMetricsSum sum = {};
        struct stat st;
        size_t size = 0;
        ssize_t n;
        int r;

        if (asprintf(&rel, "%s" JAIL_METRICS_FILE, v->jail_rel) < 0)
                return;
        /* In the jail, written by the VM's uid: a regular file, reached
         * without following any symlink, read (and, for the hole below,
         * written) by us, never trusted for more than its bytes. */
        r = safe_open_at(s->chroot_fd, rel, (opts->write_sums ? O_RDWR : O_RDONLY) | O_NONBLOCK, S_IFREG, &fd);
        /* The VM's own file, one link: not some other file its uid could
         * link in, whose blocks the hole below would give away. */
        if (r < 0 || safe_fd_verify(fd, S_IFREG, v->uid) < 0 || fstat(fd, &st) < 0)
                return;
        /* One scrape at a time sums a VM's file: the lock is on the run
         * directory, which is ours (root-owned), not on anything the VM's
         * uid can hold. */
        if (safe_open_dir_at(s->run_fd, v->id, &dir_fd) < 0)
                return;
        for (;;) {
                if (flock(dir_fd, LOCK_EX | LOCK_NB) >= 0)
                        break;
                if (errno != EWOULDBLOCK || now_usec(CLOCK_MONOTONIC) >= opts->deadline)
                        return;
                sleep_usec(2 * USEC_PER_MSEC);
        }
        /* The sum: in that directory, through it. */
        if (safe_read_root_file_at(dir_fd, FC_SUM_FILE, 16U << 20, &text, &size) < 0 ||
            fc_metrics_sum_parse(text, size, &sum) < 0)
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
                (void) safe_write_file_at(dir_fd, FC_SUM_FILE, out, strlen(out), 0600, 0, 0, SAFE_WRITE_REPLACE);
                /* What is summed is not needed again: give its blocks
                 * back (the file keeps its size, firecracker its offset;
                 * reads of the hole are zeros, which the feed skips). */
                (void) fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, (off_t) sum.offset);
        }
        v->has_fc = true;
        v->sum = sum;
}

/* Reads VM i's metrics file, unless the other thread has; returns the time
 * it took. */
static usec_t load_one(FcScrape *s, size_t i) {
        usec_t t = now_usec(CLOCK_MONOTONIC);
        FcVm *v = &s->vms[i];

        if (!v->jail_rel || t >= s->opts.deadline || atomic_exchange(&v->claimed, true))
                return 0;
        vm_load_fc(s, v);
        return now_usec(CLOCK_MONOTONIC) - t;
}

/* For fc_scrape_help() on the other thread: one more answer, or the end. */
static void tell(FcScrape *s, bool over) {
        if (!s->threaded)
                return;
        pthread_mutex_lock(&s->lock);
        s->seq++;
        s->over = s->over || over;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
}

/* Waits for the answers until the flush deadline, reading each VM's file
 * as soon as its VMM has answered (the others still write theirs): a VMM
 * that does not answer in time (hung) keeps flushed false, and its figures
 * are those of its last flush. */
static void flush_finish(FcScrape *s) {
        _cleanup_close_ int ep = -EBADF;
        size_t pending = 0;

        /* epoll, not poll: a hundred VMMs answer one by one, and poll(2)
         * would queue on every socket again for each answer. */
        ep = epoll_create1(EPOLL_CLOEXEC);
        for (size_t i = 0; ep >= 0 && i < s->n_vms; i++) {
                Flush *f = &s->vms[i].flush;
                struct epoll_event ev = { .events = f->sent ? EPOLLIN : EPOLLOUT, .data.u64 = i };
                if (!f->done && epoll_ctl(ep, EPOLL_CTL_ADD, f->fd, &ev) >= 0)
                        pending++;
        }
        while (ep >= 0 && pending > 0) {
                struct epoll_event evs[32];
                size_t answered[ELEMENTSOF(evs)], n_answered = 0;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= s->flush_deadline)
                        break;
                int r = epoll_wait(ep, evs, (int) ELEMENTSOF(evs), (int) ((s->flush_deadline - now + 999) / 1000));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        break;
                for (int k = 0; k < r; k++) {
                        size_t i = (size_t) evs[k].data.u64;
                        Flush *f = &s->vms[i].flush;
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
                                s->vms[i].flushed = fc_http_parse_status(f->resp, f->got) == 204;
                                atomic_store(&s->vms[i].answered, true);
                                answered[n_answered++] = i;
                        }
                }
                /* All of this round's answers are told first: the other
                 * thread reads some of their files while this one reads
                 * others. */
                if (n_answered > 0)
                        tell(s, false);
                for (size_t k = 0; k < n_answered; k++)
                        s->fc_usec += load_one(s, answered[k]);
        }
        for (size_t i = 0; i < s->n_vms; i++)
                s->vms[i].flush.fd = safe_close(s->vms[i].flush.fd);
}

/* The jail and uid of a VM from its launch plan: only VMs with one (staged
 * or running) have a jail, and only those in the chroot base of this host
 * config are looked at. */
static void read_plan(FcScrape *s, FcVm *v) {
        _cleanup_plan_ Plan *plan = NULL;

        if (vm_plan_read_at(s->run_fd, v->id, &plan, NULL) < 0 || !streq_ptr(plan->chroot_base, s->chroot_base))
                return;
        if (asprintf(&v->jail_rel, "%s/%s/root", plan->exec_name, v->id) < 0)
                v->jail_rel = NULL;
        v->uid = plan->uid;
}

static void *fc_work(void *userdata) {
        FcScrape *s = userdata;
        usec_t t = now_usec(CLOCK_MONOTONIC);

        /* Each VMM is asked as soon as its plan is read. */
        for (size_t i = 0; i < s->n_vms; i++) {
                FcVm *v = &s->vms[i];
                read_plan(s, v);
                if (s->flush && v->jail_rel)
                        flush_start(s->chroot_fd, &v->flush, v->jail_rel);
        }
        if (s->flush)
                flush_finish(s);
        tell(s, true);
        /* The VMMs that did not answer (or were not asked): their files as
         * they are. */
        for (size_t i = 0; i < s->n_vms; i++)
                s->fc_usec += load_one(s, i);
        s->flush_usec = now_usec(CLOCK_MONOTONIC) - t - s->fc_usec;
        return NULL;
}

static int cmp_fc_vm(const void *a, const void *b) {
        return strcmp(((const FcVm *) a)->id, ((const FcVm *) b)->id);
}

static bool wanted_id(const char *id, char *const *ids, size_t n_ids) {
        if (!ids)
                return true;
        for (size_t i = 0; i < n_ids; i++)
                if (streq(ids[i], id))
                        return true;
        return false;
}

/* The VMs of the run directory (those staged or running have a directory
 * there), sorted by id. */
static int list_vms(FcScrape *s, char *const *ids, size_t n_ids) {
        size_t allocated = 0;
        DIR *d;

        int dfd = dup(s->run_fd);
        if (dfd < 0)
                return -errno;
        d = fdopendir(dfd);
        if (!d) {
                safe_close(dfd);
                return -errno;
        }
        for (struct dirent *de; (de = readdir(d));) {
                if ((de->d_type != DT_DIR && de->d_type != DT_UNKNOWN) || !vm_id_valid(de->d_name) ||
                    !wanted_id(de->d_name, ids, n_ids))
                        continue;
                if (greedy_realloc((void **) &s->vms, &allocated, s->n_vms + 1, sizeof *s->vms) < 0) {
                        closedir(d);
                        return -ENOMEM;
                }
                FcVm *v = &s->vms[s->n_vms++];
                *v = (FcVm) { .flush = { .fd = -EBADF, .done = true } };
                /* vm_id_valid(): at most VM_ID_MAX characters */
                memcpy(v->id, de->d_name, MIN(strlen(de->d_name), (size_t) VM_ID_MAX) + 1);
                v->id[VM_ID_MAX] = '\0';
        }
        closedir(d);
        if (s->n_vms > 1)
                qsort(s->vms, s->n_vms, sizeof *s->vms, cmp_fc_vm);
        return 0;
}

int fc_scrape_begin(const HostConfig *host, char *const *ids, size_t n_ids, const MetricsOptions *opts,
                    FcScrape **ret) {
        FcScrape *s = calloc(1, sizeof *s);
        int r;

        if (!s)
                return -ENOMEM;
        *s = (FcScrape) { .chroot_fd = -EBADF, .run_fd = -EBADF, .opts = *opts, .lock = PTHREAD_MUTEX_INITIALIZER,
                          .cond = PTHREAD_COND_INITIALIZER };
        s->chroot_base = strdup(host->chroot_base);
        if (!s->chroot_base) {
                fc_scrape_free(s);
                return -ENOMEM;
        }
        /* No chroot base or run directory yet: no jails to look at. */
        if (safe_root_open(host->chroot_base, 0, 0, &s->chroot_fd, NULL) >= 0 &&
            safe_root_open(host->run_dir, 0, 0, &s->run_fd, NULL) >= 0) {
                r = list_vms(s, ids, n_ids);
                if (r < 0) {
                        fc_scrape_free(s);
                        return r;
                }
        }
        usec_t flush_deadline = now_usec(CLOCK_MONOTONIC) + opts->flush_timeout;
        s->flush = opts->flush_timeout > 0;
        s->flush_deadline = flush_deadline < opts->deadline ? flush_deadline : opts->deadline;
        if (s->n_vms > 0) {
                /* threaded before the thread runs: it tells the other */
                s->threaded = true;
                if (pthread_create(&s->thread, NULL, fc_work, s) != 0) {
                        s->threaded = false;
                        (void) fc_work(s);
                }
        }
        *ret = s;
        return 0;
}

static void join(FcScrape *s) {
        if (s->threaded)
                (void) pthread_join(s->thread, NULL);
        s->threaded = false;
}

/* Reads files beside the thread until it is done with the flush and every
 * file is claimed: those of the VMMs that have answered, then, once the
 * flush is over, the rest. Waits (up to the flush deadline, the thread's)
 * only while there is nothing to read. */
void fc_scrape_help(FcScrape *s) {
        if (!s->threaded)
                return;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                unsigned seq = s->seq;
                bool over = s->over;
                pthread_mutex_unlock(&s->lock);
                for (size_t i = 0; i < s->n_vms; i++)
                        if (over || atomic_load(&s->vms[i].answered))
                                s->helped_usec += load_one(s, i);
                pthread_mutex_lock(&s->lock);
                if (over)
                        break;
                while (s->seq == seq && !s->over)
                        pthread_cond_wait(&s->cond, &s->lock);
        }
        pthread_mutex_unlock(&s->lock);
}

void fc_scrape_finish(FcScrape *s, HostMetrics *h) {
        fc_scrape_help(s);
        join(s);
        for (size_t k = 0; k < h->n_vms; k++) {
                VmMetrics *v = &h->vms[k];
                FcVm key = {}, *f;
                /* Figures only of VMs whose unit runs: a VM being started
                 * or stopped may be asked, not shown. */
                if (!streq_ptr(v->active_state, "active"))
                        continue;
                snprintf(key.id, sizeof key.id, "%s", v->id);
                f = s->n_vms > 0 ? bsearch(&key, s->vms, s->n_vms, sizeof *s->vms, cmp_fc_vm) : NULL;
                if (!f || !f->jail_rel)
                        continue;
                v->fc_flushed = f->flushed;
                if (f->has_fc) {
                        v->has_fc = true;
                        v->fc = f->sum;
                        f->sum = (FcMetricsSum) {};
                        f->has_fc = false;
                }
        }
        h->collector_usec[3] += s->flush_usec;
        h->collector_usec[4] += s->fc_usec + s->helped_usec;
}

void fc_scrape_free(FcScrape *s) {
        if (!s)
                return;
        join(s);
        for (size_t i = 0; i < s->n_vms; i++) {
                free(s->vms[i].jail_rel);
                safe_close(s->vms[i].flush.fd);
                fc_metrics_sum_done(&s->vms[i].sum);
        }
        free(s->vms);
        safe_close(s->chroot_fd);
        safe_close(s->run_fd);
        free(s->chroot_base);
        free(s);
}
