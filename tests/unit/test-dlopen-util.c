/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* dlopen_many(): all symbols or none, and errors that name the library. */

#include <criterion/criterion.h>
#include <dlfcn.h>
#include <string.h>

#include "dlopen-util.h"
#include "util.h"

/* Two functions of libc, resolved through the loader like any library. */
DLSYM_PROTOTYPE(strlen);
DLSYM_PROTOTYPE(strchr);

static void reset(void) {
        sym_strlen = NULL;
        sym_strchr = NULL;
}

Test(dlopen_util, loads_and_resolves_every_symbol, .init = reset) {
        void *dl = NULL;
        char *error = NULL;

        cr_assert_eq(dlopen_many(&dl, "libc.so.6", &error, DLSYM_ARG(strlen), DLSYM_ARG(strchr), NULL), 0);
        cr_assert_not_null(dl);
        cr_assert_null(error);
        cr_assert_eq(sym_strlen("microvm"), 7);
        cr_assert_str_eq(sym_strchr("web1", '1'), "1");
        /* Loaded: a second call does nothing and succeeds. */
        cr_assert_eq(dlopen_many(&dl, "libc.so.6", &error, DLSYM_ARG(strlen), NULL), 0);
}

Test(dlopen_util, missing_library_names_it, .init = reset) {
        void *dl = NULL;
        char *error = NULL;

        cr_assert_eq(dlopen_many(&dl, "libmicrovm-does-not-exist.so.0", &error, DLSYM_ARG(strlen), NULL), -ELIBACC);
        cr_assert_null(dl);
        cr_assert_null(sym_strlen);
        cr_assert_not_null(error);
        cr_assert(strstr(error, "cannot load libmicrovm-does-not-exist.so.0"), "%s", error);
        free(error);
}

/* A symbol the library lacks (an older libdevmapper, say): nothing is set,
 * not even the symbols that were found. */
int no_such_function(void); /* declared, defined nowhere */
DLSYM_PROTOTYPE(no_such_function);

Test(dlopen_util, missing_symbol_sets_nothing, .init = reset) {
        void *dl = NULL;
        char *error = NULL;

        sym_no_such_function = NULL;
        cr_assert_eq(dlopen_many(&dl, "libc.so.6", &error, DLSYM_ARG(strlen), DLSYM_ARG(no_such_function),
                                 DLSYM_ARG(strchr), NULL),
                     -ELIBBAD);
        cr_assert_null(dl);
        cr_assert_null(sym_strlen);
        cr_assert_null(sym_strchr);
        cr_assert_str_eq(error, "libc.so.6 has no symbol no_such_function");
        free(error);
}
