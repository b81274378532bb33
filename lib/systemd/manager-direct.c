/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <unistd.h>

#include "manager.h"

#define MANAGER_PRIVATE_SOCKET "/run/systemd/private"

int manager_open_direct(sd_bus **ret) {
        _cleanup_(sd_lib_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (geteuid() != 0)
                return -EPERM; /* the socket is root's */
        if (access(MANAGER_PRIVATE_SOCKET, F_OK) < 0)
                return -errno;
        r = sym_sd_bus_new(&bus);
        if (r < 0)
                return r;
        r = sym_sd_bus_set_address(bus, "unix:path=" MANAGER_PRIVATE_SOCKET);
        if (r < 0)
                return r;
        r = sym_sd_bus_start(bus);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(bus);
        return 0;
}
