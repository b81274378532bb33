/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Finding and reading configuration files (the impure half of the config
 * model). VM configs are <id>.conf in the directories of the search path
 * ($MICROVM_CONFIG_PATH, colon-separated, or /etc/microvm/vms,
 * /run/microvm/vms, /usr/lib/microvm/vms): the first directory holding a
 * file name wins, and a symlink to /dev/null there masks the VM. */

#include "config.h"

typedef struct VmConfigFile {
        char *name;             /* file name minus ".conf": the VM id if valid */
        char *path;
        bool masked;
        size_t dir;             /* its directory's place in the search path, 0 first */
} VmConfigFile;

/* Newly allocated NULL-terminated directory list. */
int config_search_path(char ***ret);
const char *host_config_path(void);

/* Reads a whole config file (regular file, at most INI_FILE_MAX bytes; when
 * we are root, owned by root (else -EPERM) and not writable by group or
 * others (else -EACCES)). */
int config_read_file(const char *path, char **ret_data, size_t *ret_size);
/* Describes a config_read_file() error for a message. */
const char *config_read_strerror(int r);

/* Every <name>.conf across the search path, after precedence, sorted by
 * name. Masked entries are included with masked = true. Directories that
 * do not exist are skipped; other errors are returned. */
int vm_config_enumerate(VmConfigFile **ret, size_t *ret_n);
void vm_config_files_free(VmConfigFile *f, size_t n);

/* Resolves one id: 0 and the path, -ENOENT when no file exists,
 * -ERFKILL when masked. */
int vm_config_find(const char *id, char **ret_path);

/* Host config from host_config_path(); built-in defaults when the file does
 * not exist. Problems name the file. */
int host_config_load(HostConfig **ret, Problems *problems);
/* The same, with host_config_parse_partial()'s *ret_partial. */
int host_config_load_partial(HostConfig **ret, HostConfig **ret_partial, Problems *problems);

/* find + read + parse. A missing or masked VM becomes a problem, too. */
int vm_config_load(const HostConfig *host, const char *id, VmConfig **ret, Problems *problems);
