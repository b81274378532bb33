/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>
#include <elf.h>

#include "binary.h"
#include "fc-api.h"
#include "util.h"

static size_t make_elf(unsigned char *buf, bool with_interp, uint16_t type) {
        Elf64_Ehdr eh = {
                .e_ident = { ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT },
                .e_type = type,
                .e_machine = EM_X86_64,
                .e_phoff = sizeof(Elf64_Ehdr),
                .e_phentsize = sizeof(Elf64_Phdr),
                .e_phnum = 2,
        };
        Elf64_Phdr ph[2] = { { .p_type = PT_LOAD }, { .p_type = with_interp ? PT_INTERP : PT_NOTE } };
        memcpy(buf, &eh, sizeof eh);
        memcpy(buf + sizeof eh, ph, sizeof ph);
        return sizeof eh + sizeof ph;
}

Test(elf, classify) {
        unsigned char buf[512] = {};
        size_t n = make_elf(buf, false, ET_EXEC);
        cr_assert_eq(elf_classify(buf, n), ELF_STATIC);
        n = make_elf(buf, false, ET_DYN); /* static-pie */
        cr_assert_eq(elf_classify(buf, n), ELF_STATIC);
        n = make_elf(buf, true, ET_DYN);
        cr_assert_eq(elf_classify(buf, n), ELF_DYNAMIC);
        cr_assert_eq(elf_classify(buf, n - 1), ELF_TRUNCATED);
        cr_assert_eq(elf_classify(buf, 20), ELF_TRUNCATED);
        cr_assert_eq(elf_classify("#!/bin/sh\n", 10), ELF_NOT_ELF);
        cr_assert_eq(elf_classify("", 0), ELF_NOT_ELF);
        make_elf(buf, false, ET_REL);
        cr_assert_eq(elf_classify(buf, n), ELF_UNSUPPORTED);
        make_elf(buf, false, ET_EXEC);
        buf[EI_CLASS] = ELFCLASS32;
        cr_assert_eq(elf_classify(buf, n), ELF_UNSUPPORTED);
        /* program headers claimed beyond the buffer */
        make_elf(buf, false, ET_EXEC);
        ((Elf64_Ehdr *) buf)->e_phnum = 60000;
        cr_assert_eq(elf_classify(buf, n), ELF_TRUNCATED);
        ((Elf64_Ehdr *) buf)->e_phnum = 2;
        ((Elf64_Ehdr *) buf)->e_phoff = UINT64_MAX;
        cr_assert_eq(elf_classify(buf, n), ELF_TRUNCATED);
}

Test(elf, real_binaries) {
        /* /bin/sh on Debian is dynamically linked */
        unsigned char buf[4096];
        FILE *f = fopen("/bin/sh", "re");
        cr_assert_not_null(f);
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        cr_assert_eq(elf_classify(buf, n), ELF_DYNAMIC);
}

Test(http, status_line) {
        cr_assert_eq(fc_http_parse_status("HTTP/1.1 204 No Content\r\n", 25), 204);
        cr_assert_eq(fc_http_parse_status("HTTP/1.1 400\r\n", 14), 400);
        cr_assert_eq(fc_http_parse_status("HTTP/1.0 200 OK", 15), 200);
        cr_assert_eq(fc_http_parse_status("HTTP/1.1 20", 11), -EBADMSG);
        cr_assert_eq(fc_http_parse_status("HTTP/2 204 x", 12), -EBADMSG);
        cr_assert_eq(fc_http_parse_status("HTTP/1.1 2x4 x", 14), -EBADMSG);
        cr_assert_eq(fc_http_parse_status("HTTP/1.1 2045", 13), -EBADMSG);
        cr_assert_eq(fc_http_parse_status("", 0), -EBADMSG);
}

Test(http, instance_state) {
        char *st = NULL;

        /* firecracker's InstanceInfo, as its API serves GET / */
        cr_assert_eq(fc_instance_state_parse("{\"id\":\"web1\",\"state\":\"Running\",\"vmm_version\":\"1.16.0\","
                                             "\"app_name\":\"Firecracker\"}", &st), 0);
        cr_assert_str_eq(st, "Running");
        free(st);
        cr_assert_eq(fc_instance_state_parse("{\"state\" : \"Not started\"}", &st), 0);
        cr_assert_str_eq(st, "Not started");
        free(st);
        cr_assert_eq(fc_instance_state_parse("{\"id\":\"x\"}", &st), -EBADMSG);
        cr_assert_eq(fc_instance_state_parse("{\"state\":42}", &st), -EBADMSG);
        cr_assert_eq(fc_instance_state_parse("{\"state\":\"Runn", &st), -EBADMSG);
        cr_assert_eq(fc_instance_state_parse("{\"state\":\"\"}", &st), -EBADMSG);
}

Test(util, read_full_fd_sizes) {
        /* Exactly at, below and above the limit, and across the growth steps. */
        static const size_t sizes[] = { 0, 1, 4094, 4095, 4096, 4097, 8191, 8192, 100000 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
                FILE *f = tmpfile();
                char *data = NULL;
                size_t n = 0;
                for (size_t k = 0; k < sizes[i]; k++)
                        fputc('a' + (int) (k % 26), f);
                fflush(f);
                rewind(f);
                cr_assert_eq(read_full_fd(fileno(f), sizes[i], &data, &n), 0, "size %zu", sizes[i]);
                cr_assert_eq(n, sizes[i]);
                cr_assert_eq(strlen(data), sizes[i]);
                free(data);
                if (sizes[i] > 0) {
                        rewind(f);
                        cr_assert_eq(read_full_fd(fileno(f), sizes[i] - 1, &data, &n), -EFBIG, "size %zu", sizes[i]);
                }
                fclose(f);
        }
}
