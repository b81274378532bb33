#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# What does systemd itself read from the generated drop-ins? Load them with
# systemd's own unit parser ("systemd --test", which dumps every loaded
# unit and needs no running manager) and compare the parsed values with the
# config values they came from: the escaping of '%', spaces, quotes,
# backslashes and non-ASCII text, device unit names, resource limits, the
# digest (recomputed here with sha256sum), and the wants of microvms.target.
#   test-systemd-parse.sh GENERATOR BUILT-UNITS-DIR SOURCE-UNITS-DIR CASES-DIR
set -eu

gen=$1
built_units=$2
source_units=$3
cases=$4
systemd=
for s in /usr/lib/systemd/systemd /lib/systemd/systemd; do
        [ -x "$s" ] && systemd=$s && break
done
if [ -z "$systemd" ]; then
        echo "no systemd binary to parse units with" >&2
        exit 77
fi
# "systemd --test" refuses to run as root: drop to nobody when root.
as_user=()
if [ "$(id -u)" = 0 ]; then
        if ! command -v setpriv >/dev/null; then
                echo "running as root and no setpriv to drop privileges for systemd --test" >&2
                exit 77
        fi
        as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-parse.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
mkdir "$tmp/units"
cp "$built_units"/microvm@.service "$built_units"/microvm-reclaim.service \
        "$source_units"/microvm.slice "$source_units"/microvms.target "$tmp/units/"

unit_path=
for c in every-key escaping autostart; do
        in=$tmp/in-$c
        mkdir -p "$in" "$tmp/out-$c"
        cp -a "$cases/$c/etc" "$in/etc"
        [ -f "$cases/$c/host.conf" ] && cp "$cases/$c/host.conf" "$in/host.conf"
        chmod -R go-w "$in"
        if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$in"; fi
        env -u SYSTEMD_SCOPE MICROVM_HOST_CONFIG="$in/host.conf" MICROVM_CONFIG_PATH="$in/etc" \
                SYSTEMD_LOG_TARGET=console "$gen" "$tmp/out-$c"
        unit_path=$unit_path$tmp/out-$c:
done
chmod -R a+rX "$tmp"

# The trailing ':' appends systemd's own unit directories (sysinit.target, ...).
"${as_user[@]}" env SYSTEMD_UNIT_PATH="$unit_path$tmp/units:" SYSTEMD_LOG_LEVEL=err \
        "$systemd" --test --system --unit=microvms.target --no-pager >"$tmp/dump" 2>"$tmp/err" || {
        echo "systemd --test failed:" >&2
        cat "$tmp/err" >&2
        exit 1
}

fail=0
# expect UNIT 'Key: value' — the exact dumped line must be in UNIT's block
expect() {
        local block
        block=$(awk -v u="-> Unit $1:" '$0 ~ /^\t-> Unit / { p = (substr($0, 2) == u); next } p' "$tmp/dump")
        if ! grep -qxF -- "$(printf '\t\t%s' "$2")" <<<"$block"; then
                echo "$1: expected \"$2\", got:" >&2
                grep -F -- "${2%%:*}:" <<<"$block" | sed 's/^/        /' >&2 || echo "        (nothing)" >&2
                fail=1
        fi
}
absent() {
        local block
        block=$(awk -v u="-> Unit $1:" '$0 ~ /^\t-> Unit / { p = (substr($0, 2) == u); next } p' "$tmp/dump")
        if grep -qF -- "$2" <<<"$block"; then
                echo "$1: unexpected \"$2\"" >&2
                fail=1
        fi
}

esc=microvm@esc.service
digest=$(sha256sum <"$tmp/in-escaping/etc/esc.conf" | cut -d' ' -f1)
expect $esc "$(printf 'Description: MicroVM esc (100%% '\''quoted'\'' \\ back\\slash, tab\tinside, snow \xe2\x98\x83)')"
expect $esc "Source Path: $tmp/in-escaping/etc/esc.conf"
expect $esc "RequiresMountsFor: /srv/my images/vm%i/vmlinux (origin-file)"
expect $esc "RequiresMountsFor: /srv/it's/initrd#1.img (origin-file)"
expect $esc "$(printf 'RequiresMountsFor: /srv/back\\slash/r\xc3\xb4ot.ext4 (origin-file)')"
expect $esc "RequiresMountsFor: /var/lib/micro vm/esc (origin-file)"
expect $esc "RequiresMountsFor: /srv/jails 100% (origin-file)"
absent $esc 'sys-subsystem-net-devices'
expect $esc "Environment: MICROVM_CONFIG_DIGEST=$digest"
expect $esc "LogExtraFields: MICROVM_ID=esc"
expect $esc "AllowedCPUs: 0-1"
expect $esc "WantedBy: microvms.target (destination-file)"

full=microvm@full.service
digest=$(sha256sum <"$tmp/in-every-key/etc/full.conf" | cut -d' ' -f1)
expect $full "Description: MicroVM full (Every key, 100% set)"
expect $full "Environment: MICROVM_CONFIG_DIGEST=$digest"
expect $full "Restart: always"
# stop_timeout 2min + 3G at suspend_write_rate 200M (16s) + 10s: on_host_shutdown = suspend
expect $full "TimeoutStopSec: 2min 26s"
expect $full "MemoryMax: $(((3 * 1024 + 128) * 1024 * 1024))"
expect $full "MemoryHigh: 18446744073709551615"
expect $full "TasksMax: 292"
expect $full "CPUWeight: 250"
expect $full "IOWeight: 250"
expect $full "CPUQuotaPerSecSec: 3.500000s"
expect $full "AllowedCPUs: 0-3 8"
expect $full "RequiresMountsFor: /data/pool/data (origin-file)"
expect $full "RequiresMountsFor: /data/microvm/full (origin-file)"
expect $full "RequiresMountsFor: /srv/vm-jails (origin-file)"
absent $full 'sys-subsystem-net-devices'
absent $full "/dev/vg0"
# from the template
expect $full "Slice: microvm.slice"
expect $full "Delegate: yes"
expect $full "KillMode: mixed"
expect $full "Type: exec"
expect $full "PartOf: microvms.target (origin-file)"

# (VMs without autostart are not part of the transaction, so not dumped.)
expect microvm@on.service "Restart: on-failure"
expect microvm@on.service "TimeoutStopSec: 30s"
expect microvm@on.service "MemoryMax: $((320 * 1024 * 1024))"

expect microvms.target "Wants: microvm@full.service (origin-file)"
expect microvms.target "Wants: microvm@esc.service (origin-file)"
expect microvms.target "Wants: microvm@on.service (origin-file)"
expect microvms.target "Wants: microvm-reclaim.service (origin-file)"
absent microvms.target "microvm@off.service"
absent microvms.target "microvm@default.service"

if [ "$fail" = 0 ]; then
        echo "ok: systemd reads back exactly the config's values"
fi
exit "$fail"
