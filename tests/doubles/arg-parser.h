/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* A re-implementation of Firecracker's utils::arg_parser::ArgParser, which
 * both the jailer and firecracker use, for the test doubles:
 *   - only "--name value" as two argv items ("--id=x" is the unknown
 *     argument "id=x"); a value may not start with "--";
 *   - the first "--" ends the program's own arguments, the rest is "extra";
 *   - "--help"/"-h", then "--version", anywhere before "--" win over
 *     everything else (no other check runs);
 *   - a repeated argument is an error unless it allows multiple values;
 *   - then, in name order (the real one keeps a BTreeMap): required
 *     arguments must be present, "requires" and "forbids" are checked. */

#include <stdbool.h>
#include <stddef.h>

#include "doubles-util.h"

typedef struct Argument {
        const char *name;
        bool required;
        bool takes_value;
        bool allow_multiple;
        const char *requires;
        const char *forbids;
        const char *default_value;
        const char *help;

        /* Filled by arg_parse(). */
        bool present;
        const char *value;
        const char **values;
        size_t n_values;
} Argument;

typedef enum ArgErrorKind {
        ARG_FORBIDDEN,          /* a = argument, b = the one it forbids */
        ARG_MISSING_ARGUMENT,
        ARG_MISSING_VALUE,
        ARG_UNEXPECTED,
        ARG_DUPLICATE,
} ArgErrorKind;

typedef struct ArgError {
        ArgErrorKind kind;
        const char *a;
        const char *b;
} ArgError;

typedef enum ArgParseResult {
        ARGS_OK,
        ARGS_HELP,
        ARGS_VERSION,
        ARGS_ERROR,
} ArgParseResult;

/* args must be sorted by name. *ret_extra is the argv index of the first
 * argument after "--" (argc if none). */
ArgParseResult arg_parse(Argument *args, size_t n_args, int argc, char **argv, int *ret_extra,
                         ArgError *ret_error);
Argument *arg_find(Argument *args, size_t n_args, const char *name);
/* The user's value, else the default, else NULL. */
const char *arg_value(Argument *args, size_t n_args, const char *name);
/* UtilsArgParserError's Display and Debug texts. */
void arg_error_display(StrBuf *sb, const ArgError *e);
void arg_error_debug(StrBuf *sb, const ArgError *e);
/* ArgParser::formatted_help() after --help was given (so it lists "--help"),
 * without a trailing newline. */
void arg_format_help(StrBuf *sb, const Argument *args, size_t n_args);
