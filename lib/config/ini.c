/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <iniparser/iniparser.h>

#include "ini.h"
#include "parse-util.h"

void ini_doc_done(IniDoc *doc) {
        for (size_t i = 0; i < doc->n_sections; i++) {
                IniSection *s = &doc->sections[i];
                for (size_t j = 0; j < s->n_entries; j++) {
                        free(s->entries[j].key);
                        free(s->entries[j].value);
                }
                free(s->entries);
                free(s->name);
        }
        free(doc->sections);
        *doc = (IniDoc) {};
}

const IniSection *ini_doc_find_section(const IniDoc *doc, const char *name) {
        for (size_t i = 0; i < doc->n_sections; i++)
                if (streq(doc->sections[i].name, name))
                        return &doc->sections[i];
        return NULL;
}

const IniEntry *ini_section_find(const IniSection *s, const char *key) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n_entries; i++)
                if (streq(s->entries[i].key, key))
                        return &s->entries[i];
        return NULL;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Checks one raw line for bytes that have no business in a config file. */
static const char *line_bad_bytes(const char *p, size_t n) {
        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char) p[i];
                size_t l;

                if (c == '\0')
                        return "contains a NUL byte";
                if ((c < ' ' && c != '\t' && !(c == '\r' && i == n - 1)) || c == 0x7f)
                        return "contains a control character";
                l = utf8_char_length(p + i, n - i);
                if (l == 0)
                        return "is not valid UTF-8";
                i += l;
        }
        return NULL;
}

static bool name_char_ok(char c, bool section) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
               (section && (c == '.' || c == '-'));
}

static bool name_ok(const char *s, size_t n, bool section, bool *ret_upper) {
        *ret_upper = false;
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++) {
                if (s[i] >= 'A' && s[i] <= 'Z') {
                        *ret_upper = true;
                        continue;
                }
                if (!name_char_ok(s[i], section))
                        return false;
        }
        return !*ret_upper;
}

static int doc_add_section(IniDoc *doc, const char *name, size_t n, unsigned line) {
        IniSection *s = realloc(doc->sections, (doc->n_sections + 1) * sizeof(IniSection));
        if (!s)
                return -ENOMEM;
        doc->sections = s;
        s = &doc->sections[doc->n_sections];
        *s = (IniSection) { .line = line, .name = strndup(name, n) };
        if (!s->name)
                return -ENOMEM;
        doc->n_sections++;
        return 0;
}

static int section_add_entry(IniSection *s, const char *key, size_t kn, const char *value, size_t vn,
                             unsigned line) {
        IniEntry *e = realloc(s->entries, (s->n_entries + 1) * sizeof(IniEntry));
        if (!e)
                return -ENOMEM;
        s->entries = e;
        e = &s->entries[s->n_entries];
        *e = (IniEntry) { .line = line, .key = strndup(key, kn), .value = strndup(value, vn) };
        if (!e->key || !e->value) {
                free(e->key);
                free(e->value);
                return -ENOMEM;
        }
        s->n_entries++;
        return 0;
}

/* Splits the text after '=' into the value iniparser will see. Returns NULL
 * and the value bounds, or a rule describing why the value is ambiguous. */
static const char *split_value(const char *p, size_t n, const char **ret_v, size_t *ret_vn) {
        while (n > 0 && is_blank(*p))
                p++, n--;
        while (n > 0 && is_blank(p[n - 1]))
                n--;

        if (n > 0 && (p[0] == '"' || p[0] == '\'')) {
                char q = p[0];
                const char *end = memchr(p + 1, q, n - 1), *rest;

                if (!end)
                        return q == '"' ? "has no closing '\"'" : "has no closing \"'\"";
                if (memchr(p + 1, '\\', (size_t) (end - p - 1)))
                        return "contains a backslash inside quotes, which iniparser versions read differently";
                rest = end + 1;
                while (rest < p + n && is_blank(*rest))
                        rest++;
                if (rest < p + n && *rest != ';' && *rest != '#')
                        return "has text after the closing quote (quote the whole value)";
                *ret_v = p + 1;
                *ret_vn = (size_t) (end - p - 1);
                return NULL;
        }

        /* Inline comments are " ; text" (whitespace, then ';'), as in the
         * examples. A '#' anywhere in an unquoted value, or a ';' glued to
         * the text before it, is ambiguous: iniparser cuts the value there
         * ("description = Web #1" would become "Web"). */
        for (size_t i = 0; i < n; i++)
                if (p[i] == ';' || p[i] == '#') {
                        if (p[i] == '#' && i > 0)
                                return "contains '#', where iniparser would cut the value (quote the value; inline comments start with \" ; \")";
                        if (i > 0 && !is_blank(p[i - 1]))
                                return "contains ';', where iniparser would cut the value (quote the value; inline comments start with \" ; \")";
                        n = i;
                        while (n > 0 && is_blank(p[n - 1]))
                                n--;
                        break;
                }
        if (memchr(p, '"', n) || memchr(p, '\'', n)) {
                /* A stray quote is kept literally by iniparser; that is
                 * almost always a typo, and values never need one. */
                for (size_t i = 0; i < n; i++)
                        if (p[i] == '"')
                                return "contains a stray '\"' (quote the whole value or drop it)";
        }
        *ret_v = p;
        *ret_vn = n;
        return NULL;
}

int ini_scan(const char *file, const char *data, size_t size, IniDoc *ret, Problems *problems) {
        _cleanup_(ini_doc_done) IniDoc doc = {};
        size_t before = problems->n;
        unsigned lineno = 0;
        bool rejected_section = false;
        int r;

        if (size > INI_FILE_MAX) {
                problems_add(problems, file, 0, NULL, NULL, NULL, "is larger than %d bytes", INI_FILE_MAX);
                return -EINVAL;
        }
        if (size >= 3 && memcmp(data, "\xef\xbb\xbf", 3) == 0) {
                problems_add(problems, file, 1, NULL, NULL, NULL,
                             "starts with a UTF-8 byte order mark, which iniparser does not understand (save without BOM)");
                return -EINVAL;
        }

        for (size_t off = 0; off < size;) {
                const char *line = data + off, *nl = memchr(line, '\n', size - off), *bad, *eq;
                size_t n = nl ? (size_t) (nl - line) : size - off;
                const char *p = line;
                size_t pn = n;
                bool upper;

                off += n + (nl ? 1 : 0);
                lineno++;

                if (n > INI_LINE_MAX) {
                        problems_add(problems, file, lineno, NULL, NULL, NULL,
                                     "line is longer than %d bytes", INI_LINE_MAX);
                        continue;
                }
                bad = line_bad_bytes(line, n);
                if (bad) {
                        problems_add(problems, file, lineno, NULL, NULL, NULL, "line %s", bad);
                        continue;
                }

                while (pn > 0 && is_blank(*p))
                        p++, pn--;
                while (pn > 0 && is_blank(p[pn - 1]))
                        pn--;

                /* Checked before comments: iniparser joins even a comment
                 * line ending in '\\' with the next line. */
                if (pn > 0 && p[pn - 1] == '\\') {
                        problems_add(problems, file, lineno, NULL, NULL, NULL,
                                     "line ends with '\\', which iniparser joins with the next line (continuation lines are not supported)");
                        continue;
                }
                if (pn == 0 || p[0] == '#' || p[0] == ';')
                        continue;

                if (p[0] == '[') {
                        const char *close = memchr(p, ']', pn);
                        const char *name;
                        size_t nn;

                        /* Until this header is accepted, the keys below it
                         * belong to no section we know: never blame them on
                         * the section before it. Its problem is reported. */
                        rejected_section = true;

                        if (!close) {
                                problems_add(problems, file, lineno, NULL, NULL, NULL,
                                             "section header has no closing ']'");
                                continue;
                        }
                        if (close != p + pn - 1) {
                                problems_add(problems, file, lineno, NULL, NULL, NULL,
                                             "text after the section header's ']' (iniparser rejects comments on section lines: put them on their own line)");
                                continue;
                        }
                        name = p + 1;
                        nn = (size_t) (close - name);
                        while (nn > 0 && is_blank(*name))
                                name++, nn--;
                        while (nn > 0 && is_blank(name[nn - 1]))
                                nn--;
                        if (!name_ok(name, nn, true, &upper)) {
                                _cleanup_free_ char *s = strndup(name, nn);
                                problems_add(problems, file, lineno, NULL, NULL, s,
                                             upper ? "section names are lower case (iniparser would lowercase it silently)"
                                                   : "is not a valid section name (use a-z, 0-9, '.', '-', '_')");
                                continue;
                        }
                        for (size_t i = 0; i < doc.n_sections; i++)
                                if (strlen(doc.sections[i].name) == nn && memcmp(doc.sections[i].name, name, nn) == 0) {
                                        _cleanup_free_ char *s = strndup(name, nn);
                                        problems_add(problems, file, lineno, s, NULL, NULL,
                                                     "section appears twice (first at line %u): merge them",
                                                     doc.sections[i].line);
                                        goto next;
                                }
                        r = doc_add_section(&doc, name, nn, lineno);
                        if (r < 0)
                                return r;
                        rejected_section = false;
                        continue;
                }

                eq = memchr(p, '=', pn);
                if (!eq) {
                        problems_add(problems, file, lineno, NULL, NULL, NULL,
                                     "is neither a section header, a comment nor a \"key = value\" line");
                        continue;
                } else {
                        const char *key = p, *v, *rule;
                        size_t kn = (size_t) (eq - p), vn;
                        _cleanup_free_ char *ks = NULL;
                        IniSection *s;

                        while (kn > 0 && is_blank(key[kn - 1]))
                                kn--;
                        if (kn == 0) {
                                problems_add(problems, file, lineno, NULL, NULL, NULL, "missing key name before '='");
                                continue;
                        }
                        ks = strndup(key, kn);
                        if (!ks)
                                return -ENOMEM;
                        if (!name_ok(key, kn, false, &upper)) {
                                problems_add(problems, file, lineno, NULL, NULL, ks,
                                             upper ? "key names are lower case (iniparser would lowercase it silently)"
                                                   : "is not a valid key name (use a-z, 0-9, '_')");
                                continue;
                        }
                        if (rejected_section)
                                continue; /* under a rejected header: its problem says it all */
                        if (doc.n_sections == 0) {
                                problems_add(problems, file, lineno, NULL, NULL, ks,
                                             "key outside of any section (start with a section header such as [vm])");
                                continue;
                        }
                        s = &doc.sections[doc.n_sections - 1];

                        rule = split_value(eq + 1, (size_t) (p + pn - eq - 1), &v, &vn);
                        if (rule) {
                                _cleanup_free_ char *raw = strndup(eq + 1, (size_t) (p + pn - eq - 1));
                                char *t = raw;
                                while (t && is_blank(*t))
                                        t++;
                                problems_add(problems, file, lineno, s->name, ks, t, "%s", rule);
                                continue;
                        }
                        for (size_t i = 0; i < s->n_entries; i++)
                                if (streq(s->entries[i].key, ks)) {
                                        _cleanup_free_ char *vs = strndup(v, vn);
                                        problems_add(problems, file, lineno, s->name, ks, vs,
                                                     "duplicates the key at line %u (iniparser would silently keep only the last one): keep one",
                                                     s->entries[i].line);
                                        goto next;
                                }
                        r = section_add_entry(s, key, kn, v, vn, lineno);
                        if (r < 0)
                                return r;
                }
        next:;
        }

        /* The document is returned even when problems were found, so that
         * the caller can go on validating what was readable and report
         * every problem in one round. */
        *ret = doc;
        doc = (IniDoc) {};
        return problems->n > before || problems->oom ? -EINVAL : 0;
}

static int silent_error_callback(const char *format, ...) {
        /* ini_scan() reports every problem iniparser could complain about. */
        return 0;
}

#if !HAVE_INIPARSER_LOAD_FILE
static int scratch_fd = -EBADF;
static bool scratch_atfork = false;

static void scratch_forget(void) {
        scratch_fd = safe_close(scratch_fd);
}
#endif

static dictionary *iniparser_load_bytes(const char *data, size_t size) {
#if HAVE_INIPARSER_LOAD_FILE
        _cleanup_fclose_ FILE *f = fmemopen((void *) data, size, "r");
        if (!f)
                return NULL;
        return iniparser_load_file(f, "config");
#else
        /* iniparser < 4.2 can only load by path: hand it the bytes through an
         * anonymous memory file, so what it parses is exactly what we read.
         * One memory file serves every parse of the process (a generator
         * parses thousands of files): rewritten, then cut to the new size. */
        char path[64];
        size_t done = 0;

        if (scratch_fd < 0) {
                int fd = memfd_create("microvm-config", MFD_CLOEXEC);
                if (fd < 0)
                        return NULL;
                /* A forked child (the generator's workers) must not write
                 * into its parent's memory file: it gets its own. */
                if (!scratch_atfork && pthread_atfork(NULL, NULL, scratch_forget) != 0) {
                        close(fd);
                        errno = ENOMEM;
                        return NULL;
                }
                scratch_atfork = true;
                scratch_fd = fd;
        }
        while (done < size) {
                ssize_t k = pwrite(scratch_fd, data + done, size - done, (off_t) done);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return NULL;
                }
                done += (size_t) k;
        }
        if (ftruncate(scratch_fd, (off_t) size) < 0)
                return NULL;
        /* A new open file description, reading from offset 0. */
        snprintf(path, sizeof path, "/proc/self/fd/%d", scratch_fd);
        return iniparser_load(path);
#endif
}

int ini_parse(const char *file, const char *data, size_t size, IniDoc *ret, Problems *problems) {
        _cleanup_(ini_doc_done) IniDoc doc = {};
        dictionary *d;
        int r, nsec;
        bool agree = true;

        r = ini_scan(file, data, size, &doc, problems);
        if (r == -EINVAL) {
                /* Not fed to iniparser: hand back the scanner's best effort. */
                *ret = doc;
                doc = (IniDoc) {};
                return r;
        }
        if (r < 0)
                return r;

        iniparser_set_error_callback(silent_error_callback);
        d = iniparser_load_bytes(data, size);
        if (!d) {
                problems_add(problems, file, 0, NULL, NULL, NULL,
                             "iniparser could not read the file (%s)", strerror(errno ?: EIO));
                return -EINVAL;
        }

        /* Cross-check: same sections, same keys, same values. */
        nsec = iniparser_getnsec(d);
        if (nsec < 0 || (size_t) nsec != doc.n_sections)
                agree = false;
        for (size_t i = 0; agree && i < doc.n_sections; i++) {
                const IniSection *s = &doc.sections[i];
                int nkeys = iniparser_getsecnkeys(d, s->name);
                if (nkeys < 0 || (size_t) nkeys != s->n_entries) {
                        agree = false;
                        break;
                }
                for (size_t j = 0; j < s->n_entries; j++) {
                        /* iniparser's key is "section:key"; both parts are
                         * short (the scanner bounds lines), so no allocation. */
                        char k[INI_LINE_MAX * 2 + 2];
                        size_t ns = strlen(s->name), nk = strlen(s->entries[j].key);
                        const char *v;

                        if (ns + nk + 2 > sizeof k) {
                                agree = false;
                                break;
                        }
                        memcpy(k, s->name, ns);
                        k[ns] = ':';
                        memcpy(k + ns + 1, s->entries[j].key, nk + 1);
                        /* Equal strings: the scanner's copy is iniparser's value. */
                        v = iniparser_getstring(d, k, NULL);
                        if (!v || !streq(v, s->entries[j].value)) {
                                agree = false;
                                break;
                        }
                }
        }
        iniparser_freedict(d);

        if (!agree) {
                problems_add(problems, file, 0, NULL, NULL, NULL, "%s", INI_DISAGREEMENT_RULE);
                return -EINVAL;
        }

        *ret = doc;
        doc = (IniDoc) {};
        return 0;
}
