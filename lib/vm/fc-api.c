/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "fc-api.h"
#include "safe-fs.h"

int fc_api_connect(int chroot_base_fd, const char *rel, int *ret_fd) {
        _cleanup_close_ int path_fd = -EBADF, sock = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r;

        r = safe_open_at(chroot_base_fd, rel, O_PATH, S_IFSOCK, &path_fd);
        if (r < 0)
                return r;
        snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d", path_fd);
        sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (sock < 0)
                return -errno;
        if (connect(sock, (struct sockaddr *) &sa, sizeof sa) < 0 && errno != EINPROGRESS)
                return -errno;
        *ret_fd = TAKE_FD(sock);
        return 0;
}

int fc_http_parse_status(const char *buf, size_t size) {
        int status = 0;

        if (size < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
                return -EBADMSG;
        for (int i = 9; i < 12; i++) {
                if (buf[i] < '0' || buf[i] > '9')
                        return -EBADMSG;
                status = status * 10 + (buf[i] - '0');
        }
        if (size > 12 && buf[12] != ' ' && buf[12] != '\r')
                return -EBADMSG;
        return status;
}

static int wait_fd(int fd, short events, usec_t deadline) {
        for (;;) {
                usec_t now = now_usec(CLOCK_MONOTONIC);
                struct pollfd p = { .fd = fd, .events = events };
                int r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                r = poll(&p, 1, (int) ((deadline - now) / USEC_PER_MSEC + 1));
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r > 0)
                        return 0;
        }
}

/* All of buf, before deadline: 0 or -errno (-ETIMEDOUT). */
static int send_all(int fd, const char *buf, size_t len, usec_t deadline) {
        size_t sent = 0;

        while (sent < len) {
                ssize_t n;
                int r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                n = send(fd, buf + sent, len - sent, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                sent += (size_t) n;
        }
        return 0;
}

int fc_api_request(int fd, const char *method, const char *path, const char *body, usec_t timeout) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_free_ char *req = NULL;
        char resp[512];
        size_t got = 0;
        int len, r;

        len = asprintf(&req,
                       "%s %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n"
                       "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                       method, path, body ? strlen(body) : 0, body ?: "");
        if (len < 0)
                return -ENOMEM;

        r = send_all(fd, req, (size_t) len, deadline);
        if (r < 0)
                return r;

        /* The status line is all we need. */
        while (got < sizeof resp - 1) {
                ssize_t n;
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                got += (size_t) n;
                resp[got] = '\0';
                if (memchr(resp, '\n', got))
                        break;
        }
        return fc_http_parse_status(resp, got);
}

int fc_api_get(int fd, const char *path, usec_t timeout, int *ret_status, char **ret_body) {
        usec_t deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        _cleanup_free_ char *req = NULL;
        char resp[4096 + 512];
        size_t got = 0;
        int len, r;

        len = asprintf(&req, "GET %s HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n", path);
        if (len < 0)
                return -ENOMEM;
        r = send_all(fd, req, (size_t) len, deadline);
        if (r < 0)
                return r == -EPIPE ? -ECONNRESET : r;

        for (;;) {
                const char *end = got > 0 ? strstr(resp, "\r\n\r\n") : NULL;
                ssize_t n;

                if (end) {
                        const char *cl = strcasestr(resp, "\r\nContent-Length:");
                        size_t head = (size_t) (end - resp) + 4, body_len = 0;
                        int status = fc_http_parse_status(resp, got);

                        if (status < 0)
                                return status;
                        if (cl && cl < end)
                                body_len = strtoul(cl + 17, NULL, 10);
                        if (head + body_len > sizeof resp - 1)
                                return -EBADMSG;
                        if (got >= head + body_len) {
                                char *b = strndup(resp + head, body_len);
                                if (!b)
                                        return -ENOMEM;
                                *ret_status = status;
                                *ret_body = b;
                                return 0;
                        }
                }
                if (got >= sizeof resp - 1)
                        return -EBADMSG;
                r = wait_fd(fd, POLLIN, deadline);
                if (r < 0)
                        return r;
                n = recv(fd, resp + got, sizeof resp - 1 - got, 0);
                if (n < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                got += (size_t) n;
                resp[got] = '\0';
        }
}

int fc_instance_state_parse(const char *body, char **ret) {
        const char *p = strstr(body, "\"state\"");
        size_t n;
        char *s;

        if (!p)
                return -EBADMSG;
        p += 7;
        p += strspn(p, " \t\r\n");
        if (*p != ':')
                return -EBADMSG;
        p++;
        p += strspn(p, " \t\r\n");
        if (*p != '"')
                return -EBADMSG;
        p++;
        n = strcspn(p, "\"\\");
        if (p[n] != '"' || n == 0 || n > 64)
                return -EBADMSG;
        s = strndup(p, n);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}
