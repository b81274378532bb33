/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* The INI front end. iniparser is the parser of record, but it silently
 * lowercases names, lets a later duplicate key win, cuts unquoted values at
 * the first ';' or '#', joins lines ending in '\', and differs between
 * versions in how it treats backslashes inside quotes. So every file first
 * goes through ini_scan(), a strict line scanner over the raw bytes that
 * accepts only the subset of the format on which all iniparser versions
 * agree, and reports everything else as a problem with its line number.
 * ini_parse() then runs iniparser over the same bytes and checks that it saw
 * exactly what the scanner saw. Both are pure functions of the bytes. */

#include "problems.h"

typedef struct IniEntry {
        char *key;
        char *value;
        unsigned line;
} IniEntry;

typedef struct IniSection {
        char *name;
        unsigned line;
        IniEntry *entries;
        size_t n_entries;
} IniSection;

typedef struct IniDoc {
        IniSection *sections;
        size_t n_sections;
} IniDoc;

#define INI_LINE_MAX 1000       /* iniparser's buffer is 1024 bytes per line */
#define INI_FILE_MAX (1024 * 1024)

/* Scans data; every problem goes to problems (file names the source).
 * Returns 0 and fills ret when the bytes are acceptable, -EINVAL when a
 * problem was found, -ENOMEM on allocation failure. */
int ini_scan(const char *file, const char *data, size_t size, IniDoc *ret, Problems *problems);

/* The rule of the file-level problem ini_parse() adds when iniparser and
 * the scanner disagree (a scanner bug; the fuzzer looks for it). */
#define INI_DISAGREEMENT_RULE \
        "iniparser read this file differently from microvm's scanner (please report this as a bug)"

/* ini_scan() plus iniparser over the same bytes, cross-checked. On success
 * ret holds the document as iniparser read it (which equals the scan); on
 * -EINVAL it holds the scanner's best effort, for further validation. */
int ini_parse(const char *file, const char *data, size_t size, IniDoc *ret, Problems *problems);

void ini_doc_done(IniDoc *doc);
const IniSection *ini_doc_find_section(const IniDoc *doc, const char *name);
const IniEntry *ini_section_find(const IniSection *s, const char *key);
