#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The host-reboot check of tests/e2e/run (issue 16: suspend to disk at
# shutdown, resume at boot), inside the container, around two graceful
# poweroffs of the whole container (ct_poweroff_for_reboot: systemd stops
# every unit, ExecStop= included, as for a host reboot) and boots of the
# same root:
#   host-reboot.sh prepare   VMs running: "sus" VMs with on_host_shutdown =
#                            suspend (10 in all), one "stop" VM, one whose
#                            snapshot create fails, one whose load will fail
#   host-reboot.sh check     after the first boot: suspend VMs back with the
#                            same boot token and their tick counter going
#                            on, snapshot files gone; the stop VM and the
#                            failed-create VM cold-booted (new token, disk
#                            kept); the failed-load VM cold-booted by its
#                            restart policy, its snapshot kept aside. Then
#                            one suspend VM's config is changed.
#   host-reboot.sh check2    after the second boot: that VM cold-booted and
#                            its snapshot was kept aside; another came back
#                            again; everything stopped, nothing left.
# Prints what it found; exits non-zero on the first failure.
set -u
. /usr/local/lib/microvm-test/lib.sh

SAVED=/root/e2e-host-reboot.state
BULK="sus-b1 sus-b2 sus-b3 sus-b4 sus-b5 sus-b6 sus-b7 sus-b8"
ALL="sus-a sus-cfg $BULK rb-stop rb-create-fails rb-load-fails"

fail() {
        echo "FAIL: $*"
        exit 1
}

# The boot token VM $1 printed in this boot (booted or restored).
token_of() {
        journalctl -b -q -o cat -u "$(unit_of "$1")" 2>/dev/null | grep -oE 'boot token [0-9a-f]{32}' | tail -n 1 |
                cut -d' ' -f3
}

wait_token() {
        wait_journal 20 'boot token [0-9a-f]{32}' -b -u "$(unit_of "$1")" >/dev/null || return 1
        token_of "$1"
}

saved() {
        sed -n "s/^$1=//p" "$SAVED"
}

drive_inode() {
        stat -c %i "$E2E_STATE_DIR/$1/drives/root.img" 2>/dev/null || find "$E2E_STATE_DIR/$1" -path '*drives*' -type f \
                -printf '%i\n' 2>/dev/null | head -n 1
}

case ${1:-} in
prepare)
        for id in sus-a sus-cfg $BULK; do
                vm_config "$id" autostart=yes on_host_shutdown=suspend knobs=fcdouble.tick_ms=100
        done
        vm_config rb-stop autostart=yes on_host_shutdown=stop knobs=fcdouble.tick_ms=100
        vm_config rb-create-fails autostart=yes on_host_shutdown=suspend knobs=fcdouble.fail_create=1
        vm_config rb-load-fails autostart=yes on_host_shutdown=suspend restart=on-failure knobs=fcdouble.fail_load=1
        systemctl add-wants microvm-ct.target microvms.target >/dev/null 2>&1 || fail "cannot enable microvms.target"
        systemctl daemon-reload
        units=()
        for id in $ALL; do units+=("$(unit_of "$id")"); done
        timeout 60 systemctl start "${units[@]}" || fail "the VMs did not start"
        [ "$(vprop sus-a TimeoutStopUSec)" = 17s ] ||
                fail "TimeoutStopSec= of a 128M suspend VM is $(vprop sus-a TimeoutStopUSec), not 5s + 2s + 10s"
        [ "$(vprop rb-stop TimeoutStopUSec)" = 5s ] || fail "TimeoutStopSec= of a stop VM is $(vprop rb-stop TimeoutStopUSec)"
        : >"$SAVED"
        for id in $ALL; do
                t=$(wait_token "$id") || fail "$id printed no boot token"
                echo "$id=$t" >>"$SAVED"
        done
        # Some ticks before the shutdown, so that "goes on" means something.
        wait_journal 20 'fcdouble: tick 3 ' -b -u "$(unit_of sus-a)" >/dev/null || fail "sus-a does not tick"
        echo "inode-rb-create-fails=$(drive_inode rb-create-fails)" >>"$SAVED"
        echo "$(echo $ALL | wc -w) VMs running (10 to suspend); powering the host off"
        ;;
check)
        for id in $ALL; do
                wait_until 60 "$id back" sh -c "[ \"\$(systemctl show -P ActiveState microvm@$id.service)\" = active ]" ||
                        fail "$id did not come back: $(vprop "$id" ActiveState) $(vprop "$id" StatusText)"
        done
        # Suspend VMs: the same guest, not a new boot.
        for id in sus-a sus-cfg $BULK; do
                journal_has "restored from a snapshot, boot token $(saved "$id")" -b -u "$(unit_of "$id")" ||
                        fail "$id did not resume with its token $(saved "$id"): $(journalctl -b -q -o cat -u "$(unit_of "$id")" | tail -n 5)"
                ! journal_has 'Linux version' -b -u "$(unit_of "$id")" || fail "$id booted instead of resuming"
                ls -d "$E2E_STATE_DIR/$id"/suspend* >/dev/null 2>&1 && fail "snapshot files of $id left: $(ls -d "$E2E_STATE_DIR/$id"/suspend*)"
                [ ! -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root/suspend" ] || fail "the jail of $id still links the snapshot"
                journal_has "suspended to $E2E_STATE_DIR/$id/suspend/ .* for the host's shutdown" -b -1 -u "$(unit_of "$id")" ||
                        fail "no suspend line for $id in the previous boot"
        done
        k=$(journalctl -b -q -o cat -u "$(unit_of sus-a)" | sed -n 's/.*restored from a snapshot, boot token [0-9a-f]*, \([0-9]*\) ticks so far.*/\1/p' | tail -n 1)
        [ "${k:-0}" -ge 3 ] || fail "sus-a restored with ${k:-no} ticks, not the 3 or more it had"
        wait_journal 10 "fcdouble: tick $((k + 1)) \\(boot token $(saved sus-a)\\)" -b -u "$(unit_of sus-a)" >/dev/null ||
                fail "sus-a's counter does not go on from $k"
        echo "10 suspend VMs resumed with their boot tokens; sus-a's counter went on from $k; no snapshot file left"
        # The stop VM booted afresh.
        t=$(token_of rb-stop)
        [ -n "$t" ] && [ "$t" != "$(saved rb-stop)" ] || fail "rb-stop did not cold-boot (token $t)"
        # A failed create: a graceful stop, then a cold boot; the disk kept.
        journal_has "suspend failed, stopping it gracefully instead" -b -1 -u "$(unit_of rb-create-fails)" ||
                fail "no fallback line for rb-create-fails"
        journal_has "the guest shut down after" -b -1 -u "$(unit_of rb-create-fails)" ||
                fail "rb-create-fails was not stopped gracefully after the failed create"
        t=$(token_of rb-create-fails)
        [ -n "$t" ] && [ "$t" != "$(saved rb-create-fails)" ] || fail "rb-create-fails did not cold-boot"
        [ "$(drive_inode rb-create-fails)" = "$(saved inode-rb-create-fails)" ] || fail "rb-create-fails lost its disk"
        ls -d "$E2E_STATE_DIR/rb-create-fails"/suspend* >/dev/null 2>&1 && fail "a failed snapshot of rb-create-fails is left"
        # A failed load: kept aside, booted by the restart policy.
        journal_has "resuming from its snapshot failed, the snapshot is kept as $E2E_STATE_DIR/rb-load-fails/suspend.invalid-" \
                -b -u "$(unit_of rb-load-fails)" || fail "no load failure line for rb-load-fails"
        wait_until 30 "rb-load-fails booted" sh -c "journalctl -b -q -o cat -u microvm@rb-load-fails.service | grep -q 'Linux version'" ||
                fail "rb-load-fails did not cold-boot after its failed load"
        ls -d "$E2E_STATE_DIR/rb-load-fails"/suspend.invalid-* >/dev/null 2>&1 || fail "rb-load-fails's snapshot was not kept aside"
        echo "stop VM cold-booted; failed create: graceful stop, disk kept, cold boot; failed load: snapshot kept aside, cold boot"
        # Between the reboots: sus-cfg's config changes.
        echo "sus-cfg=$(token_of sus-cfg)" >>"$SAVED"
        echo "sus-a=$(token_of sus-a)" >>"$SAVED"
        vm_config sus-cfg autostart=yes on_host_shutdown=suspend knobs=fcdouble.tick_ms=100 description=changed
        ;;
check2)
        for id in sus-a sus-cfg; do
                wait_until 60 "$id back" sh -c "[ \"\$(systemctl show -P ActiveState microvm@$id.service)\" = active ]" ||
                        fail "$id did not come back: $(vprop "$id" ActiveState)"
        done
        journal_has "restored from a snapshot, boot token $(saved sus-a | tail -n 1)" -b -u "$(unit_of sus-a)" ||
                fail "sus-a did not resume a second time"
        journal_has "not resuming its snapshot, booting instead: the VM config changed since the snapshot was taken" \
                -b -u "$(unit_of sus-cfg)" || fail "no 'config changed' line for sus-cfg"
        t=$(token_of sus-cfg)
        [ -n "$t" ] && [ "$t" != "$(saved sus-cfg | tail -n 1)" ] || fail "sus-cfg did not cold-boot"
        ls -d "$E2E_STATE_DIR/sus-cfg"/suspend.invalid-* >/dev/null 2>&1 || fail "sus-cfg's old snapshot was not kept aside"
        echo "second reboot: sus-a resumed again; sus-cfg (config changed) cold-booted, its snapshot kept aside"
        timeout 120 systemctl stop microvms.target 'microvm@*' || fail "the VMs did not stop"
        rm -f /etc/systemd/system/microvm-ct.target.wants/microvms.target
        for id in $ALL; do
                rm -f "$E2E_VM_DIR/$id.conf"
                rm -rf "${E2E_STATE_DIR:?}/$id"/suspend*
        done
        systemctl daemon-reload
        out=$("$E2E_LIBDIR/leak-check" --only=jail,run,uid,cgroup,block,tap,machine,process 2>&1) ||
                fail "leftovers after the stop: $out"
        ;;
*)
        echo "usage: host-reboot.sh prepare|check|check2" >&2
        exit 2
        ;;
esac
