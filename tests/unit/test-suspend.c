/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The suspend record (lib/vm/suspend.c): what a snapshot is only valid
 * with, written by microvm-stop and checked by microvm-stage. Pure parts:
 * serialize/parse round trip, refusals, the first mismatch named; and the
 * launch plan of a resume (no --config-file). */

#include <criterion/criterion.h>
#include <string.h>

#include "jailer-argv.h"
#include "plan.h"
#include "suspend.h"
#include "util.h"

#define D1 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D2 "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static SuspendRecord sample(void) {
        SuspendRecord r = { .memory_bytes = 128ULL << 20, .vmstate_bytes = 1234, .created_usec = 1700000000000000ULL };
        strcpy(r.firecracker_sha256, D1);
        strcpy(r.kernel_sha256, D2);
        strcpy(r.config_digest, D1);
        strcpy(r.drives, "drive-data block;drive-root file 1234 4194304");
        return r;
}

Test(suspend, record_round_trip) {
        SuspendRecord r = sample(), back;
        _cleanup_free_ char *text = suspend_record_serialize(&r), *error = NULL;

        cr_assert_not_null(text);
        cr_assert_eq(suspend_record_parse(text, strlen(text), &back, &error), 0, "%s", error);
        cr_assert_eq(memcmp(&r, &back, sizeof r), 0);
        cr_assert_null(suspend_record_mismatch(&r, &back));
}

Test(suspend, record_refusals) {
        SuspendRecord r = sample(), back;
        _cleanup_free_ char *text = suspend_record_serialize(&r);
        char *error = NULL;

        /* Truncated: the last line missing. */
        cr_assert_eq(suspend_record_parse(text, (size_t) (strstr(text, "CREATED_USEC") - text), &back, &error),
                     -EINVAL);
        cr_assert(strstr(error, "incomplete"), "%s", error);
        free(error);
        error = NULL;
        cr_assert_eq(suspend_record_parse("KERNEL_SHA256=abc\n", 18, &back, &error), -EINVAL);
        cr_assert(strstr(error, "KERNEL_SHA256 is not a digest"), "%s", error);
        free(error);
        error = NULL;
        cr_assert_eq(suspend_record_parse("COLOR=red\n", 10, &back, &error), -EINVAL);
        cr_assert(strstr(error, "unknown key COLOR"), "%s", error);
        free(error);
}

Test(suspend, record_mismatch) {
        SuspendRecord a = sample(), b = sample();

        strcpy(b.kernel_sha256, D1);
        cr_assert_str_eq(suspend_record_mismatch(&a, &b), "the kernel changed");
        b = sample();
        strcpy(b.firecracker_sha256, D2);
        cr_assert_str_eq(suspend_record_mismatch(&a, &b), "the firecracker binary changed");
        b = sample();
        strcpy(b.config_digest, D2);
        cr_assert_str_eq(suspend_record_mismatch(&a, &b), "the VM config changed");
        b = sample();
        strcpy(b.drives, "drive-data block;drive-root file 9999 4194304");
        cr_assert_str_eq(suspend_record_mismatch(&a, &b), "a drive is not the one the snapshot was taken with");
        /* Sizes and time are the files', not the VM's. */
        b = sample();
        b.vmstate_bytes = 1;
        b.created_usec = 0;
        cr_assert_null(suspend_record_mismatch(&a, &b));
}

Test(suspend, plan_round_trip_and_resume_argv) {
        const char *text = "ID=web1\nVERSION=1\nJAILER=/usr/bin/jailer\nEXEC_FILE=/usr/bin/firecracker\n"
                           "EXEC_NAME=firecracker\nCHROOT_BASE=/srv/jailer\nJAIL_DIR=/srv/jailer/firecracker/web1\n"
                           "RUN_DIR=/run/microvm/web1\nSTATE_DIR=/var/lib/microvm/web1\nUID=1000000\nGID=1000000\n"
                           "STOP_TIMEOUT_USEC=30000000\nCONFIG_FILE=/vm-config.json\n"
                           "API_SOCKET=/run/firecracker.socket\nSUSPEND=yes\nSUSPEND_TIMEOUT_USEC=12000000\n"
                           "MEMORY_MIB=128\nRESUME=yes\n";
        _cleanup_plan_ Plan *p = NULL;
        _cleanup_free_ char *error = NULL, *again = NULL;
        _cleanup_strv_free_ char **argv = NULL;

        cr_assert_eq(plan_parse(text, strlen(text), &p, &error), 0, "%s", error);
        cr_assert(p->suspend && p->resume);
        cr_assert_eq(p->memory_mib, 128);
        cr_assert_eq(p->suspend_timeout, 12 * USEC_PER_SEC);
        again = plan_serialize(p);
        cr_assert(strstr(again, "RESUME=yes\n") && strstr(again, "MEMORY_MIB=128\n"));
        cr_assert_eq(jailer_argv(p, "microvm.slice/microvm@web1.service/web1", &argv, &error), 0, "%s", error);
        for (char **a = argv; *a; a++)
                cr_assert_str_neq(*a, "--config-file", "a resume starts firecracker without a config");
        cr_assert_str_eq(argv[strv_length(argv) - 2], "--api-sock");
}
