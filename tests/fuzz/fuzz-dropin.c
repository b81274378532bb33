/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* libFuzzer harness: a VM config (parsed and validated from the input) →
 * everything the generator writes for it. Invariants: every line of the
 * drop-in is a comment, a section header or Key=Value; no control byte
 * but tab,
 * no line continuation and no unescaped specifier reaches a unit file (a
 * '%' is "%%", or ends a plain percentage such as CPUQuota=200%); the
 * autostart link points at the template and names this VM's instance. */

#include <ctype.h>

#include "fuzz-util.h"
#include "generator-core.h"

static bool percentage(const char *v) {
        size_t n = strspn(v, "0123456789.");
        return n > 0 && streq(v + n, "%");
}

static void check_unit_text(const char *text) {
        const char *p = text;

        while (*p) {
                const char *nl = strchr(p, '\n');
                fuzz_check(nl, "unterminated last line in:\n%s", text);
                char *line = strndup(p, (size_t) (nl - p));
                if (!line)
                        abort();
                for (const char *q = line; *q; q++)
                        fuzz_check(((unsigned char) *q >= ' ' || *q == '\t') && *q != 0x7f, "control byte 0x%02x in line \"%s\"",
                                   (unsigned char) *q, line);
                if (line[0] == '\0' || line[0] == '#' || line[0] == ';')
                        goto next;
                if (line[0] == '[') {
                        fuzz_check(line[strlen(line) - 1] == ']', "bad section line \"%s\"", line);
                        goto next;
                }
                const char *eq = strchr(line, '=');
                fuzz_check(eq && eq > line, "not Key=Value: \"%s\"", line);
                for (const char *k = line; k < eq; k++)
                        fuzz_check(isalnum((unsigned char) *k) || *k == '-', "bad key in \"%s\"", line);
                const char *v = eq + 1;
                fuzz_check(v[0] == '\0' || v[strlen(v) - 1] != '\\', "line continuation in \"%s\"", line);
                for (const char *q = strchr(v, '%'); q; q = strchr(q, '%')) {
                        if (q[1] == '%') {
                                q += 2;
                                continue;
                        }
                        fuzz_check(percentage(v), "unescaped specifier in \"%s\"", line);
                        break;
                }
        next:
                free(line);
                p = nl + 1;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        GeneratedFiles out = {};
        VmConfig *c = fuzz_vm_config(data, size);
        const char *what = NULL;
        int r;

        if (!c)
                return 0;
        r = generator_render_vm(c, fuzz_host(), "/usr/lib/systemd/system", &out, &what);
        /* A value a unit file cannot carry is refused, by name, never written. */
        fuzz_check(r >= 0 || (r == -EINVAL && what), "generator_render_vm() failed: %d", r);
        for (size_t i = 0; i < out.n; i++) {
                const GeneratedFile *f = &out.items[i];
                if (f->symlink) {
                        fuzz_check(streq(f->content, "/usr/lib/systemd/system/" MICROVM_TEMPLATE),
                                   "link target %s", f->content);
                        fuzz_check(streq(f->path, MICROVMS_TARGET ".wants/microvm@fuzz.service"), "link %s", f->path);
                } else
                        check_unit_text(f->content);
        }
        generated_files_done(&out);
        vm_config_free(c);
        return 0;
}
