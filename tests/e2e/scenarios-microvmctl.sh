# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/scenarios-microvmctl.sh — microvmctl against the container's
# real systemd and journal (sourced by scenarios.sh, which runs them):
# running, stopped, never-loaded, failed and orphaned VMs; every --json
# output checked against tests/microvmctl/schema.json.

CTL_SCHEMA=$E2E_LIBDIR/schema.json
CTL_CHECK=$E2E_LIBDIR/check-json

# ctl_json KIND ARGS...: runs microvmctl ARGS (with --json), checks the
# output against the schema, leaves it in $CTL_OUT.
ctl_json() {
        local kind=$1 errs
        shift
        CTL_OUT=$(microvmctl --json "$@") || fail "microvmctl --json $* failed (exit $?)" || return
        errs=$(printf '%s' "$CTL_OUT" | "$CTL_CHECK" "$CTL_SCHEMA" "$kind") ||
                fail "microvmctl --json $*: output does not match the schema: $errs
$CTL_OUT" || return
}

# ctl_field ID KEY: KEY of ID's object in $CTL_OUT (JSON-encoded).
ctl_field() {
        printf '%s' "$CTL_OUT" | python3 -c '
import json, sys
for o in json.load(sys.stdin):
    if o["id"] == sys.argv[1]:
        print(json.dumps(o[sys.argv[2]]))
        break
else:
    print("absent")' "$1" "$2"
}

expect_field() { # expect_field ID KEY VALUE (JSON-encoded)
        local v
        v=$(ctl_field "$1" "$2")
        [ "$v" = "$3" ] || fail "microvmctl: $1.$2 is $v, want $3" || return
}

# start/stop/restart through the manager, waiting for the job; list and
# status of a running, a stopped and a never-loaded VM; logs.
sc_ctl_lifecycle() {
        local out pid uid
        vm_config ctla description="ctl test a" vcpus=2
        vm_config ctlb autostart=yes
        systemctl daemon-reload || fail "daemon-reload failed" || return
        use ctla
        microvmctl start ctla || fail "microvmctl start ctla: exit $?" || return
        state_is ctla active running || fail "after microvmctl start: $(vprop ctla ActiveState)" || return
        assert_vm_running ctla || return
        assert_console ctla || return
        pid=$(vprop ctla MainPID)
        uid=$(vm_uid ctla)

        ctl_json list list || return
        expect_field ctla active_state '"active"' || return
        expect_field ctla sub_state '"running"' || return
        expect_field ctla main_pid "$pid" || return
        expect_field ctla uid "$uid" || return
        expect_field ctla vcpus 2 || return
        expect_field ctla memory_bytes $((128 << 20)) || return
        expect_field ctla config_changed false || return
        expect_field ctla orphan false || return
        expect_field ctlb active_state '"inactive"' || return
        expect_field ctlb autostart true || return
        expect_field ctlb main_pid null || return
        out=$(microvmctl list) || fail "microvmctl list failed" || return
        grep -qE "^ctla +active/running +[0-9-]+ [0-9:]+ UTC +2 +128M +$uid +$pid +no +no +no$" <<<"$out" ||
                fail "microvmctl list has no right line for ctla:
$out" || return
        grep -qE "^ctlb +inactive/dead +- +1 +128M +- +- +yes +no +no$" <<<"$out" ||
                fail "microvmctl list has no right line for ctlb (never started):
$out" || return

        ctl_json status status ctla || return
        expect_field ctla jail_path "\"$E2E_CHROOT_BASE/$E2E_EXEC_NAME/ctla\"" || return
        expect_field ctla config_path "\"$E2E_VM_DIR/ctla.conf\"" || return
        [ "$(ctl_field ctla console)" != "[]" ] || fail "status --json: no console lines" || return
        ctl_field ctla console | grep -q 'ctla login:' || fail "status: the console lines lack the login prompt: $(ctl_field ctla console)" || return
        out=$(microvmctl status ctla) || fail "microvmctl status ctla failed" || return
        grep -q "Config: $E2E_VM_DIR/ctla.conf" <<<"$out" && grep -q "Main PID: $pid" <<<"$out" &&
                grep -q "Drives: root: file $E2E_IMAGES/rootfs.ext4 (root)" <<<"$out" && grep -q 'ctla login:' <<<"$out" ||
                fail "microvmctl status ctla lacks the config, pid, drive or console:
$out" || return

        out=$(microvmctl logs -n 3 ctla) || fail "microvmctl logs failed" || return
        [ "$(grep -c . <<<"$out")" = 3 ] || fail "logs -n 3 printed: $out" || return
        grep -q 'ctla login:' <<<"$out" || fail "logs -n 3 lacks the login prompt: $out" || return

        microvmctl restart ctla || fail "microvmctl restart ctla: exit $?" || return
        state_is ctla active running || fail "after restart: $(vprop ctla ActiveState)" || return
        [ "$(vprop ctla MainPID)" != "$pid" ] || fail "restart kept MainPID $pid" || return

        microvmctl stop ctla || fail "microvmctl stop ctla: exit $?" || return
        state_is ctla inactive dead || fail "after microvmctl stop: $(vprop ctla ActiveState)" || return
        ctl_json list list || return
        expect_field ctla active_state '"inactive"' || return
        expect_field ctla main_pid null || return
        assert_no_debris ctla || return
        rm -f "$E2E_VM_DIR/ctla.conf" "$E2E_VM_DIR/ctlb.conf"
        systemctl daemon-reload
        note "microvmctl start/restart/stop ctla, list and status checked against the schema"
}

# logs -f shows a line the guest prints after it started following, and
# ends with exit status 0 on SIGINT (Ctrl-C).
sc_ctl_logs_follow() {
        local out fifo pid rc=0 line
        vm_config ctlf1
        systemctl daemon-reload
        start_vm ctlf1 || return
        assert_console ctlf1 || return
        out=$(mktemp)
        microvmctl logs -f -n 1 ctlf1 >"$out" 2>&1 &
        pid=$!
        # Following once the last old line is out (not before: a line
        # written earlier would count as old).
        wait_until 10 "logs -f to print the last line" test -s "$out" || { kill "$pid"; return 1; }
        line="follow-me-$RANDOM$RANDOM"
        # The guest echoes serial input: a line written to the console FIFO.
        fifo=$E2E_RUN_DIR/ctlf1/console.in
        printf '%s\n' "$line" >"$fifo" || fail "cannot write to $fifo" || return
        wait_until 10 "logs -f to show $line" grep -qx "$line" "$out" || { cat "$out"; kill "$pid"; return 1; }
        kill -INT "$pid"
        wait "$pid" || rc=$?
        [ $rc = 0 ] || fail "logs -f ended with exit status $rc on SIGINT" || return
        rm -f "$out"
        stop_vm ctlf1 || return
        note "logs -f saw a line typed into the console after it started; SIGINT: exit 0"
}

# A VM that cannot start: microvmctl start exits 1 and says why (the
# unit's result and our tool's last error from the journal).
sc_ctl_failed() {
        local out rc=0 why
        vm_config ctlbad kernel=/var/lib/microvm/images/no-such-kernel
        systemctl daemon-reload
        use ctlbad
        out=$(microvmctl start ctlbad 2>&1) || rc=$?
        why=$(grep 'microvm-stage' <<<"$out" | head -n 1)
        [ $rc = 1 ] || fail "microvmctl start of a VM without kernel: exit $rc, output: $out" || return
        grep -q '^microvmctl: VM ctlbad: .*no-such-kernel.* (microvm-stage)$' <<<"$out" ||
                fail "no line with microvm-stage's error: $out" || return
        grep -q '^microvmctl: VM ctlbad: start failed: job failed, unit result exit-code' <<<"$out" ||
                fail "no line with the job and the unit's result: $out" || return
        ctl_json list list || return
        expect_field ctlbad active_state '"failed"' || return
        out=$(microvmctl status ctlbad) || fail "status of a failed VM: exit $?" || return
        grep -q 'Result: exit-code' <<<"$out" || fail "status shows no Result: $out" || return
        # validate, by default, says what stage said (issue 12 point 6)
        rc=0
        out=$(microvmctl validate ctlbad 2>&1) || rc=$?
        [ $rc = 1 ] && grep -q 'kernel: "/var/lib/microvm/images/no-such-kernel" cannot be opened on this host: No such file or directory' <<<"$out" ||
                fail "validate ctlbad: exit $rc: $out" || return
        microvmctl validate --offline ctlbad >/dev/null || fail "validate --offline ctlbad failed" || return
        systemctl reset-failed "$(unit_of ctlbad)"
        rm -f "$E2E_VM_DIR/ctlbad.conf"
        # The VMM itself refuses to run (an unknown knob of the double, as
        # firecracker refuses a bad config): why, in its own words, and how
        # its main process ended, whether or not a tool of ours logged.
        vm_config ctlvmm knobs=fcdouble.bogus=1
        systemctl daemon-reload
        use ctlvmm
        rc=0
        out=$(microvmctl start ctlvmm 2>&1) || rc=$?
        [ $rc = 1 ] || fail "microvmctl start of a VM whose VMM exits: exit $rc, output: $out" || return
        grep -q "^microvmctl: VM ctlvmm: the VMM (the unit's main process) exited with status 1\.$" <<<"$out" ||
                fail "nothing says how the VMM ended: $out" || return
        grep -q '^microvmctl:   .*fcdouble.bogus' <<<"$out" ||
                fail "the VMM's own words are not shown: $out" || return
        grep -q '^microvmctl: VM ctlvmm: start failed: job failed, unit result exit-code' <<<"$out" ||
                fail "no line with the job and the unit's result: $out" || return
        systemctl reset-failed "$(unit_of ctlvmm)"
        rm -f "$E2E_VM_DIR/ctlvmm.conf"
        note "start failure explained: $why; VMM: $(grep -m1 'fcdouble.bogus' <<<"$out")"
}

# A running VM whose config was removed: an orphan; one whose config was
# edited since it started: config_changed (with or without daemon-reload).
sc_ctl_orphan_changed() {
        local out
        vm_config ctlo
        vm_config ctlc
        systemctl daemon-reload
        start_vm ctlo ctlc || return
        rm -f "$E2E_VM_DIR/ctlo.conf"
        vm_config ctlc description="edited while running"
        ctl_json list list || return
        expect_field ctlo orphan true || return
        expect_field ctlo active_state '"active"' || return
        expect_field ctlo config_path null || return
        expect_field ctlc orphan false || return
        expect_field ctlc config_changed true || return
        systemctl daemon-reload
        ctl_json list list || return
        expect_field ctlo orphan true || return
        expect_field ctlc config_changed true || return
        out=$(microvmctl list) || return
        grep -qE '^ctlo +active/running .* yes$' <<<"$out" || fail "list shows no orphan ctlo: $out" || return
        stop_vm ctlo ctlc || return
        assert_no_debris ctlo ctlc || return
        ctl_json list list || return
        [ "$(ctl_field ctlc config_changed)" = false ] || fail "config_changed of a stopped VM" || return
        rm -f "$E2E_VM_DIR/ctlc.conf"
        systemctl daemon-reload
        note "orphan and changed config seen before and after daemon-reload"
}

# Usage errors exit 2; an unknown VM exits 1.
sc_ctl_usage() {
        local rc
        rc=0; microvmctl validate --bogus >/dev/null 2>&1 || rc=$?
        [ $rc = 2 ] || fail "validate --bogus: exit $rc, want 2" || return
        rc=0; microvmctl status >/dev/null 2>&1 || rc=$?
        [ $rc = 2 ] || fail "status without id: exit $rc, want 2" || return
        rc=0; microvmctl logs a b >/dev/null 2>&1 || rc=$?
        [ $rc = 2 ] || fail "logs with two ids: exit $rc, want 2" || return
        rc=0; microvmctl status no-such-vm >/dev/null 2>&1 || rc=$?
        [ $rc = 1 ] || fail "status of an unknown VM: exit $rc, want 1" || return
        rc=0; microvmctl start Bad_Id >/dev/null 2>&1 || rc=$?
        [ $rc = 1 ] || fail "start of an invalid id: exit $rc, want 1" || return
        for v in list status start stop restart logs console validate sync gc suspend resume discard-snapshot; do
                microvmctl "$v" --help >/dev/null || fail "microvmctl $v --help failed" || return
        done
}

# sync: stops an orphan, starts a down autostart VM, lists a changed one
# and restarts it with --restart-changed; --dry-run changes nothing.
sc_ctl_sync() {
        local out pid started
        vm_config syncauto autostart=yes
        vm_config syncorph
        vm_config syncchg
        systemctl daemon-reload
        start_vm syncorph syncchg || return
        use syncauto
        pid=$(vprop syncchg MainPID)
        rm -f "$E2E_VM_DIR/syncorph.conf"
        vm_config syncchg description="edited while running"

        out=$(microvmctl sync --dry-run) || fail "sync --dry-run: exit $?: $out" || return
        grep -qx 'stop syncorph (config removed) \[dry run\]' <<<"$out" &&
                grep -qx 'start syncauto (autostart, down) \[dry run\]' <<<"$out" &&
                grep -qx 'changed syncchg (config changed; --restart-changed restarts it)' <<<"$out" ||
                fail "sync --dry-run plan: $out" || return
        state_is syncorph active && state_is syncauto inactive ||
                fail "sync --dry-run changed something: syncorph $(vprop syncorph ActiveState), syncauto $(vprop syncauto ActiveState)" || return
        # any other autostart VM left down by earlier scenarios is started too: stop it after
        started=$(sed -n 's/^start \([^ ]*\) .*/\1/p' <<<"$out")

        out=$(microvmctl sync) || fail "sync: exit $?: $out" || return
        state_is syncorph inactive || fail "sync left the orphan syncorph $(vprop syncorph ActiveState)" || return
        state_is syncauto active running || fail "sync did not start syncauto: $(vprop syncauto ActiveState)" || return
        [ "$(vprop syncchg MainPID)" = "$pid" ] || fail "sync without --restart-changed restarted syncchg" || return

        systemctl daemon-reload
        out=$(microvmctl sync --restart-changed) || fail "sync --restart-changed: exit $?: $out" || return
        grep -qx 'restart syncchg (config changed)' <<<"$out" || fail "sync --restart-changed: $out" || return
        state_is syncchg active running && [ "$(vprop syncchg MainPID)" != "$pid" ] ||
                fail "syncchg not restarted: $(vprop syncchg ActiveState), MainPID $(vprop syncchg MainPID) (was $pid)" || return
        ctl_json list list || return
        expect_field syncchg config_changed false || return
        out=$(microvmctl sync) || fail "second sync: exit $?" || return
        [ "$out" = "Nothing to do: every autostart VM runs, no orphan, no changed config." ] ||
                fail "second sync still acts: $out" || return

        stop_vm syncauto syncchg $started || return
        assert_no_debris syncorph syncauto syncchg || return
        rm -f "$E2E_VM_DIR/syncauto.conf" "$E2E_VM_DIR/syncchg.conf"
        systemctl daemon-reload
        note "sync stopped the orphan, started the autostart VM, restarted the changed one"
}

# gc after a simulated crash: a VM stopped without its ExecStopPost=
# cleanup (as if the host died) left its jail and run dir; gc --dry-run
# lists them, gc removes them and says so, a running VM is left alone.
sc_ctl_gc() {
        local out
        vm_config gccrash
        vm_config gcrun
        dropin gccrash "ExecStopPost="
        systemctl daemon-reload
        start_vm gccrash gcrun || return
        stop_vm gccrash || return
        [ -e "$E2E_RUN_DIR/gccrash" ] && [ -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/gccrash" ] ||
                fail "the simulated crash left no debris to collect" || return

        out=$(microvmctl gc --dry-run) || fail "gc --dry-run: exit $?: $out" || return
        grep -qE '^gccrash: would remove its jail(, | and )run directory' <<<"$out" || fail "gc --dry-run: $out" || return
        ! grep -q '^gcrun:' <<<"$out" || fail "gc --dry-run would touch the running gcrun: $out" || return
        [ -e "$E2E_RUN_DIR/gccrash" ] || fail "gc --dry-run removed something" || return

        out=$(microvmctl gc) || fail "gc: exit $?: $out" || return
        grep -q '^gccrash: removed jail, run directory,' <<<"$out" || fail "gc: $out" || return
        assert_no_debris gccrash || return
        assert_vm_running gcrun || return
        out=$(microvmctl gc) || fail "second gc: exit $?: $out" || return
        [ "$out" = "Nothing to reclaim." ] || fail "second gc: $out" || return

        stop_vm gcrun || return
        rm -rf "/run/systemd/system/$(unit_of gccrash).d"
        rm -f "$E2E_VM_DIR/gccrash.conf" "$E2E_VM_DIR/gcrun.conf"
        systemctl daemon-reload
        note "gc after a simulated crash removed gccrash's jail and run dir; a second gc: $out"
}

# console_round_trip USER-ARGS...: attaches (as setpriv USER-ARGS, or
# root), types a line, waits for the guest's echo in the output, detaches
# with Ctrl-]; exit status 0 expected.
console_round_trip() {
        local id=$1 tmp pid w line rc=0
        shift
        tmp=$(mktemp -d)
        chmod 0755 "$tmp"
        mkfifo -m 0666 "$tmp/in"
        if [ $# -gt 0 ]; then
                setpriv "$@" microvmctl console "$id" <"$tmp/in" >"$tmp/out" 2>&1 &
        else
                microvmctl console "$id" <"$tmp/in" >"$tmp/out" 2>&1 &
        fi
        pid=$!
        exec {w}>"$tmp/in"
        wait_until 10 "console to show the last lines" grep -q "$id login:" "$tmp/out" ||
                { cat "$tmp/out"; kill "$pid"; exec {w}>&-; rm -rf "$tmp"; return 1; }
        line="typed-$RANDOM$RANDOM"
        printf '%s\n' "$line" >&$w
        wait_until 10 "the guest's echo of $line" grep -qx "$line" "$tmp/out" ||
                { cat "$tmp/out"; kill "$pid"; exec {w}>&-; rm -rf "$tmp"; return 1; }
        printf '\035' >&$w
        wait "$pid" || rc=$?
        exec {w}>&-
        [ $rc = 0 ] || { cat "$tmp/out"; rm -rf "$tmp"; fail "console ended with exit status $rc after Ctrl-]"; return; }
        rm -rf "$tmp"
}

# console: a typed line reaches firecracker's stdin (the double echoes it
# on the serial console, into the journal) and comes back; Ctrl-] detaches.
# Only root, and members of console_group, may attach: the FIFO's owner
# and mode say so.
sc_ctl_console() {
        local out rc
        vm_config con1
        systemctl daemon-reload
        start_vm con1 || return
        assert_console con1 || return
        console_round_trip con1 || return
        [ "$(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1/console.in")" = "600 root:root" ] ||
                fail "console FIFO: $(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1/console.in")" || return
        rc=0
        out=$(setpriv --reuid=65534 --regid=65534 --clear-groups microvmctl console con1 </dev/null 2>&1) || rc=$?
        [ $rc = 1 ] && grep -q 'only root' <<<"$out" || fail "nobody attached: exit $rc: $out" || return

        # A console group: its members attach, others still may not.
        getent group mvcon >/dev/null || groupadd mvcon || return
        id mvuser >/dev/null 2>&1 || useradd -M -N -g nogroup -G mvcon,systemd-journal mvuser || return
        sed -i '/^\[host\]/a console_group = mvcon' /etc/microvm/microvm.conf
        microvmctl restart con1 || { e2e_setup; fail "restart with console_group failed"; return; }
        [ "$(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1/console.in")" = "620 root:mvcon" ] &&
                [ "$(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1")" = "710 root:mvcon" ] ||
                { e2e_setup; fail "with console_group: FIFO $(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1/console.in"), dir $(stat -c '%a %U:%G' "$E2E_RUN_DIR/con1")"; return; }
        console_round_trip con1 --reuid=mvuser --regid=nogroup --init-groups || { e2e_setup; return 1; }
        rc=0
        out=$(setpriv --reuid=65534 --regid=65534 --clear-groups microvmctl console con1 </dev/null 2>&1) || rc=$?
        e2e_setup
        [ $rc = 1 ] && grep -q 'only root' <<<"$out" || fail "nobody attached with console_group: exit $rc: $out" || return
        stop_vm con1 || return
        assert_no_debris con1 || return
        rm -f "$E2E_VM_DIR/con1.conf"
        systemctl daemon-reload
        note "console round trip as root and as a console_group member; others refused: $(head -n 1 <<<"$out")"
}
