/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* Escaping for values written into unit files. Unit names are escaped by
 * unit_name_escape() (unit-name.h); this is about the text to the right of
 * '=' (systemd.syntax(7), systemd.unit(5)), which systemd reads in steps:
 *
 *   1. the line: a line ending in an odd number of backslashes continues
 *      on the next line; leading and trailing whitespace is dropped; the
 *      line must be valid UTF-8, and a value has no way to carry a newline;
 *   2. list settings (RequiresMountsFor=, ...) split the value into words
 *      with extract_first_word(EXTRACT_UNQUOTE): whitespace separates,
 *      '"' and '\'' group, a backslash takes the next character literally;
 *   3. every word (or the whole value of a single-value setting) goes
 *      through specifier expansion: '%' must be written "%%".
 *
 * All functions are pure. They return 0 and a newly allocated string, or
 * -EINVAL when the value cannot be represented (control characters,
 * invalid UTF-8, or an edge that systemd would strip or read as a line
 * continuation), or -ENOMEM. */

#include "macro.h"
#include "parse-util.h"


/* Valid UTF-8 without control characters (tab allowed when allow_tab). */
bool unit_text_valid(const char *s, bool allow_tab);

/* '%' → "%%", nothing else. */
int unit_escape_specifiers(const char *s, char **ret);

/* A single-value setting taken verbatim after specifier expansion
 * (Description=, SourcePath=, Environment= value of a fixed form): '%' is
 * doubled; refused are control characters other than tab, invalid UTF-8,
 * leading or trailing whitespace (systemd strips it) and a trailing
 * backslash (systemd would join the next line). */
int unit_escape_verbatim(const char *s, char **ret);

/* One word of a whitespace-separated list of paths (RequiresMountsFor=):
 * '%' doubled, then whitespace, quotes and backslashes preceded by a
 * backslash. "/srv/my vms/100%" → "/srv/my\ vms/100%%". Refused are
 * empty words, control characters and invalid UTF-8. */
int unit_escape_path_word(const char *path, char **ret);
