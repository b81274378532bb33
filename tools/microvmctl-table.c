/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The table of VMs that microvmctl list, status, sync and gc work from: one
 * row per VM, from three sources joined by id — the config files in the
 * search path, the microvm@ units the manager has loaded (one
 * ListUnitsByPatterns call, then MainPID and StateChangeTimestamp of the
 * units that are not inactive, pipelined), and, for running VMs, the launch
 * plan in <run_dir>/<id>/plan, which records the digest of the config the
 * VM was started from. The config files are read on a thread of their own
 * while the main thread talks to the manager and reads the plans: the
 * manager's answers arrive while the files are read, not after. */

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "config-files.h"
#include "log.h"
#include "manager.h"
#include "microvmctl.h"
#include "names.h"
#include "safe-fs.h"
#include "stage-plan.h"
#include "suspend.h"
#include "uid-alloc.h"
#include "unit-state.h"
#include "vm-teardown.h"

void vm_table_done(VmTable *t) {
        for (size_t i = 0; i < t->n; i++) {
                free(t->rows[i].config_path);
                vm_config_free(t->rows[i].config);
                plan_free(t->rows[i].plan);
        }
        free(t->rows);
        manager_units_free(t->units, t->n_units);
        *t = (VmTable) {};
}

bool unit_running(const ManagerUnit *u) {
        return u && active_state_is_running(u->active_state);
}

/* "microvm@web1.service" → "web1" (false for anything else). */
static bool unit_vm_id(const char *unit, char id[static VM_ID_MAX + 1]) {
        const char *s = startswith(unit, UNIT_PREFIX), *e;

        if (!s || !(e = endswith(s, ".service")) || (size_t) (e - s) > VM_ID_MAX)
                return false;
        memcpy(id, s, (size_t) (e - s));
        id[e - s] = 0;
        return vm_id_valid(id);
}

static VmRow *row_add(VmTable *t, size_t *allocated, const char *id) {
        if (greedy_realloc((void **) &t->rows, allocated, t->n + 1, sizeof *t->rows) < 0)
                return NULL;
        VmRow *r = &t->rows[t->n++];
        *r = (VmRow) { .uid = UID_INVALID };
        memcpy(r->id, id, strlen(id) + 1);
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int cmp_row(const void *a, const void *b) {
        return strcmp(((const VmRow *) a)->id, ((const VmRow *) b)->id);
}

/* qsort() of rows (large elements, copied around) only when they are not
 * in order already: the config files come sorted by name, and loaded units
 * add rows only for orphans. */
static void rows_sort(VmRow *rows, size_t n) {
        for (size_t i = 1; i < n; i++)
                if (strcmp(rows[i - 1].id, rows[i].id) > 0) {
                        qsort(rows, n, sizeof *rows, cmp_row);
                        return;
                }
}

/* rows[0..n) sorted by id. */
static VmRow *row_find(VmRow *rows, size_t n, const char *id) {
        VmRow key = {};
        if (n == 0)
                return NULL;    /* rows may be NULL: no bsearch() on it */
        memcpy(key.id, id, strlen(id) + 1);
        return bsearch(&key, rows, n, sizeof *rows, cmp_row);
}

/* Reads and parses one config (the validator's problems are not shown
 * here: "microvmctl validate" names them). */
void row_load_config(VmRow *r, const HostConfig *host) {
        _cleanup_free_ char *data = NULL;
        Problems problems = {};
        size_t size;

        if (config_read_file(r->config_path, &data, &size) < 0 ||
            vm_config_parse(r->config_path, r->id, data, size, host, &r->config, &problems) < 0)
                r->invalid = true;
        problems_done(&problems);
}

/* The ids with a directory in <state_dir> (only they can have a uid
 * record), sorted: one readdir instead of a failed open per VM. */
static char **state_ids(int state_fd) {
        _cleanup_(closedirp) DIR *d = NULL;
        char **ids = NULL;
        struct dirent *de;
        int fd;

        if (state_fd < 0 || (fd = openat(state_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return NULL;
        d = fdopendir(fd);
        if (!d) {
                close(fd);
                return NULL;
        }
        while ((de = readdir(d)))
                if (vm_id_valid(de->d_name) && strv_push(&ids, de->d_name) < 0)
                        break;
        if (ids)
                qsort(ids, strv_length(ids), sizeof *ids, cmp_str);
        return ids;
}

static bool has_state_dir(char **with_state, size_t n_with_state, const char *id) {
        return with_state && bsearch(&id, with_state, n_with_state, sizeof *with_state, cmp_str);
}

/* What only files on this host tell: uid, plan, config changed. */
static void row_load_state(VmRow *r, int run_fd, int state_fd, char **with_state, size_t n_with_state) {
        bool state_dir = state_fd >= 0 && has_state_dir(with_state, n_with_state, r->id);

        if (unit_running(r->unit) && run_fd >= 0 && !r->plan)
                (void) vm_plan_read_at(run_fd, r->id, &r->plan, NULL);
        if (r->plan)
                r->uid = r->plan->uid;
        else if (state_dir && uid_record_read(state_fd, r->id, &r->uid) >= 0)
                ;
        else if (r->config && !r->config->uid_auto)
                r->uid = r->config->uid;

        r->orphan = unit_running(r->unit) && (!r->config_path || r->masked);
        if (state_dir && !unit_running(r->unit)) {
                _cleanup_close_ int vm_fd = -EBADF;
                SuspendRecord rec;

                if (safe_open_dir_at(state_fd, r->id, &vm_fd) >= 0 && suspend_read_record(vm_fd, &rec, NULL) >= 0) {
                        r->suspended = true;
                        r->snapshot_bytes = rec.memory_bytes + rec.vmstate_bytes;
                        r->snapshot_usec = rec.created_usec;
                }
        }
        if (r->plan && r->plan->config_digest) {
                char hex[2 * SHA256_DIGEST_SIZE + 1];

                if (!r->config_path || r->masked || r->invalid)
                        r->config_changed = true;
                else {
                        sha256_hex(r->config->digest, hex);
                        r->config_changed = !streq(hex, r->plan->config_digest);
                }
        }
}

static bool strv_contains(char **l, size_t n, const char *s) {
        for (size_t i = 0; i < n; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

/* The rows of every config file in the search path, each through the list
 * cache (tools/microvmctl-cache.c): list's and sync's file work, done on a
 * thread of its own while the manager answers. */
typedef struct FilesWork {
        VmTable *t;
        size_t *allocated;
        const HostConfig *host;
        int run_fd;
        int r;
} FilesWork;

static void *files_work(void *userdata) {
        FilesWork *w = userdata;
        VmConfigFile *files = NULL;
        size_t n = 0;

        w->r = vm_config_enumerate(&files, &n);
        if (w->r < 0)
                return NULL;
        for (size_t i = 0; i < n && w->r >= 0; i++) {
                if (!vm_id_valid(files[i].name))
                        continue;
                VmRow *row = row_add(w->t, w->allocated, files[i].name);
                if (!row) {
                        w->r = -ENOMEM;
                        break;
                }
                row->masked = files[i].masked;
                row->config_path = TAKE_PTR(files[i].path);
        }
        vm_config_files_free(files, n);
        if (w->r < 0)
                return NULL;
        rows_sort(w->t->rows, w->t->n);
        ListCache *cache = list_cache_begin(w->host, w->run_fd);
        for (size_t i = 0; i < w->t->n; i++)
                if (w->t->rows[i].config_path && !w->t->rows[i].masked)
                        list_cache_load_row(cache, &w->t->rows[i], w->host);
        list_cache_end(cache);
        return NULL;
}

/* ids NULL: every VM; else only these (in this order, each once). */
int vm_table_load(VmTable *t, char **ids, size_t n_ids) {
        _cleanup_host_config_ HostConfig *host = NULL;
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        _cleanup_close_ int state_fd = -EBADF, run_fd = -EBADF;
        _cleanup_strv_free_ char **with_state = NULL;
        _cleanup_free_ bool *want = NULL;
        _cleanup_free_ char *error = NULL;
        ManagerListCall *list_call = NULL;
        size_t allocated = 0, n_with_state = 0;
        pthread_t files_thread;
        bool threaded = false;
        int r;

        /* The manager first: as root on this host straight to it, as
         * systemctl. The connection's handshake and the listing run in the
         * manager while the files are read, instead of one idle round trip
         * after another. */
        bool direct = !arg_host && sd_lib_load(NULL) >= 0 && manager_open_direct(&bus) >= 0;
        if (!direct) {
                r = ctl_bus_open(&bus);
                if (r < 0)
                        return r;
        }
        r = manager_list_units_send(bus, UNIT_PREFIX "*.service", &list_call, &error);
        if (r < 0)
                return log_error_errno(r, "Failed to list the microvm@ units: %s", error ?: strerror(-r));

        /* Files: only on this host. With -H, the remote host's files are
         * out of reach (we run nothing there): rows come from its units. */
        if (!arg_host) {
                r = ctl_load_host(&host);
                if (r < 0) {
                        manager_list_call_free(list_call);
                        return r;
                }
                if (safe_root_open(host->state_dir, 0, 0, &state_fd, NULL) < 0)
                        state_fd = -EBADF; /* not root, or no VM yet: uids from plans and configs */
                if (safe_root_open(host->run_dir, 0, 0, &run_fd, NULL) < 0)
                        run_fd = -EBADF;
        }

        FilesWork fw = { t, &allocated, host, run_fd, 0 };
        if (!ids && !arg_host) {
                (void) manager_kick(bus);
                threaded = pthread_create(&files_thread, NULL, files_work, &fw) == 0;
                if (!threaded)
                        (void) files_work(&fw);
        } else if (ids) {
                for (size_t i = 0; i < n_ids; i++) {
                        VmRow *row = row_add(t, &allocated, ids[i]);
                        if (!row) {
                                manager_list_call_free(list_call);
                                return log_oom();
                        }
                        if (arg_host)
                                continue;
                        r = vm_config_find(ids[i], &row->config_path);
                        if (r == -ERFKILL)
                                row->masked = true;
                        else if (r < 0 && r != -ENOENT) {
                                manager_list_call_free(list_call);
                                return log_error_errno(r, "Failed to look up the config of VM %s: %m", ids[i]);
                        }
                        if (row->config_path && !row->masked)
                                row_load_config(row, host);
                }
        }
        if (host) {
                with_state = state_ids(state_fd);
                n_with_state = strv_length(with_state);
        }

        /* The manager: the units, then MainPID and StateChangeTimestamp of
         * those not inactive (pipelined), all while the files are read. */
        ManagerFacts *facts = NULL;
        const char *what = "list the microvm@ units";
        r = manager_list_units_wait(bus, list_call, &t->units, &t->n_units, &error);
        if (r >= 0 && !(want = calloc(t->n_units + 1, sizeof *want)))
                r = -ENOMEM;
        for (size_t i = 0; r >= 0 && i < t->n_units; i++) {
                char id[VM_ID_MAX + 1];
                want[i] = !streq(t->units[i].active_state, "inactive") && unit_vm_id(t->units[i].name, id) &&
                          (!ids || strv_contains(ids, n_ids, id));
        }
        if (r >= 0) {
                what = "ask the manager about the microvm@ units";
                r = manager_unit_facts_send(bus, t->units, t->n_units, want, direct ? SIZE_MAX : 64, &facts, &error);
        }
        if (r >= 0)
                r = manager_unit_facts_wait(bus, facts, &error);
        /* The plans of the running VMs, still beside the files. */
        _cleanup_free_ Plan **plans = r >= 0 ? calloc(t->n_units + 1, sizeof *plans) : NULL;
        for (size_t i = 0; plans && run_fd >= 0 && i < t->n_units; i++) {
                char id[VM_ID_MAX + 1];
                if (want[i] && unit_running(&t->units[i]) && unit_vm_id(t->units[i].name, id))
                        (void) vm_plan_read_at(run_fd, id, &plans[i], NULL);
        }
        if (threaded)
                (void) pthread_join(files_thread, NULL);
        if (r < 0)
                return log_error_errno(r, "Failed to %s: %s", what, error ?: strerror(-r));
        if (fw.r < 0)
                return log_error_errno(fw.r, "Failed to list VM configs: %m");

        size_t n_rows_from_files = t->n;
        for (size_t i = 0; i < t->n_units; i++) {
                char id[VM_ID_MAX + 1];
                VmRow *row;

                if (!unit_vm_id(t->units[i].name, id))
                        continue;
                row = NULL;
                if (ids) {
                        for (size_t k = 0; k < t->n && !row; k++)
                                if (streq(t->rows[k].id, id))
                                        row = &t->rows[k];
                } else
                        row = row_find(t->rows, n_rows_from_files, id);
                if (!row) {
                        if (ids)
                                continue; /* not asked for */
                        row = row_add(t, &allocated, id); /* loaded, no config: an orphan or a leftover */
                        if (!row) {
                                for (size_t k = 0; plans && k < t->n_units; k++)
                                        plan_free(plans[k]);
                                return log_oom();
                        }
                }
                row->unit = &t->units[i];
                if (plans)
                        row->plan = TAKE_PTR(plans[i]);
        }
        for (size_t i = 0; plans && i < t->n_units; i++)
                plan_free(plans[i]); /* a unit without a row */
        if (!ids)
                rows_sort(t->rows, t->n);
        for (size_t i = 0; i < t->n; i++) {
                if (host)
                        row_load_state(&t->rows[i], run_fd, state_fd, with_state, n_with_state);
                else
                        t->rows[i].orphan = false; /* unknown without the remote host's files */
        }
        return 0;
}
