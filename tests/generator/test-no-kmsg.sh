#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Run as the manager runs it (three directories, $SYSTEMD_SCOPE, no log
# target: the journal, else the kernel log) where there is neither a
# journal socket nor /dev/kmsg: the generator logs to stderr instead, and a bad
# config among 300 (split over worker processes) is logged and skipped
# without killing anything. (It once tried to open /dev/kmsg again at its
# first log line, after confinement: the seccomp filter stopped it.)
#   test-no-kmsg.sh GENERATOR
set -eu

gen=$(realpath "$1")
if [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
        echo "needs root and mount namespaces (to hide /dev/kmsg)" >&2
        exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-generator-kmsg.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/vms" "$tmp/normal" "$tmp/early" "$tmp/late"
for ((i = 0; i < 300; i++)); do
        printf '[vm]\nkernel = /var/lib/microvm/images/vmlinux\n\n[drive.root]\npath = /var/lib/microvm/images/r.ext4\nroot = yes\n' \
                >"$tmp/vms/vm-$i.conf"
done
printf '[vm]\nvcpus = 99\n' >"$tmp/vms/vm-150x.conf"
chmod -R go-w "$tmp/vms"

status=0
# /dev as an empty tmpfs: no /dev/kmsg (nor anything else) in there; and
# no journal socket either (a host with journald running has one, and the
# generator logs there first; the e2e checks that path): stderr is left.
env -u SYSTEMD_LOG_TARGET -u JOURNAL_STREAM SYSTEMD_SCOPE=system MICROVM_HOST_CONFIG="$tmp/none.conf" \
        MICROVM_CONFIG_PATH="$tmp/vms" \
        unshare -m --propagation private sh -c 'mount -t tmpfs none /dev &&
                { [ ! -d /run/systemd/journal ] || mount -t tmpfs none /run/systemd/journal; } && exec "$@"' sh \
        "$gen" "$tmp/normal" "$tmp/early" "$tmp/late" 2>"$tmp/log" || status=$?

fail=0
n=$(find "$tmp/normal" -name 50-microvm.conf | wc -l)
if [ "$status" = 1 ] && [ "$n" = 300 ]; then
        echo "ok: exit status 1 (one bad config), 300 drop-ins"
else
        echo "FAILED: exit status $status (expected 1), $n drop-ins (expected 300)" >&2
        fail=1
fi
if [ "$(grep -c 'vm-150x.conf: \[vm\] vcpus: "99" is out of range' "$tmp/log")" = 1 ] &&
        ! grep -q 'Blocked system call' "$tmp/log"; then
        echo "ok: the bad config logged once on stderr, no seccomp violation"
else
        echo "FAILED: expected the bad config logged once on stderr and no violation:" >&2
        fail=1
fi
[ "$fail" = 0 ] || cat "$tmp/log" >&2
exit "$fail"
