/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <net/if.h>

#include "machined.h"
#include "names.h"
#include "safe-fs.h"
#include "util.h"
#include "vm-machine.h"

#define RUN_MACHINE_FILE "machine"

int vm_machine_register(const Plan *plan, int run_fd, pid_t leader, char **ret_error) {
        _cleanup_free_ char *unit = NULL, *root = NULL, *rec = NULL;
        _cleanup_free_ int *ifindex = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&unit, UNIT_PREFIX "%s.service", plan->id) < 0 ||
            asprintf(&root, "%s/root", plan->jail_dir) < 0 || asprintf(&rec, "%s/" RUN_MACHINE_FILE, plan->id) < 0)
                return -ENOMEM;
        /* Interface indices mean something only in the host's namespace;
         * taps in another one (netns) are left out. */
        if (!plan->netns && plan->tap) {
                ifindex = calloc(strv_length(plan->tap), sizeof *ifindex);
                if (!ifindex)
                        return -ENOMEM;
                for (char **t = plan->tap; *t; t++) {
                        unsigned i = if_nametoindex(*t);
                        if (i > 0)
                                ifindex[n++] = (int) i;
                }
        }

        MachineRegistration m = {
                .name = plan->id,
                .unit = unit,
                .leader = leader,
                .root_directory = root,
                .ifindex = ifindex,
                .n_ifindex = n,
        };
        r = machined_register(&m, VM_MACHINE_TIMEOUT_USEC, ret_error);
        if (r <= 0)
                return r;
        /* The record holds no data: it only says "unregister at stop". */
        r = safe_write_file_at(run_fd, rec, plan->id, strlen(plan->id), 0644, 0, 0, SAFE_WRITE_REPLACE);
        if (r < 0)
                return error_setf(ret_error, -r, "registered, but cannot write its record %s: %s", rec,
                                  strerror(-r));
        return 1;
}

int vm_machine_unregister(const char *run_dir, const char *id, char **ret_error) {
        _cleanup_free_ char *unit = NULL, *rec = NULL, *data = NULL;
        _cleanup_close_ int run_fd = -EBADF;
        size_t size;
        int r;

        if (asprintf(&unit, UNIT_PREFIX "%s.service", id) < 0 || asprintf(&rec, "%s/" RUN_MACHINE_FILE, id) < 0)
                return -ENOMEM;
        if (safe_root_open(run_dir, 0, 0, &run_fd, NULL) < 0)
                return 0; /* no run dir: nothing was staged, nothing registered */
        r = safe_read_file_at(run_fd, rec, 256, &data, &size);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return error_setf(ret_error, -r, "cannot read %s/%s: %s", run_dir, rec, strerror(-r));
        return machined_unregister(id, unit, VM_MACHINE_TIMEOUT_USEC, ret_error);
}
