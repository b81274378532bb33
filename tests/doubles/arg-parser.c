/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <stdlib.h>
#include <string.h>

#include "arg-parser.h"

Argument *arg_find(Argument *args, size_t n_args, const char *name) {
        for (size_t i = 0; i < n_args; i++)
                if (streq(args[i].name, name))
                        return &args[i];
        return NULL;
}

const char *arg_value(Argument *args, size_t n_args, const char *name) {
        Argument *a = arg_find(args, n_args, name);
        if (!a)
                return NULL;
        return a->present ? a->value : a->default_value;
}

static bool args_contain(int argc, char **argv, int end, const char *s) {
        for (int i = 1; i < end && i < argc; i++)
                if (streq(argv[i], s))
                        return true;
        return false;
}

static ArgParseResult fail(ArgError *ret_error, ArgErrorKind kind, const char *a, const char *b) {
        *ret_error = (ArgError) { .kind = kind, .a = a, .b = b };
        return ARGS_ERROR;
}

ArgParseResult arg_parse(Argument *args, size_t n_args, int argc, char **argv, int *ret_extra,
                         ArgError *ret_error) {
        int end = argc;

        *ret_extra = argc;
        for (int i = 1; i < argc; i++)
                if (streq(argv[i], "--")) {
                        end = i;
                        *ret_extra = i + 1;
                        break;
                }

        if (args_contain(argc, argv, end, "--help") || args_contain(argc, argv, end, "-h"))
                return ARGS_HELP;
        if (args_contain(argc, argv, end, "--version"))
                return ARGS_VERSION;

        for (int i = 1; i < end; i++) {
                const char *name = startswith(argv[i], "--");
                if (!name)
                        return fail(ret_error, ARG_UNEXPECTED, argv[i], NULL);
                Argument *a = arg_find(args, n_args, name);
                if (!a)
                        return fail(ret_error, ARG_UNEXPECTED, name, NULL);
                if (!a->allow_multiple && a->present)
                        return fail(ret_error, ARG_DUPLICATE, name, NULL);
                if (a->takes_value) {
                        if (i + 1 >= end || startswith(argv[i + 1], "--"))
                                return fail(ret_error, ARG_MISSING_VALUE, a->name, NULL);
                        const char *val = argv[++i];
                        if (a->allow_multiple) {
                                const char **v = realloc(a->values, (a->n_values + 1) * sizeof(char *));
                                if (!v)
                                        abort();
                                a->values = v;
                                a->values[a->n_values++] = val;
                        } else
                                a->value = val;
                }
                a->present = true;
        }

        for (size_t i = 0; i < n_args; i++) {
                const Argument *a = &args[i];
                if (a->required && !a->present)
                        return fail(ret_error, ARG_MISSING_ARGUMENT, a->name, NULL);
                if (!a->present)
                        continue;
                if (a->requires) {
                        _cleanup_free_ char *flag = NULL;
                        if (asprintf(&flag, "--%s", a->requires) < 0)
                                abort();
                        if (!args_contain(argc, argv, end, flag))
                                return fail(ret_error, ARG_MISSING_ARGUMENT, a->requires, NULL);
                }
                if (a->forbids) {
                        _cleanup_free_ char *flag = NULL;
                        if (asprintf(&flag, "--%s", a->forbids) < 0)
                                abort();
                        if (args_contain(argc, argv, end, flag))
                                return fail(ret_error, ARG_FORBIDDEN, a->name, a->forbids);
                }
        }
        return ARGS_OK;
}

void arg_error_display(StrBuf *sb, const ArgError *e) {
        switch (e->kind) {
        case ARG_FORBIDDEN:
                sb_appendf(sb, "Argument '%s' cannot be used together with argument '%s'.", e->b, e->a);
                break;
        case ARG_MISSING_ARGUMENT:
                sb_appendf(sb, "Argument '%s' required, but not found.", e->a);
                break;
        case ARG_MISSING_VALUE:
                sb_appendf(sb, "The argument '%s' requires a value, but none was supplied.", e->a);
                break;
        case ARG_UNEXPECTED:
                sb_appendf(sb, "Found argument '%s' which wasn't expected, or isn't valid in this context.", e->a);
                break;
        case ARG_DUPLICATE:
                sb_appendf(sb, "The argument '%s' was provided more than once.", e->a);
                break;
        }
}

void arg_error_debug(StrBuf *sb, const ArgError *e) {
        static const char *const names[] = {
                [ARG_FORBIDDEN] = "ForbiddenArgument",
                [ARG_MISSING_ARGUMENT] = "MissingArgument",
                [ARG_MISSING_VALUE] = "MissingValue",
                [ARG_UNEXPECTED] = "UnexpectedArgument",
                [ARG_DUPLICATE] = "DuplicateArgument",
        };

        sb_appendf(sb, "%s(", names[e->kind]);
        sb_append_rust_str_debug(sb, e->a);
        if (e->kind == ARG_FORBIDDEN) {
                sb_append(sb, ", ");
                sb_append_rust_str_debug(sb, e->b);
        }
        sb_append(sb, ")");
}

static void format_name(StrBuf *sb, const char *name, bool takes_value) {
        if (takes_value)
                sb_appendf(sb, "  --%s <%s>", name, name);
        else
                sb_appendf(sb, "  --%s", name);
}

static void format_line(StrBuf *sb, size_t width, const char *name, bool takes_value, const char *help,
                        const char *default_value) {
        _cleanup_sb_ StrBuf n = {};

        format_name(&n, name, takes_value);
        sb_appendf(sb, "%-*s   ", (int) width, sb_str(&n));
        if (help && default_value)
                sb_appendf(sb, "%s [default: \"%s\"]", help, default_value);
        else if (help)
                sb_append(sb, help);
        else if (default_value)
                sb_appendf(sb, "[default: \"%s\"]", default_value);
}

static void format_group(StrBuf *sb, const Argument *args, size_t n_args, bool required) {
        /* With --help given, the real parser has inserted an optional "help"
         * flag into its sorted map, so it shows up in the list. */
        bool help_done = required;
        size_t width = required ? 0 : strlen("  --help");
        bool first = true;

        for (size_t i = 0; i < n_args; i++) {
                if (args[i].required != required)
                        continue;
                _cleanup_sb_ StrBuf n = {};
                format_name(&n, args[i].name, args[i].takes_value);
                width = MAX(width, n.len);
        }
        for (size_t i = 0; i <= n_args; i++) {
                if (i < n_args && args[i].required != required)
                        continue;
                if (!help_done && (i == n_args || strcmp(args[i].name, "help") > 0)) {
                        if (!first)
                                sb_append(sb, "\n");
                        format_line(sb, width, "help", false, "Show the help message.", NULL);
                        help_done = true;
                        first = false;
                }
                if (i == n_args)
                        break;
                if (!first)
                        sb_append(sb, "\n");
                format_line(sb, width, args[i].name, args[i].takes_value, args[i].help, args[i].default_value);
                first = false;
        }
}

void arg_format_help(StrBuf *sb, const Argument *args, size_t n_args) {
        bool any_required = false;

        for (size_t i = 0; i < n_args; i++)
                any_required = any_required || args[i].required;
        if (any_required) {
                sb_append(sb, "required arguments:\n");
                format_group(sb, args, n_args, true);
                sb_append(sb, "\n\n");
        }
        sb_append(sb, "optional arguments:\n");
        format_group(sb, args, n_args, false);
}
