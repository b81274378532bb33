/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "jailer-argv.h"
#include "parse-util.h"

bool jailer_id_valid(const char *id) {
        size_t n = strlen(id);

        if (n == 0 || n > 64)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                      (id[i] >= '0' && id[i] <= '9') || id[i] == '-'))
                        return false;
        return true;
}

bool jailer_parent_cgroup_valid(const char *p) {
        /* Relative, no "." or ".." components, no empty components. */
        if (isempty(p) || p[0] == '/')
                return false;
        for (const char *c = p; *c;) {
                const char *end = strchrnul(c, '/');
                size_t n = (size_t) (end - c);
                if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
                        return false;
                for (const char *q = c; q < end; q++)
                        if ((unsigned char) *q < ' ' || *q == 0x7f)
                                return false;
                c = *end ? end + 1 : end;
                if (*end && !*c)
                        return false; /* trailing '/' */
        }
        return true;
}

bool jailer_cgroup_value_valid(const char *kv) {
        /* "file=value": the file names a controller interface file
         * (controller '.' key), the value is non-empty and single-line. */
        const char *eq = strchr(kv, '='), *dot;

        if (!eq || eq == kv || !eq[1])
                return false;
        dot = memchr(kv, '.', (size_t) (eq - kv));
        if (!dot || dot == kv || dot + 1 == eq)
                return false;
        /* Interface file names: letters of both cases ("hugetlb.2MB.max"),
         * digits, '.' and '_'; never a '/' that could leave the cgroup. */
        for (const char *c = kv; c < eq; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      *c == '.' || *c == '_'))
                        return false;
        for (const char *c = eq + 1; *c; c++)
                if ((unsigned char) *c < ' ' || *c == 0x7f)
                        return false;
        return true;
}

bool jailer_rlimit_valid(const char *kv) {
        const char *v;
        uint64_t n;

        v = startswith(kv, "fsize=");
        if (!v)
                v = startswith(kv, "no-file=");
        return v && parse_u64(v, &n) >= 0;
}

/* firecracker --level: the names microvm-stage writes (config.h). */
static bool fc_log_level_valid(const char *s) {
        for (FcLogLevel l = FC_LOG_LEVEL_ERROR; l <= FC_LOG_LEVEL_DEBUG; l++)
                if (streq(s, fc_log_level_to_string(l)))
                        return true;
        return false;
}

static int push(char ***argv, size_t *n, const char *s) {
        char **na = realloc(*argv, (*n + 2) * sizeof(char *));
        if (!na)
                return -ENOMEM;
        *argv = na;
        na[*n] = strdup(s);
        if (!na[*n])
                return -ENOMEM;
        na[++*n] = NULL;
        return 0;
}

int jailer_argv(const Plan *p, const char *parent_cgroup, char ***ret_argv, char **ret_error) {
        _cleanup_strv_free_ char **argv = NULL;
        char uid[16], gid[16];
        size_t n = 0;
        int r = 0;

#define BAD(...)                                                         \
        do {                                                             \
                if (ret_error && asprintf(ret_error, __VA_ARGS__) < 0)   \
                        *ret_error = NULL;                               \
                return -EINVAL;                                          \
        } while (0)

        if (!jailer_id_valid(p->id))
                BAD("VM id \"%s\" is not a valid jailer id (1-64 of A-Z a-z 0-9 -)", p->id);
        if (path_check_normalized(p->jailer) != PATH_OK)
                BAD("jailer path \"%s\" is not a normalized absolute path", p->jailer);
        if (path_check_normalized(p->exec_file) != PATH_OK)
                BAD("firecracker path \"%s\" is not a normalized absolute path", p->exec_file);
        if (path_check_normalized(p->chroot_base) != PATH_OK)
                BAD("chroot base \"%s\" is not a normalized absolute path", p->chroot_base);
        if (p->uid == 0 || p->gid == 0)
                BAD("refusing to run firecracker as uid or gid 0");
        if (!jailer_parent_cgroup_valid(parent_cgroup))
                BAD("parent cgroup \"%s\" is not a relative cgroup path without \".\" or \"..\"", parent_cgroup);
        for (char **c = p->cgroup; c && *c; c++)
                if (!jailer_cgroup_value_valid(*c))
                        BAD("jailer cgroup value \"%s\" is not of the form controller.file=value", *c);
        for (char **c = p->rlimit; c && *c; c++)
                if (!jailer_rlimit_valid(*c))
                        BAD("jailer resource limit \"%s\" is not fsize=N or no-file=N", *c);
        if (p->netns && path_check_normalized(p->netns) != PATH_OK)
                BAD("network namespace path \"%s\" is not a normalized absolute path", p->netns);
        if (p->fc_log_level && !fc_log_level_valid(p->fc_log_level))
                BAD("firecracker log level \"%s\" is not Error, Warning, Info or Debug", p->fc_log_level);
        if (isempty(p->config_file) || p->config_file[0] != '/' || isempty(p->api_socket) || p->api_socket[0] != '/')
                BAD("config file and API socket must be absolute paths inside the jail");

        snprintf(uid, sizeof uid, "%u", (unsigned) p->uid);
        snprintf(gid, sizeof gid, "%u", (unsigned) p->gid);

        /* Only "--flag value" pairs, as the jailer wants them. */
        const char *fixed[] = {
                p->jailer,
                "--id", p->id,
                "--exec-file", p->exec_file,
                "--uid", uid,
                "--gid", gid,
                "--chroot-base-dir", p->chroot_base,
                /* The jailer defaults to cgroup v1. */
                "--cgroup-version", "2",
                "--parent-cgroup", parent_cgroup,
        };
        for (size_t i = 0; i < ELEMENTSOF(fixed) && r >= 0; i++)
                r = push(&argv, &n, fixed[i]);
        for (char **c = p->cgroup; c && *c && r >= 0; c++) {
                r = push(&argv, &n, "--cgroup");
                if (r >= 0)
                        r = push(&argv, &n, *c);
        }
        for (char **c = p->rlimit; c && *c && r >= 0; c++) {
                r = push(&argv, &n, "--resource-limit");
                if (r >= 0)
                        r = push(&argv, &n, *c);
        }
        if (p->netns && r >= 0) {
                r = push(&argv, &n, "--netns");
                if (r >= 0)
                        r = push(&argv, &n, p->netns);
        }
        /* Everything after "--" goes to firecracker verbatim. Never
         * --daemonize or --new-pid-ns: the jailer must exec firecracker in
         * place, so that the unit's main PID is the VMM and its stdout (the
         * serial console) is the journal. */
        /* A resume starts firecracker without a config: it waits for
         * PUT /snapshot/load on its API socket (microvm-ready sends it). */
        /* The log level on the command line, not in the config: a resume
         * has no config file. */
        const char *tail[] = { "--", "--config-file", p->config_file, "--api-sock", p->api_socket };
        for (size_t i = 0; i < ELEMENTSOF(tail) && r >= 0; i++)
                if (!(p->resume && i >= 1 && i <= 2))
                        r = push(&argv, &n, tail[i]);
        if (p->fc_log_level && r >= 0) {
                r = push(&argv, &n, "--level");
                if (r >= 0)
                        r = push(&argv, &n, p->fc_log_level);
        }
        if (r < 0)
                return r;

        *ret_argv = TAKE_PTR(argv);
        return 0;
#undef BAD
}
