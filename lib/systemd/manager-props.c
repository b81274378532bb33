/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <time.h>

#include "manager-props.h"
#include "util.h"

#define CALLS_IN_FLIGHT 64

typedef struct PropCall {
        ManagerPropQuery *q;
        size_t *pending;
} PropCall;

static int prop_reply(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        PropCall *c = userdata;
        const char contents[2] = { c->q->type, 0 };

        (*c->pending)--;
        (void) ret_error;
        if (sym_sd_bus_message_is_method_error(m, NULL))
                return 0;
        if (sym_sd_bus_message_enter_container(m, 'v', contents) < 0)
                return 0;
        if (c->q->type == 'u') {
                uint32_t u;
                if (sym_sd_bus_message_read_basic(m, 'u', &u) < 0)
                        return 0;
                *c->q->value = u;
        } else {
                uint64_t t;
                if (sym_sd_bus_message_read_basic(m, 't', &t) < 0)
                        return 0;
                *c->q->value = t;
        }
        if (c->q->ok)
                *c->q->ok = true;
        return 0;
}

static int pump(sd_bus *bus, size_t *pending, size_t until, usec_t deadline) {
        while (*pending > until) {
                int r = sym_sd_bus_process(bus, NULL);
                if (r < 0)
                        return r;
                if (r > 0)
                        continue;
                usec_t now = now_usec(CLOCK_MONOTONIC);
                if (now >= deadline)
                        return -ETIMEDOUT;
                r = sym_sd_bus_wait(bus, deadline - now);
                if (r < 0 && r != -EINTR)
                        return r;
        }
        return 0;
}

int manager_get_many(sd_bus *bus, ManagerPropQuery *q, size_t n, usec_t deadline, char **ret_error) {
        _cleanup_free_ PropCall *calls = calloc(n + 1, sizeof *calls);
        _cleanup_free_ sd_bus_slot **slots = calloc(n + 1, sizeof *slots);
        size_t pending = 0;
        int r = 0;

        if (!calls || !slots)
                return -ENOMEM;
        for (size_t i = 0; i < n && r >= 0; i++) {
                calls[i] = (PropCall) { .q = &q[i], .pending = &pending };
                r = sym_sd_bus_call_method_async(bus, &slots[i], "org.freedesktop.systemd1", q[i].path,
                                                 "org.freedesktop.DBus.Properties", "Get", prop_reply, &calls[i], "ss",
                                                 q[i].iface, q[i].property);
                if (r < 0) {
                        (void) error_setf(ret_error, r, "Failed to ask the service manager for %s: %m", q[i].property);
                        break;
                }
                pending++;
                r = pump(bus, &pending, CALLS_IN_FLIGHT, deadline);
        }
        if (r >= 0)
                r = pump(bus, &pending, 0, deadline);
        if (r < 0 && ret_error && !*ret_error)
                (void) error_setf(ret_error, r, "Failed to get unit properties from the service manager: %m");
        /* Calls still in flight must not call back into freed memory. */
        for (size_t i = 0; i < n; i++)
                if (slots[i])
                        sym_sd_bus_slot_unref(slots[i]);
        return r < 0 ? r : 0;
}
