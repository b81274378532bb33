/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>

#include "plan.h"

static Plan *sample(void) {
        Plan *p = calloc(1, sizeof *p);
        p->version = PLAN_VERSION;
        strcpy(p->id, "web1");
        p->config_digest = strdup("abc");
        p->jailer = strdup("/usr/bin/jailer");
        p->exec_file = strdup("/usr/bin/firecracker");
        p->exec_name = strdup("firecracker");
        p->chroot_base = strdup("/srv/jailer");
        p->jail_dir = strdup("/srv/jailer/firecracker/web1");
        p->run_dir = strdup("/run/microvm/web1");
        p->state_dir = strdup("/var/lib/microvm/web1");
        p->uid = 1000001;
        p->gid = 1000001;
        p->stop_timeout = 30000000;
        p->ephemeral = true;
        p->config_file = strdup("/vm-config.json");
        p->api_socket = strdup("/run/firecracker.socket");
        strv_push(&p->cgroup, "cpuset.cpus=0-3");
        strv_push(&p->cgroup, "cpuset.mems=0");
        strv_push(&p->tap, "web1-eth0");
        strv_push(&p->dm, "microvm-web1-root");
        p->fc_log_level = strdup("Warning");
        return p;
}

Test(plan, roundtrip) {
        Plan *p = sample(), *q = NULL;
        char *text = plan_serialize(p), *err = NULL;
        cr_assert_eq(plan_parse(text, strlen(text), &q, &err), 0, "%s", err);
        char *again = plan_serialize(q);
        cr_assert_str_eq(text, again);
        cr_assert_str_eq(q->id, "web1");
        cr_assert_eq(q->uid, 1000001);
        cr_assert(q->ephemeral);
        cr_assert_eq(strv_length(q->cgroup), 2);
        cr_assert_str_eq(q->cgroup[1], "cpuset.mems=0");
        cr_assert_str_eq(q->fc_log_level, "Warning");
        cr_assert(strstr(text, "\nFC_LOG_LEVEL=Warning\n"), "%s", text);
        free(text);
        free(again);
        plan_free(p);
        plan_free(q);
}

Test(plan, escaping) {
        Plan *p = sample(), *q = NULL;
        free(p->state_dir);
        p->state_dir = strdup("/var/lib/micro\nvm\\x");
        char *text = plan_serialize(p), *err = NULL;
        cr_assert_null(strstr(text, "micro\nvm"));
        cr_assert_eq(plan_parse(text, strlen(text), &q, &err), 0, "%s", err);
        cr_assert_str_eq(q->state_dir, "/var/lib/micro\nvm\\x");
        free(text);
        plan_free(p);
        plan_free(q);
}

static void expect_bad(const char *text, const char *msg) {
        Plan *q = NULL;
        char *err = NULL;
        cr_assert_eq(plan_parse(text, strlen(text), &q, &err), -EINVAL, "accepted: %s", text);
        cr_assert(strstr(err, msg), "got \"%s\", wanted \"%s\"", err, msg);
        free(err);
}

Test(plan, rejects) {
        Plan *p = sample();
        char *text = plan_serialize(p), *buf;
        expect_bad("", "ID missing");
        expect_bad("ID=Web1\n", "invalid VM id");
        cr_assert(asprintf(&buf, "%sFOO=1\n", text) > 0);
        expect_bad(buf, "unknown key \"FOO\"");
        free(buf);
        cr_assert(asprintf(&buf, "%sUID=5\n", text) > 0);
        expect_bad(buf, "UID given twice");
        free(buf);
        cr_assert(asprintf(&buf, "%sID=x\n", text) > 0);
        expect_bad(buf, "ID given twice");
        free(buf);
        expect_bad("ID=a\nVERSION=1\nUID=0\n", "UID is not an unprivileged id");
        expect_bad("ID=a\nVERSION=1\n", "missing");
        expect_bad("ID=a\nJAILER=\\q\n", "bad escape");
        expect_bad("ID=a\nJAILER=\\x00\n", "bad escape");
        expect_bad("ID=a\ngarbage\n", "not KEY=VALUE");
        char *old;
        cr_assert(asprintf(&old, "%s", text) > 0);
        *strstr(old, "VERSION=1") = '#';
        cr_assert(asprintf(&buf, "%sVERSION=2\n", old) > 0);
        expect_bad(buf, "plan version 2");
        free(old);
        free(buf);
        free(text);
        plan_free(p);
}
