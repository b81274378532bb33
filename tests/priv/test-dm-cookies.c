/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Abandoned libdevmapper udev cookies (System V semaphores) are removed by
 * microvm-reclaim: only completed ones (value 0) of the dm key range, owned
 * by root; anything else stays. Needs root (the semaphores are root's). */

#include <criterion/criterion.h>
#include <sys/sem.h>

#include "dm.h"
#include "priv-util.h"

union semun_t {
        int val;
        struct semid_ds *buf;
};

static int sem_make(key_t key, int value) {
        int id = semget(key, 1, 0600 | IPC_CREAT | IPC_EXCL);
        union semun_t arg = { .val = value };
        cr_assert_geq(id, 0, "semget(0x%x): %m", (unsigned) key);
        cr_assert_eq(semctl(id, 0, SETVAL, arg), 0);
        return id;
}

static bool sem_exists(int id) {
        struct semid_ds ds;
        union semun_t arg = { .buf = &ds };
        return semctl(id, 0, IPC_STAT, arg) >= 0;
}

Test(dm_cookies, only_completed_dm_cookies_go) {
        /* Keys a real libdevmapper would not pick right now are unlikely to
         * collide; IPC_EXCL makes a collision fail loudly, not silently. */
        int done = sem_make((key_t) 0x0D4DFEE1, 0);
        int pending = sem_make((key_t) 0x0D4DFEE2, 1);
        int foreign = sem_make((key_t) 0x1234FEE3, 0);

        /* Too young: with a one-hour minimum age nothing of ours goes. */
        dm_udev_cookies_reclaim(3600 * USEC_PER_SEC);
        cr_assert(sem_exists(done) && sem_exists(pending) && sem_exists(foreign));

        cr_assert_geq(dm_udev_cookies_reclaim(0), 1);
        cr_assert_not(sem_exists(done), "a completed dm cookie was left");
        cr_assert(sem_exists(pending), "a cookie udev has not completed was removed");
        cr_assert(sem_exists(foreign), "a semaphore that is not a dm cookie was removed");

        semctl(pending, 0, IPC_RMID);
        semctl(foreign, 0, IPC_RMID);
}

int main(int argc, char *argv[]) {
        return priv_criterion_main(argc, argv);
}
