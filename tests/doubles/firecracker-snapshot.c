/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The firecracker double's snapshot files: see firecracker-snapshot.h. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "firecracker-snapshot.h"

#define STATE_MAGIC "FCDOUBLE-VMSTATE 1\n"
#define MEMORY_MAGIC "FCDOUBLE-GUEST-MEMORY 1\n"
#define PAGE 4096
#define CHUNK (1U << 20)

static uint64_t fnv1a64(const char *s, size_t n) {
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < n; i++) {
                h ^= (unsigned char) s[i];
                h *= 0x100000001b3ULL;
        }
        return h;
}

void fcsnap_new_token(char token[FCSNAP_TOKEN_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t raw[FCSNAP_TOKEN_LEN / 2];

        /* getrandom(2) needs no /dev/urandom in the jail. */
        if (getrandom(raw, sizeof raw, 0) != (ssize_t) sizeof raw)
                abort();
        for (size_t i = 0; i < sizeof raw; i++) {
                token[2 * i] = hex[raw[i] >> 4];
                token[2 * i + 1] = hex[raw[i] & 15];
        }
        token[FCSNAP_TOKEN_LEN] = '\0';
}

static int write_all(int fd, const char *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return errno;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int fcsnap_state_write(const char *path, const char *payload, const char **ret_op) {
        _cleanup_sb_ StrBuf sb = {};
        int fd, err;

        sb_append(&sb, STATE_MAGIC);
        sb_appendf(&sb, "%zu\n", strlen(payload));
        sb_append(&sb, payload);
        sb_appendf(&sb, "\n%016" PRIx64 "\n", fnv1a64(payload, strlen(payload)));

        /* OpenOptions::new().create(true).write(true).truncate(true) */
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0) {
                *ret_op = "open";
                return errno;
        }
        err = write_all(fd, sb.s, sb.len);
        if (err != 0)
                *ret_op = "write";
        else if (fsync(fd) < 0) {
                err = errno;
                *ret_op = "sync_all";
        }
        close(fd);
        return err;
}

static int read_whole(const char *path, StrBuf *sb, size_t max) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return errno;
        for (;;) {
                char buf[65536];
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int err = errno;
                        close(fd);
                        return err;
                }
                if (n == 0)
                        break;
                sb_append_n(sb, buf, (size_t) n);
                if (sb->len > max)
                        break;
        }
        close(fd);
        return 0;
}

int fcsnap_state_read(const char *path, char **ret_payload, const char **ret_problem) {
        _cleanup_sb_ StrBuf sb = {};
        const char *p, *end;
        char *e;
        size_t len;
        uint64_t sum;
        int err;

        err = read_whole(path, &sb, 16U << 20);
        if (err != 0)
                return err;
        p = sb_str(&sb);
        end = p + sb.len;
        if (sb.len < strlen(STATE_MAGIC) || memcmp(p, STATE_MAGIC, strlen(STATE_MAGIC)) != 0) {
                *ret_problem = "Snapshot magic value mismatch (not a snapshot state file, or a truncated one)";
                return -1;
        }
        p += strlen(STATE_MAGIC);
        errno = 0;
        len = strtoull(p, &e, 10);
        if (errno != 0 || e == p || *e != '\n' || (size_t) (end - e - 1) < len + 18) {
                *ret_problem = "Snapshot file is smaller than its length field says (truncated)";
                return -1;
        }
        p = e + 1;
        sum = strtoull(p + len + 1, &e, 16);
        if (p[len] != '\n' || e != p + len + 17 || sum != fnv1a64(p, len)) {
                *ret_problem = "CRC64 validation failed (the double's checksum does not match)";
                return -1;
        }
        *ret_payload = strndup(p, len);
        if (!*ret_payload)
                abort();
        return 0;
}

int fcsnap_memory_write(const char *path, uint64_t mem_bytes, const GuestMemory *g, uint64_t fail_after,
                        const char **ret_op) {
        static char zero[CHUNK];
        char page[PAGE] = {};
        struct stat st;
        bool existed = access(path, F_OK) == 0;
        uint64_t done = 0;
        int fd, err = 0;

        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
                *ret_op = "open";
                return errno;
        }
        /* Truncated only when the size differs, then set to the memory size. */
        if (existed && (fstat(fd, &st) < 0 || ((uint64_t) st.st_size != mem_bytes && ftruncate(fd, 0) < 0))) {
                *ret_op = "truncate";
                err = errno;
        } else if (ftruncate(fd, (off_t) mem_bytes) < 0) {
                *ret_op = "set_len";
                err = errno;
        }
        snprintf(page, sizeof page, MEMORY_MAGIC "token=%s\nticks=%" PRIu64 "\n", g->token, g->ticks);
        while (err == 0 && done < mem_bytes) {
                size_t n = done == 0 ? PAGE : (size_t) (mem_bytes - done < CHUNK ? mem_bytes - done : CHUNK);
                if (fail_after > 0 && done + n > fail_after) {
                        *ret_op = "write";
                        err = ENOSPC;
                        break;
                }
                err = write_all(fd, done == 0 ? page : zero, n);
                if (err != 0)
                        *ret_op = "write";
                done += n;
        }
        close(fd);
        return err;
}

int fcsnap_memory_read(const char *path, uint64_t mem_bytes, GuestMemory *ret, const char **ret_problem) {
        char page[PAGE + 1] = {};
        struct stat st;
        const char *t, *k;
        ssize_t n;
        int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return errno;
        if (fstat(fd, &st) < 0) {
                int err = errno;
                close(fd);
                return err;
        }
        if ((uint64_t) st.st_size != mem_bytes) {
                close(fd);
                *ret_problem = "the memory file's size is not the guest memory size (truncated)";
                return -1;
        }
        n = pread(fd, page, PAGE, 0);
        close(fd);
        t = n > 0 && strncmp(page, MEMORY_MAGIC, strlen(MEMORY_MAGIC)) == 0 ? strstr(page, "\ntoken=") : NULL;
        k = t ? strstr(page, "\nticks=") : NULL;
        if (!t || !k || strcspn(t + 7, "\n") != FCSNAP_TOKEN_LEN) {
                *ret_problem = "the memory file holds no guest memory of the double";
                return -1;
        }
        memcpy(ret->token, t + 7, FCSNAP_TOKEN_LEN);
        ret->token[FCSNAP_TOKEN_LEN] = '\0';
        ret->ticks = strtoull(k + 7, NULL, 10);
        return 0;
}
