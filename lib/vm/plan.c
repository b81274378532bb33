/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <inttypes.h>

#include "parse-util.h"
#include "plan.h"

Plan *plan_free(Plan *p) {
        if (!p)
                return NULL;
        free(p->config_digest);
        free(p->jailer);
        free(p->exec_file);
        free(p->exec_name);
        free(p->chroot_base);
        free(p->jail_dir);
        free(p->run_dir);
        free(p->state_dir);
        free(p->config_file);
        free(p->api_socket);
        free(p->netns);
        free(p->fc_log_level);
        strv_free(p->cgroup);
        strv_free(p->rlimit);
        strv_free(p->tap);
        strv_free(p->dm);
        free(p->suspend_blocker);
        free(p);
        return NULL;
}

typedef enum FieldType { F_STR, F_UID, F_GID, F_USEC, F_BOOL, F_LIST, F_UINT } FieldType;

typedef struct Field {
        const char *key;
        FieldType type;
        size_t offset;
        bool required;
} Field;

#define F(k, t, m, req) { k, t, offsetof(Plan, m), req }
static const Field fields[] = {
        F("VERSION", F_UINT, version, true),
        F("CONFIG_DIGEST", F_STR, config_digest, false),
        F("JAILER", F_STR, jailer, true),
        F("EXEC_FILE", F_STR, exec_file, true),
        F("EXEC_NAME", F_STR, exec_name, true),
        F("CHROOT_BASE", F_STR, chroot_base, true),
        F("JAIL_DIR", F_STR, jail_dir, true),
        F("RUN_DIR", F_STR, run_dir, true),
        F("STATE_DIR", F_STR, state_dir, true),
        F("UID", F_UID, uid, true),
        F("GID", F_GID, gid, true),
        F("STOP_TIMEOUT_USEC", F_USEC, stop_timeout, true),
        F("EPHEMERAL", F_BOOL, ephemeral, false),
        F("CONFIG_FILE", F_STR, config_file, true),
        F("API_SOCKET", F_STR, api_socket, true),
        F("CGROUP", F_LIST, cgroup, false),
        F("RLIMIT", F_LIST, rlimit, false),
        F("NETNS", F_STR, netns, false),
        F("TAP", F_LIST, tap, false),
        F("DM", F_LIST, dm, false),
        F("SUSPEND", F_BOOL, suspend, false),
        F("SUSPEND_BLOCKER", F_STR, suspend_blocker, false),
        F("SUSPEND_TIMEOUT_USEC", F_USEC, suspend_timeout, false),
        F("MEMORY_MIB", F_UINT, memory_mib, false),
        F("RESUME", F_BOOL, resume, false),
        F("FC_LOG_LEVEL", F_STR, fc_log_level, false),
};

static void put_escaped(FILE *f, const char *s) {
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (*p == '\\')
                        fputs("\\\\", f);
                else if (*p < ' ' || *p == 0x7f)
                        fprintf(f, "\\x%02x", *p);
                else
                        fputc(*p, f);
        }
}

char *plan_serialize(const Plan *p) {
        char *r = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&r, &len);

        if (!f)
                return NULL;
        fprintf(f, "# microvm launch plan for %s, written by microvm-stage. Do not edit.\n", p->id);
        fprintf(f, "ID=%s\n", p->id);
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                const Field *d = &fields[i];
                const void *v = (const char *) p + d->offset;
                switch (d->type) {
                case F_STR:
                        if (*(char *const *) v) {
                                fprintf(f, "%s=", d->key);
                                put_escaped(f, *(char *const *) v);
                                fputc('\n', f);
                        }
                        break;
                case F_UINT:
                        fprintf(f, "%s=%u\n", d->key, *(const unsigned *) v);
                        break;
                case F_UID:
                        fprintf(f, "%s=%u\n", d->key, (unsigned) *(const uid_t *) v);
                        break;
                case F_GID:
                        fprintf(f, "%s=%u\n", d->key, (unsigned) *(const gid_t *) v);
                        break;
                case F_USEC:
                        fprintf(f, "%s=%" PRIu64 "\n", d->key, *(const usec_t *) v);
                        break;
                case F_BOOL:
                        fprintf(f, "%s=%s\n", d->key, *(const bool *) v ? "yes" : "no");
                        break;
                case F_LIST:
                        for (char *const *s = *(char **const *) v; s && *s; s++) {
                                fprintf(f, "%s=", d->key);
                                put_escaped(f, *s);
                                fputc('\n', f);
                        }
                        break;
                }
        }
        if (fclose(f) != 0) {
                free(r);
                return NULL;
        }
        return r;
}

static int unescape(const char *s, size_t n, char **ret) {
        char *r = malloc(n + 1), *o = r;

        if (!r)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                if (s[i] != '\\') {
                        *o++ = s[i];
                        continue;
                }
                if (i + 1 < n && s[i + 1] == '\\') {
                        *o++ = '\\';
                        i++;
                } else if (i + 3 < n && s[i + 1] == 'x') {
                        char hex[3] = { s[i + 2], s[i + 3], 0 };
                        char *end;
                        unsigned long v = strtoul(hex, &end, 16);
                        if (*end || v == 0) {
                                free(r);
                                return -EINVAL;
                        }
                        *o++ = (char) v;
                        i += 3;
                } else {
                        free(r);
                        return -EINVAL;
                }
        }
        *o = '\0';
        *ret = r;
        return 0;
}

int plan_parse(const char *text, size_t size, Plan **ret, char **ret_error) {
        _cleanup_plan_ Plan *p = calloc(1, sizeof(Plan));
        bool seen[ELEMENTSOF(fields)] = {}, seen_id = false;
        unsigned lineno = 0;

#define FAIL(...)                                                         \
        do {                                                              \
                if (ret_error && asprintf(ret_error, __VA_ARGS__) < 0)    \
                        *ret_error = NULL;                                \
                return -EINVAL;                                           \
        } while (0)

        if (!p)
                return -ENOMEM;
        for (size_t off = 0; off < size;) {
                const char *line = text + off, *nl = memchr(line, '\n', size - off), *eq;
                size_t n = nl ? (size_t) (nl - line) : size - off;
                _cleanup_free_ char *value = NULL;
                const Field *d = NULL;
                size_t di = 0;
                int r;

                off += n + 1;
                lineno++;
                if (n == 0 || line[0] == '#')
                        continue;
                if (memchr(line, '\0', n))
                        FAIL("line %u: contains a NUL byte", lineno);
                eq = memchr(line, '=', n);
                if (!eq)
                        FAIL("line %u: not KEY=VALUE", lineno);
                r = unescape(eq + 1, (size_t) (line + n - eq - 1), &value);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        FAIL("line %u: bad escape in value", lineno);

                if ((size_t) (eq - line) == 2 && memcmp(line, "ID", 2) == 0) {
                        if (seen_id)
                                FAIL("line %u: ID given twice", lineno);
                        if (!vm_id_valid(value))
                                FAIL("line %u: invalid VM id", lineno);
                        strcpy(p->id, value);
                        seen_id = true;
                        continue;
                }
                for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                        if (strlen(fields[i].key) == (size_t) (eq - line) &&
                            memcmp(fields[i].key, line, (size_t) (eq - line)) == 0) {
                                d = &fields[i];
                                di = i;
                                break;
                        }
                if (!d)
                        FAIL("line %u: unknown key \"%.*s\"", lineno, (int) MIN(eq - line, 64), line);
                if (seen[di] && d->type != F_LIST)
                        FAIL("line %u: %s given twice", lineno, d->key);
                seen[di] = true;

                void *v = (char *) p + d->offset;
                switch (d->type) {
                case F_STR:
                        *(char **) v = TAKE_PTR(value);
                        break;
                case F_LIST:
                        if (strv_length(*(char ***) v) >= PLAN_LIST_MAX)
                                FAIL("line %u: too many %s entries", lineno, d->key);
                        if (strv_push((char ***) v, value) < 0)
                                return -ENOMEM;
                        break;
                case F_UINT: {
                        uint32_t u;
                        if (parse_u32(value, &u) < 0)
                                FAIL("line %u: %s is not a number", lineno, d->key);
                        *(unsigned *) v = u;
                        break;
                }
                case F_UID:
                case F_GID: {
                        uint32_t u;
                        if (parse_u32(value, &u) < 0 || u == 0 || u >= UINT32_MAX - 1)
                                FAIL("line %u: %s is not an unprivileged id", lineno, d->key);
                        if (d->type == F_UID)
                                *(uid_t *) v = u;
                        else
                                *(gid_t *) v = u;
                        break;
                }
                case F_USEC:
                        if (parse_u64(value, (uint64_t *) v) < 0)
                                FAIL("line %u: %s is not a number", lineno, d->key);
                        break;
                case F_BOOL: {
                        int b = parse_boolean(value);
                        if (b < 0)
                                FAIL("line %u: %s is not a boolean", lineno, d->key);
                        *(bool *) v = b;
                        break;
                }
                }
        }

        if (!seen_id)
                FAIL("ID missing");
        for (size_t i = 0; i < ELEMENTSOF(fields); i++)
                if (fields[i].required && !seen[i])
                        FAIL("%s missing", fields[i].key);
        if (p->version != PLAN_VERSION)
                FAIL("plan version %u, expected %u (staged by another microvm version: restart the VM)",
                     p->version, PLAN_VERSION);
        *ret = TAKE_PTR(p);
        return 0;
#undef FAIL
}
