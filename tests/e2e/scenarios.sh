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
                        fi
                        exit $rc
                }
        ) >"$out" 2>&1 || rc=$?
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
        rm -f "$out"
        T=$((T + 1))
}

# ---------------------------------------------------------------- helpers

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
        [ $dt -le 5000 ] || fail "stop took $dt ms, beyond the 3s stop timeout (+2s slack)" || return
        assert_no_debris deaf || return
}

sc_crash() {
        local pid pid2
        # restart = no: the unit fails, the cleanup runs
        vm_config crash-no
        # restart = on-failure: restarted; RestartSec=2s leaves time to look
        # at the state between the two runs
        vm_config crash-re restart=on-failure
        dropin crash-re RestartSec=2s
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
        wait_state crash-re active running 10 || return
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

sc_unknown_id() {
        use nosuchvm Bad_Id
        ! timeout 60 systemctl start microvm@nosuchvm.service 2>/dev/null || fail "microvm@nosuchvm started" || return
        # No config, no drop-in: the template's Restart=on-failure retries
        # until the start limit.
        wait_state nosuchvm failed "" 20 || return
        note "microvm@nosuchvm: failed after $(vprop nosuchvm NRestarts) automatic restarts (Result=$(vprop nosuchvm Result))"
        wait_journal 5 'no such VM: no nosuchvm.conf in /etc/microvm/vms' -u microvm@nosuchvm.service || return
        note "journal: $(journalctl -q -o cat -u microvm@nosuchvm.service | grep -m 1 'no such VM')"
        assert_no_debris nosuchvm || return
        ! timeout 60 systemctl start microvm@Bad_Id.service 2>/dev/null || fail "microvm@Bad_Id started" || return
        wait_journal 5 'is not a valid VM id' -u microvm@Bad_Id.service || return
        wait_state Bad_Id failed "" 20 || return
        note "journal: $(journalctl -q -o cat -u microvm@Bad_Id.service | grep -m 1 'is not a valid VM id')"
        systemctl reset-failed microvm@nosuchvm.service microvm@Bad_Id.service
}

sc_edited() {
        use edited
        vm_config edited
        systemctl daemon-reload
        vm_config edited memory=256M
        ! timeout 60 systemctl start microvm@edited.service 2>/dev/null ||
                fail "started with a config edited after daemon-reload" || return
        [ "$(vprop edited ActiveState)" = failed ] || fail "ActiveState=$(vprop edited ActiveState)" || return
        wait_journal 5 'daemon-reload' -u microvm@edited.service || return
        note "journal: $(journalctl -q -o cat -u microvm@edited.service | grep -m 1 'daemon-reload')"
        assert_no_debris edited || return
        systemctl daemon-reload
        systemctl reset-failed microvm@edited.service
        start_vm edited || return
        assert_vm_running edited || return
        [ "$(vprop edited MemoryMax)" = $(( (256 << 20) + E2E_MEMORY_OVERHEAD )) ] ||
                fail "MemoryMax=$(vprop edited MemoryMax) after the reload" || return
        stop_vm edited || return
        assert_no_debris edited || return
}

sc_guest_reboot() {
        local pid
        vm_config rb-always restart=always knobs=fcdouble.reboot_after_ms=500
        vm_config rb-onfail restart=on-failure knobs=fcdouble.reboot_after_ms=300
        systemctl daemon-reload
        start_vm rb-always rb-onfail || return
        pid=$(vprop rb-always MainPID)
        wait_until 15 "rb-always to come back after its reboot" rebooted rb-always "$pid" || return
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
        out=$("$dir/microvm-reclaim" --dry-run 2>&1)
        [[ $out == *"perbus: would remove its cgroup (unit not running, per systemd)"* ]] ||
                fail "reclaim --dry-run with the bus: expected perbus 'unit not running, per systemd', got: $out" || return
        out=$(DBUS_SYSTEM_BUS_ADDRESS=$nobus "$dir/microvm-reclaim" --dry-run 2>&1)
        [[ $out != *"perbus:"* ]] ||
                fail "reclaim --dry-run without a bus: perbus should count as running (populated cgroup), got: $out" || return
        kill -KILL "$sleeper"
        wait_until 10 "the sleeper to leave $cg" cgroup_empty "$cg" || return
        rmdir "$cg" || fail "rmdir $cg" || return
        systemctl reset-failed perbus-sleeper.service 2>/dev/null || true
        note "a stopped unit with a process in its cgroup: not running per systemd, running per cgroup"
}

# Nothing of any VM left in the container after all scenarios.
sc_leftovers() {
        local left
        left=$(systemctl list-units --no-legend --plain --state=active,activating,deactivating 'microvm@*' | awk '{print $1}')
        [ -z "$left" ] || fail "units still up: $(echo $left)" || return
        left=$(ls -A "$E2E_CHROOT_BASE/$E2E_EXEC_NAME" 2>/dev/null)
        [ -z "$left" ] || fail "jails left in $E2E_CHROOT_BASE/$E2E_EXEC_NAME: $(echo $left)" || return
        # .lock: microvm-stage's and microvm-reclaim's lock file, not a VM's
        left=$(find "$E2E_RUN_DIR" -mindepth 1 -maxdepth 1 ! -name vms ! -name .lock 2>/dev/null)
        [ -z "$left" ] || fail "left in $E2E_RUN_DIR: $(echo $left)" || return
        left=$(find "$E2E_SLICE_CG" -mindepth 1 -type d 2>/dev/null)
        [ -z "$left" ] || fail "cgroups left below microvm.slice: $(echo $left)" || return
        left=$(awk -v lo=$E2E_UID_MIN -v hi=$E2E_UID_MAX '$1 == "Uid:" && $2 >= lo && $2 <= hi { print FILENAME }' /proc/[0-9]*/status 2>/dev/null)
        [ -z "$left" ] || fail "processes with VM uids: $(echo $left)" || return
}

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
scenario "unknown or invalid id: start fails with the validator's message" sc_unknown_id
scenario "config edited without daemon-reload: start refused with the hint" sc_edited
scenario "guest reboot: back with restart=always, down with on-failure" sc_guest_reboot
scenario "autostart VMs start and stop with microvms.target" sc_autostart
scenario "64-character id end to end" sc_long_id
scenario "50 VMs started concurrently, all active; stopped, zero debris" sc_fifty
scenario "tools by hand: running per systemd over the bus, per cgroup without one" sc_running_per_systemd
scenario "no VM leftovers in the container" sc_leftovers
