/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "manager.h"
#include "util.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define SD_UNIT "org.freedesktop.systemd1.Unit"
#define SD_SERVICE "org.freedesktop.systemd1.Service"
#define PROPERTIES "org.freedesktop.DBus.Properties"

/* dbus-daemon's system bus allows 128 pending replies per connection. */
#define CALLS_IN_FLIGHT 64

static int bus_error(char **ret_error, const sd_bus_error *e, int r, const char *what) {
        if (e && e->message)
                return error_setf(ret_error, -r, "%s: %s", what, e->message);
        return error_setf(ret_error, -r, "%s: %s", what, strerror(-r));
}

int manager_open(const char *host, sd_bus **ret, char **ret_error) {
        int r;

        if (host) {
                r = sym_sd_bus_open_system_remote(ret, host);
                if (r < 0)
                        return error_setf(ret_error, -r, "cannot connect to the system bus of %s over ssh (%s)",
                                          host, strerror(-r));
                return 0;
        }
        r = sym_sd_bus_open_system(ret);
        if (r < 0)
                return error_setf(ret_error, -r, "cannot connect to the system bus (%s)", strerror(-r));
        return 0;
}

void manager_units_free(ManagerUnit *u, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(u[i].name);
                free(u[i].load_state);
                free(u[i].active_state);
                free(u[i].sub_state);
                free(u[i].path);
        }
        free(u);
}

/* The answer of ListUnitsByPatterns. */
static int list_units_parse(sd_bus_message *reply, ManagerUnit **ret, size_t *ret_n, char **ret_error) {
        ManagerUnit *units = NULL;
        size_t n = 0, allocated = 0;
        int r;

        r = sym_sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        if (r < 0)
                return bus_error(ret_error, NULL, r, "ListUnitsByPatterns reply");
        for (;;) {
                const char *name, *desc, *load, *active, *sub, *following, *path, *job_type, *job_path;
                uint32_t job_id;

                r = sym_sd_bus_message_read(reply, "(ssssssouso)", &name, &desc, &load, &active, &sub, &following,
                                            &path, &job_id, &job_type, &job_path);
                if (r < 0) {
                        manager_units_free(units, n);
                        return bus_error(ret_error, NULL, r, "ListUnitsByPatterns reply");
                }
                if (r == 0)
                        break;
                if (greedy_realloc((void **) &units, &allocated, n + 1, sizeof *units) < 0) {
                        manager_units_free(units, n);
                        return -ENOMEM;
                }
                units[n] = (ManagerUnit) {
                        .name = strdup(name),
                        .load_state = strdup(load),
                        .active_state = strdup(active),
                        .sub_state = strdup(sub),
                        .path = strdup(path),
                };
                n++;
                if (!units[n - 1].name || !units[n - 1].load_state || !units[n - 1].active_state ||
                    !units[n - 1].sub_state || !units[n - 1].path) {
                        manager_units_free(units, n);
                        return -ENOMEM;
                }
        }
        *ret = units;
        *ret_n = n;
        return 0;
}

struct ManagerListCall {
        sd_bus_slot *slot;
        sd_bus_message *reply;
        bool done;
};

static int list_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        ManagerListCall *c = userdata;

        (void) ret_error;
        c->done = true;
        c->reply = sym_sd_bus_message_ref(m);
        return 0;
}

void manager_list_call_free(ManagerListCall *c) {
        if (!c)
                return;
        if (c->slot)
                sym_sd_bus_slot_unref(c->slot);
        if (c->reply)
                sym_sd_bus_message_unref(c->reply);
        free(c);
}

int manager_list_units_send(sd_bus *bus, const char *pattern, ManagerListCall **ret, char **ret_error) {
        ManagerListCall *c = calloc(1, sizeof *c);
        int r;

        if (!c)
                return -ENOMEM;
        r = sym_sd_bus_call_method_async(bus, &c->slot, SD_DEST, SD_PATH, SD_MANAGER, "ListUnitsByPatterns", list_reply,
                                         c, "asas", 0, 1, pattern);
        if (r < 0) {
                manager_list_call_free(c);
                return bus_error(ret_error, NULL, r, "ListUnitsByPatterns");
        }
        *ret = c;
        return 0;
}

int manager_kick(sd_bus *bus) {
        int r;

        while ((r = sym_sd_bus_process(bus, NULL)) > 0)
                ;
        return r;
}

int manager_list_units_wait(sd_bus *bus, ManagerListCall *c, ManagerUnit **ret, size_t *ret_n, char **ret_error) {
        int r = 0;

        while (!c->done && r >= 0) {
                r = sym_sd_bus_process(bus, NULL);
                if (r == 0) {
                        r = sym_sd_bus_wait(bus, UINT64_MAX);
                        if (r == -EINTR)
                                r = 0;
                }
        }
        if (r < 0)
                r = bus_error(ret_error, NULL, r, "ListUnitsByPatterns");
        else if (sym_sd_bus_message_is_method_error(c->reply, NULL)) {
                const sd_bus_error *e = sym_sd_bus_message_get_error(c->reply);
                r = bus_error(ret_error, e, -sym_sd_bus_error_get_errno(e), "ListUnitsByPatterns");
        } else
                r = list_units_parse(c->reply, ret, ret_n, ret_error);
        manager_list_call_free(c);
        return r;
}

int manager_list_units(sd_bus *bus, const char *pattern, ManagerUnit **ret, size_t *ret_n, char **ret_error) {
        ManagerListCall *c = NULL;
        int r = manager_list_units_send(bus, pattern, &c, ret_error);

        if (r < 0)
                return r;
        return manager_list_units_wait(bus, c, ret, ret_n, ret_error);
}

typedef struct FactCall {
        uint64_t *value;
        char type;
        size_t *pending;
} FactCall;

static int fact_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        FactCall *c = userdata;
        const char contents[2] = { c->type, 0 };

        (*c->pending)--;
        (void) ret_error;
        if (sym_sd_bus_message_is_method_error(m, NULL))
                return 0;
        if (sym_sd_bus_message_enter_container(m, 'v', contents) < 0)
                return 0;
        if (c->type == 'u') {
                uint32_t u;
                if (sym_sd_bus_message_read_basic(m, 'u', &u) >= 0)
                        *c->value = u;
        } else {
                uint64_t t;
                if (sym_sd_bus_message_read_basic(m, 't', &t) >= 0)
                        *c->value = t;
        }
        return 0;
}

static int pump(sd_bus *bus, size_t *pending, size_t until) {
        int r;

        while (*pending > until) {
                r = sym_sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                r = sym_sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return r;
        }
        return 0;
}

struct ManagerFacts {
        ManagerUnit *units;
        size_t n;
        const bool *want;
        FactCall *calls;
        uint64_t *pids;
        size_t pending;
};

void manager_facts_free(ManagerFacts *f) {
        if (!f)
                return;
        free(f->calls);
        free(f->pids);
        free(f);
}

int manager_unit_facts_send(sd_bus *bus, ManagerUnit *units, size_t n, const bool *want, size_t window,
                            ManagerFacts **ret, char **ret_error) {
        ManagerFacts *f;
        size_t k = 0;
        int r;

        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        *f = (ManagerFacts) { .units = units, .n = n, .want = want };
        f->calls = calloc(2 * n + 1, sizeof *f->calls);
        f->pids = calloc(n + 1, sizeof *f->pids);
        if (!f->calls || !f->pids) {
                manager_facts_free(f);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                if (want && !want[i])
                        continue;
                static const struct {
                        const char *iface, *prop;
                        char type;
                } props[] = {
                        { SD_SERVICE, "MainPID", 'u' },
                        { SD_UNIT, "StateChangeTimestamp", 't' },
                };
                for (size_t p = 0; p < ELEMENTSOF(props); p++) {
                        FactCall *c = &f->calls[k++];

                        *c = (FactCall) {
                                .value = p == 0 ? &f->pids[i] : &units[i].state_change_usec,
                                .type = props[p].type,
                                .pending = &f->pending,
                        };
                        r = sym_sd_bus_call_method_async(bus, NULL, SD_DEST, units[i].path, PROPERTIES, "Get",
                                                         fact_reply, c, "ss", props[p].iface, props[p].prop);
                        if (r < 0) {
                                manager_facts_free(f);
                                return bus_error(ret_error, NULL, r, "Properties.Get");
                        }
                        f->pending++;
                        r = pump(bus, &f->pending, window);
                        if (r < 0) {
                                manager_facts_free(f);
                                return bus_error(ret_error, NULL, r, "waiting for the manager");
                        }
                }
        }
        *ret = f;
        return 0;
}

int manager_unit_facts_wait(sd_bus *bus, ManagerFacts *f, char **ret_error) {
        int r = pump(bus, &f->pending, 0);

        if (r < 0) {
                manager_facts_free(f);
                return bus_error(ret_error, NULL, r, "waiting for the manager");
        }
        for (size_t i = 0; i < f->n; i++)
                if (!f->want || f->want[i])
                        f->units[i].main_pid = (uint32_t) f->pids[i];
        manager_facts_free(f);
        return 0;
}

int manager_unit_facts(sd_bus *bus, ManagerUnit *units, size_t n, const bool *want, char **ret_error) {
        ManagerFacts *f = NULL;
        int r = manager_unit_facts_send(bus, units, n, want, CALLS_IN_FLIGHT, &f, ret_error);

        if (r < 0)
                return r;
        return manager_unit_facts_wait(bus, f, ret_error);
}

int manager_get_u64(sd_bus *bus, const char *path, const char *iface, const char *property, char type,
                    uint64_t *ret) {
        _cleanup_(sd_lib_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        if (type == 'u') {
                uint32_t u;
                r = sym_sd_bus_get_property_trivial(bus, SD_DEST, path, iface, property, &error, 'u', &u);
                if (r >= 0)
                        *ret = u;
        } else if (type == 'i') {
                int32_t i;
                r = sym_sd_bus_get_property_trivial(bus, SD_DEST, path, iface, property, &error, 'i', &i);
                if (r >= 0)
                        *ret = (uint64_t) (int64_t) i;
        } else
                r = sym_sd_bus_get_property_trivial(bus, SD_DEST, path, iface, property, &error, type, ret);
        return r < 0 ? r : 0;
}

int manager_get_string(sd_bus *bus, const char *path, const char *iface, const char *property, char **ret) {
        _cleanup_(sd_lib_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r = sym_sd_bus_get_property_string(bus, SD_DEST, path, iface, property, &error, ret);
        return r < 0 ? r : 0;
}

int manager_unit_path(sd_bus *bus, const char *unit, bool load, char **ret, char **ret_error) {
        _cleanup_(sd_lib_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_lib_message_unrefp) sd_bus_message *reply = NULL;
        const char *path;
        char *p;
        int r;

        r = sym_sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, load ? "LoadUnit" : "GetUnit", &error, &reply,
                                   "s", unit);
        if (r < 0) {
                if (sym_sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                        return -ENOENT;
                return bus_error(ret_error, &error, r, unit);
        }
        r = sym_sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_error(ret_error, NULL, r, unit);
        p = strdup(path);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

typedef struct JobWait {
        const char *job;
        char *result;
        bool done;
} JobWait;

static int job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        JobWait *w = userdata;
        const char *path, *unit, *result;
        uint32_t id;

        (void) ret_error;
        if (sym_sd_bus_message_read(m, "uoss", &id, &path, &unit, &result) < 0)
                return 0;
        if (!w->job || !streq(path, w->job))
                return 0;
        w->result = strdup(result);
        w->done = true;
        return 0;
}

int manager_unit_job(sd_bus *bus, const char *method, const char *unit, char **ret_result, char **ret_error) {
        _cleanup_(sd_lib_error_freep) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_lib_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_(sd_lib_slot_unrefp) sd_bus_slot *slot = NULL;
        _cleanup_free_ char *job = NULL;
        JobWait w = {};
        const char *path;
        int r;

        /* Before the job exists: the signal may come right after the reply. */
        r = sym_sd_bus_match_signal(bus, &slot, SD_DEST, SD_PATH, SD_MANAGER, "JobRemoved", job_removed, &w);
        if (r < 0)
                return bus_error(ret_error, NULL, r, "subscribing to JobRemoved");
        r = sym_sd_bus_call_method(bus, SD_DEST, SD_PATH, SD_MANAGER, method, &error, &reply, "ss", unit, "replace");
        if (r < 0)
                return bus_error(ret_error, &error, r, unit);
        r = sym_sd_bus_message_read(reply, "o", &path);
        if (r < 0)
                return bus_error(ret_error, NULL, r, unit);
        job = strdup(path);
        if (!job)
                return -ENOMEM;
        w.job = job;
        while (!w.done) {
                r = sym_sd_bus_process(bus, NULL);
                if (r < 0)
                        return bus_error(ret_error, NULL, r, "waiting for the job");
                if (r > 0)
                        continue;
                r = sym_sd_bus_wait(bus, UINT64_MAX);
                if (r < 0 && r != -EINTR)
                        return bus_error(ret_error, NULL, r, "waiting for the job");
        }
        if (!w.result)
                return -ENOMEM;
        *ret_result = w.result;
        return 0;
}
