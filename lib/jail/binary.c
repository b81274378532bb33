/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <elf.h>
#include <limits.h>
#include <sys/stat.h>

#include "binary.h"
#include "safe-fs.h"

ElfKind elf_classify(const void *data, size_t size) {
        const unsigned char *p = data;
        Elf64_Ehdr eh;

        if (size < SELFMAG || memcmp(p, ELFMAG, SELFMAG) != 0)
                return ELF_NOT_ELF;
        if (size < sizeof eh)
                return ELF_TRUNCATED;
        memcpy(&eh, p, sizeof eh);
        if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
                return ELF_UNSUPPORTED;
        if (eh.e_type != ET_EXEC && eh.e_type != ET_DYN)
                return ELF_UNSUPPORTED;
        if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0)
                return ELF_UNSUPPORTED;
        if (eh.e_phoff > size || (size - eh.e_phoff) / sizeof(Elf64_Phdr) < eh.e_phnum)
                return ELF_TRUNCATED;
        for (unsigned i = 0; i < eh.e_phnum; i++) {
                Elf64_Phdr ph;
                memcpy(&ph, p + eh.e_phoff + (size_t) i * sizeof ph, sizeof ph);
                if (ph.p_type == PT_INTERP)
                        return ELF_DYNAMIC;
        }
        return ELF_STATIC;
}

const char *elf_kind_to_string(ElfKind k) {
        switch (k) {
        case ELF_NOT_ELF:
                return "not an ELF executable";
        case ELF_TRUNCATED:
                return "a truncated ELF file";
        case ELF_UNSUPPORTED:
                return "not a 64-bit little-endian ELF executable";
        case ELF_DYNAMIC:
                return "dynamically linked (it has an ELF interpreter), but jails contain no libraries: use a statically linked build";
        case ELF_STATIC:
                return "a static ELF executable";
        }
        return "unknown";
}

int trusted_binary_open(const char *path, bool want_static, char **ret_canonical, int *ret_fd, char **ret_error) {
        _cleanup_free_ char *canonical = NULL, *error = NULL;
        _cleanup_close_ int fd = -EBADF;
        unsigned char head[4096];
        struct stat st;
        ssize_t n;
        int r;

        canonical = realpath(path, NULL);
        if (!canonical) {
                r = -errno;
                if (ret_error && asprintf(ret_error, "%s: %s", path, strerror(errno)) < 0)
                        *ret_error = NULL;
                return r;
        }
        r = safe_root_open(canonical, SAFE_ROOT_REGULAR, 0, &fd, &error);
        if (r < 0) {
                if (ret_error) {
                        if (streq(canonical, path))
                                *ret_error = TAKE_PTR(error);
                        else if (asprintf(ret_error, "%s (resolved from %s)", strna(error), path) < 0)
                                *ret_error = NULL;
                }
                return r;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!(st.st_mode & S_IXUSR)) {
                if (ret_error && asprintf(ret_error, "%s is not executable (mode %04o)", canonical,
                                          (unsigned) (st.st_mode & 07777)) < 0)
                        *ret_error = NULL;
                return -EACCES;
        }
        if (want_static) {
                ElfKind k;
                n = pread(fd, head, sizeof head, 0);
                if (n < 0)
                        return -errno;
                k = elf_classify(head, (size_t) n);
                if (k != ELF_STATIC) {
                        if (ret_error && asprintf(ret_error, "%s is %s", canonical, elf_kind_to_string(k)) < 0)
                                *ret_error = NULL;
                        return -ENOEXEC;
                }
        }
        if (ret_canonical)
                *ret_canonical = TAKE_PTR(canonical);
        if (ret_fd)
                *ret_fd = TAKE_FD(fd);
        return 0;
}
