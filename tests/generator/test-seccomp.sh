#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The installed generator confines itself with a seccomp allowlist before it
# reads any config. Make the real binary attempt forbidden things right
# after confinement (MICROVM_GENERATOR_TEST_VIOLATION, a test-only hook
# whose every action is harmless and visible without a filter) and check
# that the attempt is stopped: exit status 159, one log line naming the
# call, no trace of the call's effect, nothing generated after it.
#   test-seccomp.sh GENERATOR sanitizer|normal hooks|no-hooks
# The hook is compiled only with -Dtest-hooks=true: without it the test
# cannot show anything and says so (exit 77, skipped).
# In sanitizer builds the allowlist also grants what the ASan/LSan runtime
# needs (ptrace and clone for the leak check at exit, see
# generator_syscalls[]), so the ptrace attempt is not checked there.
set -eu

gen=$1
sanitizer=${2:-}
if [ "${3:-}" != hooks ]; then
        echo "the generator's violation hook needs a build with -Dtest-hooks=true" >&2
        exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/microvm-generator-seccomp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/vms"
cat >"$tmp/vms/web.conf" <<'EOF'
[vm]
kernel = /var/lib/microvm/images/vmlinux
autostart = yes

[drive.root]
path = /var/lib/microvm/images/root.ext4
root = yes
EOF
# Many VMs: glibc takes other paths (and system calls) for bigger inputs,
# e.g. qsort() over more than 1 KiB asks sysinfo() for the memory size.
for i in $(seq 1 300); do
        sed -e "s/^autostart = yes/autostart = no/" "$tmp/vms/web.conf" >"$tmp/vms/vm-$i.conf"
done
chmod -R go-w "$tmp/vms"

fail=0
run() { # run VIOLATION → sets status, fills $tmp/out and $tmp/log
        rm -rf "$tmp/out"
        mkdir "$tmp/out"
        status=0
        env -u SYSTEMD_SCOPE -u JOURNAL_STREAM \
                MICROVM_HOST_CONFIG="$tmp/none.conf" MICROVM_CONFIG_PATH="$tmp/vms" \
                SYSTEMD_LOG_TARGET=console SYSTEMD_LOG_LEVEL=debug \
                MICROVM_GENERATOR_TEST_VIOLATION="$1" \
                "$gen" "$tmp/out" 2>"$tmp/log" || status=$?
}

# Control: without a violation the same run generates the VM (so the filter
# does not get in the way of the real work, and the hook is inert). 301
# VMs are split over worker processes on a machine with 2 CPUs or more:
# fork() must pass the filter.
run ""
if [ "$status" != 0 ] || [ ! -f "$tmp/out/microvm@web.service.d/50-microvm.conf" ] ||
   [ "$(find "$tmp/out" -name 50-microvm.conf | wc -l)" != 301 ]; then
        echo "control run failed (exit status $status):" >&2
        cat "$tmp/log" >&2
        fail=1
fi

violations=(execve socket overwrite ptrace namespace)
if [ "$sanitizer" = sanitizer ]; then
        echo "sanitizer build: ptrace and clone are allowed for LeakSanitizer, not checked"
        violations=(execve socket overwrite)
fi
for v in "${violations[@]}"; do
        case $v in
        execve) call=execve ;;
        socket) call=socket ;;
        overwrite) call=openat ;;
        ptrace) call=ptrace ;;
        namespace) call=clone ;;
        esac
        run "$v"
        ok=1
        # An execve that got through would have run "sh -c 'exit 0'": status 0.
        if [ "$status" != 159 ]; then
                echo "$v: exit status $status, expected 159 (killed by the seccomp trap)" >&2
                ok=0
        fi
        if ! grep -q "^microvm-generator: Blocked system call $call ([0-9]*): not permitted after confinement" "$tmp/log"; then
                echo "$v: no log line naming $call" >&2
                ok=0
        fi
        if grep -q "was not blocked" "$tmp/log"; then
                echo "$v: the call went through" >&2
                ok=0
        fi
        if [ -e "$tmp/out/test-violation" ]; then
                echo "$v: a file was created without O_EXCL" >&2
                ok=0
        fi
        if [ -n "$(find "$tmp/out" -mindepth 1)" ]; then
                echo "$v: something was generated after the violation" >&2
                ok=0
        fi
        if [ "$ok" = 1 ]; then
                echo "$v: stopped: $(grep 'Blocked system call' "$tmp/log")"
        else
                cat "$tmp/log" >&2
                fail=1
        fi
done
exit "$fail"
