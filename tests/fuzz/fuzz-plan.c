/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness: launch plan text (what microvm-launch, -stop and
 * -cleanup read from /run) → plan_parse() → the jailer's argv.
 * Invariants: a plan that parses serializes to text that parses to the
 * same serialization (round trip); jailer_argv() either refuses with a
 * message or yields an argv whose every option value passes the jailer's
 * own rules, with the plan's id and exec file. */

#include "fuzz-util.h"
#include "jailer-argv.h"
#include "plan.h"

static void check_argv(const Plan *p, char **argv) {
        bool have_id = false, have_exec = false;

        fuzz_check(argv && argv[0] && streq(argv[0], p->jailer), "argv[0] is not the plan's jailer");
        size_t i;

        for (i = 1; argv[i] && !streq(argv[i], "--"); i++) {
                const char *o = argv[i], *v = argv[i + 1];
                fuzz_check(startswith(o, "--"), "argv[%zu] \"%s\" is not an option", i, o);
                if (streq(o, "--daemonize") || streq(o, "--new-pid-ns"))
                        continue;
                fuzz_check(v, "option %s has no value", o);
                if (streq(o, "--id")) {
                        fuzz_check(jailer_id_valid(v) && streq(v, p->id), "--id %s", v);
                        have_id = true;
                } else if (streq(o, "--exec-file")) {
                        fuzz_check(streq(v, p->exec_file), "--exec-file %s", v);
                        have_exec = true;
                } else if (streq(o, "--cgroup"))
                        fuzz_check(jailer_cgroup_value_valid(v), "--cgroup %s", v);
                else if (streq(o, "--resource-limit"))
                        fuzz_check(jailer_rlimit_valid(v), "--resource-limit %s", v);
                else if (streq(o, "--parent-cgroup"))
                        fuzz_check(jailer_parent_cgroup_valid(v), "--parent-cgroup %s", v);
                i++;
        }
        fuzz_check(have_id && have_exec, "no --id or --exec-file");
        /* firecracker's own arguments, after "--": exactly the plan's; a
         * resume (issue 16) has no config file: the snapshot is loaded
         * over the API. Last, the log level, when the plan has one. */
        fuzz_check(argv[i], "no \"--\" before firecracker's arguments");
        size_t k = i + 1;
        if (!p->resume) {
                fuzz_check(argv[k] && streq(argv[k], "--config-file") && argv[k + 1] &&
                           streq(argv[k + 1], p->config_file),
                           "firecracker's arguments are not the plan's (--config-file)");
                k += 2;
        }
        fuzz_check(argv[k] && streq(argv[k], "--api-sock") && argv[k + 1] &&
                   streq(argv[k + 1], p->api_socket),
                   "firecracker's arguments are not the plan's (--api-sock)");
        k += 2;
        if (p->fc_log_level) {
                fuzz_check(argv[k] && streq(argv[k], "--level") && argv[k + 1] &&
                           streq(argv[k + 1], p->fc_log_level),
                           "firecracker's arguments are not the plan's (--level)");
                k += 2;
        }
        fuzz_check(!argv[k], "firecracker's arguments are not the plan's (more after them)");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        Plan *p = NULL, *q = NULL;
        char *error = NULL, *text, *again, **argv = NULL;

        if (plan_parse((const char *) data, size, &p, &error) < 0) {
                fuzz_check(error, "plan_parse() refused without a message");
                free(error);
                return 0;
        }
        text = plan_serialize(p);
        fuzz_check(text, "plan_serialize() failed");
        fuzz_check(plan_parse(text, strlen(text), &q, &error) == 0, "serialized plan does not parse: %s\n%s",
                   error ?: "?", text);
        again = plan_serialize(q);
        fuzz_check(again && streq(text, again), "round trip changed the plan:\n%s\n---\n%s", text, again);

        if (jailer_argv(p, "microvm.slice/microvm@fuzz.service", &argv, &error) < 0)
                fuzz_check(error, "jailer_argv() refused without a message");
        else
                check_argv(p, argv);

        strv_free(argv);
        free(error);
        free(again);
        free(text);
        plan_free(q);
        plan_free(p);
        return 0;
}
