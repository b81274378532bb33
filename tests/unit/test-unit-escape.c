/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Escaping of values written into unit files. What systemd reads back from
 * these strings is checked against systemd itself in
 * tests/generator/test-systemd-parse.sh; here, the exact text. */

#include <criterion/criterion.h>

#include "unit-escape.h"
#include "unit-name.h"

static void expect(int (*f)(const char *, char **), const char *in, const char *out) {
        char *r = NULL;
        int k = f(in, &r);

        cr_assert_eq(k, 0, "escaping \"%s\" failed: %d", in, k);
        cr_assert_str_eq(r, out);
        free(r);
}

static void refuse(int (*f)(const char *, char **), const char *in) {
        char *r = NULL;

        cr_assert_eq(f(in, &r), -EINVAL, "\"%s\" should be refused", in);
        cr_assert_null(r);
}

Test(unit_escape, specifiers) {
        expect(unit_escape_specifiers, "", "");
        expect(unit_escape_specifiers, "plain", "plain");
        expect(unit_escape_specifiers, "%", "%%");
        expect(unit_escape_specifiers, "100%i%%", "100%%i%%%%");
        /* nothing but '%' changes */
        expect(unit_escape_specifiers, "a \"b\" \\c $d", "a \"b\" \\c $d");
}

Test(unit_escape, verbatim) {
        expect(unit_escape_verbatim, "Web frontend", "Web frontend");
        expect(unit_escape_verbatim, "100% busy", "100%% busy");
        expect(unit_escape_verbatim, "tab\tinside", "tab\tinside");
        expect(unit_escape_verbatim, "snow \xe2\x98\x83, caf\xc3\xa9", "snow \xe2\x98\x83, caf\xc3\xa9");
        /* backslashes inside are literal for verbatim settings */
        expect(unit_escape_verbatim, "a\\b \\x41", "a\\b \\x41");
        expect(unit_escape_verbatim, "", "");
        expect(unit_escape_verbatim, "'quoted' \"too\"", "'quoted' \"too\"");

        refuse(unit_escape_verbatim, "two\nlines");
        refuse(unit_escape_verbatim, "cr\r");
        refuse(unit_escape_verbatim, "bell\a");
        refuse(unit_escape_verbatim, "del\x7f");
        refuse(unit_escape_verbatim, " leading");
        refuse(unit_escape_verbatim, "trailing ");
        refuse(unit_escape_verbatim, "trailing\t");
        /* would join the next line */
        refuse(unit_escape_verbatim, "ends in \\");
        refuse(unit_escape_verbatim, "latin1 caf\xe9");
        refuse(unit_escape_verbatim, "overlong \xc0\xaf");
        refuse(unit_escape_verbatim, "surrogate \xed\xa0\x80");
        refuse(unit_escape_verbatim, "truncated \xe2\x98");
        refuse(unit_escape_verbatim, "beyond \xf4\x90\x80\x80");
}

Test(unit_escape, path_word) {
        expect(unit_escape_path_word, "/var/lib/microvm/images/vmlinux", "/var/lib/microvm/images/vmlinux");
        expect(unit_escape_path_word, "/srv/my images/vm", "/srv/my\\ images/vm");
        expect(unit_escape_path_word, "/srv/100%", "/srv/100%%");
        expect(unit_escape_path_word, "/srv/%i", "/srv/%%i");
        expect(unit_escape_path_word, "/srv/it's", "/srv/it\\'s");
        expect(unit_escape_path_word, "/srv/\"q\"", "/srv/\\\"q\\\"");
        expect(unit_escape_path_word, "/srv/back\\slash", "/srv/back\\\\slash");
        expect(unit_escape_path_word, "/srv/ends\\", "/srv/ends\\\\");
        expect(unit_escape_path_word, "/srv/r\xc3\xb4ot#1;x", "/srv/r\xc3\xb4ot#1;x");
        expect(unit_escape_path_word, "/a b %c\\d'e\"f",
               "/a\\ b\\ %%c\\\\d\\'e\\\"f");

        refuse(unit_escape_path_word, "");
        refuse(unit_escape_path_word, "/tab\there");
        refuse(unit_escape_path_word, "/new\nline");
        refuse(unit_escape_path_word, "/bad\xff");
}

Test(unit_escape, text_valid) {
        cr_assert(unit_text_valid("", false));
        cr_assert(unit_text_valid("\xf0\x9f\x90\xa7", false));
        cr_assert(unit_text_valid("a\tb", true));
        cr_assert_not(unit_text_valid("a\tb", false));
        cr_assert_not(unit_text_valid("\x80", true));
        cr_assert_eq(utf8_char_length("a", SIZE_MAX), 1);
        cr_assert_eq(utf8_char_length("\xc3\xa9", SIZE_MAX), 2);
        cr_assert_eq(utf8_char_length("\xe2\x98\x83", SIZE_MAX), 3);
        cr_assert_eq(utf8_char_length("\xf0\x9f\x90\xa7", SIZE_MAX), 4);
        cr_assert_eq(utf8_char_length("\xc3", SIZE_MAX), 0);
        cr_assert_eq(utf8_char_length("\xff", SIZE_MAX), 0);
}

/* The unit name of a bridge's device, as udev/systemd name it
 * (systemd-escape --path is not what they use: the name is the ifname
 * escaped as one path component below /sys/subsystem/net/devices). */
Test(unit_escape, netdev_unit) {
        char *n;

        n = unit_name_for_netdev("microvm0");
        cr_assert_str_eq(n, "sys-subsystem-net-devices-microvm0.device");
        free(n);
        n = unit_name_for_netdev("br-lan.10");
        cr_assert_str_eq(n, "sys-subsystem-net-devices-br\\x2dlan.10.device");
        free(n);
        n = unit_name_for_netdev("br_x@1");
        cr_assert_str_eq(n, "sys-subsystem-net-devices-br_x\\x401.device");
        free(n);
        n = unit_name_for_netdev(".hidden");
        cr_assert_str_eq(n, "sys-subsystem-net-devices-\\x2ehidden.device");
        free(n);
}
