# shellcheck shell=bash
# Races under systemd (issue 14) and the uid of a start that never ran
# (issue 12), sourced by scenarios.sh. A tool is held at a named injection
# point (MICROVM_TEST_PAUSE_AT, test builds only) while the racing action
# runs; nothing waits on a fixed sleep. The priv-level races (two stages by
# hand, the last uid, cleanup against a dying firecracker) are in
# tests/priv/test-tool-races.c.

# The installed libexec dir (where microvm-stage and the others are).
libexec_dir() {
        dirname "$(tool_path microvm-reclaim.service)"
}

# pids of firecracker processes of VM $1 (by its uid)
fc_count() {
        local uid
        uid=$(vm_uid "$1") || { echo 0; return; }
        pids_of_uid "$uid" | wc -l
}

# Issue 12.7, the part after microvm-stage: a first start that fails before
# the jailer could run firecracker (microvm-launch killed before its exec,
# or right after it moved the first-run marker, the jail still root's)
# gives its uid back in microvm-cleanup; a VM that ran keeps it.
sc_first_run_uid() {
        local id=firstrun u point uid
        need_hooks "$(libexec_dir)/microvm-launch"
        u=$(unit_of $id)
        vm_config $id
        use $id
        for point in launch-enter-leaf launch-first-run-launching; do
                kill_env "$u" "microvm-launch:$point"
                ! timeout 60 systemctl start "$u" 2>/dev/null ||
                        fail "systemctl start succeeded with microvm-launch killed at $point" || return
                wait_state $id failed || return
                exec_succeeded $id ExecStopPost || return
                [ ! -e "$E2E_STATE_DIR/$id" ] ||
                        fail "launch killed at $point: the state of a VM that never ran is kept: $(ls -A "$E2E_STATE_DIR/$id" | tr '\n' ' ')" || return
                journal_has "Gave back uid [0-9]+: $id never ran" -u "$u" ||
                        fail "launch killed at $point: microvm-cleanup did not say it gave the uid back" || return
                assert_no_debris $id || return
                systemctl reset-failed "$u"
                note "microvm-launch killed at $point: $(journalctl --no-pager -q -o cat -u "$u" | grep -m 1 -E "Gave back uid [0-9]+: $id")"
        done
        kill_env "$u"
        start_vm $id || return
        assert_vm_running $id || return
        uid=$(vm_uid $id) || fail "no uid record" || return
        stop_vm $id || return
        [ "$(vm_uid $id)" = "$uid" ] || fail "a VM that ran lost its uid $uid" || return
        [ ! -e "$E2E_STATE_DIR/$id/unlaunched" ] && [ ! -e "$E2E_STATE_DIR/$id/launching" ] ||
                fail "a VM that ran still carries a first-run marker: $(ls -A "$E2E_STATE_DIR/$id" | tr '\n' ' ')" || return
        assert_no_debris $id || return
}

# Two starts of one VM at once: two systemctl start while the first start's
# microvm-stage is held (systemd merges them into one job), and a
# microvm-stage by hand beside it, which must refuse without touching what
# the held one built. One stage, one firecracker, the VM running.
sc_two_starts() {
        local id=twostart hold=/run/e2e-hold u p1 p2 st1=0 st2=0 out
        need_hooks "$(libexec_dir)/microvm-stage"
        u=$(unit_of $id)
        vm_config $id
        dropin $id "Environment=MICROVM_TEST_PAUSE_AT=stage-jail MICROVM_TEST_PAUSE_FIFO=$hold"
        systemctl daemon-reload
        use $id
        hold_fifos $hold
        timeout 60 systemctl start "$u" & p1=$!
        timeout 60 cat $hold.reached >/dev/null || fail "microvm-stage never reached its hold" || return
        timeout 60 systemctl start "$u" & p2=$!
        # the second start joined the first's job: one job for the unit
        [ "$(systemctl list-jobs --no-legend "$u" | wc -l)" = 1 ] ||
                fail "not one start job: $(systemctl list-jobs --no-legend "$u")" || return
        if out=$("$(libexec_dir)/microvm-stage" $id 2>&1); then
                fail "a microvm-stage by hand ran beside systemd's: $out"
                return
        fi
        grep -q "Another microvm-stage of $id is running" <<<"$out" ||
                fail "the stage by hand did not say why it refused: $out" || return
        [ -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root/vm-config.json" ] ||
                fail "the stage by hand removed the held stage's jail" || return
        timeout 10 sh -c "echo go >$hold" || fail "stage did not wait at its hold" || return
        wait $p1 || st1=$?
        wait $p2 || st2=$?
        [ $st1 = 0 ] && [ $st2 = 0 ] || fail "systemctl start exited $st1 and $st2" || return
        assert_vm_running $id || return
        [ "$(fc_count $id)" = 1 ] || fail "$(fc_count $id) processes of the VM's uid, not 1" || return
        [ "$(journalctl --no-pager -q -o cat -u "$u" _COMM=microvm-stage | grep -c "runs as uid")" -le 1 ] ||
                fail "more than one uid allocation logged" || return
        note "two systemctl start and one microvm-stage by hand at once: one job, the hand one refused: $out"
        stop_vm $id || return
        rm -rf "/run/systemd/system/$u.d" $hold $hold.reached
        systemctl daemon-reload
        assert_no_debris $id || return
}

# A start racing a stop, at the two steps after microvm-stage (the stop
# during it is sc_stop_during_stage): microvm-launch held before it execs
# the jailer (no process of the uid ever ran: the first uid is given back),
# and microvm-ready waiting with firecracker up (a VMM whose API never
# answers, fcdouble.hang=vmm: the VM ran, its uid stays). The stop
# completes, nothing is left, and the next start works.
start_post_with_vmm() {
        state_is "$1" activating start-post && vms_main_firecracker "$1"
}

sc_start_racing_stop() {
        local id=startstop hold=/run/e2e-hold u how st uid
        need_hooks "$(libexec_dir)/microvm-launch"
        u=$(unit_of $id)
        use $id
        for how in launch ready; do
                if [ $how = launch ]; then
                        vm_config $id
                        dropin $id "Environment=MICROVM_TEST_PAUSE_AT=microvm-launch:launch-console-to-stdin MICROVM_TEST_PAUSE_FIFO=$hold"
                        systemctl daemon-reload
                        hold_fifos $hold
                        systemctl start --no-block "$u"
                        timeout 60 cat $hold.reached >/dev/null || fail "microvm-launch never reached its hold" || return
                else
                        vm_config $id knobs=fcdouble.hang=vmm
                        systemctl daemon-reload
                        systemctl start --no-block "$u"
                        wait_until 60 "microvm-ready waiting on a running firecracker" start_post_with_vmm $id || return
                fi
                uid=$(vm_uid $id)
                timeout 60 systemctl stop "$u" || fail "the stop during $how did not complete" || return
                [ $how = ready ] || timeout 5 sh -c "echo go >$hold" 2>/dev/null || true # (SIGTERM may have ended it at the hold)
                wait_until 30 "the unit to settle" stage_done $id || return
                st="$(vprop $id ActiveState)/$(vprop $id Result)"
                case $st in inactive/* | failed/*) ;; *) fail "after the stop during $how: $st" || return ;; esac
                assert_no_debris $id || return
                if [ $how = launch ]; then
                        [ ! -e "$E2E_STATE_DIR/$id" ] || fail "stop before the jailer ran: the first uid $uid is kept" || return
                else
                        [ "$(vm_uid $id)" = "$uid" ] || fail "stop after firecracker ran: uid $uid not kept" || return
                fi
                note "stop during $how: $st, uid $uid $([ -e "$E2E_STATE_DIR/$id" ] && echo kept || echo given back)"
                systemctl reset-failed "$u" 2>/dev/null || true
                rm -rf "/run/systemd/system/$u.d"
        done
        rm -f $hold $hold.reached
        vm_config $id
        systemctl daemon-reload
        start_vm $id || return
        assert_vm_running $id || return
        stop_vm $id || return
        assert_no_debris $id || return
}

# Reclaim during 20 concurrent starts: microvm-reclaim run by hand is held
# at every decision (each VM has crash debris for it to find); while it is
# held at the first, 20 starts begin (their stages wait for the reclaim
# lock); then reclaim goes on, one decision at a time. Every start comes
# up, each with its own uid, reclaim having skipped every VM.
sc_reclaim_concurrent_starts() {
        local n=20 hold=/run/e2e-hold reclaim ids=() id i rpid st=0 out uids
        reclaim=$(tool_path microvm-reclaim.service)
        need_hooks "$reclaim"
        for i in $(seq $n); do
                id=rc$i
                ids+=("$id")
                vm_config $id
        done
        systemctl daemon-reload
        use "${ids[@]}"
        systemctl start microvm-reclaim.service || fail "microvm-reclaim.service failed" || return
        for id in "${ids[@]}"; do
                mkdir -p "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id/root" # what a crash left
        done
        out=$(mktemp)
        hold_fifos $hold
        MICROVM_TEST_PAUSE_AT=reclaim-decided MICROVM_TEST_PAUSE_FIFO=$hold "$reclaim" >"$out" 2>&1 &
        rpid=$!
        HELD_PID=$rpid
        timeout 30 cat $hold.reached >/dev/null || fail "reclaim never reached a decision" || return
        for id in "${ids[@]}"; do
                systemctl start --no-block "$(unit_of $id)"
        done
        for id in "${ids[@]}"; do
                wait_until 30 "microvm-stage of $id in its unit's cgroup" stage_in_cgroup $id || return
        done
        # one release per decision; each hold reports itself on .reached
        while kill -0 $rpid 2>/dev/null; do
                timeout 5 sh -c "echo go >$hold" 2>/dev/null || true
                timeout 5 cat $hold.reached >/dev/null 2>&1 || true
        done
        wait $rpid || st=$?
        # shellcheck disable=SC2034 # read by hold_fifos' trap (scenarios.sh)
        HELD_PID=
        [ $st = 0 ] || fail "reclaim exited $st: $(tr '\n' ' ' <"$out")" || return
        for id in "${ids[@]}"; do
                wait_until 60 "$id to come up" stage_done $id || return
        done
        assert_vms_running "${ids[@]}" || return
        uids=$(for id in "${ids[@]}"; do vm_uid $id; done | sort -u | wc -l)
        [ "$uids" = $n ] || fail "$n VMs share $uids uids" || return
        for id in "${ids[@]}"; do
                [ "$(fc_count $id)" = 1 ] || fail "$id: $(fc_count $id) processes of its uid" || return
        done
        note "$n starts begun while reclaim was held: all up with $uids distinct uids; reclaim: $(grep -c 'is starting' "$out") skipped as starting"
        stop_vm "${ids[@]}" || return
        assert_no_debris "${ids[@]}" || return
        rm -f "$out" $hold $hold.reached
}
