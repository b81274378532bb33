/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/* One microvm-stage per VM at a time. systemd never runs two starts of one
 * unit at once, but microvm-stage run by hand (or by hand beside systemd's)
 * would tear down and rebuild what the other is building. The lock is an
 * open file description lock (F_OFD_SETLK) on one byte of <run_dir>/.lock,
 * the reclaim lock's file, at an offset derived from the id (SHA-256): no
 * file per VM to leave behind, released when the process ends however it
 * ends, and independent of the flock() reclaim takes on the same file. */

/* lock_fd: the reclaim lock's fd (vm_reclaim_lock(); opened read-write).
 * Held until lock_fd is closed. -EBUSY if another process holds it. */
int vm_stage_lock(int lock_fd, const char *id);
