#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/scenarios.sh — the e2e scenarios, run inside the booted
# container by tests/e2e/run (which installed the project and the doubles).
# Prints one TAP line per scenario, numbered from --first N, without a plan
# (the runner counts them and prints it at the end).
#
#   scenarios.sh --first N [SCENARIO...]     (default: all, in order)
#
# Every scenario asserts on systemd's view (systemctl show), the journal
# and the file system and cgroupfs inside the container, and stops what it
# started. A scenario's notes ("note: ...") are always shown as TAP
# diagnostics; the rest of its output only when it fails, followed by the
# state and journal of the VMs it used.
set -u
. "$(dirname "$(readlink -f "$0")")/lib.sh"

T=1
if [ "${1:-}" = --first ]; then
        T=$2
        shift 2
fi
SELECTED=("$@")

note() {
        echo "note: $*"
}

# Used VMs, for the diagnostics of a failing scenario.
USED=()
use() {
        USED+=("$@")
}

fail() {
        echo "FAIL: $*"
        return 1
}

# A subshell per scenario: "return 1"/fail ends it (the VMs it used are
# then stopped); exit 77 skips it with the last line of its output as the
# reason.
scenario() {
        local name=$1 fn=$2 t0 rc=0 out dt
        if [ ${#SELECTED[@]} -gt 0 ] && [[ " ${SELECTED[*]} " != *" $fn "* ]]; then
                echo "ok $T - $name # SKIP not selected"
                T=$((T + 1))
                return
        fi
        out=$(mktemp)
        LEAK_BEFORE=$(mktemp)
        leak_check_once >"$LEAK_BEFORE" 2>&1
        t0=$(now_ms)
        (
                USED=()
                "$fn" || {
                        rc=$?
                        if [ $rc != 77 ] && [ ${#USED[@]} -gt 0 ]; then
                                echo "=== state of the VMs used"
                                vm_dump "${USED[@]}"
                                # not to disturb the scenarios after this one
                                stop_vm "${USED[@]}" >/dev/null 2>&1
                                e2e_setup >/dev/null 2>&1 # a host config it broke
                        fi
                        exit $rc
                }
        ) >"$out" 2>&1 || rc=$?
        # Whatever the scenario did, nothing of a VM that is not running may
        # be left (tests/leak/leak-check: jails, run and state dirs, uid
        # index, cgroups, loops, dm, taps, machined, processes).
        if [ $rc = 0 ] && ! leak_check >>"$out" 2>&1; then
                rc=1
        fi
        dt=$(( $(now_ms) - t0 ))
        case $rc in
        0) echo "ok $T - $name (${dt} ms)" ;;
        77) echo "ok $T - $name # SKIP $(tail -n 1 "$out")" ;;
        *) echo "not ok $T - $name (${dt} ms)" ;;
        esac
        if [ $rc = 0 ] || [ $rc = 77 ]; then
                grep '^note: ' "$out" | sed 's/^/# /'
        else
                sed 's/^/# /' "$out"
        fi
        rm -f "$out" "$LEAK_BEFORE"
        T=$((T + 1))
}

# ---------------------------------------------------------------- helpers

# The leak checker, with every VM whose unit is up named as running. What a
# unit's stop leaves for systemd to prune (its empty cgroup) is given a
# moment, as assert_no_debris does.
leak_check_once() {
        local ids
        ids=$(systemctl list-units --no-legend --plain --all 'microvm@*' |
                awk '$3 != "inactive" && $3 != "failed" { sub(/^microvm@/, "", $1); sub(/\.service$/, "", $1); print "--running=" $1 }')
        # shellcheck disable=SC2086
        "$E2E_LIBDIR/leak-check" --only=jail,run,uid,cgroup,block,tap,machine,process $ids
}
# leak_check: nothing new is left since the scenario began ($LEAK_BEFORE:
# what the checker listed then; a VM config an earlier scenario removed
# leaves the operator's data in the state dir, and that is not this
# scenario's doing).
LEAK_BEFORE=
leak_new() {
        if [ -s "$LEAK_BEFORE" ]; then
                leak_check_once 2>&1 | grep -vxF -f "$LEAK_BEFORE"
        else
                leak_check_once 2>&1 | grep .
        fi
}
leak_none() {
        ! leak_new >/dev/null
}
leak_check() {
        leak_none && return 0
        wait_until 5 "no leftovers" leak_none >/dev/null 2>&1 && return 0
        echo "leftovers after the scenario (tests/leak/leak-check):"
        leak_new | sed 's/^/    /'
        return 1
}

start_vm() { # start_vm ID...: systemctl start, which returns once active (Type=exec)
        local id units=()
        for id in "$@"; do units+=("$(unit_of "$id")"); done
        use "$@"
        timeout 120 systemctl start "${units[@]}" || fail "systemctl start ${units[*]} failed"
}

stop_vm() {
        local id units=()
        for id in "$@"; do units+=("$(unit_of "$id")"); done
        timeout 120 systemctl stop "${units[@]}" || fail "systemctl stop ${units[*]} failed"
}

# The main process is the firecracker double, as the VM's uid, in the
# leaf <unit cgroup>/<id>; the unit cgroup itself holds no process.
assert_vm_running() {
        assert_vms_running "$1"
}

# The same for many VMs, with one systemctl call per round.
assert_vms_running() {
        local id st pid
        while read -r id st; do
                [ "$st" = active ] || fail "$(unit_of "$id") is $st, not active" || return
        done < <(bulk_prop ActiveState "$@")
        # Type=exec: active once microvm-launch runs; it execs the jailer,
        # which execs firecracker, all in the same process.
        wait_until 20 "firecracker as the main process of $*" vms_main_firecracker "$@" || return
        while read -r id pid; do
                assert_vm_process "$id" "$pid" || return
        done < <(bulk_prop MainPID "$@")
}

vms_main_firecracker() {
        local id pid
        while read -r id pid; do
                [ "$pid" -gt 0 ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = firecracker ] || return 1
        done < <(bulk_prop MainPID "$@")
}

assert_vm_process() {
        local id=$1 pid=$2 uid cg ids
        uid=$(vm_uid "$id") || fail "no uid record $E2E_STATE_DIR/$id/uid" || return
        [ "$uid" -ge $E2E_UID_MIN ] && [ "$uid" -le $E2E_UID_MAX ] || fail "uid $uid outside uid_range" || return
        ids=$(awk '$1 == "Uid:" || $1 == "Gid:" { print $2, $3, $4, $5 }' "/proc/$pid/status" | tr '\n' ' ')
        [ "$ids" = "$uid $uid $uid $uid $uid $uid $uid $uid " ] ||
                fail "$id: firecracker runs with uids/gids $ids, not $uid" || return
        cg=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
        [ "$cg" = "/microvm.slice/microvm@$id.service/$id" ] ||
                fail "$id: firecracker is in cgroup $cg, not /microvm.slice/microvm@$id.service/$id" || return
        [ -z "$(cat "$E2E_SLICE_CG/microvm@$id.service/cgroup.procs")" ] ||
                fail "$id: the unit cgroup itself holds processes: $(cat "$E2E_SLICE_CG/microvm@$id.service/cgroup.procs" | tr '\n' ' ')" || return
}

# Console lines (firecracker's stdout) in the unit's journal and by field.
assert_console() {
        local id=$1
        wait_journal 10 "^$id login: ?\$" -u "$(unit_of "$id")" || return
        wait_journal 10 '^\[ *[0-9]+\.[0-9]+\] Linux version .*firecracker test double' "MICROVM_ID=$id" || return
}

# The graceful path: microvm-stop sent Ctrl-Alt-Del, the guest shut down
# (the double's console lines), microvm-stop saw it go.
assert_graceful_stop() {
        local id=$1 u
        u=$(unit_of "$id")
        wait_journal 5 'sent Ctrl-Alt-Del to the guest' -u "$u" || return
        wait_journal 5 '^Ctrl-Alt-Del pressed, rebooting\.$' -u "$u" || return
        wait_journal 5 'reboot: Restarting system' "MICROVM_ID=$id" || return
        wait_journal 5 'the guest shut down after' -u "$u" || return
}

dropin() { # dropin ID TEXT: a runtime drop-in of our own for one VM's unit
        mkdir -p "/run/systemd/system/$(unit_of "$1").d"
        printf '[Service]\n%s\n' "$2" >"/run/systemd/system/$(unit_of "$1").d/90-e2e.conf"
}

# ---------------------------------------------------------------- scenarios

# Issue 4: install, drop two configs, daemon-reload; the drop-in is there,
# only the autostart VM is wanted by microvms.target.
sc_generator() {
        local out deps
        vm_config a autostart=yes
        vm_config b
        systemctl daemon-reload || fail "daemon-reload failed" || return
        out=$(systemctl cat microvm@a.service) || fail "systemctl cat microvm@a failed" || return
        grep -qx '# /run/systemd/generator/microvm@a.service.d/50-microvm.conf' <<<"$out" ||
                fail "systemctl cat microvm@a shows no generated drop-in: $out" || return
        grep -qx 'SourcePath=/etc/microvm/vms/a.conf' <<<"$out" || fail "no SourcePath= in the drop-in" || return
        grep -qE '^Environment=MICROVM_CONFIG_DIGEST=[0-9a-f]{64}$' <<<"$out" || fail "no config digest in the drop-in" || return
        grep -qx 'MemoryMax=192M' <<<"$out" || fail "MemoryMax= is not 128M + 64M in the drop-in" || return
        [ "$(uprop microvm@a.service SourcePath)" = /etc/microvm/vms/a.conf ] || fail "SourcePath not loaded" || return
        [ "$(uprop microvm@a.service DropInPaths)" = /run/systemd/generator/microvm@a.service.d/50-microvm.conf ] ||
                fail "DropInPaths: $(uprop microvm@a.service DropInPaths)" || return
        deps=$(systemctl list-dependencies --plain --no-legend microvms.target | grep -o 'microvm@[^ ]*' | sort)
        [ "$deps" = microvm@a.service ] ||
                fail "microvms.target should depend on microvm@a.service only, has: $(echo $deps)" || return
        note "systemctl cat shows the drop-in; microvms.target wants: $deps"
}

# Hundreds of VMs: the generator splits them over worker processes (one
# per CPU, >= 128 VMs each) under the real manager, its seccomp filter and
# its log target; every VM gets its drop-in, a bad config is skipped.
sc_generator_many() {
        local n=300 i id missing cursor log
        for ((i = 0; i < n; i++)); do
                printf -v id 'bulk%03d' "$i"
                vm_config "$id"
        done
        printf '[vm]\nvcpus = 99\n' >"$E2E_VM_DIR/bulkbad.conf"
        chmod 0644 "$E2E_VM_DIR/bulkbad.conf"
        cursor=$(journalctl -q -n 0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p')
        systemctl daemon-reload || fail "daemon-reload failed" || return
        missing=0
        for ((i = 0; i < n; i++)); do
                printf -v id 'bulk%03d' "$i"
                [ -f "/run/systemd/generator/microvm@$id.service.d/50-microvm.conf" ] || missing=$((missing + 1))
        done
        # The manager reports the generator's exit: 1 for the bad config,
        # after everything valid was written; never the 159 of a seccomp
        # violation. (Its own log goes to the console here: nspawn gives
        # the container no /dev/kmsg.)
        log=$(journalctl --no-pager -q -o cat --after-cursor "$cursor" 2>/dev/null | grep 'microvm-generator failed' || true)
        [ "$missing" = 0 ] || fail "$missing of $n VMs have no generated drop-in; the manager says: $log" || return
        [ ! -e /run/systemd/generator/microvm@bulkbad.service.d ] || fail "a drop-in for the bad config" || return
        [ "$(uprop microvm@bulk299.service SourcePath)" = "$E2E_VM_DIR/bulk299.conf" ] ||
                fail "SourcePath of microvm@bulk299: $(uprop microvm@bulk299.service SourcePath)" || return
        [ "$(grep -c . <<<"$log")" = 1 ] && grep -q '/microvm-generator failed with exit status 1\.$' <<<"$log" ||
                fail "expected the manager to report exit status 1 once, it says: $log" || return
        note "$n VMs and a bad one generated on $(nproc) CPUs: $n drop-ins, exit status 1"
        rm -f "$E2E_VM_DIR"/bulk*.conf
        systemctl daemon-reload || fail "daemon-reload failed" || return
        [ -z "$(ls -d /run/systemd/generator/microvm@bulk* 2>/dev/null)" ] || fail "drop-ins left after the configs went" || return
}

sc_start() {
        local t0 pid
        vm_config life cpu_quota=50%
        systemctl daemon-reload
        t0=$(now_ms)
        start_vm life || return
        note "systemctl start microvm@life: $(( $(now_ms) - t0 )) ms"
        assert_vm_running life || return
        pid=$(vprop life MainPID)
        [ "$(cat "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/life/root/firecracker.pid")" = "$pid" ] ||
                fail "the jailer's pid file does not name MainPID $pid" || return
        [ "$(vprop life MemoryMax)" = $(( (128 << 20) + E2E_MEMORY_OVERHEAD )) ] ||
                fail "MemoryMax=$(vprop life MemoryMax), want 128M + 64M" || return
        [ "$(vprop life ControlGroup)" = /microvm.slice/microvm@life.service ] ||
                fail "ControlGroup=$(vprop life ControlGroup)" || return
        assert_console life || return
        note "MainPID $pid = firecracker, uid $(vm_uid life), cgroup $(sed -n 's/^0:://p' "/proc/$pid/cgroup")"
}

# Limits sit on the unit cgroup, enforced by systemd — where the
# controllers reach the container at all.
sc_resources() {
        local cg=$E2E_SLICE_CG/microvm@life.service ctrls checked=()
        use life
        state_is life active || start_vm life || return
        ctrls=" $(cat "$cg/cgroup.controllers") "
        if [[ $ctrls == *" memory "* ]]; then
                [ "$(cat "$cg/memory.max")" = $(( (128 << 20) + E2E_MEMORY_OVERHEAD )) ] ||
                        fail "memory.max=$(cat "$cg/memory.max")" || return
                checked+=(memory.max)
        fi
        if [[ $ctrls == *" cpu "* ]]; then
                [ "$(cat "$cg/cpu.max")" = "50000 100000" ] || fail "cpu.max=$(cat "$cg/cpu.max")" || return
                checked+=(cpu.max)
        fi
        if [[ $ctrls == *" pids "* ]]; then
                [ "$(cat "$cg/pids.max")" = "$(vprop life TasksMax)" ] || fail "pids.max=$(cat "$cg/pids.max")" || return
                checked+=(pids.max)
        fi
        if [ ${#checked[@]} = 0 ]; then
                echo "no memory, cpu or pids controller in the container's cgroups (cgroup.controllers of the unit: '$(echo $ctrls)'; the host binds them to cgroup v1)"
                return 77
        fi
        note "checked ${checked[*]}"
}

sc_stop() {
        local t0 dt
        use life
        state_is life active || start_vm life || return
        t0=$(now_ms)
        stop_vm life || return
        dt=$(( $(now_ms) - t0 ))
        note "systemctl stop microvm@life: $dt ms"
        [ "$(vprop life ActiveState)" = inactive ] || fail "ActiveState=$(vprop life ActiveState) after stop" || return
        [ "$(vprop life Result)" = success ] || fail "Result=$(vprop life Result)" || return
        assert_graceful_stop life || return
        assert_no_debris life || return
        [ $dt -lt 5000 ] || fail "the graceful stop took $dt ms (stop_timeout 5s)" || return
}

sc_ignore_cad() {
        local t0 dt
        vm_config deaf stop_timeout=3s knobs=fcdouble.ignore_cad=1
        systemctl daemon-reload
        start_vm deaf || return
        assert_console deaf || return
        t0=$(now_ms)
        stop_vm deaf || return
        dt=$(( $(now_ms) - t0 ))
        note "systemctl stop of a guest ignoring Ctrl-Alt-Del (stop_timeout 3s): $dt ms"
        [ "$(vprop deaf ActiveState)" = inactive ] || fail "ActiveState=$(vprop deaf ActiveState) after stop" || return
        wait_journal 5 'sent Ctrl-Alt-Del to the guest' -u microvm@deaf.service || return
        wait_journal 5 'did not shut down within' -u microvm@deaf.service || return
        ! journal_has '^Ctrl-Alt-Del pressed' -u microvm@deaf.service || fail "the guest was supposed to ignore Ctrl-Alt-Del" || return
        [ $dt -ge 2000 ] || fail "stopped after $dt ms: microvm-stop did not wait for the guest" || return
        # microvm-stop's own wait, from the journal's clock: the 3 s, not
        # more. The whole stop (cleanup included) only has to end well
        # before systemd would have given up twice.
        local waited
        waited=$(journal_gap_ms 'sent Ctrl-Alt-Del to the guest' 'did not shut down within' -u microvm@deaf.service)
        note "microvm-stop waited $waited ms for the guest"
        [ -n "$waited" ] && [ "$waited" -ge 2000 ] && [ "$waited" -le 5000 ] ||
                fail "microvm-stop waited ${waited:-?} ms for the guest, want its 3 s stop timeout" || return
        [ $dt -le 8000 ] || fail "stop took $dt ms: more than the 3 s stop timeout and 5 s for the cleanup" || return
        assert_no_debris deaf || return
}

sc_crash() {
        local pid pid2
        # restart = no: the unit fails, the cleanup runs
        vm_config crash-no
        # restart = on-failure: restarted; RestartSec=8s leaves time to look
        # at the state between the two runs, on a loaded machine too
        vm_config crash-re restart=on-failure
        dropin crash-re RestartSec=8s
        systemctl daemon-reload
        start_vm crash-no crash-re || return
        assert_vm_running crash-no || return
        assert_vm_running crash-re || return

        pid=$(vprop crash-no MainPID)
        kill -9 "$pid"
        wait_state crash-no failed || return
        [ "$(vprop crash-no Result)" = signal ] || fail "Result=$(vprop crash-no Result), want signal" || return
        exec_succeeded crash-no ExecStopPost ||
                fail "microvm-cleanup: $(exec_status crash-no ExecStopPost)" || return
        assert_no_debris crash-no || return
        note "restart=no: SIGKILL of firecracker -> failed (Result=signal), cleanup ran, no debris"

        pid=$(vprop crash-re MainPID)
        kill -9 "$pid"
        wait_state crash-re activating auto-restart 10 || return
        exec_succeeded crash-re ExecStopPost ||
                fail "microvm-cleanup: $(exec_status crash-re ExecStopPost)" || return
        [ ! -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/crash-re" ] || fail "jail left between the runs" || return
        [ ! -e "$E2E_RUN_DIR/crash-re" ] || fail "run dir left between the runs" || return
        [ ! -e "$E2E_SLICE_CG/microvm@crash-re.service/crash-re" ] || fail "leaf cgroup left between the runs" || return
        [ -z "$(pids_of_uid "$(vm_uid crash-re)")" ] || fail "processes of the VM uid left between the runs" || return
        # Still between the runs: the checks above looked at that state.
        [ "$(vprop crash-re SubState)" = auto-restart ] || fail "the checks took longer than RestartSec" || return
        wait_state crash-re active running 30 || return
        pid2=$(vprop crash-re MainPID)
        [ "$pid2" != "$pid" ] || fail "same MainPID after the restart" || return
        [ "$(vprop crash-re NRestarts)" = 1 ] || fail "NRestarts=$(vprop crash-re NRestarts)" || return
        assert_vm_running crash-re || return
        note "restart=on-failure: SIGKILL -> auto-restart (no debris in between) -> active, MainPID $pid -> $pid2"
        stop_vm crash-re || return
        assert_no_debris crash-no crash-re || return
        rm -rf /run/systemd/system/microvm@crash-re.service.d
}

# SIGKILL of microvm-stage at several points of its work; then a start
# must succeed, with a complete drive copy. The VM's first start copies a
# 512 MiB (non-sparse) template, which takes long enough to be caught in
# the middle.
sc_stage_kill() {
        local id=stagekill img=$E2E_IMAGES/big.img trig landed=0 tries=0 st copy inv
        if [ ! -e "$img" ]; then
                head -c 512M /dev/zero | tr '\0' 'x' >"$img.tmp" 2>/dev/null ||
                        dd if=/dev/zero of="$img.tmp" bs=1M count=512 status=none
                printf 'MICROVM-E2E-END' | dd of="$img.tmp" bs=1 seek=$(( (512 << 20) - 15 )) conv=notrunc status=none
                chmod 0644 "$img.tmp"
                mv "$img.tmp" "$img"
        fi
        vm_config $id drive_path="$img"
        systemctl daemon-reload
        use $id
        for trig in control state-dir copy copy-half jail; do
                tries=$((tries + 1))
                inv=$(vprop $id InvocationID)
                systemctl start --no-block "$(unit_of $id)"
                wait_until 10 "the start job to begin" invocation_changed $id "$inv" || return
                wait_until 30 "stage to reach trigger '$trig'" stage_trigger $id "$trig" || return
                if state_is $id activating start-pre; then
                        systemctl kill --kill-who=control --signal=SIGKILL "$(unit_of $id)" 2>/dev/null || true
                fi
                wait_until 30 "the start to end" stage_done $id || return
                st=$(exec_status $id ExecStartPre)
                if [[ $st == "code=killed status=9"* ]]; then
                        landed=$((landed + 1))
                        [ "$(vprop $id ActiveState)" = failed ] || fail "after the SIGKILL: $(vprop $id ActiveState)" || return
                        exec_succeeded $id ExecStopPost ||
                                fail "microvm-cleanup after a killed stage: $(exec_status $id ExecStopPost)" || return
                        assert_no_debris $id || return
                        note "trigger $trig: stage SIGKILLed, unit failed, cleanup ran, no debris"
                else
                        note "trigger $trig: stage not killed ($st); stopping"
                        stop_vm $id || return
                fi
                systemctl reset-failed "$(unit_of $id)" 2>/dev/null || true
        done
        [ $landed -ge 2 ] || fail "only $landed of $tries SIGKILLs hit microvm-stage" || return

        start_vm $id || return
        assert_vm_running $id || return
        wait_journal 10 '\[vda\] 1048576 512-byte logical blocks' -u "$(unit_of $id)" ||
                fail "the guest did not see the whole 512 MiB drive" || return
        copy=$(find "$E2E_STATE_DIR/$id" -type f -size +1M)
        [ "$(echo "$copy" | wc -l)" = 1 ] || fail "expected one drive copy in $E2E_STATE_DIR/$id, found: $copy" || return
        cmp -s "$copy" "$img" || fail "the drive copy $copy differs from the template (a partial copy was used)" || return
        note "$landed of $tries starts killed in microvm-stage; the next start works with a complete copy"
        stop_vm $id || return
        assert_no_debris $id || return
}

# stage_trigger ID TRIGGER: the point to kill microvm-stage at has come,
# or the start has gone past ExecStartPre= (then nothing is to be killed).
stage_trigger() {
        local id=$1 cpid f size
        load_props "$(unit_of "$id")" ActiveState SubState ControlPID
        [ "${P[ActiveState]}/${P[SubState]}" = activating/start-pre ] || return 0
        cpid=${P[ControlPID]}
        [ "$cpid" != 0 ] || return 1
        case $2 in
        control) return 0 ;;
        state-dir) [ -e "$E2E_STATE_DIR/$id" ] ;;
        copy | copy-half)
                # The copy is built in an O_TMPFILE in the VM's state dir
                # and linked into place when complete: look at stage's fds.
                for f in /proc/"$cpid"/fd/*; do
                        case $(readlink "$f" 2>/dev/null) in
                        "$E2E_STATE_DIR/$id/"*"(deleted)")
                                [ "$2" = copy ] && return 0
                                size=$(stat -L -c %s "$f" 2>/dev/null) || continue
                                [ "$size" -ge $((256 << 20)) ] && return 0 ;;
                        esac
                done
                return 1 ;;
        jail) [ -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id" ] ;;
        esac
}

invocation_changed() {
        [ "$(vprop "$1" InvocationID)" != "$2" ]
}

stage_done() {
        case $(vprop "$1" ActiveState) in
        active | failed | inactive) return 0 ;;
        esac
        return 1
}

# Issue 15: our parameters go before the kernel's "--" and firecracker's
# (the double builds the command line as firecracker does) too; the
# console (console=ttyS0, ours) still works.
sc_cmdline_init_args() {
        use initargs
        vm_config initargs "cmdline=panic=1 -- single"
        systemctl daemon-reload
        start_vm initargs || return
        assert_vm_running initargs || return
        assert_console initargs || return
        wait_journal 5 '^\[ *[0-9]+\.[0-9]+\] Command line: panic=1 console=ttyS0 reboot=k pci=off root=/dev/vda rw virtio_mmio\.device=4K@0xd0000000:5 -- single$' \
                MICROVM_ID=initargs || return
        note "guest: $(journalctl -q -o cat MICROVM_ID=initargs | grep -m 1 'Command line:' | sed 's/^\[[^]]*\] //')"
        stop_vm initargs || return
        assert_no_debris initargs || return
}

# The jailer double, like the real one, writes "+<controller>" into
# cgroup.subtree_control of every ancestor of its parent cgroup from the
# cgroup root down, the root cgroup and microvm.slice included. Shown with
# a controller systemd does not manage (hugetlb, misc or rdma), so that
# systemd has not enabled it anywhere: run the double as launch runs it
# (from a leaf of a delegated unit in microvm.slice) with a --cgroup value.
sc_jailer_ancestor_writes() {
        local ctrl="" c file="" cg=$E2E_SLICE_CG/e2e-ancestors.service before_root before_slice out
        for c in hugetlb misc rdma; do
                [[ " $(cat $E2E_CG/cgroup.controllers) " == *" $c "* ]] || continue
                [[ " $(cat $E2E_CG/cgroup.subtree_control) " != *" $c "* ]] ||
                        echo "-$c" >"$E2E_CG/cgroup.subtree_control" 2>/dev/null || continue
                [[ " $(cat $E2E_SLICE_CG/cgroup.subtree_control) " != *" $c "* ]] ||
                        echo "-$c" >"$E2E_SLICE_CG/cgroup.subtree_control" 2>/dev/null || continue
                case $c in
                hugetlb) [ -d /sys/kernel/mm/hugepages/hugepages-2048kB ] && file=hugetlb.2MB.max=0 ;;
                misc) file=misc.max=0 ;;
                rdma) file=rdma.max=0 ;;
                esac
                [ -n "$file" ] && ctrl=$c && break
        done
        if [ -z "$ctrl" ]; then
                echo "no cgroup v2 controller here that systemd leaves alone (hugetlb, misc, rdma; root cgroup.controllers: '$(cat $E2E_CG/cgroup.controllers)')"
                return 77
        fi
        before_root=$(cat $E2E_CG/cgroup.subtree_control)
        before_slice=$(cat $E2E_SLICE_CG/cgroup.subtree_control)
        install -d -m 0711 /srv/e2e-ancestors
        # Exit status 0 of "firecracker --version" after the jailer's whole
        # run. "echo 0": the writer itself ($$ would be systemd's to expand).
        out=$(systemd-run --wait --pipe --collect --quiet --slice=microvm.slice -p Delegate=yes \
                --unit=e2e-ancestors.service sh -c '
                        mkdir "'"$cg"'/leaf" && echo 0 >"'"$cg"'/leaf/cgroup.procs" &&
                        exec '"$E2E_LIBDIR"'/jailer --id e2e-ancestors --exec-file '"$E2E_LIBDIR"'/firecracker \
                                --uid 4242 --gid 4242 --chroot-base-dir /srv/e2e-ancestors --cgroup-version 2 \
                                --parent-cgroup microvm.slice/e2e-ancestors.service --cgroup '"$file"' -- --version' 2>&1)
        c=$?
        rm -rf /srv/e2e-ancestors
        [ $c = 0 ] || fail "the jailer double failed ($c): $out" || return
        note "root cgroup.subtree_control: '$before_root' -> '$(cat $E2E_CG/cgroup.subtree_control)'"
        note "microvm.slice cgroup.subtree_control: '$before_slice' -> '$(cat $E2E_SLICE_CG/cgroup.subtree_control)'"
        [[ " $(cat $E2E_CG/cgroup.subtree_control) " == *" $ctrl "* ]] ||
                fail "the jailer did not enable $ctrl in the root cgroup" || return
        [[ " $(cat $E2E_SLICE_CG/cgroup.subtree_control) " == *" $ctrl "* ]] ||
                fail "the jailer did not enable $ctrl in microvm.slice" || return
        # Undo: nothing below uses it any more (the unit is gone; the
        # jailer, like the real one, leaves its leaf for the caller).
        rmdir "$cg/e2e-ancestors" "$cg/leaf" "$cg" 2>/dev/null
        wait_until 10 "e2e-ancestors.service's cgroup to go" test ! -e "$cg" || return
        echo "-$ctrl" >"$E2E_SLICE_CG/cgroup.subtree_control" || fail "cannot disable $ctrl in microvm.slice again" || return
        echo "-$ctrl" >"$E2E_CG/cgroup.subtree_control" || fail "cannot disable $ctrl in the root cgroup again" || return
}

# numa_node needs cpuset: the generator sets AllowedMemoryNodes=, so systemd
# enables cpuset from the root down to the unit and the jailer's writes to
# the ancestors (see above) change nothing. Without a cpuset controller in
# cgroup v2 the start fails in microvm-stage, before the jailer runs.
sc_numa_refused() {
        use numa
        vm_config numa numa_node=0
        systemctl daemon-reload
        [ "$(vprop numa AllowedMemoryNodes)" = 0 ] || fail "AllowedMemoryNodes=$(vprop numa AllowedMemoryNodes)" || return
        if [[ " $(cat $E2E_CG/cgroup.controllers) " == *" cpuset "* ]]; then
                echo "this container's cgroup v2 has the cpuset controller (see the next scenario)"
                return 77
        fi
        ! timeout 60 systemctl start microvm@numa.service 2>/dev/null || fail "microvm@numa started without cpuset" || return
        wait_journal 5 'numa_node = 0 of numa needs the cpuset controller of cgroup v2 \(jailer --cgroup cpuset.mems=0\), which this host does not offer' \
                -u microvm@numa.service || return
        note "journal: $(journalctl -q -o cat -u microvm@numa.service | grep -m 1 'needs the cpuset controller')"
        ! journal_has 'Controller cpuset is unavailable' -u microvm@numa.service ||
                fail "the jailer ran and failed instead of microvm-stage" || return
        # microvm-launch runs after a failed ExecStartPre=- (issue 12) and
        # refuses at once: the jailer is never executed.
        journal_has 'Not starting numa: microvm-stage failed' -u microvm@numa.service ||
                fail "microvm-launch did not refuse the unstaged VM" || return
        assert_no_debris numa || return
        systemctl reset-failed microvm@numa.service
}

sc_numa_cpuset() {
        local cg=$E2E_SLICE_CG/microvm@numa.service
        use numa
        vm_config numa numa_node=0
        systemctl daemon-reload
        if [[ " $(cat $E2E_CG/cgroup.controllers) " != *" cpuset "* ]]; then
                echo "no cpuset controller in this container's cgroup v2 (root cgroup.controllers: '$(cat $E2E_CG/cgroup.controllers)'; a hybrid host binds it to cgroup v1)"
                return 77
        fi
        start_vm numa || return
        assert_vm_running numa || return
        [[ " $(cat $E2E_CG/cgroup.subtree_control) " == *" cpuset "* ]] || fail "cpuset not enabled in the root cgroup" || return
        [[ " $(cat $E2E_SLICE_CG/cgroup.subtree_control) " == *" cpuset "* ]] || fail "cpuset not enabled in microvm.slice" || return
        [[ " $(cat $cg/cgroup.controllers) " == *" cpuset "* ]] || fail "cpuset not available to the unit" || return
        [ "$(cat $cg/cpuset.mems)" = 0 ] || fail "the unit's cpuset.mems is '$(cat $cg/cpuset.mems)'" || return
        [ "$(cat $cg/numa/cpuset.mems)" = 0 ] || fail "the leaf's cpuset.mems is '$(cat $cg/numa/cpuset.mems)'" || return
        note "cpuset enabled by systemd down to the unit; leaf cpuset.mems $(cat $cg/numa/cpuset.mems)"
        stop_vm numa || return
        assert_no_debris numa || return
}

sc_unknown_id() {
        use nosuchvm Bad_Id
        ! timeout 60 systemctl start microvm@nosuchvm.service 2>/dev/null || fail "microvm@nosuchvm started" || return
        # No config, no drop-in: the template's Restart=no; microvm-launch
        # exits 78 after the refused stage (RestartPreventExitStatus=).
        wait_state nosuchvm failed "" 20 || return
        note "microvm@nosuchvm: failed after $(vprop nosuchvm NRestarts) automatic restarts (Result=$(vprop nosuchvm Result))"
        wait_journal 5 'no such VM: no nosuchvm.conf in /etc/microvm/vms' -u microvm@nosuchvm.service || return
        note "journal: $(journalctl -q -o cat -u microvm@nosuchvm.service | grep -m 1 'no such VM')"
        assert_no_debris nosuchvm || return
        ! timeout 60 systemctl start microvm@Bad_Id.service 2>/dev/null || fail "microvm@Bad_Id started" || return
        wait_journal 5 'is not a valid VM id' -u microvm@Bad_Id.service || return
        wait_state Bad_Id failed "" 20 || return
        note "journal: $(journalctl -q -o cat -u microvm@Bad_Id.service | grep -m 1 'is not a valid VM id')"
        # Nothing can exist for an invalid id: cleanup succeeds (issue 12.8).
        exec_succeeded Bad_Id ExecStopPost || return
        [ "$(vprop Bad_Id ExecMainStatus)" = 78 ] ||
                fail "microvm-launch exited $(vprop Bad_Id ExecMainStatus) for an invalid id, want 78 (not retried)" || return
        systemctl reset-failed microvm@nosuchvm.service microvm@Bad_Id.service
}

# Issue 12.1: a config edited (or broken) without daemon-reload starts
# with the configuration the unit was generated from, and says so once.
sc_edited() {
        local jail=$E2E_CHROOT_BASE/$E2E_EXEC_NAME/edited/root
        use edited
        vm_config edited
        systemctl daemon-reload
        vm_config edited memory=256M
        start_vm edited || return
        assert_vm_running edited || return
        grep -q '"mem_size_mib": *128' "$jail/vm-config.json" ||
                fail "the VM did not start with the generated config (128M): $(cat "$jail/vm-config.json")" || return
        wait_journal 5 'differs from the configuration microvm@edited.service was generated from.*systemctl daemon-reload' \
                -u microvm@edited.service || return
        note "journal: $(journalctl -q -o cat -u microvm@edited.service | grep -m 1 'differs from')"
        [ "$(vprop edited MemoryMax)" = $(( (128 << 20) + E2E_MEMORY_OVERHEAD )) ] ||
                fail "MemoryMax=$(vprop edited MemoryMax) before the reload" || return
        stop_vm edited || return
        assert_no_debris edited || return
        systemctl daemon-reload
        start_vm edited || return
        assert_vm_running edited || return
        [ "$(vprop edited MemoryMax)" = $(( (256 << 20) + E2E_MEMORY_OVERHEAD )) ] ||
                fail "MemoryMax=$(vprop edited MemoryMax) after the reload" || return
        grep -q '"mem_size_mib": *256' "$jail/vm-config.json" || fail "not 256M after the reload" || return
        stop_vm edited || return
        assert_no_debris edited || return
}

# Issue 12.1: "systemctl restart" after an edit without daemon-reload, or
# after breaking the config, never leaves the VM down.
sc_restart_edited() {
        local pid
        use redit
        vm_config redit
        systemctl daemon-reload
        start_vm redit || return
        assert_vm_running redit || return
        pid=$(vprop redit MainPID)
        vm_config redit memory=256M
        timeout 60 systemctl restart microvm@redit.service || fail "systemctl restart after an edit failed" || return
        assert_vm_running redit || return
        [ "$(vprop redit MainPID)" != "$pid" ] || fail "not restarted" || return
        wait_journal 5 'differs from the configuration microvm@redit.service was generated from' -u microvm@redit.service || return
        printf '[vm]\nmemory = lots\n' >"$E2E_VM_DIR/redit.conf"
        timeout 60 systemctl restart microvm@redit.service || fail "systemctl restart after breaking the config failed" || return
        assert_vm_running redit || return
        note "edited, then broken config: both restarts came up with the generated config"
        rm -f "$E2E_VM_DIR/redit.conf"
        timeout 60 systemctl restart microvm@redit.service || fail "systemctl restart after removing the config failed" || return
        assert_vm_running redit || return
        wait_journal 5 'config of redit is gone' -u microvm@redit.service || return
        stop_vm redit || return
        assert_no_debris redit || return
        systemctl daemon-reload
}

# Issue 12.2: a daemon-reload with a broken host config, a broken VM config
# or a removed VM config never changes a running VM's unit properties;
# the generator's errors are in the journal; the reload is not blocked.
sc_reload_keeps() {
        local id props=(MemoryMax TasksMax TimeoutStopUSec Restart Environment) want_a want_b cursor
        use keep-a keep-b
        vm_config keep-a restart=on-failure stop_timeout=7s
        vm_config keep-b memory=256M stop_timeout=9s
        systemctl daemon-reload
        start_vm keep-a keep-b || return
        assert_vms_running keep-a keep-b || return
        want_a=$(systemctl show "${props[@]/#/-p}" microvm@keep-a.service)
        want_b=$(systemctl show "${props[@]/#/-p}" microvm@keep-b.service)

        cp /etc/microvm/microvm.conf /etc/microvm/microvm.conf.good
        sed -i 's/^memory_overhead = .*/memory_overhaed = 64M/' /etc/microvm/microvm.conf
        cursor=$(journalctl -q -n 0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p')
        timeout 60 systemctl daemon-reload || fail "daemon-reload with a broken host config failed or hung" || return
        for id in keep-a keep-b; do
                [ "$(systemctl show "${props[@]/#/-p}" "microvm@$id.service")" = "$( [ $id = keep-a ] && echo "$want_a" || echo "$want_b")" ] ||
                        fail "a broken host config changed microvm@$id: $(systemctl show "${props[@]/#/-p}" "microvm@$id.service" | tr '\n' ' ')" || return
        done
        wait_journal 5 'memory_overhaed' -b -t microvm-generator ||
                fail "the generator's error about the host config is not in journalctl -b" || return
        wait_journal 5 'microvm@keep-a.service keeps the settings it was started with' -b -t microvm-generator || return
        note "host config typo: limits kept; journal: $(journalctl -q -b -o cat -t microvm-generator --after-cursor "$cursor" | grep -m 1 'Not generating')"
        mv -f /etc/microvm/microvm.conf.good /etc/microvm/microvm.conf

        printf '[vm]\nvcpus = 99\n' >"$E2E_VM_DIR/keep-a.conf"
        rm -f "$E2E_VM_DIR/keep-b.conf"
        timeout 60 systemctl daemon-reload || fail "daemon-reload failed or hung" || return
        [ "$(systemctl show "${props[@]/#/-p}" microvm@keep-a.service)" = "$want_a" ] ||
                fail "a broken VM config changed microvm@keep-a: $(systemctl show "${props[@]/#/-p}" microvm@keep-a.service | tr '\n' ' ')" || return
        [ "$(systemctl show "${props[@]/#/-p}" microvm@keep-b.service)" = "$want_b" ] ||
                fail "a removed VM config changed microvm@keep-b: $(systemctl show "${props[@]/#/-p}" microvm@keep-b.service | tr '\n' ' ')" || return
        assert_vms_running keep-a keep-b || return
        note "broken keep-a.conf, removed keep-b.conf: both keep MemoryMax $(vprop keep-a MemoryMax), $(vprop keep-b MemoryMax)"

        stop_vm keep-a keep-b || return
        assert_no_debris keep-a keep-b || return
        systemctl daemon-reload
        [ -z "$(vprop keep-b DropInPaths)" ] || fail "keep-b still has drop-ins after it stopped: $(vprop keep-b DropInPaths)" || return
        rm -f "$E2E_VM_DIR/keep-a.conf"
        systemctl daemon-reload
}

# Issue 12.3: a start succeeds only once the VMM answers with the instance
# state Running; a VMM that dies during start fails "systemctl start", and
# "systemctl status" shows its exit status and last console lines.
sc_start_dies() {
        local out
        use dying
        vm_config dying knobs=fcdouble.bogus=1
        systemctl daemon-reload
        ! timeout 60 systemctl start microvm@dying.service 2>/dev/null ||
                fail "systemctl start returned 0 for a VMM that exits during start" || return
        wait_state dying failed || return
        out=$(systemctl status --no-pager -l microvm@dying.service 2>&1)
        grep -q 'status=1/FAILURE' <<<"$out" || fail "no exit status of the VMM in systemctl status: $out" || return
        grep -q 'fcdouble.bogus' <<<"$out" || fail "no console line of the VMM in systemctl status: $out" || return
        note "systemctl status: $(grep -m 1 'Main PID' <<<"$out" | sed 's/^ *//')"
        assert_no_debris dying || return
        systemctl reset-failed microvm@dying.service
}

# Issue 12.4: a configuration error is not retried and its message is the
# unit's StatusText; other failures are retried every RestartSec=5s, with
# the last error in StatusText.
sc_restart_policy() {
        local out
        use cfgfinal transient
        vm_config cfgfinal restart=on-failure
        vm_config transient restart=on-failure kernel=$E2E_IMAGES/no-such-kernel
        systemctl daemon-reload
        [ "$(vprop cfgfinal RestartUSec)" = 5s ] || fail "RestartUSec=$(vprop cfgfinal RestartUSec), want 5s" || return

        cp /etc/microvm/microvm.conf /etc/microvm/microvm.conf.good
        sed -i 's/^memory_overhead = .*/memory_overhaed = 64M/' /etc/microvm/microvm.conf
        ! timeout 60 systemctl start microvm@cfgfinal.service 2>/dev/null || fail "started with a broken host config" || return
        mv -f /etc/microvm/microvm.conf.good /etc/microvm/microvm.conf
        load_props microvm@cfgfinal.service ActiveState SubState NRestarts StatusText ExecMainStatus
        [ "${P[ActiveState]}/${P[SubState]}" = failed/failed ] ||
                fail "a config error is retried: ${P[ActiveState]}/${P[SubState]}, NRestarts=${P[NRestarts]}" || return
        [ "${P[NRestarts]}" = 0 ] || fail "NRestarts=${P[NRestarts]}" || return
        [ "${P[ExecMainStatus]}" = 78 ] || fail "ExecMainStatus=${P[ExecMainStatus]}, want 78" || return
        grep -q 'memory_overhaed' <<<"${P[StatusText]}" || fail "StatusText without the error: '${P[StatusText]}'" || return
        out=$(systemctl status --no-pager -l microvm@cfgfinal.service 2>&1)
        grep -q 'Status: .*memory_overhaed' <<<"$out" || fail "systemctl status shows no error: $out" || return
        note "config error: failed at once, not retried; $(grep -m 1 'Status:' <<<"$out" | sed 's/^ *//')"
        systemctl reset-failed microvm@cfgfinal.service

        ! timeout 60 systemctl start microvm@transient.service 2>/dev/null || fail "started without a kernel" || return
        load_props microvm@transient.service ActiveState SubState StatusText
        [ "${P[ActiveState]}/${P[SubState]}" = activating/auto-restart ] ||
                fail "a missing kernel is not retried: ${P[ActiveState]}/${P[SubState]}" || return
        grep -q 'no-such-kernel' <<<"${P[StatusText]}" || fail "StatusText without the error: '${P[StatusText]}'" || return
        note "missing kernel: retried in 5s; StatusText: ${P[StatusText]}"
        stop_vm transient || return
        assert_no_debris cfgfinal transient || return
        systemctl reset-failed microvm@transient.service 2>/dev/null || true
}

# Issue 12.5: a VM on a bridge starts without udev (no .device units in
# this container); a missing bridge is a clear, immediate error naming it.
sc_bridge() {
        local t0 dt tap out
        if ! command -v ip >/dev/null; then
                echo "no ip command (iproute2) in the container to create a bridge"
                return 77
        fi
        use onbr nobr
        ip link add e2ebr0 type bridge || fail "cannot create bridge e2ebr0" || return
        ip link set e2ebr0 up
        vm_config onbr
        printf '\n[net.eth0]\nbridge = e2ebr0\n' >>"$E2E_VM_DIR/onbr.conf"
        vm_config nobr
        printf '\n[net.eth0]\nbridge = nosuchbr0\n' >>"$E2E_VM_DIR/nobr.conf"
        systemctl daemon-reload
        timeout 20 systemctl start microvm@onbr.service ||
                fail "a VM on the existing bridge e2ebr0 did not start (without udev)" || {
                        systemctl stop microvm@onbr.service; return 1; }
        assert_vm_running onbr || return
        tap=onbr-eth0
        [ "$(basename "$(readlink "/sys/class/net/$tap/master")")" = e2ebr0 ] ||
                fail "tap $tap is not on e2ebr0" || return
        stop_vm onbr || return
        assert_no_debris onbr || return
        [ ! -e "/sys/class/net/$tap" ] || fail "tap $tap left" || return

        t0=$(now_ms)
        ! timeout 20 systemctl start microvm@nobr.service 2>/dev/null || fail "started on a missing bridge" || return
        dt=$(( $(now_ms) - t0 ))
        systemctl stop microvm@nobr.service 2>/dev/null
        out=$(systemctl status --no-pager -l microvm@nobr.service 2>&1)
        grep -q 'bridge nosuchbr0 does not exist' <<<"$out" || fail "no error naming the bridge: $out" || return
        [ $dt -lt 5000 ] || fail "the refusal took $dt ms" || return
        note "missing bridge refused in $dt ms: $(grep -m 1 'Status:' <<<"$out" | sed 's/^ *//')"
        assert_no_debris nobr || return
        ip link del e2ebr0
        systemctl reset-failed microvm@nobr.service 2>/dev/null || true
        rm -f "$E2E_VM_DIR/onbr.conf" "$E2E_VM_DIR/nobr.conf"
        systemctl daemon-reload
}

sc_guest_reboot() {
        local pid
        # 3 s up between reboots: enough for the four property reads of
        # rebooted() to find it up again on a loaded machine
        vm_config rb-always restart=always knobs=fcdouble.reboot_after_ms=3000
        vm_config rb-onfail restart=on-failure knobs=fcdouble.reboot_after_ms=300
        systemctl daemon-reload
        start_vm rb-always rb-onfail || return
        pid=$(vprop rb-always MainPID)
        wait_until 30 "rb-always to come back after its reboot" rebooted rb-always "$pid" || return
        wait_journal 5 'reboot: Restarting system' -u microvm@rb-always.service || return
        note "restart=always: guest reboot -> back with MainPID $(vprop rb-always MainPID) (was $pid)"
        wait_state rb-onfail inactive dead 10 || return
        [ "$(vprop rb-onfail Result)" = success ] || fail "rb-onfail Result=$(vprop rb-onfail Result)" || return
        [ "$(vprop rb-onfail NRestarts)" = 0 ] || fail "rb-onfail NRestarts=$(vprop rb-onfail NRestarts)" || return
        wait_journal 5 'reboot: Restarting system' -u microvm@rb-onfail.service || return
        assert_no_debris rb-onfail || return
        note "restart=on-failure: guest reboot -> stays down (Result=success), no debris"
        stop_vm rb-always || return
        assert_no_debris rb-always || return
}

rebooted() { # the VM restarted: NRestarts >= 1, active with another MainPID
        [ "$(vprop "$1" NRestarts)" -ge 1 ] && state_is "$1" active running &&
                [ "$(vprop "$1" MainPID)" != "$2" ] && [ "$(vprop "$1" MainPID)" != 0 ]
}

sc_autostart() {
        use a auto2 b
        vm_config a autostart=yes
        vm_config auto2 autostart=yes
        vm_config b
        systemctl daemon-reload
        timeout 120 systemctl start microvms.target || fail "systemctl start microvms.target failed" || return
        assert_vm_running a || return
        assert_vm_running auto2 || return
        [ "$(vprop b ActiveState)" = inactive ] || fail "microvm@b (autostart = no) is $(vprop b ActiveState)" || return
        note "microvms.target started a and auto2, not b"
        timeout 120 systemctl stop microvms.target || fail "systemctl stop microvms.target failed" || return
        assert_no_debris a auto2 b || return
        note "stopping microvms.target stopped them (PartOf=)"
}

sc_long_id() {
        local id
        id=vm64-$(printf '%059d' 0 | tr 0 q)
        [ ${#id} = 64 ] || fail "test bug: id has ${#id} characters" || return
        vm_config "$id"
        systemctl daemon-reload
        start_vm "$id" || return
        assert_vm_running "$id" || return
        assert_console "$id" || return
        stop_vm "$id" || return
        assert_graceful_stop "$id" || return
        assert_no_debris "$id" || return
}

sc_fifty() {
        local n=50 i ids=() t0 dt uids
        for ((i = 1; i <= n; i++)); do
                ids+=("$(printf 'many%02d' $i)")
                vm_config "${ids[-1]}"
        done
        systemctl daemon-reload
        t0=$(now_ms)
        start_vm "${ids[@]}" || return
        dt=$(( $(now_ms) - t0 ))
        note "$n VMs started concurrently (one systemctl start): $dt ms"
        assert_vms_running "${ids[@]}" || return
        uids=$(for i in "${ids[@]}"; do vm_uid "$i"; done | sort -u | wc -l)
        [ "$uids" = $n ] || fail "$uids distinct uids for $n VMs" || return
        wait_until 30 "the console of all $n VMs in the journal" consoles_seen $n || {
                echo "seen: $(consoles_seen_ids | tr '\n' ' ')"
                return 1
        }
        t0=$(now_ms)
        stop_vm "${ids[@]}" || return
        note "$n VMs stopped concurrently: $(( $(now_ms) - t0 )) ms"
        assert_no_debris "${ids[@]}" || return
}

consoles_seen_ids() {
        journalctl --no-pager -q -o export --output-fields=MICROVM_ID,MESSAGE -t microvm-launch 2>/dev/null |
                awk -F= '/^MICROVM_ID=/ { id = $2 } /^MESSAGE=many[0-9]+ login: ?$/ { print id } /^$/ { id = "" }' |
                sort -u
}

consoles_seen() {
        [ "$(consoles_seen_ids | grep -c '^many')" -ge "$1" ]
}

# anon_kib PID: the process's anonymous resident memory (its heap: what a
# leak grows), KiB. File-backed pages (journal files journald maps) are not
# counted.
anon_kib() {
        awk '/^RssAnon:/ { print $2 }' "/proc/$1/status"
}

# Soak: 100 VMs x 10 start/stop cycles, all concurrent. No unit fails, no
# leftovers after any cycle, and systemd's and journald's heaps stay flat
# (measured after the first cycle, once every unit is loaded, and after the
# last; allowed: 25% + 2 MiB of growth).
sc_soak() {
        local n=100 cycles=10 c i ids=() t0 pid_sd pid_jd sd1 jd1 sd2 jd2 failed
        for ((i = 1; i <= n; i++)); do
                ids+=("$(printf 'soak%03d' $i)")
                vm_config "${ids[-1]}"
        done
        systemctl daemon-reload
        pid_sd=1
        pid_jd=$(systemctl show -P MainPID systemd-journald.service)
        t0=$(now_ms)
        for ((c = 1; c <= cycles; c++)); do
                start_vm "${ids[@]}" || return
                assert_vms_running "${ids[@]}" || return
                stop_vm "${ids[@]}" || return
                failed=$(systemctl list-units --no-legend --plain --state=failed 'soak*' 'microvm@soak*' | wc -l)
                [ "$failed" = 0 ] || fail "cycle $c: $failed failed units" || return
                assert_no_debris "${ids[@]}" || return
                leak_check || fail "cycle $c: leftovers" || return
                if [ $c = 1 ]; then
                        sd1=$(anon_kib $pid_sd)
                        jd1=$(anon_kib "$pid_jd")
                fi
        done
        sd2=$(anon_kib $pid_sd)
        jd2=$(anon_kib "$pid_jd")
        note "$n VMs x $cycles concurrent start/stop cycles: $(( $(now_ms) - t0 )) ms, 0 failed, 0 leftovers"
        note "anonymous memory after cycle 1 -> after cycle $cycles: systemd $sd1 -> $sd2 KiB," \
                "journald $jd1 -> $jd2 KiB"
        [ "$sd2" -le $(( sd1 * 125 / 100 + 2048 )) ] || fail "systemd grew from $sd1 to $sd2 KiB" || return
        [ "$jd2" -le $(( jd1 * 125 / 100 + 2048 )) ] || fail "journald grew from $jd1 to $jd2 KiB" || return
}

# Hostile console output: one guest floods its console with ~100 MB (1.7 M
# lines of 60 bytes) as fast as it can, another prints one 10 MB line with
# no newline. Both units stay active without a restart, the journal keeps
# taking other units' lines meanwhile, and both stop within their stop
# timeout.
sc_hostile_output() {
        local t0 dt id probe=probe-$RANDOM$RANDOM
        vm_config flood stop_timeout=5s knobs=fcdouble.flood=1700000
        vm_config longline stop_timeout=5s knobs=fcdouble.long_line=10485760
        systemctl daemon-reload
        start_vm flood longline || return
        wait_journal 20 '^\[ *[0-9.]+\] fcdouble: flood line 1000 ' -u microvm@flood.service || return
        # journald cuts the line into LineMax pieces; the end comes after it
        wait_journal 30 '^fcdouble: long line of 10485760 bytes done' -u microvm@longline.service || return
        systemd-run --quiet --wait --unit="e2e-$probe" echo "$probe" || fail "a transient unit could not run" || return
        wait_journal 10 "^$probe\$" -u "e2e-$probe.service" || fail "the journal lost another unit's line" || return
        for id in flood longline; do
                [ "$(vprop "$id" ActiveState)" = active ] || fail "$id is $(vprop "$id" ActiveState)" || return
                [ "$(vprop "$id" NRestarts)" = 0 ] || fail "$id restarted $(vprop "$id" NRestarts) times" || return
        done
        note "journal: $(journalctl -q -u microvm@flood.service -o cat | grep -c 'fcdouble: flood line') of" \
                "the flood's lines kept (the console drops what journald does not take; journald rate-limits a burst)"
        t0=$(now_ms)
        stop_vm flood longline || return
        dt=$(( $(now_ms) - t0 ))
        note "stop of both while writing: $dt ms (stop_timeout 5s)"
        [ $dt -le 7000 ] || fail "stop took $dt ms, beyond the 5s stop timeout (+2s slack)" || return
        assert_no_debris flood longline || return
}

# ---------------------------------------------------------------- issue 21

# The path of an installed tool, from the unit that runs it.
tool_path() { # tool_path UNIT
        systemctl show -p ExecStart --value "$1" | sed -n 's/^{ path=\([^ ;]*\) .*/\1/p' | head -n 1
}

# Exits 77 unless the installed tool has the test-build injection points.
need_hooks() {
        grep -qa MICROVM_TEST_PAUSE_AT "$1" && return 0
        echo "needs a build with -Dtest-hooks=true (the injection points in $1)"
        exit 77
}

# hold_fifos PATH: fresh FIFOs for MICROVM_TEST_PAUSE_FIFO=PATH. Should
# the scenario fail while a tool waits there, its exit releases the tool
# (and ends a reclaim run in HELD_PID), so that nothing after it waits on
# a held lock.
HELD_PID=
hold_fifos() {
        rm -f "$1" "$1.reached"
        mkfifo -m 0600 "$1" "$1.reached"
        trap "[ -z \"\$HELD_PID\" ] || kill \$HELD_PID 2>/dev/null; [ ! -p $1 ] || timeout 5 sh -c 'echo go >$1' 2>/dev/null; true" EXIT
}

# The start's first process, microvm-stage, is in the unit's cgroup.
stage_in_cgroup() {
        local cpid
        state_is "$1" activating start-pre || return 1
        cpid=$(vprop "$1" ControlPID)
        [ "$cpid" != 0 ] && grep -qx "$cpid" "$E2E_SLICE_CG/$(unit_of "$1")/cgroup.procs" 2>/dev/null
}

# issue 21.2: microvm-reclaim run by hand decides that the VM's unit is not
# running (systemd says so over the bus) and is held right there, at the
# injection point reclaim-decided; a start begins (microvm-stage in the unit
# cgroup, waiting for reclaim's lock); reclaim goes on. It must skip the VM,
# and the start must come up.
sc_reclaim_race() {
        local id=racer hold=/run/e2e-hold reclaim out rpid st round rounds=3 ok=0 bad=""
        reclaim=$(tool_path microvm-reclaim.service)
        need_hooks "$reclaim"
        vm_config $id
        systemctl daemon-reload
        use $id
        # The unit wants microvm-reclaim.service and is ordered after it:
        # had it not run yet, the start would wait for it, and it for the
        # lock the held reclaim has (a wait, never a kill).
        systemctl start microvm-reclaim.service || fail "microvm-reclaim.service failed" || return
        out=$(mktemp)
        for round in $(seq $rounds); do
                hold_fifos $hold
                # what a crashed run left: something for reclaim to do
                mkdir -p "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root"
                MICROVM_TEST_PAUSE_AT=reclaim-decided MICROVM_TEST_PAUSE_FIFO=$hold "$reclaim" $id >"$out" 2>&1 &
                rpid=$!
                HELD_PID=$rpid
                timeout 20 cat $hold.reached >/dev/null || fail "reclaim never reached its decision" || return
                systemctl start --no-block "$(unit_of $id)"
                wait_until 10 "microvm-stage in the unit's cgroup" stage_in_cgroup $id || return
                timeout 10 sh -c "echo go >$hold" || fail "reclaim did not wait at its hold" || return
                st=0
                wait $rpid || st=$?
                HELD_PID=
                wait_until 30 "the start to end" stage_done $id || return
                if [ $st = 0 ] && exec_succeeded $id ExecStartPre >/dev/null && [ "$(vprop $id ActiveState)" = active ] &&
                   grep -q "microvm@$id.service is starting" "$out"; then
                        assert_vm_running $id || return
                        ok=$((ok + 1))
                else
                        bad="$bad; round $round: $(vprop $id ActiveState), ExecStartPre $(exec_status $id ExecStartPre), reclaim exited $st: $(tr '\n' ' ' <"$out")"
                fi
                stop_vm $id || return
                systemctl reset-failed "$(unit_of $id)" 2>/dev/null || true
                assert_no_debris $id || return
        done
        note "$ok of $rounds starts begun while reclaim was held between its decision and its teardown came up, reclaim skipping the VM"
        rm -f "$out" $hold $hold.reached
        [ $ok = $rounds ] || fail "${bad#; }" || return
}

not_activating() {
        ! state_is "$1" activating
}

# issue 21.3: "systemctl stop" while microvm-stage works (held at the
# injection point stage-uid-allocated, SIGTERM pending): the unit ends
# inactive with Result=success, nothing left; the first start's uid is
# given back.
sc_stop_during_stage() {
        local id=stopstage hold=/run/e2e-hold round rounds=5 ok=0 st bad=""
        need_hooks "$(dirname "$(tool_path microvm-reclaim.service)")/microvm-stage"
        vm_config $id
        dropin $id "Environment=MICROVM_TEST_PAUSE_AT=stage-uid-allocated MICROVM_TEST_PAUSE_FIFO=$hold"
        systemctl daemon-reload
        use $id
        systemctl start microvm-reclaim.service || fail "microvm-reclaim.service failed" || return
        for round in $(seq $rounds); do
                hold_fifos $hold
                systemctl start --no-block "$(unit_of $id)"
                timeout 30 cat $hold.reached >/dev/null || fail "microvm-stage never reached its hold" || return
                systemctl stop --no-block "$(unit_of $id)"
                wait_until 10 "the stop to begin" not_activating $id || return
                # (a stage that SIGTERM kills at the hold never reads it)
                timeout 5 sh -c "echo go >$hold" 2>/dev/null || true
                wait_until 30 "the stop to end" stage_done $id || return
                st="$(vprop $id ActiveState)/$(vprop $id Result)"
                if [ "$st" = inactive/success ] && [ ! -e "$E2E_STATE_DIR/$id" ]; then
                        ok=$((ok + 1))
                else
                        bad="$bad; round $round: $st, ExecStartPre $(exec_status $id ExecStartPre), state dir: $(ls -A "$E2E_STATE_DIR/$id" 2>&1 | tr '\n' ' ')"
                        systemctl reset-failed "$(unit_of $id)" 2>/dev/null || true
                fi
                # (systemd 252 runs no ExecStopPost= after a control
                # process that a stop ended cleanly: stage tore down itself)
                assert_no_debris $id || return
        done
        note "$ok of $rounds stops during ExecStartPre ended inactive/success with the first uid given back (ExecStartPre $(exec_status $id ExecStartPre), ExecStopPost $(exec_status $id ExecStopPost))"
        rm -rf "/run/systemd/system/$(unit_of $id).d" $hold $hold.reached
        systemctl daemon-reload
        [ $ok = $rounds ] || fail "${bad#; }" || return
        wait_journal 5 "Stopped while staging $id" -u "$(unit_of $id)" || return
        # without the hold the VM starts normally
        start_vm $id || return
        assert_vm_running $id || return
        stop_vm $id || return
}

# issue 21.3: microvm-reclaim.service restarted by hand in a row.
sc_reclaim_restart() {
        local i n=12 ok=0
        for i in $(seq $n); do
                systemctl restart microvm-reclaim.service 2>/dev/null && ok=$((ok + 1))
        done
        note "$ok of $n restarts of microvm-reclaim.service in a row ran"
        systemctl reset-failed microvm-reclaim.service 2>/dev/null || true
        [ $ok = $n ] || fail "$((n - ok)) restarts refused: $(systemctl show -p Result --value microvm-reclaim.service)" || return
}

# kill_env UNIT [ASSIGNMENT]: the unit's processes get MICROVM_TEST_KILL_AT
# (a runtime drop-in), or none without ASSIGNMENT.
kill_env() {
        local d=/run/systemd/system/$1.d
        if [ -n "${2:-}" ]; then
                mkdir -p "$d"
                printf '[Service]\nEnvironment=MICROVM_TEST_KILL_AT=%s\n' "$2" >"$d/50-kill.conf"
        else
                rm -f "$d/50-kill.conf"
        fi
        systemctl daemon-reload
}

# kill_one N TOOL POINT: SIGKILL of TOOL at POINT in a fresh VM's life, then
# the next normal action; no leftover, and a VM that works afterwards.
kill_one() {
        local n=$1 tool=$2 point=$3 id u
        id=kp$n
        u=$(unit_of "$id")
        vm_config "$id"
        case $tool in
        microvm-stage | microvm-launch)
                kill_env "$u" "$tool:$point"
                timeout 60 systemctl start "$u" >/dev/null 2>&1
                ;;
        microvm-stop | microvm-cleanup)
                systemctl daemon-reload
                start_vm "$id" || return
                kill_env "$u" "$tool:$point"
                case $point in
                # The suspend path (issue 16) runs only when asked for.
                stop-suspend-*) microvmctl suspend "$id" >/dev/null 2>&1 ;;
                *) timeout 60 systemctl stop "$u" >/dev/null 2>&1 ;;
                esac
                ;;
        microvm-reclaim)
                # Leftovers for reclaim: a stop whose cleanup died at once.
                systemctl daemon-reload
                start_vm "$id" || return
                kill_env "$u" "microvm-cleanup:cleanup-tool-begin"
                timeout 60 systemctl stop "$u" >/dev/null 2>&1
                kill_env "$u"
                kill_env microvm-reclaim.service "$tool:$point"
                timeout 60 systemctl restart microvm-reclaim.service >/dev/null 2>&1
                kill_env microvm-reclaim.service
                timeout 60 systemctl restart microvm-reclaim.service ||
                        fail "$tool at $point: the next reclaim failed" || return
                leak_check || fail "$tool at $point: leftovers after the next reclaim" ||
                        return
                ;;
        esac
        kill_env "$u"
        systemctl reset-failed "$u" 2>/dev/null
        # The next normal action: a start over whatever the kill left.
        start_vm "$id" || fail "$tool at $point: the next start failed" || return
        assert_vm_running "$id" || return
        stop_vm "$id" || return
        leak_check || fail "$tool at $point: leftovers after the next start and stop" ||
                return
}

# SIGKILL at every injection point (tests/kill/steps.py lists them from
# the code; a step without one fails its check): kill there, then the next
# normal action, zero leftovers and a working VM after each.
sc_kill_points() {
        local n=0 tool point
        need_hooks "$(tool_path microvm-reclaim.service)"
        [ -s "$E2E_LIBDIR/kill-points" ] || fail "no list of injection points" || return
        while read -r tool point; do
                n=$((n + 1))
                kill_one $n "$tool" "$point" || return
        done <"$E2E_LIBDIR/kill-points"
        note "$n (tool, step) pairs: each killed there, then started again (or reclaimed), zero leftovers"
}

# Issue 20: whether a VM's unit runs, the tools run by hand ask systemd
# over the system bus; only without an answer do they look at the unit's
# cgroup (the tools' privileged suites test that fallback, the bus
# explicitly absent). Here both sources, against a real systemd: the bus
# answers and the tools say so ("per systemd"); a process in the cgroup of
# a unit systemd knows is stopped is judged by what systemd says, where the
# cgroup alone would call it running.
tools_dir() {
        systemctl cat microvm@.service 2>/dev/null | sed -n 's|^ExecStopPost=+\(.*\)/microvm-cleanup %i$|\1|p' | head -n 1
}

cgroup_empty() {
        grep -q '^populated 0' "$1/cgroup.events"
}

sc_running_per_systemd() {
        local dir out cg sleeper nobus=unix:path=/nonexistent/microvm-e2e-no-bus
        busctl --system status org.freedesktop.systemd1 >/dev/null 2>&1 ||
                { echo "no system bus in the container (the host has no dbus installed)"; return 77; }
        dir=$(tools_dir)
        [ -x "$dir/microvm-stage" ] || fail "no microvm-stage in '$dir' (from microvm@.service's ExecStopPost=)" || return
        vm_config perbus
        systemctl daemon-reload
        start_vm perbus || return
        assert_vm_running perbus || return

        # Running: stage and cleanup by hand refuse, naming their source.
        out=$("$dir/microvm-cleanup" perbus 2>&1) && fail "microvm-cleanup of a running VM succeeded: $out" || true
        [[ $out == *"microvm@perbus.service is running (per systemd)"* ]] ||
                fail "microvm-cleanup by hand: expected 'is running (per systemd)', got: $out" || return
        out=$("$dir/microvm-stage" perbus 2>&1) && fail "microvm-stage of a running VM succeeded: $out" || true
        [[ $out == *"microvm@perbus.service is running (per systemd)"* ]] ||
                fail "microvm-stage by hand: expected 'is running (per systemd)', got: $out" || return
        # The bus explicitly absent: the cgroup systemd made says the same.
        out=$(DBUS_SYSTEM_BUS_ADDRESS=$nobus "$dir/microvm-cleanup" perbus 2>&1) &&
                fail "microvm-cleanup without a bus succeeded: $out" || true
        [[ $out == *"microvm@perbus.service is running (per cgroup)"* ]] ||
                fail "microvm-cleanup without a bus: expected 'is running (per cgroup)', got: $out" || return
        assert_vm_running perbus || return
        note "a running VM: stage/cleanup by hand refused, per systemd (bus) and per cgroup (no bus)"
        stop_vm perbus || return
        assert_no_debris perbus || return

        # Stopped, but a process sits in its unit's cgroup (made by hand):
        # systemd says inactive, the cgroup alone says running.
        cg=$E2E_SLICE_CG/microvm@perbus.service
        # (The sleeper starts as a unit of the container's systemd: a
        # process of ours lives in a cgroup outside the container's.)
        mkdir "$cg" || fail "mkdir $cg" || return
        systemd-run --quiet --collect --unit=perbus-sleeper sleep infinity || fail "systemd-run sleep" || return
        sleeper=$(systemctl show -p MainPID --value perbus-sleeper.service)
        [ "${sleeper:-0}" -gt 0 ] || fail "no MainPID for perbus-sleeper.service" || return
        echo "$sleeper" >"$cg/cgroup.procs" || fail "cannot move process $sleeper into $cg" || return
        # With the bus systemd says "not running", and then the process in
        # the unit's own cgroup is what a start that just began looks like
        # (issue 21): reclaim leaves it alone rather than kill it.
        out=$("$dir/microvm-reclaim" --dry-run 2>&1)
        [[ $out == *"perbus: microvm@perbus.service is starting (a process in its cgroup); leaving it alone."* ]] ||
                fail "reclaim --dry-run with the bus: expected perbus left alone as starting, got: $out" || return
        out=$(DBUS_SYSTEM_BUS_ADDRESS=$nobus "$dir/microvm-reclaim" --dry-run 2>&1)
        [[ $out != *"perbus:"* ]] ||
                fail "reclaim --dry-run without a bus: perbus should count as running (populated cgroup), got: $out" || return
        kill -KILL "$sleeper"
        wait_until 10 "the sleeper to leave $cg" cgroup_empty "$cg" || return
        rmdir "$cg" || fail "rmdir $cg" || return
        systemctl reset-failed perbus-sleeper.service 2>/dev/null || true
        note "a stopped unit with a process in its cgroup: not running per systemd (reclaim: a start may have begun, left alone), running per cgroup"
}

# Nothing of any VM left in the container after all scenarios.
sc_leftovers() {
        local left
        left=$(systemctl list-units --no-legend --plain --state=active,activating,deactivating 'microvm@*' | awk '{print $1}')
        [ -z "$left" ] || fail "units still up: $(echo $left)" || return
        left=$(ls -A "$E2E_CHROOT_BASE/$E2E_EXEC_NAME" 2>/dev/null)
        [ -z "$left" ] || fail "jails left in $E2E_CHROOT_BASE/$E2E_EXEC_NAME: $(echo $left)" || return
        # .lock: microvm-stage's and microvm-reclaim's lock file, not a VM's;
        # .list-cache: microvmctl list's cache of config summaries
        left=$(find "$E2E_RUN_DIR" -mindepth 1 -maxdepth 1 ! -name vms ! -name .lock ! -name .list-cache 2>/dev/null)
        [ -z "$left" ] || fail "left in $E2E_RUN_DIR: $(echo $left)" || return
        left=$(find "$E2E_SLICE_CG" -mindepth 1 -type d 2>/dev/null)
        [ -z "$left" ] || fail "cgroups left below microvm.slice: $(echo $left)" || return
        left=$(awk -v lo=$E2E_UID_MIN -v hi=$E2E_UID_MAX '$1 == "Uid:" && $2 >= lo && $2 <= hi { print FILENAME }' /proc/[0-9]*/status 2>/dev/null)
        [ -z "$left" ] || fail "processes with VM uids: $(echo $left)" || return
}

# microvmctl's scenarios (sc_ctl_*)
. "$(dirname "$(readlink -f "$0")")/scenarios-microvmctl.sh"
. "$(dirname "$(readlink -f "$0")")/scenarios-races.sh"
# machined registration and logs --until-stop (sc_machined*, sc_ctl_logs_until_stop)
. "$(dirname "$(readlink -f "$0")")/scenarios-ctl.sh"
. "$(dirname "$(readlink -f "$0")")/scenarios-metrics.sh"
. "$(dirname "$(readlink -f "$0")")/scenarios-suspend.sh"

# ---------------------------------------------------------------- main

e2e_setup || { echo "Bail out! cannot write the host config and images"; exit 1; }

scenario "generator: drop-in for every VM, only autostart VMs in microvms.target" sc_generator
scenario "generator: 300 VMs split over worker processes under the manager, a bad one skipped" sc_generator_many
scenario "start: active, MainPID = firecracker as the VM uid in its leaf cgroup, console in the journal" sc_start
scenario "resource limits on the unit cgroup" sc_resources
scenario "stop: graceful (Ctrl-Alt-Del), zero debris" sc_stop
scenario "guest ignores Ctrl-Alt-Del: stop within stop_timeout, zero debris" sc_ignore_cad
scenario "firecracker crashes: restart=no fails, restart=on-failure restarts, cleanup in between" sc_crash
scenario "SIGKILL of microvm-stage mid-way: the next start succeeds" sc_stage_kill
scenario "cmdline with \"--\": our and firecracker's parameters before it, console works" sc_cmdline_init_args
scenario "jailer double: --cgroup values enable the controller in every ancestor, root and microvm.slice included" sc_jailer_ancestor_writes
scenario "numa_node without cgroup v2 cpuset: refused by microvm-stage, the jailer never runs" sc_numa_refused
scenario "numa_node: systemd enables cpuset down to the unit (AllowedMemoryNodes=), the leaf gets cpuset.mems" sc_numa_cpuset
scenario "unknown or invalid id: start fails with the validator's message" sc_unknown_id
scenario "config edited without daemon-reload: starts with the generated config, says so" sc_edited
scenario "restart after an edit, a broken or a removed config without daemon-reload: the VM comes back" sc_restart_edited
scenario "daemon-reload with a broken host config, broken or removed VM config: running VMs keep their limits" sc_reload_keeps
scenario "VMM dies during start: systemctl start fails, status shows exit status and console" sc_start_dies
scenario "restart policy: config errors not retried, others every 5s, the error in StatusText" sc_restart_policy
scenario "bridges: a VM on a bridge starts without udev, a missing bridge is named at once" sc_bridge
scenario "guest reboot: back with restart=always, down with on-failure" sc_guest_reboot
scenario "autostart VMs start and stop with microvms.target" sc_autostart
scenario "64-character id end to end" sc_long_id
scenario "50 VMs started concurrently, all active; stopped, zero debris" sc_fifty
scenario "soak: 100 VMs x 10 concurrent start/stop cycles, no failure, no leftovers, flat memory" sc_soak
scenario "hostile console output: a 100 MB flood and a 10 MB line; units, journal and stop unharmed" sc_hostile_output
scenario "reclaim held between its decision and its teardown: a start begun then comes up" sc_reclaim_race
scenario "stop during ExecStartPre: inactive, not failed; first uid given back" sc_stop_during_stage
scenario "microvm-reclaim.service restarted 12 times in a row" sc_reclaim_restart
scenario "SIGKILL at every (tool, step) injection point, then the next action: no leftovers, a working VM" sc_kill_points
scenario "microvmctl start/restart/stop, list and status (--json against the schema), logs" sc_ctl_lifecycle
scenario "microvmctl logs -f: a new console line, Ctrl-C ends it with 0" sc_ctl_logs_follow
scenario "microvmctl start of a VM that cannot start: the tool's error and the unit's result; validate names it" sc_ctl_failed
scenario "microvmctl list: orphaned and changed VMs, before and after daemon-reload" sc_ctl_orphan_changed
scenario "microvmctl sync: stops an orphan, starts a down autostart VM, restarts a changed one" sc_ctl_sync
scenario "microvmctl gc after a simulated crash removes the debris, leaves a running VM alone" sc_ctl_gc
scenario "microvmctl console: round trip through the FIFO and the journal, Ctrl-] detaches, only root and console_group" sc_ctl_console
scenario "microvmctl usage errors exit 2, --help on every verb" sc_ctl_usage
scenario "tools by hand: running per systemd over the bus, per cgroup without one" sc_running_per_systemd
scenario "a first start that fails before the jailer ran gives its uid back in microvm-cleanup" sc_first_run_uid
scenario "two starts of one VM at once: one job, a microvm-stage by hand beside it refused" sc_two_starts
scenario "a start racing a stop, during launch and during ready: nothing left, the first uid given back only if nothing ran" sc_start_racing_stop
scenario "reclaim held between decisions during 20 concurrent starts: all up, distinct uids" sc_reclaim_concurrent_starts
scenario "machined: running VMs in machinectl (class vm, leader, unit), terminate stops the unit, re-registered after a crash restart" sc_machined
scenario "machined absent (masked, or no bus): a start works, one debug line" sc_machined_absent
scenario "machined: a stale registration of the unit is replaced, another program's machine of that name left alone" sc_machined_conflicts
scenario "microvmctl logs --until-stop: follows, ends with 0 when the VM stops" sc_ctl_logs_until_stop
scenario "metrics: a real Prometheus scrapes microvm-metrics.socket, PromQL sees 3 VMs, counters move with traffic; promtool; no process left" sc_metrics_prometheus
scenario "metrics: a hung VMM does not stall the scrape" sc_metrics_hung_vmm
scenario "metrics: firecracker_log_level = warning keeps API requests (FlushMetrics, start, stop) out of the VM's journal" sc_metrics_log_level
scenario "metrics: the scrape's own sandbox: root cannot write /etc, /proc/sys or cgroups in it, the run dir and jails it can" sc_metrics_sandbox
scenario "metrics: cgroup figures for the controllers the unit has" sc_metrics_cgroup
scenario "metrics: microvmctl metrics, text and --json" sc_metrics_ctl
scenario "suspend VM, plain systemctl stop: graceful, no snapshot" sc_suspend_plain_stop
scenario "microvmctl suspend, resume, discard-snapshot; list and status show the snapshot" sc_ctl_suspend_resume
scenario "suspend slower than its time: gives up, graceful stop, no snapshot" sc_suspend_timeout
scenario "ephemeral VM suspended: its disks kept for the snapshot, fresh after an invalid one" sc_suspend_ephemeral
scenario "microvmctl list's config cache: used while files are unchanged, never for an edited one (same size, same mtime)" sc_ctl_list_cache
scenario "no VM leftovers in the container" sc_leftovers
