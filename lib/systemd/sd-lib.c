/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "dlopen-util.h"
#include "sd-lib.h"

#define SD_LIB_SONAME "libsystemd.so.0"

#define SD_LIB_DEFINE(s) typeof(s) *sym_##s;
SD_LIB_SYMBOLS(SD_LIB_DEFINE)
#undef SD_LIB_DEFINE

static void *libsystemd;

int sd_lib_load(char **ret_error) {
#define SD_LIB_ARG(s) DLSYM_ARG(s),
        return dlopen_many(&libsystemd, SD_LIB_SONAME, ret_error, SD_LIB_SYMBOLS(SD_LIB_ARG) NULL);
#undef SD_LIB_ARG
}
