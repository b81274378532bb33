#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Golden test of microvm-generator, one case per call:
#   run-case.sh GENERATOR CASE-DIR UNITDIR
#
# A case directory holds the input and the exact expected output:
#   host.conf         host config (absent: the built-in defaults)
#   etc/ run/ lib/    the three VM config directories, in precedence order
#                     (absent: a directory that does not exist)
#   setup.sh          optional, run with the input root as $1, for inputs git
#                     cannot hold (file names that are not UTF-8, modes)
#   args              optional: "1" to pass one output directory instead of
#                     the manager's three
#   needs-root        optional: skip (77) unless run as root
#   expected/         the output tree, files and symlinks, diffed exactly
#                     (a .gitkeep file in it is ignored)
#   expected.stderr   the log (absent: empty), expected.status (absent: 0)
#
# The input is copied to a temporary root first; its path appears in the
# output as @ROOT@, and the installed template's directory in symlink
# targets as @UNITDIR@. MICROVM_UPDATE_GOLDEN=1 writes the actual output
# back into the case instead of comparing (review the diff before keeping
# it).
set -eu

gen=$1
case_dir=$(realpath "$2")
unitdir=$3
name=$(basename "$case_dir")

if [ -e "$case_dir/needs-root" ] && [ "$(id -u)" != 0 ]; then
        echo "$name: needs root (config files are checked for root ownership only when running as root)" >&2
        exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-generator-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
in=$tmp/in
mkdir "$in" "$tmp/normal" "$tmp/early" "$tmp/late"
for d in etc run lib; do
        if [ -d "$case_dir/$d" ]; then
                cp -a "$case_dir/$d" "$in/$d"
                find "$in/$d" -name .gitkeep -delete
        fi
done
if [ -f "$case_dir/host.conf" ]; then
        cp "$case_dir/host.conf" "$in/host.conf"
fi
# As root, config files must be root-owned and not group/world-writable;
# a checkout by another user or with umask 002 must not change the outcome.
chmod -R go-w "$in"
if [ "$(id -u)" = 0 ]; then chown -R -h 0:0 "$in"; fi
if [ -f "$case_dir/setup.sh" ]; then
        bash "$case_dir/setup.sh" "$in"
fi

if [ "$(cat "$case_dir/args" 2>/dev/null || echo 3)" = 1 ]; then
        outdirs=("$tmp/normal")
else
        outdirs=("$tmp/normal" "$tmp/early" "$tmp/late")
fi

status=0
env -u SYSTEMD_SCOPE -u JOURNAL_STREAM \
        MICROVM_HOST_CONFIG="$in/host.conf" \
        MICROVM_CONFIG_PATH="$in/etc:$in/run:$in/lib" \
        SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=info \
        "$gen" "${outdirs[@]}" 2>"$tmp/stderr.raw" || status=$?

if [ -n "$(find "$tmp/early" "$tmp/late" -mindepth 1)" ]; then
        echo "$name: the generator wrote into the early or late directory:" >&2
        find "$tmp/early" "$tmp/late" >&2
        exit 1
fi

# Normalize: the input root in file contents and the log, the unit
# directory in symlink targets.
sed -e "s|$in|@ROOT@|g" "$tmp/stderr.raw" >"$tmp/stderr"
find "$tmp/normal" -type f -exec sed -i -e "s|$in|@ROOT@|g" -e "s|$tmp/normal|@OUT@|g" {} +
while IFS= read -r -d '' l; do
        target=$(readlink "$l")
        case "$target" in
        "$unitdir"/*)
                ln -sfn "@UNITDIR@/${target#"$unitdir"/}" "$l"
                ;;
        esac
done < <(find "$tmp/normal" -type l -print0)

if [ "${MICROVM_UPDATE_GOLDEN:-0}" = 1 ]; then
        rm -rf "$case_dir/expected"
        cp -a "$tmp/normal" "$case_dir/expected"
        if [ -z "$(ls -A "$case_dir/expected")" ]; then
                touch "$case_dir/expected/.gitkeep"
        fi
        if [ -s "$tmp/stderr" ]; then cp "$tmp/stderr" "$case_dir/expected.stderr"; else rm -f "$case_dir/expected.stderr"; fi
        if [ "$status" != 0 ]; then echo "$status" >"$case_dir/expected.status"; else rm -f "$case_dir/expected.status"; fi
        echo "$name: expectations updated" >&2
        exit 0
fi

fail=0
expected_status=$(cat "$case_dir/expected.status" 2>/dev/null || echo 0)
if [ "$status" != "$expected_status" ]; then
        echo "$name: exit status $status, expected $expected_status" >&2
        fail=1
fi
if ! diff -r --no-dereference -x .gitkeep "$case_dir/expected" "$tmp/normal"; then
        echo "$name: output tree differs from $case_dir/expected (- expected, + actual)" >&2
        fail=1
fi
expected_stderr=$case_dir/expected.stderr
[ -e "$expected_stderr" ] || expected_stderr=/dev/null
if ! diff -u "$expected_stderr" "$tmp/stderr" >&2; then
        echo "$name: log differs from expected.stderr (- expected, + actual)" >&2
        fail=1
fi
if [ "$fail" = 0 ]; then
        echo "$name: ok ($(find "$tmp/normal" -mindepth 1 | wc -l) entries, exit status $status)"
fi
exit "$fail"
