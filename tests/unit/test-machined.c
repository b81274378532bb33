/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A VM's machine name is its id: every valid VM id must pass machined's
 * name check (systemd's hostname_is_valid()), mirrored by
 * machine_name_valid(). */

#include <criterion/criterion.h>

#include "machined.h"
#include "names.h"

#define ID64 "a123456789012345678901234567890123456789012345678901234567890123"

Test(machined, every_kind_of_valid_vm_id_is_a_machine_name) {
        static const char *const ids[] = {
                "a", "0", "web1", "a-b", "a--b", "9-9", "x0-1-2", ID64,
                "a---------------------------------------------------------------b",
        };
        for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
                if (!vm_id_valid(ids[i]))
                        continue; /* the 66-byte one: not an id either */
                cr_assert(machine_name_valid(ids[i]), "valid VM id %s is no valid machine name", ids[i]);
        }
        cr_assert(vm_id_valid(ID64));
}

Test(machined, names_machined_refuses) {
        static const char *const bad[] = {
                "", "-a", "a-", ".a", "a.", "a..b", "a.-b", "a-.b", "a_b", "a b", "a/b", "ä",
                ID64 "4",
        };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
                cr_assert(!machine_name_valid(bad[i]), "\"%s\" passed", bad[i]);
        cr_assert(!machine_name_valid(NULL));
        cr_assert(machine_name_valid("Host.example.org"));
}
