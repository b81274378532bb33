/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* microvm-generator's confinement: an allowlist of exactly what it does
 * after reading its arguments (read configs, create new files, directories
 * and symlinks below its output directory, fork workers, log). No exec, no
 * sockets, no mounts; files only created new (O_EXCL), never rewritten. */

#include "seccomp-util.h"

/* Installs the filter for this process and the workers it forks; a
 * violation ends the process with SECCOMP_VIOLATION_EXIT_STATUS.
 * sanitizer_build: also allow what the ASan/UBSan runtime needs (test
 * builds only). */
int seccomp_confine_generator(bool sanitizer_build);

/* Test builds only (-Dtest-hooks=true, tests/generator/test-seccomp.sh):
 * with MICROVM_GENERATOR_TEST_VIOLATION set, attempts the forbidden call
 * it names right after confinement and exits; a no-op otherwise. */
void seccomp_generator_test_violation(int outfd);
