/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "parse-util.h"
#include "tap.h"

static int read_sysfs_u64(const char *name, const char *attr, uint64_t *ret) {
        char path[128], buf[64];
        _cleanup_close_ int fd = -EBADF;
        ssize_t n;

        snprintf(path, sizeof path, "/sys/class/net/%s/%s", name, attr);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof buf - 1);
        if (n < 0)
                return -errno;
        buf[n] = '\0';
        errno = 0;
        long long v = strtoll(buf, NULL, 0);
        if (errno)
                return -errno;
        *ret = (uint64_t) v;
        return 0;
}

int tap_inspect(const char *name, TapInfo *ret) {
        uint64_t v;
        char path[128];
        TapInfo t = { .owner = (uid_t) -1, .group = (gid_t) -1 };

        if (!ifname_valid(name))
                return -EINVAL;
        snprintf(path, sizeof path, "/sys/class/net/%s", name);
        if (access(path, F_OK) < 0) {
                if (errno != ENOENT)
                        return -errno;
                *ret = t;
                return 0;
        }
        t.exists = true;
        if (read_sysfs_u64(name, "tun_flags", &v) >= 0) {
                t.is_tap = (v & IFF_TAP) != 0;
                if (read_sysfs_u64(name, "owner", &v) >= 0)
                        t.owner = (uid_t) v;
                if (read_sysfs_u64(name, "group", &v) >= 0)
                        t.group = (gid_t) v;
        }
        *ret = t;
        return 0;
}

static int tun_attach(const char *name, int *ret_fd) {
        _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
        struct ifreq ifr = {};

        if (fd < 0)
                return -errno;
        ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        if (ioctl(fd, TUNSETIFF, &ifr) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static int ifreq_ioctl(unsigned long req, struct ifreq *ifr) {
        _cleanup_close_ int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return -errno;
        return ioctl(s, req, ifr) < 0 ? -errno : 0;
}

int tap_create(const char *name, uid_t uid, gid_t gid, uint32_t mtu, const char *bridge) {
        _cleanup_close_ int fd = -EBADF;
        struct ifreq ifr = {};
        TapInfo info;
        int r;

        r = tap_inspect(name, &info);
        if (r < 0)
                return r;
        if (info.exists && (!info.is_tap || info.owner != uid))
                return -EEXIST; /* not ours: never adopt another VM's or the host's interface */

        r = tun_attach(name, &fd);
        if (r < 0)
                return r;
        if (ioctl(fd, TUNSETOWNER, (unsigned long) uid) < 0 || ioctl(fd, TUNSETGROUP, (unsigned long) gid) < 0)
                return -errno;
        /* Persistent: it outlives this fd, until microvm-cleanup deletes it. */
        if (ioctl(fd, TUNSETPERSIST, 1UL) < 0)
                return -errno;

        strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
        if (mtu > 0) {
                ifr.ifr_mtu = (int) mtu;
                r = ifreq_ioctl(SIOCSIFMTU, &ifr);
                if (r < 0)
                        goto fail;
        }
        if (bridge) {
                struct ifreq br = {}, ix = {};
                strncpy(ix.ifr_name, name, IFNAMSIZ - 1);
                r = ifreq_ioctl(SIOCGIFINDEX, &ix);
                if (r < 0)
                        goto fail;
                strncpy(br.ifr_name, bridge, IFNAMSIZ - 1);
                br.ifr_ifindex = ix.ifr_ifindex;
                r = ifreq_ioctl(SIOCBRADDIF, &br);
                if (r < 0 && r != -EBUSY) /* EBUSY: already a port of it */
                        goto fail;
        }
        r = ifreq_ioctl(SIOCGIFFLAGS, &ifr);
        if (r < 0)
                goto fail;
        ifr.ifr_flags |= IFF_UP;
        r = ifreq_ioctl(SIOCSIFFLAGS, &ifr);
        if (r < 0)
                goto fail;
        return 0;
fail:
        /* Do not leave a half-configured persistent tap behind. */
        (void) ioctl(fd, TUNSETPERSIST, 0UL);
        return r;
}

int tap_delete(const char *name, uid_t expected_uid) {
        _cleanup_close_ int fd = -EBADF;
        TapInfo info;
        int r;

        r = tap_inspect(name, &info);
        if (r < 0)
                return r;
        if (!info.exists)
                return 0;
        if (!info.is_tap || (expected_uid != (uid_t) -1 && info.owner != expected_uid))
                return -EPERM;
        r = tun_attach(name, &fd);
        if (r == -ENOENT || r == -ENODEV)
                return 0;
        if (r < 0)
                return r;
        /* Dropping persistence deletes the device when we close it. */
        if (ioctl(fd, TUNSETPERSIST, 0UL) < 0)
                return -errno;
        return 1;
}
