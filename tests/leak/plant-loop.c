/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* For test-leak-check only: attaches FILE as lib/storage/loop attaches a
 * VM's loop (marked as ours, autoclear), prints /dev/loopN and holds it
 * until killed (the kernel then detaches it: nothing is left). */

#include <fcntl.h>
#include <unistd.h>

#include "loop.h"

int main(int argc, char **argv) {
        _cleanup_close_ int lock_fd = -EBADF, fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        LoopDevice d;
        int r;

        if (argc != 2) {
                fprintf(stderr, "usage: plant-loop FILE\n");
                return 2;
        }
        fd = open(argv[1], O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "plant-loop: %s: %m\n", argv[1]);
                return 1;
        }
        r = loop_lock(&lock_fd, &error);
        if (r >= 0)
                r = loop_attach(lock_fd, fd, 0, &d, &error);
        if (r < 0) {
                fprintf(stderr, "plant-loop: %s\n", error ?: strerror(-r));
                return 1;
        }
        lock_fd = safe_close(lock_fd);
        printf("/dev/loop%u\n", d.nr);
        fflush(stdout);
        pause();
        return 0;
}
