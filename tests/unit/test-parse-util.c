/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <criterion/criterion.h>

#include "parse-util.h"
#include "sha256.h"
#include "unit-name.h"

Test(parse, size) {
        uint64_t v;
        cr_assert_eq(parse_size("0", &v), 0);
        cr_assert_eq(v, 0);
        cr_assert_eq(parse_size("1024", &v), 0);
        cr_assert_eq(v, 1024);
        cr_assert_eq(parse_size("512K", &v), 0);
        cr_assert_eq(v, 512ULL << 10);
        cr_assert_eq(parse_size("512M", &v), 0);
        cr_assert_eq(v, 512ULL << 20);
        cr_assert_eq(parse_size("4G", &v), 0);
        cr_assert_eq(v, 4ULL << 30);
        cr_assert_eq(parse_size("2T", &v), 0);
        cr_assert_eq(v, 2ULL << 40);
        cr_assert_eq(parse_size("16777215T", &v), 0);
        cr_assert_eq(parse_size("16777216T", &v), -ERANGE);
        cr_assert_eq(parse_size("18446744073709551616", &v), -ERANGE);
        static const char *const bad[] = { "", "4X", "4g", "4 G", " 4G", "4G ", "-1", "+1", "0x10", "1.5G", "G", "4GB", "4GiB", "01" };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                cr_assert_eq(parse_size(bad[i], &v), -EINVAL, "\"%s\" should be rejected", bad[i]);
}

Test(parse, numbers) {
        uint32_t u;
        uint64_t v;
        cr_assert_eq(parse_u32("4294967295", &u), 0);
        cr_assert_eq(u, UINT32_MAX);
        cr_assert_eq(parse_u32("4294967296", &u), -ERANGE);
        cr_assert_eq(parse_u64("18446744073709551615", &v), 0);
        cr_assert_eq(parse_u64("18446744073709551616", &v), -ERANGE);
        cr_assert_eq(parse_u32("010", &u), -EINVAL);
        cr_assert_eq(parse_u32("0x10", &u), -EINVAL);
        cr_assert_eq(parse_u32("", &u), -EINVAL);
        cr_assert_eq(parse_u32("-0", &u), -EINVAL);
}

Test(parse, boolean) {
        static const char *const yes[] = { "yes", "true", "on", "1" }, *const no[] = { "no", "false", "off", "0" };
        for (size_t i = 0; i < 4; i++) {
                cr_assert_eq(parse_boolean(yes[i]), 1);
                cr_assert_eq(parse_boolean(no[i]), 0);
        }
        /* iniparser_getboolean would take these by their first letter */
        cr_assert_eq(parse_boolean("yellow"), -EINVAL);
        cr_assert_eq(parse_boolean("nope"), -EINVAL);
        cr_assert_eq(parse_boolean("Yes"), -EINVAL);
        cr_assert_eq(parse_boolean(""), -EINVAL);
}

Test(parse, timespan) {
        usec_t t;
        cr_assert_eq(parse_timespan("30", &t), 0);
        cr_assert_eq(t, 30 * USEC_PER_SEC);
        cr_assert_eq(parse_timespan("30s", &t), 0);
        cr_assert_eq(t, 30 * USEC_PER_SEC);
        cr_assert_eq(parse_timespan("30sec", &t), 0);
        cr_assert_eq(parse_timespan("500ms", &t), 0);
        cr_assert_eq(t, 500 * USEC_PER_MSEC);
        cr_assert_eq(parse_timespan("2min", &t), 0);
        cr_assert_eq(t, 120 * USEC_PER_SEC);
        cr_assert_eq(parse_timespan("2m", &t), 0);
        cr_assert_eq(t, 120 * USEC_PER_SEC);
        cr_assert_eq(parse_timespan("1h", &t), 0);
        cr_assert_eq(t, 3600 * USEC_PER_SEC);
        cr_assert_eq(parse_timespan("5 min", &t), -EINVAL);
        cr_assert_eq(parse_timespan("s", &t), -EINVAL);
        cr_assert_eq(parse_timespan("1d", &t), -EINVAL);
        cr_assert_eq(parse_timespan("", &t), -EINVAL);
}

Test(parse, percent_and_cpus) {
        uint32_t p;
        cr_assert_eq(parse_percent("200%", &p), 0);
        cr_assert_eq(p, 200);
        cr_assert_eq(parse_percent("200", &p), -EINVAL);
        cr_assert_eq(parse_percent("%", &p), -EINVAL);
        cr_assert_eq(parse_percent("2.5%", &p), -EINVAL);
        cr_assert_eq(parse_cpu_list("0"), 0);
        cr_assert_eq(parse_cpu_list("0-3"), 0);
        cr_assert_eq(parse_cpu_list("0-3,5,7-8"), 0);
        cr_assert_eq(parse_cpu_list("8191"), 0);
        cr_assert_eq(parse_cpu_list("8192"), -ERANGE);
        cr_assert_eq(parse_cpu_list("3-1"), -EINVAL);
        cr_assert_eq(parse_cpu_list("1,1"), -EINVAL);
        cr_assert_eq(parse_cpu_list("2,1"), -EINVAL);
        cr_assert_eq(parse_cpu_list("0-3,2"), -EINVAL);
        cr_assert_eq(parse_cpu_list(""), -EINVAL);
        cr_assert_eq(parse_cpu_list("0,"), -EINVAL);
        cr_assert_eq(parse_cpu_list("-1"), -EINVAL);
        cr_assert_eq(parse_cpu_list("a"), -EINVAL);
}

Test(parse, uid_range) {
        uid_t a, b;
        cr_assert_eq(parse_uid_range("1000000-1065535", &a, &b), 0);
        cr_assert_eq(a, 1000000);
        cr_assert_eq(b, 1065535);
        cr_assert_eq(parse_uid_range("5-5", &a, &b), 0);
        cr_assert_eq(parse_uid_range("0-5", &a, &b), -ERANGE);
        cr_assert_eq(parse_uid_range("6-5", &a, &b), -ERANGE);
        cr_assert_eq(parse_uid_range("1-4294967294", &a, &b), -ERANGE);
        cr_assert_eq(parse_uid_range("5", &a, &b), -EINVAL);
        cr_assert_eq(parse_uid_range("a-b", &a, &b), -EINVAL);
}

Test(parse, mac_and_ip) {
        uint8_t m[6];
        uint32_t a;
        unsigned pl;
        cr_assert_eq(parse_mac("52:54:00:AB:cd:ef", m), 0);
        cr_assert_eq(m[3], 0xab);
        cr_assert_eq(parse_mac("53:54:00:ab:cd:ef", m), -ERANGE);
        cr_assert_eq(parse_mac("00:00:00:00:00:00", m), -ERANGE);
        cr_assert_eq(parse_mac("52-54-00-ab-cd-ef", m), -EINVAL);
        cr_assert_eq(parse_mac("52:54:00:ab:cd:e", m), -EINVAL);
        cr_assert_eq(parse_mac("52:54:00:ab:cd:eg", m), -EINVAL);
        cr_assert_eq(parse_ipv4("10.0.0.1", &a), 0);
        cr_assert_eq(a, 0x0a000001);
        cr_assert_eq(parse_ipv4("10.0.0", &a), -EINVAL);
        cr_assert_eq(parse_ipv4("10.0.0.1.2", &a), -EINVAL);
        cr_assert_eq(parse_ipv4("10.0.0.01", &a), -EINVAL);
        cr_assert_eq(parse_ipv4("256.0.0.1", &a), -EINVAL);
        cr_assert_eq(parse_ipv4_prefix("10.0.0.2/24", &a, &pl), 0);
        cr_assert_eq(pl, 24);
        cr_assert_eq(parse_ipv4_prefix("10.0.0.2/33", &a, &pl), -EINVAL);
        cr_assert_eq(parse_ipv4_prefix("10.0.0.2/0", &a, &pl), -EINVAL);
}

Test(parse, ifname) {
        cr_assert(ifname_valid("eth0"));
        cr_assert(ifname_valid("br-lan.100"));
        cr_assert(ifname_valid("abcdefghijklmno"));
        cr_assert(!ifname_valid("abcdefghijklmnop"));
        cr_assert(!ifname_valid(""));
        cr_assert(!ifname_valid("."));
        cr_assert(!ifname_valid(".."));
        cr_assert(!ifname_valid("a/b"));
        cr_assert(!ifname_valid("a:b"));
        cr_assert(!ifname_valid("a b"));
        cr_assert(!ifname_valid("a\xc3\xa9"));
}

Test(parse, paths) {
        cr_assert_eq(path_check_normalized("/var/lib/microvm/images/vmlinux"), PATH_OK);
        cr_assert_eq(path_check_normalized("/a..b/.c/..d"), PATH_OK);
        cr_assert_eq(path_check_normalized(""), PATH_EMPTY);
        cr_assert_eq(path_check_normalized("a/b"), PATH_RELATIVE);
        cr_assert_eq(path_check_normalized("/"), PATH_ROOT);
        cr_assert_eq(path_check_normalized("/a/.."), PATH_DOTDOT);
        cr_assert_eq(path_check_normalized("/../a"), PATH_DOTDOT);
        cr_assert_eq(path_check_normalized("/a/./b"), PATH_DOT);
        cr_assert_eq(path_check_normalized("/a//b"), PATH_DOUBLE_SLASH);
        cr_assert_eq(path_check_normalized("//a"), PATH_DOUBLE_SLASH);
        cr_assert_eq(path_check_normalized("/a/"), PATH_TRAILING_SLASH);
        cr_assert_eq(path_check_normalized("/a\nb"), PATH_BAD_CHAR);
        char longname[300];
        memset(longname, 'a', sizeof longname);
        longname[0] = '/';
        longname[299] = 0;
        cr_assert_eq(path_check_normalized(longname), PATH_TOO_LONG);
}

Test(parse, format_size_roundtrip) {
        char buf[32];
        uint64_t v;
        static const uint64_t sizes[] = { 0, 1, 1023, 1024, 1536ULL << 20, 1ULL << 30, 4ULL << 40, 5ULL << 50 };
        for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
                format_size(sizes[i], buf, sizeof buf);
                cr_assert_eq(parse_size(buf, &v), 0, "%s", buf);
                cr_assert_eq(v, sizes[i]);
        }
        cr_assert_str_eq(format_size(1536ULL << 20, buf, sizeof buf), "1536M");
}

Test(parse, cescape) {
        char *e = cescape("a\"b\\c\n\xff");
        cr_assert_str_eq(e, "a\\\"b\\\\c\\x0a\\xff");
        free(e);
}

Test(sha256, vectors) {
        uint8_t d[SHA256_DIGEST_SIZE];
        char hex[65];
        sha256("", 0, d);
        sha256_hex(d, hex);
        cr_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        sha256("abc", 3, d);
        sha256_hex(d, hex);
        cr_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        sha256(m, strlen(m), d);
        sha256_hex(d, hex);
        cr_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
        /* a million 'a', fed in odd-sized pieces */
        Sha256 s;
        char a[997];
        memset(a, 'a', sizeof a);
        sha256_init(&s);
        size_t left = 1000000;
        while (left) {
                size_t n = left < sizeof a ? left : sizeof a;
                sha256_update(&s, a, n);
                left -= n;
        }
        sha256_final(&s, d);
        sha256_hex(d, hex);
        cr_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

Test(unit_name, escape) {
        static const struct { const char *in, *out; } cases[] = {
                { "microvm0", "microvm0" },
                { "br-lan", "br\\x2dlan" },
                { "a/b", "a-b" },
                { ".hidden", "\\x2ehidden" },
                { "a.b", "a.b" },
                { "a b", "a\\x20b" },
                { "a\\b", "a\\x5cb" },
                { "x:y_z", "x:y_z" },
                { "\xc3\xa9", "\\xc3\\xa9" },
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                char *e = unit_name_escape(cases[i].in);
                cr_assert_str_eq(e, cases[i].out, "escape(%s)", cases[i].in);
                free(e);
        }
        char *d = unit_name_for_netdev("br-lan");
        cr_assert_str_eq(d, "sys-subsystem-net-devices-br\\x2dlan.device");
        free(d);
}
