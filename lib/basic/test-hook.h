/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Injection points for the test suite: named places in the tools where a
 * test kills the process or holds it, to reproduce a crash or a race at
 * exactly that point. Compiled only with -Dtest-hooks=true; an installed
 * build has none (tests/check-no-test-hooks).
 *
 *   MICROVM_TEST_KILL_AT=<point>    SIGKILL ourselves at <point>; also
 *                                   "<program>:<point>", for a point that
 *                                   several tools pass (teardown-*)
 *   MICROVM_TEST_PAUSE_AT=<point>   at <point>, open the FIFO
 *   MICROVM_TEST_PAUSE_FIFO=<path>  <path>.reached for writing and write
 *                                   "<point>\n" (the test reads it: we
 *                                   are there), then open the FIFO <path>
 *                                   for reading and read until EOF (the
 *                                   test writes and closes it: go on).
 *
 * Both are events the test waits on; nothing sleeps. Errors are ignored:
 * a hook never changes what the tool does apart from the kill or hold. */

#if ENABLE_TEST_HOOKS
void test_hook(const char *point);
#else
static inline void test_hook(const char *point) {
        (void) point;
}
#endif
