#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# microvm-generator's command line: --help, --version, wrong arguments.
#   test-cli.sh GENERATOR VERSION
set -eu

gen=$1
version=$2
fail=0
check() { # check DESCRIPTION EXPECTED-STATUS EXPECTED-OUTPUT-REGEX ARGS...
        local what=$1 want=$2 re=$3 status=0 out
        shift 3
        out=$(env -u SYSTEMD_SCOPE SYSTEMD_LOG_TARGET=console "$gen" "$@" 2>&1) || status=$?
        if [ "$status" != "$want" ] || ! grep -qE -- "$re" <<<"$out"; then
                echo "FAILED: $what: exit status $status (expected $want), output:" >&2
                echo "$out" >&2
                fail=1
        else
                echo "ok: $what"
        fi
}
check "--version" 0 "^microvm-generator $version\$" --version
check "--help" 0 "NORMAL-DIR \[EARLY-DIR LATE-DIR\]" --help
check "-h" 0 "microvm-generator\(8\)" -h
check "no directory" 1 "Expected one or three output directories, got 0" 
check "two directories" 1 "Expected one or three output directories, got 2" /tmp /tmp
check "unknown option" 1 "unrecognized option" --frobnicate /tmp
check "missing output directory" 1 "Failed to open output directory /nonexistent/microvm-test: No such file or directory" /nonexistent/microvm-test
exit "$fail"
