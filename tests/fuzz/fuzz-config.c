/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness over parse + validate of VM and host configs. Beyond
 * "no crash, no leak, no UB", it checks two properties:
 *  - the scanner and iniparser never disagree on a file the scanner accepts
 *    (ini_parse reports that as a problem: we abort on it);
 *  - a config that validates yields consistent derived values (exactly one
 *    root drive, boot args containing console=ttyS0 unless overridden). */

#include <assert.h>

#include "config.h"
#include "ini.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The problem ini_parse() adds, exactly: a rule that quotes a value
 * containing these words (found by the fuzzer) is not one. */
static void check_no_disagreement(const Problems *p) {
        for (size_t i = 0; i < p->n; i++)
                if (p->items[i].rule && p->items[i].line == 0 && !p->items[i].section && !p->items[i].key &&
                    !p->items[i].value && streq(p->items[i].rule, INI_DISAGREEMENT_RULE)) {
                        fprintf(stderr, "scanner/iniparser disagreement\n");
                        abort();
                }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static HostConfig *host = NULL;
        Problems p = {};
        VmConfig *c = NULL;
        HostConfig *h = NULL;

        if (!host && host_config_new_default(&host) < 0)
                abort();

        if (vm_config_parse("fuzz.conf", "fuzz", (const char *) data, size, host, &c, &p) == 0) {
                const DriveConfig *root = vm_config_root_drive(c);
                char *args = vm_config_boot_args(c, NULL);
                assert(root && root->root);
                assert(c->n_drives >= 1);
                assert(args);
                assert(c->cmdline ? true : strstr(args, "console=ttyS0") != NULL);
                free(args);
                assert(p.n == 0);
        }
        check_no_disagreement(&p);
        for (size_t i = 0; i < p.n; i++)
                free(problem_format(&p.items[i]));
        problems_done(&p);
        vm_config_free(c);

        if (host_config_parse("fuzz-host.conf", (const char *) data, size, &h, &p) == 0)
                assert(h->uid_min <= h->uid_max && h->uid_min > 0);
        check_no_disagreement(&p);
        problems_done(&p);
        host_config_free(h);
        return 0;
}
