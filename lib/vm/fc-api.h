/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A minimal client for firecracker's API: HTTP/1.1 over its AF_UNIX socket.
 *
 * The socket lives in the VM's jail, which the VM's uid controls: the path
 * to it may contain planted symlinks, and for long ids it is longer than
 * sun_path anyway. So the socket inode is opened O_PATH through safe-fs
 * (no symlink followed anywhere, leaf included) and connect(2) is given
 * "/proc/self/fd/N", which names exactly that inode: short, and race-free. */

#include "macro.h"

/* chroot_base_fd: trusted fd of the chroot base; rel: the socket path
 * relative to it ("<exec>/<id>/root/run/firecracker.socket"). */
int fc_api_connect(int chroot_base_fd, const char *rel, int *ret_fd);

/* Sends one request (body may be NULL) and reads the response status line.
 * Waits at most timeout in total. Returns the HTTP status code. */
int fc_api_request(int fd, const char *method, const char *path, const char *body, usec_t timeout);

/* Pure: parses "HTTP/1.1 204 No Content\r\n..." into 204, or -EBADMSG. */
int fc_http_parse_status(const char *buf, size_t size);

/* GET path: waits at most timeout in total; 0 with the HTTP status in
 * *ret_status and the body (NUL-terminated, at most 4 KiB) in *ret_body.
 * -ECONNRESET when the peer closed the connection before a whole response
 * (firecracker exited), -ETIMEDOUT, -EBADMSG for a malformed response. */
int fc_api_get(int fd, const char *path, usec_t timeout, int *ret_status, char **ret_body);

/* Pure: the "state" of firecracker's InstanceInfo (GET /: {"id": ...,
 * "state": "Not started" | "Running" | "Paused", ...}) into *ret (newly
 * allocated), or -EBADMSG. */
int fc_instance_state_parse(const char *body, char **ret);
