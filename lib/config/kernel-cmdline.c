/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <string.h>

#include "kernel-cmdline.h"

bool kernel_cmdline_is_space(char c) {
        /* lib/ctype.c: _S for \t \n \v \f \r, ' ' and 0xa0. */
        return c == ' ' || (c >= '\t' && c <= '\r') || (unsigned char) c == 0xa0;
}

bool kernel_cmdline_quotes_balanced(const char *text) {
        size_t n = 0;

        for (const char *p = text; *p; p++)
                n += *p == '"';
        return n % 2 == 0;
}

/* One parameter as next_arg() cuts it, from p (no leading blanks) up to
 * *ret_end (< end); *ret_name .. *ret_name_end is what parse_args() sees as
 * the parameter's name: without a leading '"', up to the first '=', and
 * for a quoted parameter without '=' also without the closing '"'. */
static void next_param(const char *p, const char *end, const char **ret_end, const char **ret_name,
                       const char **ret_name_end, bool *ret_has_value) {
        const char *equals = NULL, *q;
        bool in_quote = false, quoted = false;

        if (p < end && *p == '"') {
                p++;
                in_quote = quoted = true;
        }
        for (q = p; q < end; q++) {
                if (kernel_cmdline_is_space(*q) && !in_quote)
                        break;
                if (!equals && *q == '=')
                        equals = q;
                if (*q == '"')
                        in_quote = !in_quote;
        }
        *ret_end = q;
        *ret_name = p;
        *ret_has_value = equals;
        if (equals)
                *ret_name_end = equals;
        else if (quoted && q > p && q[-1] == '"')
                *ret_name_end = q - 1;
        else
                *ret_name_end = q;
}

static const char *skip_spaces(const char *p, const char *end) {
        while (p < end && kernel_cmdline_is_space(*p))
                p++;
        return p;
}

static size_t trimmed_len(const char *start, const char *end) {
        while (end > start && kernel_cmdline_is_space(end[-1]))
                end--;
        return (size_t) (end - start);
}

void kernel_cmdline_split(const char *text, KernelCmdlineSplit *ret) {
        const char *end = text + strlen(text), *start = skip_spaces(text, end);

        for (const char *p = start; p < end; p = skip_spaces(p, end)) {
                const char *tok_end, *name, *name_end;
                bool has_value;

                next_param(p, end, &tok_end, &name, &name_end, &has_value);
                /* parse_args(): "Stop at --". */
                if (!has_value && name_end - name == 2 && name[0] == '-' && name[1] == '-') {
                        const char *init = skip_spaces(tok_end, end);
                        *ret = (KernelCmdlineSplit) {
                                .kernel = start,
                                .kernel_len = trimmed_len(start, p),
                                .init = init,
                                .init_len = trimmed_len(init, end),
                        };
                        return;
                }
                p = tok_end;
        }
        *ret = (KernelCmdlineSplit) { .kernel = start, .kernel_len = trimmed_len(start, end) };
}

bool kernel_cmdline_has_param(const char *text, size_t len, const char *name) {
        const char *end = text + len;
        size_t n = strlen(name);

        for (const char *p = skip_spaces(text, end); p < end; p = skip_spaces(p, end)) {
                const char *tok_end, *pname, *pname_end;
                bool has_value;

                next_param(p, end, &tok_end, &pname, &pname_end, &has_value);
                if ((size_t) (pname_end - pname) == n && memcmp(pname, name, n) == 0)
                        return true;
                p = tok_end;
        }
        return false;
}
