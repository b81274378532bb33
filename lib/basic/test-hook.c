/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "test-hook.h"

#if ENABLE_TEST_HOOKS
/* "<point>", or "<program>:<point>" for a point that several tools pass
 * (the teardown's, in stage, cleanup and reclaim). */
static bool point_is(const char *var, const char *point) {
        const char *e = secure_getenv(var), *colon;

        if (!e)
                return false;
        colon = strchr(e, ':');
        if (!colon)
                return strcmp(e, point) == 0;
        return strncmp(e, program_invocation_short_name, (size_t) (colon - e)) == 0 &&
               program_invocation_short_name[colon - e] == '\0' && strcmp(colon + 1, point) == 0;
}

void test_hook(const char *point) {
        if (point_is("MICROVM_TEST_KILL_AT", point)) {
                (void) raise(SIGKILL);
                _exit(137); /* not reached */
        }
        if (point_is("MICROVM_TEST_PAUSE_AT", point)) {
                const char *fifo = secure_getenv("MICROVM_TEST_PAUSE_FIFO");
                char reached[4096], buf[64];
                int fd;

                if (!fifo || (size_t) snprintf(reached, sizeof reached, "%s.reached", fifo) >= sizeof reached)
                        return;
                fd = open(reached, O_WRONLY | O_CLOEXEC);
                if (fd >= 0) {
                        (void) dprintf(fd, "%s\n", point);
                        close(fd);
                }
                fd = open(fifo, O_RDONLY | O_CLOEXEC);
                if (fd >= 0) {
                        while (read(fd, buf, sizeof buf) > 0)
                                ;
                        close(fd);
                }
        }
}
#endif
