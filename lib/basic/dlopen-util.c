/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dlfcn.h>
#include <stdarg.h>

#include "dlopen-util.h"
#include "util.h"

int dlopen_many(void **handle, const char *soname, char **ret_error, ...) {
        void *dl;
        va_list ap;

        if (*handle)
                return 0;

        dl = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
        if (!dl)
                return error_setf(ret_error, ELIBACC, "cannot load %s (%s)", soname, strna(dlerror()));

        /* All or nothing: resolve into a scratch list first. */
        va_start(ap, ret_error);
        for (;;) {
                void **ptr = va_arg(ap, void **);
                const char *name;
                void *sym;

                if (!ptr)
                        break;
                name = va_arg(ap, const char *);
                sym = dlsym(dl, name);
                if (!sym) {
                        va_end(ap);
                        dlclose(dl);
                        return error_setf(ret_error, ELIBBAD, "%s has no symbol %s", soname, name);
                }
        }
        va_end(ap);

        va_start(ap, ret_error);
        for (;;) {
                void **ptr = va_arg(ap, void **);

                if (!ptr)
                        break;
                *ptr = dlsym(dl, va_arg(ap, const char *));
        }
        va_end(ap);
        *handle = dl;
        return 0;
}
