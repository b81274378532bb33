/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness: a VM config (parsed and validated from the input) →
 * firecracker's --config-file JSON. Invariants: the JSON always parses
 * back (with the firecracker test double's strict parser), its boot_args
 * are exactly vm_config_boot_args(), and every drive appears once, with
 * its jail path. */

#include "fc-config.h"
#include "fuzz-util.h"
#include "json.h"
#include "names.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const uint8_t macs[8][6] = {};
        static const char *const taps[9] = { "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7", NULL };
        _cleanup_(json_freep) JsonValue *v = NULL;
        JsonError error = {};
        VmConfig *c = fuzz_vm_config(data, size);
        char *json, *args;

        if (!c)
                return 0;
        if (c->n_nics > 8) {
                vm_config_free(c);
                return 0;
        }
        FcRuntime rt = { .taps = taps, .macs = macs, .vsock_cid = 3 };
        json = fc_config_render(c, &rt);
        fuzz_check(json, "fc_config_render() failed on a valid config");
        fuzz_check(json_parse(json, strlen(json), &v, &error) == 0, "rendered JSON does not parse: %s\n%s",
                   error.message ?: "?", json);

        const JsonValue *boot = json_get(v, "boot-source");
        const JsonValue *bargs = boot ? json_get(boot, "boot_args") : NULL;
        args = vm_config_boot_args(c, NULL);
        fuzz_check(args && bargs && bargs->type == JSON_STRING && strcmp(bargs->string, args) == 0,
                   "boot_args differ from vm_config_boot_args(): %s", json);

        const JsonValue *drives = json_get(v, "drives");
        fuzz_check(drives && drives->type == JSON_ARRAY && drives->n_items == c->n_drives, "drive count differs: %s", json);
        for (size_t i = 0; i < c->n_drives; i++) {
                const JsonValue *path = json_get(drives->items[i], "path_on_host");
                char want[64];
                snprintf(want, sizeof want, "/" JAIL_DRIVE_PREFIX "%s", c->drives[i].name);
                fuzz_check(path && path->type == JSON_STRING && strcmp(path->string, want) == 0,
                           "drive %zu path_on_host is not %s: %s", i, want, json);
        }
        json_error_done(&error);
        free(args);
        free(json);
        vm_config_free(c);
        return 0;
}
