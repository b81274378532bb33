#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The host-crash check of tests/e2e/run, inside the container, in two
# halves around a hard kill of the whole container (ct_crash) and a boot of
# the same root:
#   host-crash.sh prepare   two autostart VMs and one without autostart
#                           running, microvms.target enabled for boot
#   host-crash.sh check     after the boot: microvm-reclaim ran, the
#                           autostart VMs are back, nothing of the other one
#                           (jail, state of the run, cgroup) is left, and
#                           the leak checker finds nothing
# Prints what it found; exits non-zero on the first failure.
set -u
. /usr/local/lib/microvm-test/lib.sh

fail() {
        echo "FAIL: $*"
        exit 1
}

case ${1:-} in
prepare)
        vm_config crash-auto1 autostart=yes
        vm_config crash-auto2 autostart=yes
        vm_config crash-manual
        # As an operator enables it ("systemctl enable microvms.target"),
        # for the container's own boot target.
        systemctl add-wants microvm-ct.target microvms.target >/dev/null 2>&1 ||
                fail "cannot enable microvms.target"
        systemctl daemon-reload
        timeout 60 systemctl start microvm@crash-auto1 microvm@crash-auto2 microvm@crash-manual ||
                fail "the VMs did not start"
        for id in crash-auto1 crash-auto2 crash-manual; do
                [ "$(vprop "$id" ActiveState)" = active ] || fail "$id is $(vprop "$id" ActiveState)"
                [ -d "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root" ] || fail "no jail of $id"
        done
        echo "3 VMs running (2 with autostart); crashing the host"
        ;;
check)
        wait_until 60 "microvm-reclaim.service to have run" \
                sh -c '[ "$(systemctl show -P ActiveState microvm-reclaim.service)" = active ]' ||
                fail "microvm-reclaim.service did not run at boot"
        for id in crash-auto1 crash-auto2; do
                wait_until 60 "$id back" sh -c "[ \"\$(systemctl show -P ActiveState microvm@$id.service)\" = active ]" ||
                        fail "autostart VM $id did not come back: $(vprop "$id" ActiveState)"
        done
        [ "$(vprop crash-manual ActiveState)" = inactive ] || fail "crash-manual is $(vprop crash-manual ActiveState)"
        [ ! -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/crash-manual" ] ||
                fail "the crashed run's jail of crash-manual is left"
        # Jails are cleared by tmpfiles at boot (R! <chroot_base>/*) before
        # reclaim runs; reclaim takes what else is left (none here: /run is
        # new, the container's cgroups and taps died with it).
        echo "reclaim at boot: $(journalctl -q -o cat -u microvm-reclaim.service -b | grep -v -e '^Starting' -e '^Finished' | tail -n 3 | tr '\n' ' ')"
        # Every autostart VM is back (the earlier scenarios' ones too): the
        # units that are up are the running ones.
        running=$(systemctl list-units --no-legend --plain --state=active,activating 'microvm@*' |
                awk '{ sub(/^microvm@/, "", $1); sub(/\.service$/, "", $1); print "--running=" $1 }')
        # shellcheck disable=SC2086
        out=$("$E2E_LIBDIR/leak-check" --only=jail,run,uid,cgroup,block,tap,machine,process $running 2>&1) ||
                fail "leftovers after the crash and reboot: $out"
        echo "after the reboot: reclaim ran, autostart VMs back ($(echo $running | sed 's/--running=//g')), nothing of crash-manual left"
        timeout 60 systemctl stop microvms.target 'microvm@*' || fail "the VMs did not stop"
        rm -f /etc/systemd/system/microvm-ct.target.wants/microvms.target
        systemctl daemon-reload
        out=$("$E2E_LIBDIR/leak-check" --only=jail,run,uid,cgroup,block,tap,machine,process 2>&1) ||
                fail "leftovers after the stop: $out"
        ;;
*)
        echo "usage: host-crash.sh prepare|check" >&2
        exit 2
        ;;
esac
