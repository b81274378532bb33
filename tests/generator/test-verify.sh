#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# systemd-analyze verify of the shipped units and of generated drop-ins, in
# a temporary root that looks like an installed system:
#   <root>/usr/lib/systemd/system   the host's units (sysinit.target & co.)
#   <root>UNITDIR                   our units, as built
#   <root>LIBEXECDIR/microvm-*      stub tools (verify checks that every
#                                   Exec*= command exists and is executable)
#   <root>/run/systemd/system       the generator's output for the golden
#                                   cases (verify --root does not read the
#                                   generator directories; /run is what
#                                   comes closest)
# PID 1 here need not be systemd: verify only loads units. Any output from
# verify (warnings included) fails the test.
#   test-verify.sh GENERATOR BUILT-UNITS-DIR SOURCE-UNITS-DIR LIBEXECDIR UNITDIR CASES-DIR
set -eu

gen=$1
built_units=$2
source_units=$3
libexecdir=$4
unitdir=$5
cases=$6

if ! command -v systemd-analyze >/dev/null; then
        echo "systemd-analyze not installed" >&2
        exit 77
fi
host_units=/usr/lib/systemd/system
[ -e "$host_units/sysinit.target" ] || host_units=/lib/systemd/system
if [ ! -e "$host_units/sysinit.target" ]; then
        echo "no systemd units on this host to verify against" >&2
        exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-verify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/root
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/run/systemd/system"
# merged /usr, whichever unitdir the build uses
ln -s usr/lib "$root/lib"
ln -s usr/bin "$root/bin"
ln -s usr/sbin "$root/sbin"
cp -a "$host_units" "$root/usr/lib/systemd/system"
mkdir -p "$root$unitdir"
cp "$built_units"/microvm@.service "$built_units"/microvm-reclaim.service \
        "$built_units"/microvm-metrics@.service "$source_units"/microvm-metrics.socket \
        "$source_units"/microvm.slice "$source_units"/microvms.target "$root$unitdir/"
mkdir -p "$root$libexecdir"
for t in stage launch ready stop cleanup reclaim metrics; do
        printf '#!/bin/sh\nexit 0\n' >"$root$libexecdir/microvm-$t"
        chmod 0755 "$root$libexecdir/microvm-$t"
done

# Generate for a few cases, each with its own host config, into one tree.
units=(microvm@.service microvm.slice microvms.target microvm-reclaim.service microvm-metrics.socket
       microvm-metrics@0.service)
for c in every-key escaping autostart id-64 precedence; do
        in=$tmp/in-$c
        mkdir -p "$in" "$tmp/out-$c"
        for d in etc run lib; do
                [ -d "$cases/$c/$d" ] && cp -a "$cases/$c/$d" "$in/$d"
        done
        [ -f "$cases/$c/host.conf" ] && cp "$cases/$c/host.conf" "$in/host.conf"
        chmod -R go-w "$in"
        if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$in"; fi
        env -u SYSTEMD_SCOPE MICROVM_HOST_CONFIG="$in/host.conf" \
                MICROVM_CONFIG_PATH="$in/etc:$in/run:$in/lib" SYSTEMD_LOG_TARGET=console \
                "$gen" "$tmp/out-$c" 2>"$tmp/log-$c" || true  # failures are the golden tests' business
        cp -a "$tmp/out-$c/." "$root/run/systemd/system/"
        for d in "$tmp/out-$c"/microvm@*.service.d; do
                u=${d##*/}
                units+=("${u%.d}")
        done
done

echo "verifying: ${units[*]}"
status=0
out=$(systemd-analyze verify --man=no --root="$root" "${units[@]}" 2>&1) || status=$?
if [ "$status" != 0 ] || [ -n "$out" ]; then
        echo "systemd-analyze verify failed (exit status $status):" >&2
        echo "$out" >&2
        exit 1
fi
echo "ok: ${#units[@]} units verified without a word"
