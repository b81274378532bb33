# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/scenarios-suspend.sh — suspend and resume (issue 16) without a
# host reboot (sourced by scenarios.sh, which runs them); the reboots
# themselves are tests/e2e/host-reboot.sh.

# A plain "systemctl stop" of a suspend VM is a graceful stop: no snapshot.
sc_suspend_plain_stop() {
        use susp
        vm_config susp on_host_shutdown=suspend
        systemctl daemon-reload
        start_vm susp || return
        assert_vm_running susp || return
        stop_vm susp || return
        assert_graceful_stop susp || return
        ! ls -d "$E2E_STATE_DIR/susp"/suspend* >/dev/null 2>&1 ||
                fail "a plain stop left a snapshot: $(ls -d "$E2E_STATE_DIR/susp"/suspend*)" || return
        ! journal_has 'suspend' -u "$(unit_of susp)" -b || fail "a plain stop tried to suspend" || return
        assert_no_debris susp || return
        note "systemctl stop of an on_host_shutdown = suspend VM: Ctrl-Alt-Del, no snapshot"
}

# microvmctl suspend / resume / discard-snapshot, list and status, without
# a host reboot: a stop VM suspended on demand comes back with its guest.
sc_ctl_suspend_resume() {
        local t1 t2 out
        use ctlsus
        vm_config ctlsus knobs=fcdouble.tick_ms=100
        systemctl daemon-reload
        start_vm ctlsus || return
        wait_journal 10 'boot token [0-9a-f]{32}' -b -u "$(unit_of ctlsus)" >/dev/null || fail "no boot token" || return
        t1=$(journalctl -b -q -o cat -u "$(unit_of ctlsus)" | grep -oE 'boot token [0-9a-f]{32}' | tail -n 1 | cut -d' ' -f3)
        out=$(microvmctl suspend ctlsus) || fail "microvmctl suspend failed: $out" || return
        [[ $out == *"VM ctlsus suspended: 128.0M in $E2E_STATE_DIR/ctlsus/suspend/"* ]] || fail "microvmctl suspend said: $out" || return
        [ "$(vprop ctlsus ActiveState)" = inactive ] || fail "ctlsus is $(vprop ctlsus ActiveState) after suspend" || return
        [ "$(stat -c '%a %u' "$E2E_STATE_DIR/ctlsus/suspend/memory")" = "600 $(vm_uid ctlsus)" ] ||
                fail "memory file is $(stat -c '%a %u' "$E2E_STATE_DIR/ctlsus/suspend/memory")" || return
        [ "$(stat -c '%a %u' "$E2E_STATE_DIR/ctlsus/suspend")" = "700 0" ] || fail "suspend dir not root-only" || return
        ctl_json list list || return
        expect_field ctlsus suspended true || return
        expect_field ctlsus snapshot_bytes "$(( $(stat -c %s "$E2E_STATE_DIR/ctlsus/suspend/memory") + $(stat -c %s "$E2E_STATE_DIR/ctlsus/suspend/vmstate") ))" || return
        ctl_json status status ctlsus || return
        microvmctl list | grep -qE '^ctlsus +suspended \(128.0M\)' || fail "list does not show it suspended: $(microvmctl list)" || return
        microvmctl status ctlsus | grep -q 'Suspended: snapshot of' || fail "status does not show the snapshot" || return
        out=$(microvmctl resume ctlsus) || fail "microvmctl resume failed: $out" || return
        [ "$out" = "VM ctlsus resumed." ] || fail "microvmctl resume said: $out" || return
        t2=$(journalctl -b -q -o cat -u "$(unit_of ctlsus)" | grep -oE 'restored from a snapshot, boot token [0-9a-f]{32}' | tail -n 1 | cut -d' ' -f7)
        [ "$t1" = "$t2" ] || fail "resumed with token $t2, not $t1" || return
        ! ls -d "$E2E_STATE_DIR/ctlsus"/suspend* >/dev/null 2>&1 || fail "snapshot left after the resume" || return
        # resume without a snapshot; discard while running; discard of a kept-aside one.
        microvmctl resume ctlsus >/dev/null 2>&1 && fail "resume without a snapshot succeeded" && return 1
        microvmctl suspend ctlsus >/dev/null || fail "second suspend failed" || return
        microvmctl discard-snapshot ctlsus | grep -q "removed $E2E_STATE_DIR/ctlsus/suspend" ||
                fail "discard-snapshot removed nothing" || return
        ! ls -d "$E2E_STATE_DIR/ctlsus"/suspend* >/dev/null 2>&1 || fail "snapshot left after discard" || return
        start_vm ctlsus || return
        # The start after the discard boots (a second "Linux version").
        [ "$(journalctl -b -q -o cat -u "$(unit_of ctlsus)" | grep -c 'Linux version')" = 2 ] ||
                fail "the start after discard-snapshot did not boot" || return
        stop_vm ctlsus || return
        assert_no_debris ctlsus || return
        note "microvmctl suspend/resume kept boot token $t1; list/status/JSON show the snapshot; discard-snapshot removes it"
}

# A snapshot create that takes longer than the suspend time (128M at the
# default 100M/s: 2 s + 10 s): microvm-stop gives up, the guest is resumed
# and stopped gracefully once firecracker is done writing; no snapshot.
# stop_timeout=15s: TimeoutStopSec= is 27 s, far from the 14 s the create
# takes, so that systemd does not cut the graceful stop on a slow machine.
sc_suspend_timeout() {
        local out
        use slowsus
        vm_config slowsus on_host_shutdown=suspend stop_timeout=15s knobs=fcdouble.create_ms=14000
        systemctl daemon-reload
        start_vm slowsus || return
        out=$(microvmctl suspend slowsus 2>&1) && fail "microvmctl suspend of a too slow create succeeded: $out" && return 1
        [[ $out == *"was stopped but not suspended"* ]] || fail "microvmctl suspend said: $out" || return
        journal_has 'suspend failed, stopping it gracefully instead: PUT /snapshot/create did not finish within 1[12]s' \
                -b -u "$(unit_of slowsus)" || fail "no timeout line: $(journalctl -b -q -o cat -u "$(unit_of slowsus)" | grep microvm-stop)" || return
        assert_graceful_stop slowsus || return
        ! ls -d "$E2E_STATE_DIR/slowsus"/suspend* >/dev/null 2>&1 || fail "a snapshot of slowsus is left" || return
        assert_no_debris slowsus || return
        note "create slower than the suspend time: gave up after about 12 s, graceful stop, no snapshot"
}

# An ephemeral VM: its disks stay while a snapshot refers to them (not
# removed by the stop's cleanup nor by the next start's reset), go with its
# next plain stop; an invalid snapshot of an ephemeral VM fails that start
# (its disks were kept for the snapshot) and the next start begins afresh.
sc_suspend_ephemeral() {
        local i1 t1 t2 out
        use ephsus
        vm_config ephsus ephemeral=yes knobs=fcdouble.tick_ms=100
        systemctl daemon-reload
        start_vm ephsus || return
        wait_journal 10 'boot token [0-9a-f]{32}' -b -u "$(unit_of ephsus)" >/dev/null || fail "no boot token" || return
        t1=$(journalctl -b -q -o cat -u "$(unit_of ephsus)" | grep -oE 'boot token [0-9a-f]{32}' | tail -n 1 | cut -d' ' -f3)
        i1=$(stat -c %i "$E2E_STATE_DIR/ephsus/drives/root.img") || fail "no disk copy of ephsus" || return
        out=$(microvmctl suspend ephsus) || fail "microvmctl suspend failed: $out" || return
        [ "$(stat -c %i "$E2E_STATE_DIR/ephsus/drives/root.img" 2>/dev/null)" = "$i1" ] ||
                fail "the ephemeral VM's disk went with the suspend's cleanup" || return
        out=$(microvmctl resume ephsus) || fail "microvmctl resume failed: $out" || return
        t2=$(journalctl -b -q -o cat -u "$(unit_of ephsus)" | grep -oE 'restored from a snapshot, boot token [0-9a-f]{32}' | tail -n 1 | cut -d' ' -f7)
        [ "$t1" = "$t2" ] || fail "resumed with token $t2, not $t1" || return
        [ "$(stat -c %i "$E2E_STATE_DIR/ephsus/drives/root.img" 2>/dev/null)" = "$i1" ] ||
                fail "the resumed ephemeral VM runs on another disk" || return
        stop_vm ephsus || return
        [ ! -e "$E2E_STATE_DIR/ephsus/drives/root.img" ] || fail "a plain stop kept the ephemeral disk" || return
        # An invalid snapshot (config changed) of an ephemeral VM.
        start_vm ephsus || return
        i1=$(stat -c %i "$E2E_STATE_DIR/ephsus/drives/root.img")
        microvmctl suspend ephsus >/dev/null || fail "second suspend failed" || return
        vm_config ephsus ephemeral=yes knobs=fcdouble.tick_ms=100 description=changed
        systemctl daemon-reload
        timeout 30 systemctl start "$(unit_of ephsus)" >/dev/null 2>&1 && fail "the start over an invalid snapshot of an ephemeral VM succeeded" && return 1
        journal_has 'its snapshot cannot be resumed: the VM config changed since the snapshot was taken' -b -u "$(unit_of ephsus)" ||
                fail "no line for the invalid snapshot" || return
        [ ! -e "$E2E_STATE_DIR/ephsus/drives/root.img" ] || fail "the failed start's cleanup kept the disk" || return
        ls -d "$E2E_STATE_DIR/ephsus"/suspend.invalid-* >/dev/null 2>&1 || fail "the snapshot was not kept aside" || return
        systemctl reset-failed "$(unit_of ephsus)" 2>/dev/null
        start_vm ephsus || return
        [ "$(stat -c %i "$E2E_STATE_DIR/ephsus/drives/root.img")" != "$i1" ] || fail "not a fresh disk" || return
        stop_vm ephsus || return
        microvmctl discard-snapshot ephsus >/dev/null || fail "discard-snapshot failed" || return
        assert_no_debris ephsus || return
        note "ephemeral VM: disk kept while suspended, resumed on it, removed at the plain stop; invalid snapshot: start fails, next one fresh"
}
