# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/scenarios-ctl.sh — VMs in systemd-machined (registered by
# microvm-ready, unregistered by microvm-cleanup) and "microvmctl logs
# --until-stop", against the container's real systemd, dbus and machined
# (sourced by scenarios.sh, which runs them).

machined_usable() {
        busctl --system status org.freedesktop.DBus >/dev/null 2>&1 || {
                echo "no system bus in the container (the host has no dbus installed)"; return 1; }
        command -v machinectl >/dev/null && [ -x /lib/systemd/systemd-machined ] || {
                echo "no systemd-machined/machinectl (apt-get install systemd-container)"; return 1; }
}

# machinectl show ID -p PROPERTY --value, or nothing.
mprop() {
        machinectl show "$1" -p "$2" --value 2>/dev/null
}

machine_gone() {
        ! machinectl show "$1" >/dev/null 2>&1
}

# The registration as machinectl and machined's own record show it.
assert_registered() { # assert_registered ID
        local id=$1 pid v
        pid=$(vprop "$id" MainPID)
        machinectl list --no-legend --no-pager | grep -qE "^$id +vm +microvm( |$)" ||
                fail "machinectl list has no line \"$id vm microvm\": $(machinectl list --no-pager)" || return
        v=$(mprop "$id" Class); [ "$v" = vm ] || fail "machine $id: Class=$v, want vm" || return
        v=$(mprop "$id" Service); [ "$v" = microvm ] || fail "machine $id: Service=$v, want microvm" || return
        v=$(mprop "$id" Unit); [ "$v" = "microvm@$id.service" ] ||
                fail "machine $id: Unit=$v, want microvm@$id.service" || return
        v=$(mprop "$id" Leader); [ "$v" = "$pid" ] || fail "machine $id: Leader=$v, want MainPID $pid" || return
        v=$(mprop "$id" RootDirectory); [ "$v" = "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root" ] ||
                fail "machine $id: RootDirectory=$v" || return
        v=$(mprop "$id" State); [ "$v" = running ] || fail "machine $id: State=$v, want running" || return
        machinectl status --no-pager "$id" | grep -q "Unit: microvm@$id.service" ||
                fail "machinectl status $id: $(machinectl status --no-pager "$id")" || return
}

# Registered while running (class vm, leader firecracker, unit, jail root,
# the tap's ifindex); the leak checker sees the real registration; gone
# after a stop; "machinectl terminate" stops the unit through its ExecStop
# and ExecStopPost; a restart after a crash registers the new leader.
sc_machined() {
        local out ifindex pid
        machined_usable || return 77
        ip link add e2ebr1 type bridge 2>/dev/null; ip link set e2ebr1 up
        vm_config mach1
        printf '\n[net.eth0]\nbridge = e2ebr1\n' >>"$E2E_VM_DIR/mach1.conf"
        vm_config mach2 restart=on-failure
        systemctl daemon-reload
        start_vm mach1 mach2 || return
        assert_registered mach1 || return
        assert_registered mach2 || return
        ifindex=$(cat /sys/class/net/mach1-eth0/ifindex)
        # (machinectl show cannot print an "ai" property)
        out=$(busctl get-property org.freedesktop.machine1 /org/freedesktop/machine1/machine/mach1 \
                org.freedesktop.machine1.Machine NetworkInterfaces)
        [ "$out" = "ai 1 $ifindex" ] ||
                fail "machine mach1: NetworkInterfaces=$out, want the tap's ifindex $ifindex (ai 1 $ifindex)" || return
        note "machinectl list/show/status: class vm, service microvm, leader = MainPID, unit, jail root, tap ifindex"

        # tests/leak/leak-check reads machined's real records: a running
        # VM not named as running is reported.
        out=$("$E2E_LIBDIR/leak-check" --only=machine --running=mach2 2>&1) &&
                fail "leak-check did not report mach1's registration: $out" || true
        grep -q '^machine: mach1 (registered for microvm@mach1, not running)' <<<"$out" ||
                fail "leak-check: expected mach1's registration, got: $out" || return
        "$E2E_LIBDIR/leak-check" --only=machine --running=mach1 --running=mach2 >/dev/null 2>&1 ||
                fail "leak-check reports running VMs' registrations" || return

        # terminate = the unit's stop: graceful, cleanup, nothing left.
        machinectl terminate mach1 || fail "machinectl terminate mach1 failed" || return
        wait_state mach1 inactive dead 20 || return
        journal_has 'sent Ctrl-Alt-Del' -u microvm@mach1.service || fail "terminate did not go through microvm-stop" || return
        # (a failing ExecStopPost= would make it exit-code)
        [ "$(vprop mach1 Result)" = success ] ||
                fail "after terminate: Result=$(vprop mach1 Result), want success (microvm-cleanup failed?)" || return
        assert_no_debris mach1 || return
        wait_until 5 "machine mach1 to go" machine_gone mach1 || return
        [ ! -e /sys/class/net/mach1-eth0 ] || fail "tap mach1-eth0 left after terminate" || return
        note "machinectl terminate: unit stopped (Ctrl-Alt-Del, cleanup), machine and debris gone"

        # A crash with restart=on-failure: cleanup unregisters, the next
        # start registers the new firecracker (no stale leader in between
        # that would block the new registration).
        pid=$(vprop mach2 MainPID)
        kill -KILL "$pid"
        wait_until 20 "mach2 to restart" eval '[ "$(vprop mach2 NRestarts)" = 1 ] && state_is mach2 active running' ||
                return
        wait_until 5 "machine mach2 to have the new leader" eval \
                '[ "$(mprop mach2 Leader)" = "$(vprop mach2 MainPID)" ]' || return
        assert_registered mach2 || return
        journal_has 'not registered with systemd-machined' -u microvm@mach2.service &&
                fail "mach2's restart could not register: $(journalctl -u microvm@mach2 --no-pager | grep machined)" ||
                true
        stop_vm mach2 || return
        wait_until 5 "machine mach2 to go" machine_gone mach2 || return
        assert_no_debris mach2 || return
        ip link del e2ebr1 2>/dev/null
        note "crash + restart=on-failure: re-registered with the new leader; gone after stop"

        # The longest id (64 bytes, the most hyphens): still its own
        # machine name (machined: host names of at most 64 bytes).
        local long=m-0123456789-0123456789-0123456789-0123456789-0123456789----end1
        [ ${#long} = 64 ] || fail "test bug: ${#long}-byte id" || return
        vm_config "$long"
        systemctl daemon-reload
        start_vm "$long" || return
        assert_registered "$long" || return
        stop_vm "$long" || return
        wait_until 5 "machine $long to go" machine_gone "$long" || return
        rm -f "$E2E_VM_DIR/$long.conf"
        note "a 64-byte id is its machine name"
}

# Without machined (masked: the bus cannot activate it) and without any
# system bus, a start works and says why once, at debug level.
sc_machined_absent() {
        local d=/run/systemd/system/microvm@mabs.service.d rc=0
        machined_usable || return 77
        vm_config mabs
        mkdir -p "$d"
        printf '[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=debug\n' >"$d/debug.conf"
        systemctl stop systemd-machined.service
        systemctl mask --runtime systemd-machined.service >/dev/null
        systemctl daemon-reload
        start_vm mabs || rc=1
        systemctl unmask --runtime systemd-machined.service >/dev/null
        [ $rc = 0 ] || return 1
        assert_vm_running mabs || return
        machine_gone mabs || fail "mabs registered although machined is masked" || return
        [ "$(journalctl -u microvm@mabs.service --no-pager -o cat | grep -c 'systemd-machined')" = 1 ] ||
                fail "want one line about machined: $(journalctl -u microvm@mabs.service --no-pager | grep machined)" ||
                return
        journal_has 'not registered with systemd-machined: machined is not available' -u microvm@mabs.service ||
                fail "no debug line saying machined is not available" || return
        stop_vm mabs || return
        assert_no_debris mabs || return
        note "machined masked: start and stop work, one debug line"

        printf '[Service]\nEnvironment=SYSTEMD_LOG_LEVEL=debug DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent/bus\n' \
                >"$d/debug.conf"
        systemctl daemon-reload
        start_vm mabs || return
        assert_vm_running mabs || return
        machine_gone mabs || fail "mabs registered without a bus" || return
        journal_has 'not registered with systemd-machined: no system bus' -u microvm@mabs.service ||
                fail "no debug line saying there is no bus" || return
        stop_vm mabs || return
        assert_no_debris mabs || return
        rm -rf "$d"
        systemctl daemon-reload
        note "no system bus: start and stop work, one debug line"
}

# logs --until-stop: follows (a new console line shows), ends with 0 once
# the VM stopped; of a VM that does not run it ends at once.
sc_ctl_logs_until_stop() {
        local out pid rc=0 line fifo
        vm_config ctlu1
        systemctl daemon-reload
        start_vm ctlu1 || return
        out=$(mktemp)
        microvmctl logs --until-stop -n 1 ctlu1 >"$out" 2>&1 &
        pid=$!
        wait_until 10 "logs --until-stop to print the last line" test -s "$out" || { kill "$pid"; return 1; }
        line="until-stop-$RANDOM$RANDOM"
        fifo=$E2E_RUN_DIR/ctlu1/console.in
        printf '%s\n' "$line" >"$fifo" || fail "cannot write to $fifo" || return
        wait_until 10 "logs --until-stop to show $line" grep -qx "$line" "$out" || { cat "$out"; kill "$pid"; return 1; }
        kill -0 "$pid" 2>/dev/null || fail "logs --until-stop ended while the VM runs: $(cat "$out")" || return
        stop_vm ctlu1 || return
        wait_until 10 "logs --until-stop to end after the stop" eval '! kill -0 "$pid" 2>/dev/null' ||
                { kill "$pid"; return 1; }
        wait "$pid" || rc=$?
        [ $rc = 0 ] || fail "logs --until-stop ended with exit status $rc: $(cat "$out")" || return
        grep -q 'Firecracker exiting successfully' "$out" ||
                fail "logs --until-stop did not show the VMM's last line: $(tail -n 5 "$out")" || return
        rm -f "$out"
        # Not running: the backlog, then exit 0 at once.
        out=$(timeout 10 microvmctl logs --until-stop -n 2 ctlu1) || fail "logs --until-stop of a stopped VM: exit $?" ||
                return
        [ "$(wc -l <<<"$out")" = 2 ] || fail "logs --until-stop -n 2 of a stopped VM printed: $out" || return
        note "logs --until-stop: saw a typed line, ended with 0 after the stop; a stopped VM's: at once"
}

CTL_CACHE=$E2E_RUN_DIR/.list-cache

# list_caches FILE: runs microvmctl list; true once the cache records FILE.
list_caches() {
        microvmctl list >/dev/null && grep -q " $1\$" "$CTL_CACHE" 2>/dev/null
}

# rewrite_in_place FILE FROM TO: the same inode, the same size, the old
# mtime; only the ctime tells.
rewrite_in_place() {
        local f=$1 ref
        ref=$(mktemp -p /run)
        touch -r "$f" "$ref"
        python3 -c 'import sys
p, a, b = sys.argv[1:]
d = open(p, "rb").read()
assert len(a) == len(b) and a.encode() in d
with open(p, "r+b") as f: f.write(d.replace(a.encode(), b.encode()))' "$f" "$2" "$3" || return
        touch -m -r "$ref" "$f"
        rm -f "$ref"
}

# microvmctl list's cache (tools/microvmctl-cache.c): a list with every
# file unchanged reads the cache and does not rewrite it; a file edited in
# place with the same size and mtime is parsed again (vcpus, config
# changed), and not recorded while its change is recent.
sc_ctl_list_cache() {
        local f=$E2E_VM_DIR/ctlc1.conf ino t0 out
        vm_config ctlc1 vcpus=1
        vm_config ctlc2 vcpus=1
        systemctl daemon-reload
        start_vm ctlc1 || return
        # Files are recorded once their last change is 3 s old.
        wait_until 15 "the list cache to record $f" list_caches "$f" || return
        wait_until 15 "the list cache to record ctlc2" list_caches "$E2E_VM_DIR/ctlc2.conf" || return
        ino=$(stat -c %i "$CTL_CACHE")
        ctl_json list list || return
        [ "$(stat -c %i "$CTL_CACHE")" = "$ino" ] || fail "a list of unchanged files rewrote the cache" || return
        expect_field ctlc1 vcpus 1 || return
        expect_field ctlc1 config_changed false || return
        expect_field ctlc2 valid true || return

        t0=$(now_ms)
        rewrite_in_place "$f" "vcpus = 1" "vcpus = 2" || fail "cannot edit $f" || return
        ctl_json list list || return
        expect_field ctlc1 vcpus 2 || return
        expect_field ctlc1 config_changed true || return
        if [ $(( $(now_ms) - t0 )) -lt 2000 ]; then
                ! grep -q " $f\$" "$CTL_CACHE" || fail "a file changed just now was recorded in the cache" || return
        fi
        # Back to the bytes the VM started from: not changed (digest).
        rewrite_in_place "$f" "vcpus = 2" "vcpus = 1" || return
        ctl_json list list || return
        expect_field ctlc1 config_changed false || return
        expect_field ctlc1 vcpus 1 || return
        # An invalid edit of the other one, same size: invalid at once.
        rewrite_in_place "$E2E_VM_DIR/ctlc2.conf" "vcpus = 1" "vcpus = 0" || return
        ctl_json list list || return
        expect_field ctlc2 valid false || return
        out=$(microvmctl list) || fail "microvmctl list failed" || return
        stop_vm ctlc1 || return
        rm -f "$E2E_VM_DIR/ctlc1.conf" "$E2E_VM_DIR/ctlc2.conf"
        systemctl daemon-reload
        note "list cache: reused while unchanged (not rewritten); in-place same-size same-mtime edits seen at once"
}

# A registration in the way: one of the same unit that a killed cleanup
# left (the next start replaces it), and another program's machine of the
# VM's name (left alone; the VM runs unregistered, with a notice).
sc_machined_conflicts() {
        local pid sleeper out
        machined_usable || return 77
        vm_config mstale restart=on-failure
        vm_config mother
        systemctl daemon-reload
        start_vm mstale || return
        assert_registered mstale || return
        # As if microvm-cleanup had been killed before it unregistered.
        rm -f "$E2E_RUN_DIR/mstale/machine"
        pid=$(vprop mstale MainPID)
        kill -KILL "$pid"
        wait_until 20 "mstale to restart" eval '[ "$(vprop mstale NRestarts)" = 1 ] && state_is mstale active running' ||
                return
        assert_registered mstale || return
        journal_has 'not registered with systemd-machined' -u microvm@mstale.service &&
                fail "the stale registration was not replaced: $(journalctl -u microvm@mstale.service --no-pager | grep machined)" ||
                true
        stop_vm mstale || return
        wait_until 5 "machine mstale to go" machine_gone mstale || return
        note "a stale registration of the same unit (cleanup killed) is replaced by the next start"

        systemd-run --quiet --collect --unit=mother-squatter sleep infinity || fail "systemd-run sleep" || return
        sleeper=$(systemctl show -p MainPID --value mother-squatter.service)
        busctl call org.freedesktop.machine1 /org/freedesktop/machine1 org.freedesktop.machine1.Manager \
                RegisterMachine sayssus mother 0 "" container "$sleeper" "" >/dev/null ||
                fail "cannot register a machine named mother for the sleeper" || return
        start_vm mother || { systemctl stop mother-squatter.service; return 1; }
        assert_vm_running mother || return
        [ "$(mprop mother Unit)" = mother-squatter.service ] ||
                fail "the other program's machine mother was replaced: Unit=$(mprop mother Unit)" || return
        wait_journal 10 'VM mother is not registered with systemd-machined: a machine named mother is registered already, for mother-squatter.service' \
                -u microvm@mother.service >/dev/null || return
        stop_vm mother || return
        [ "$(mprop mother Unit)" = mother-squatter.service ] ||
                fail "the VM's stop unregistered the other program's machine" || return
        systemctl stop mother-squatter.service
        wait_until 5 "machine mother to go" machine_gone mother || return
        note "another program's machine of the VM's name: left alone, the VM runs unregistered, with a notice"
}
