#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# microvm-generator splits many VMs over worker processes (one per CPU,
# at least 128 VMs each). Whatever the split, the result must be exactly
# that of one process: the same files, symlinks and contents, every bad
# config logged once, the same exit status.
#   test-workers.sh GENERATOR
set -eu

gen=$1
tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-generator-workers.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok: $*"; }
not_ok() { echo "FAILED: $*" >&2; fail=1; }

# 300 VMs: every 25th invalid, every 40th masked by a higher-precedence
# symlink, every 30th also present (differently) in a lower-precedence dir.
in=$tmp/in
mkdir -p "$in/etc" "$in/run" "$in/lib"
for ((i = 0; i < 300; i++)); do
        vcpus=$((i % 4 + 1))
        [ $((i % 25)) = 7 ] && vcpus=99
        cat >"$in/etc/vm-$i.conf" <<EOF
[vm]
description = Worker test VM $i
vcpus = $vcpus
memory = $((128 + i))M
kernel = /var/lib/microvm/images/vmlinux
autostart = $([ $((i % 2)) = 0 ] && echo yes || echo no)

[drive.root]
mode = snapshot
path = /var/lib/microvm/images/debian.ext4
root = yes
EOF
        [ $((i % 30)) = 3 ] && sed 's/Worker test/Overridden/' "$in/etc/vm-$i.conf" >"$in/lib/vm-$i.conf"
        [ $((i % 40)) = 5 ] && ln -s /dev/null "$in/run/vm-$i.conf"
done
chmod -R go-w "$in"
if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$in"; fi

# run NAME [ENV...]: output tree under $tmp/NAME, log in $tmp/NAME.log
run() {
        local name=$1 status=0
        shift
        mkdir -p "$tmp/$name/normal" "$tmp/$name/early" "$tmp/$name/late"
        env -u SYSTEMD_SCOPE SYSTEMD_LOG_TARGET=console MICROVM_HOST_CONFIG="$in/none.conf" \
                MICROVM_CONFIG_PATH="$in/run:$in/etc:$in/lib" "$@" \
                "$gen" "$tmp/$name/normal" "$tmp/$name/early" "$tmp/$name/late" 2>"$tmp/$name.log" || status=$?
        echo "$status" >"$tmp/$name.status"
}

# The tree as text: type, path, symlink target; then every file's content
# (the drop-ins name their own output directory: as @OUT@).
describe() {
        (
                cd "$tmp/$1/normal"
                find . -printf '%y %p %l\n' | LC_ALL=C sort
                find . -type f | LC_ALL=C sort | xargs sed "s|$tmp/$1/normal|@OUT@|g" | sha256sum
        )
}

# The log without the debug lines that name the split.
log_lines() {
        grep -v -e 'Generating .* VMs in .* processes' -e '^microvm-generator: Generated ' "$tmp/$1.log" | LC_ALL=C sort
}

run one MICROVM_GENERATOR_WORKERS=1 SYSTEMD_LOG_LEVEL=debug
n_dropins=$(find "$tmp/one/normal" -name 50-microvm.conf | wc -l)
# 300 - 12 invalid (i % 25 == 7) - 8 masked (i % 40 == 5; none of them invalid)
if [ "$n_dropins" = 280 ] && [ "$(cat "$tmp/one.status")" = 1 ]; then
        ok "one process: 280 drop-ins, exit status 1 for the 12 bad configs"
else
        not_ok "one process: $n_dropins drop-ins (expected 280), exit status $(cat "$tmp/one.status") (expected 1)"
        cat "$tmp/one.log" >&2
fi
if [ "$(grep -c '^microvm-generator: Skipping .*: fix the problem' "$tmp/one.log")" = 12 ]; then
        ok "one process: 12 configs skipped"
else
        not_ok "one process: expected 12 skipped configs in the log:"
        cat "$tmp/one.log" >&2
fi

for k in 2 3 8; do
        run "w$k" MICROVM_GENERATOR_WORKERS=$k SYSTEMD_LOG_LEVEL=debug
        if ! grep -q "^microvm-generator: Generating 300 VMs in $k processes\.\$" "$tmp/w$k.log"; then
                not_ok "$k workers: the split was not logged"
        elif [ "$(cat "$tmp/w$k.status")" != 1 ]; then
                not_ok "$k workers: exit status $(cat "$tmp/w$k.status"), expected 1"
        elif ! diff -u <(describe one) <(describe "w$k") >&2; then
                not_ok "$k workers: the output differs from one process's (above)"
        elif ! diff -u <(log_lines one) <(log_lines "w$k") >&2; then
                not_ok "$k workers: the log differs from one process's (above, sorted)"
        else
                ok "$k workers: same tree, same log lines, same exit status as one process"
        fi
done

# Without the variable, the split follows the CPUs this test may use.
cpus=$(nproc)
run auto SYSTEMD_LOG_LEVEL=debug
want=$((cpus < 2 ? 1 : 2)) # 300 VMs: at most 300 / 128 = 2 workers
if [ "$want" = 1 ]; then
        if grep -q 'Generating .* VMs in' "$tmp/auto.log"; then
                not_ok "automatic: split on a single CPU"
        else
                ok "automatic: one process on a single CPU # the automatic split itself needs 2 CPUs, not exercised here"
        fi
elif grep -q "^microvm-generator: Generating 300 VMs in $want processes\.\$" "$tmp/auto.log" &&
        diff -u <(describe one) <(describe auto) >&2; then
        ok "automatic: $want processes on $cpus CPUs, same tree"
else
        not_ok "automatic: expected $want processes on $cpus CPUs and the same tree"
        grep 'Generating' "$tmp/auto.log" >&2 || true
fi

# A bad value is ignored with a warning, not fatal.
run bad MICROVM_GENERATOR_WORKERS=lots SYSTEMD_LOG_LEVEL=debug
if grep -q '^microvm-generator: Ignoring MICROVM_GENERATOR_WORKERS=lots: not a number from 1 to 8\.$' "$tmp/bad.log" &&
        diff -u <(describe one) <(describe bad) >&2; then
        ok "MICROVM_GENERATOR_WORKERS=lots: warned about and ignored"
else
        not_ok "MICROVM_GENERATOR_WORKERS=lots: expected a warning and the same tree"
        head -3 "$tmp/bad.log" >&2
fi

exit "$fail"
