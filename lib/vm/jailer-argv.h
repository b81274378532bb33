/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The jailer's argv, built by one pure function from the launch plan and the
 * parent cgroup, with every value checked against the jailer's own rules
 * (JAILER-CONTRACT.md) so that a bad value fails here, with a message of
 * ours, rather than in the jailer. */

#include "plan.h"

/* ret_argv: NULL-terminated, argv[0] is plan->jailer. ret_error: a message
 * naming the bad value (on -EINVAL). */
int jailer_argv(const Plan *plan, const char *parent_cgroup, char ***ret_argv, char **ret_error);

/* The jailer's rules, exposed for tests and for microvm-stage. */
bool jailer_id_valid(const char *id);
bool jailer_parent_cgroup_valid(const char *p);
bool jailer_cgroup_value_valid(const char *kv);
bool jailer_rlimit_valid(const char *kv);
