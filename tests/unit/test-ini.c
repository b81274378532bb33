/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scanner and iniparser must agree on everything the scanner accepts. */

#include <criterion/criterion.h>

#include "ini.h"

static void parse_ok(const char *text, IniDoc *doc) {
        Problems p = {};
        int r = ini_parse("t.conf", text, strlen(text), doc, &p);
        if (r < 0)
                problems_print(&p, stderr);
        cr_assert_eq(r, 0);
        problems_done(&p);
}

Test(ini, values_as_iniparser_reads_them) {
        IniDoc doc = {};
        parse_ok("[a]\n"
                 "k1 = plain value\n"
                 "k2 = value ; comment\n"
                 "k3 = \"quoted ; # value\" ; comment\n"
                 "k4 = 'single \"quoted\"'\n"
                 "k5 =\n"
                 "k6 = \"\"\n"
                 "k7 = ''\n"
                 "k8 = a=b=c\n"
                 "k9 = ; only a comment\n"
                 "k10\t=\t tabs \t\n"
                 "k11 = it's\n"
                 "[b.c-d_e]\n"
                 "x = 1\n",
                 &doc);
        const IniSection *a = ini_doc_find_section(&doc, "a");
        cr_assert_not_null(a);
        static const struct { const char *k, *v; } want[] = {
                { "k1", "plain value" }, { "k2", "value" },       { "k3", "quoted ; # value" },
                { "k4", "single \"quoted\"" }, { "k5", "" }, { "k6", "" }, { "k7", "" },
                { "k8", "a=b=c" },       { "k9", "" },            { "k10", "tabs" }, { "k11", "it's" },
        };
        cr_assert_eq(a->n_entries, sizeof want / sizeof *want);
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
                const IniEntry *e = ini_section_find(a, want[i].k);
                cr_assert_not_null(e, "%s", want[i].k);
                cr_assert_str_eq(e->value, want[i].v, "%s", want[i].k);
        }
        cr_assert_not_null(ini_doc_find_section(&doc, "b.c-d_e"));
        cr_assert_eq(ini_section_find(a, "k3")->line, 4);
        ini_doc_done(&doc);
}

Test(ini, empty_and_comment_only) {
        IniDoc doc = {};
        parse_ok("", &doc);
        cr_assert_eq(doc.n_sections, 0);
        ini_doc_done(&doc);
        parse_ok("# x\n; y\n\n", &doc);
        cr_assert_eq(doc.n_sections, 0);
        ini_doc_done(&doc);
        parse_ok("[a]", &doc); /* no trailing newline */
        cr_assert_eq(doc.n_sections, 1);
        ini_doc_done(&doc);
}

Test(ini, best_effort_doc_on_problems) {
        IniDoc doc = {};
        Problems p = {};
        const char *text = "[a]\nx = 1\nbad line\ny = 2\n";
        cr_assert_eq(ini_parse("t.conf", text, strlen(text), &doc, &p), -EINVAL);
        cr_assert_eq(p.n, 1);
        cr_assert_eq(doc.sections[0].n_entries, 2);
        problems_done(&p);
        ini_doc_done(&doc);
}

Test(ini, too_large) {
        size_t n = INI_FILE_MAX + 1;
        char *big = malloc(n);
        memset(big, '\n', n);
        IniDoc doc = {};
        Problems p = {};
        cr_assert_eq(ini_scan("t.conf", big, n, &doc, &p), -EINVAL);
        char *m = problem_format(&p.items[0]);
        cr_assert(strstr(m, "is larger than"));
        free(m);
        free(big);
        problems_done(&p);
        ini_doc_done(&doc);
}
