/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>

#include "config.h"
#include "sha256.h"
#include "vm-lock.h"

int vm_stage_lock(int lock_fd, const char *id) {
        uint8_t digest[32];
        uint64_t offset = 0;
        struct flock fl = {
                .l_type = F_WRLCK,
                .l_whence = SEEK_SET,
                .l_len = 1,
        };

        if (!vm_id_valid(id))
                return -EINVAL;
        sha256(id, strlen(id), digest);
        for (size_t i = 0; i < 8; i++)
                offset = offset << 8 | digest[i];
        /* A positive off_t: 2^62 bytes, so two ids never share one in practice. */
        fl.l_start = (off_t) (offset >> 2);
        if (fcntl(lock_fd, F_OFD_SETLK, &fl) < 0)
                return errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;
        return 0;
}
