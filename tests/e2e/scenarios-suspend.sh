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
