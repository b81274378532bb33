#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tmpfiles.d/microvm.conf in a temporary root (systemd-tmpfiles --root):
# the directories and their modes; stale jails removed at boot (--boot) and
# only then; and the removal's safety against what a VM may have planted in
# its jail — symlinks (relative and absolute) pointing at victims outside,
# and, when we can mount, a mount inside a jail, which must not be crossed.
#   test-tmpfiles.sh TMPFILES-CONF CHROOT-BASE
set -eu

conf=$1
base=$2
if ! command -v systemd-tmpfiles >/dev/null; then
        echo "systemd-tmpfiles not installed" >&2
        exit 77
fi
if [ "$(id -u)" != 0 ]; then
        echo "needs root: the lines create root-owned directories" >&2
        exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-tmpfiles.XXXXXX")
mounted=
cleanup() {
        [ -n "$mounted" ] && umount "$mounted" 2>/dev/null || true
        rm -rf "$tmp"
}
trap cleanup EXIT
root=$tmp/root
mkdir -p "$root"
fail=0
check() { # check DESCRIPTION COMMAND...
        if "${@:2}"; then echo "ok: $1"; else echo "FAILED: $1" >&2; fail=1; fi
}
mode() { stat -c %a "$1"; }

plant() { # a stale jail as a hostile VM could leave it
        local jail=$root$base/firecracker/$1/root
        mkdir -p "$jail/dev/net" "$jail/run" "$root/victim" "$tmp/outside"
        echo data >"$jail/vm-config.json"
        echo victim >"$root/victim/file"
        echo victim >"$tmp/outside/file"
        ln -sfn ../../../../../../victim "$jail/relative-escape"
        ln -sfn "$tmp/outside" "$jail/absolute-escape"
        ln -sfn /victim "$jail/root-relative-escape"
}

# Not at boot: the R! line must not run, live jails stay.
plant live
systemd-tmpfiles --root="$root" --create --remove "$conf"
check "without --boot, jails are left alone" test -f "$root$base/firecracker/live/root/vm-config.json"

# At boot: every jail goes, nothing outside is touched.
plant stale
mnt=
if mkdir -p "$root$base/firecracker/mounted/root/m" &&
   mount -t tmpfs -o size=1M microvm-test "$root$base/firecracker/mounted/root/m" 2>/dev/null; then
        mounted=$root$base/firecracker/mounted/root/m
        mnt=$mounted
        echo inside >"$mnt/file"
else
        echo "note: cannot mount here: the mount-crossing check is skipped" >&2
fi
status=0
systemd-tmpfiles --root="$root" --create --remove --boot "$conf" 2>"$tmp/log" || status=$?

# 0711: not listable; a console_group member passes to its VM's console FIFO
check "/run/microvm is 0711" test "$(mode "$root/run/microvm")" = 711
check "/var/lib/microvm is 0700" test "$(mode "$root/var/lib/microvm")" = 700
check "$base is 0711" test "$(mode "$root$base")" = 711
check "stale jails removed" test ! -e "$root$base/firecracker/stale"
check "live jail from before removed at boot" test ! -e "$root$base/firecracker/live"
check "relative symlink target survives" test -f "$root/victim/file"
check "absolute symlink target survives" test -f "$tmp/outside/file"
if [ -n "$mnt" ]; then
        check "a mount inside a jail is not crossed" test -f "$mnt/file"
        umount "$mnt"
        mounted=
else
        check "tmpfiles succeeded" test "$status" = 0
        [ "$status" = 0 ] || cat "$tmp/log" >&2
fi
exit "$fail"
