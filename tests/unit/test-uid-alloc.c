/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The pure core of uid allocation: record parsing, the pick, subordinate
 * id ranges. The locked, on-disk part is in tests/priv/test-uid-alloc.c. */

#include <criterion/criterion.h>

#include "uid-alloc.h"

static int in_use_set(uid_t uid, void *userdata) {
        const uid_t *set = userdata;
        for (; *set != UID_INVALID; set++)
                if (*set == uid)
                        return 1;
        return 0;
}

static int in_use_fails(uid_t uid, void *userdata) {
        return -EIO;
}

Test(uid_alloc, record_parse) {
        uid_t u;

        cr_assert_eq(uid_record_parse("1000042\n", 8, &u), 0);
        cr_assert_eq(u, 1000042);
        cr_assert_eq(uid_record_parse("1000042", 7, &u), 0);
        cr_assert_eq(u, 1000042);
        cr_assert_eq(uid_record_parse("4294967294", 10, &u), 0);
        cr_assert_eq(u, 4294967294U);

        cr_assert_eq(uid_record_parse("", 0, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("\n", 1, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("0\n", 2, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("4294967295", 10, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("4294967296", 10, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("-1", 2, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("+5", 2, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("010", 3, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("0x10", 4, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse(" 10", 3, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("10\n\n", 4, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("10 \n", 4, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("10\0", 3, &u), -EBADMSG);
        cr_assert_eq(uid_record_parse("1000000000000000000000000000000000000", 37, &u), -EBADMSG);
}

Test(uid_alloc, owners_sort) {
        UidOwner o[] = {
                { 30, "c" },
                { 10, "a" },
                { 20, "b" },
        };
        UidOwner dup[] = {
                { 30, "c" },
                { 10, "a" },
                { 30, "d" },
        };

        cr_assert_eq(uid_owners_sort(o, 3), UID_INVALID);
        cr_assert_eq(o[0].uid, 10);
        cr_assert_eq(o[1].uid, 20);
        cr_assert_eq(o[2].uid, 30);
        cr_assert_eq(uid_owners_sort(dup, 3), 30);
        cr_assert_eq(uid_owners_sort(NULL, 0), UID_INVALID);
}

Test(uid_alloc, pick_auto_first_fit) {
        UidOwner taken[] = {
                { 100, "a" },
                { 101, "b" },
                { 103, "c" },
        };
        uid_t u;

        cr_assert_eq(uid_pick(100, 200, taken, 3, UID_INVALID, NULL, NULL, &u, NULL), 0);
        cr_assert_eq(u, 102);
        cr_assert_eq(uid_pick(100, 200, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), 0);
        cr_assert_eq(u, 100);
        /* taken uids below the range do not matter */
        cr_assert_eq(uid_pick(102, 200, taken, 3, UID_INVALID, NULL, NULL, &u, NULL), 0);
        cr_assert_eq(u, 102);
        cr_assert_eq(uid_pick(103, 103, taken, 3, UID_INVALID, NULL, NULL, &u, NULL), -ENOSPC);
        cr_assert_eq(uid_pick(100, 101, taken, 3, UID_INVALID, NULL, NULL, &u, NULL), -ENOSPC);
}

Test(uid_alloc, pick_skips_in_use) {
        UidOwner taken[] = { { 100, "a" } };
        uid_t known[] = { 101, 102, UID_INVALID };
        uid_t u;

        cr_assert_eq(uid_pick(100, 200, taken, 1, UID_INVALID, in_use_set, known, &u, NULL), 0);
        cr_assert_eq(u, 103);
        cr_assert_eq(uid_pick(100, 102, taken, 1, UID_INVALID, in_use_set, known, &u, NULL), -ENOSPC);
        /* a lookup that fails is never "free" */
        cr_assert_eq(uid_pick(100, 200, taken, 1, UID_INVALID, in_use_fails, NULL, &u, NULL), -EIO);
        cr_assert_eq(uid_pick(100, 200, taken, 1, 150, in_use_fails, NULL, &u, NULL), -EIO);
}

Test(uid_alloc, pick_reserved) {
        uid_t u;

        cr_assert_eq(uid_pick(65534, 65536, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), 0);
        cr_assert_eq(u, 65536);
        cr_assert_eq(uid_pick(65534, 65535, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), -ENOSPC);
        cr_assert_eq(uid_pick(60000, 70000, NULL, 0, 65534, NULL, NULL, &u, NULL), -EEXIST);
        cr_assert_eq(uid_pick(60000, 70000, NULL, 0, 65535, NULL, NULL, &u, NULL), -EEXIST);
}

Test(uid_alloc, pick_wanted) {
        UidOwner taken[] = {
                { 100, "a" },
                { 150, "web1" },
        };
        uid_t known[] = { 160, UID_INVALID };
        const UidOwner *owner = NULL;
        uid_t u = 0;

        cr_assert_eq(uid_pick(100, 200, taken, 2, 120, in_use_set, known, &u, &owner), 0);
        cr_assert_eq(u, 120);
        cr_assert_eq(uid_pick(100, 200, taken, 2, 150, in_use_set, known, &u, &owner), -EBUSY);
        cr_assert_not_null(owner);
        cr_assert_str_eq(owner->id, "web1");
        cr_assert_eq(uid_pick(100, 200, taken, 2, 160, in_use_set, known, &u, &owner), -EEXIST);
        cr_assert_eq(uid_pick(100, 200, taken, 2, 99, in_use_set, known, &u, &owner), -ERANGE);
        cr_assert_eq(uid_pick(100, 200, taken, 2, 201, in_use_set, known, &u, &owner), -ERANGE);
        cr_assert_eq(uid_pick(100, 200, taken, 2, 200, in_use_set, known, &u, &owner), 0);
        cr_assert_eq(u, 200);
}

Test(uid_alloc, pick_invalid_range) {
        uid_t u;

        cr_assert_eq(uid_pick(0, 10, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), -EINVAL);
        cr_assert_eq(uid_pick(10, 9, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), -EINVAL);
        cr_assert_eq(uid_pick(10, UID_INVALID, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), -EINVAL);
        /* the top of the range works without overflowing the loop */
        cr_assert_eq(uid_pick(4294967294U, 4294967294U, NULL, 0, UID_INVALID, NULL, NULL, &u, NULL), 0);
        cr_assert_eq(u, 4294967294U);
}

Test(uid_alloc, subid_parse) {
        const char *text =
                "alice:100000:65536\n"
                "# comment\n"
                "\n"
                "1001:200000:10\n"
                "bad line\n"
                "bob:x:5\n"
                "carol:300000:0\n"
                ":400000:5\n"
                "dave:500000:5:extra\n"
                "eve:4294967290:100";
        SubidRange *r = NULL;
        size_t n = 0;

        cr_assert_eq(subid_ranges_parse(text, &r, &n), 0);
        cr_assert_eq(n, 3);
        cr_assert(subid_ranges_contain(r, n, 100000));
        cr_assert(subid_ranges_contain(r, n, 165535));
        cr_assert_not(subid_ranges_contain(r, n, 165536));
        cr_assert_not(subid_ranges_contain(r, n, 99999));
        cr_assert(subid_ranges_contain(r, n, 200009));
        cr_assert_not(subid_ranges_contain(r, n, 200010));
        cr_assert_not(subid_ranges_contain(r, n, 300000));
        cr_assert_not(subid_ranges_contain(r, n, 400000));
        cr_assert_not(subid_ranges_contain(r, n, 500000));
        cr_assert(subid_ranges_contain(r, n, 4294967294U));
        free(r);

        cr_assert_eq(subid_ranges_parse("", &r, &n), 0);
        cr_assert_eq(n, 0);
        cr_assert_not(subid_ranges_contain(r, n, 1));
        free(r);
}
