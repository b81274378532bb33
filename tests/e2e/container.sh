# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/container.sh — a throwaway booted systemd, for the e2e suite
# (tests/e2e/run), bench/e2e and scripts/demo. Sourced by bash; everything
# it defines starts with ct_ or CT_. Root only.
#
# The container is the host's own / booted by systemd-nspawn: an overlay
# with / as its lower layer and a tmpfs as its upper one (whatever the
# container writes is RAM and goes away with the tmpfs), its own machine
# id, a private network, pure cgroup v2 inside even on a hybrid host, and a
# minimal boot target (no service the host happens to enable runs in it).
#
#     . tests/e2e/container.sh
#     reason=$(ct_unusable) && skip "$reason"
#     trap 'ct_on_exit' EXIT; trap 'exit 143' TERM; trap 'exit 130' INT
#     ct_cleanup_stale           # leftovers of runs that were SIGKILLed
#     ct_create                  # overlay root at $CT_ROOT
#     ...install into $CT_ROOT...
#     ct_boot                    # nspawn --boot, wait until systemd runs
#     ct_exec systemctl ...      # a command inside (all namespaces)
#     ct_destroy                 # poweroff, teardown, ct_verify_clean
#
# scripts/fresh-host-test boots a bootstrapped Debian root instead of the
# host's /: ct_create_copy DIR (a copy on disk, not an overlay),
# CT_BOOT_TARGET, CT_PRIVATE_NETWORK=no and its own CT_PREFIX.
#
# Nothing may stay on the host — mounts, cgroups (in the cgroup2 mount and
# in every v1 hierarchy), processes, nspawn's lock files — however the
# caller ends:
#  * normally: ct_destroy powers the container off, tears it down and
#    checks that nothing is left (ct_verify_clean);
#  * by a signal (meson's timeout: killpg SIGTERM, then SIGKILL 0.5 s later
#    if the test still runs): ct_on_exit leaves at once, and the reaper
#    below does the teardown in its own session, out of reach of the
#    SIGKILL;
#  * by SIGKILL: ct_create starts a reaper, a process in its own session
#    that blocks reading a pipe only the caller holds open (fd 9). When the
#    caller is gone, however it went, the read ends; if the caller has not
#    finished its own teardown, the reaper kills the container by cgroup
#    (cgroup.kill) and tears it down. ct_cleanup_stale is the last line of
#    defense (a SIGKILLed reaper, a crash): it tears down every instance
#    whose caller and reaper are both gone.
#
# Lessons this follows (measured on Debian 12, systemd 252, hybrid cgroups):
#  * --keep-unit --register=no: no host systemd/machined is needed (and on
#    this host there is none); nspawn then makes <its cgroup>/payload and
#    /supervisor in the cgroup2 and name=systemd hierarchies and never
#    removes them, so it starts in a cgroup of its own, $CT_NAME, in both,
#    which we remove.
#  * SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: pure cgroup v2 inside, the way the
#    units are written for, even when the host is hybrid.
#  * nspawn runs in its own session (setsid): a SIGTERM forwarded to an
#    early-booting container (before PID 1 installed its handlers) is lost
#    and the container runs forever; shutdown is ours alone: SIGRTMIN+4 to
#    PID 1 (poweroff), cgroup.kill as the backstop.
#  * bash runs a trap only after the foreground child exits: long commands
#    run as "cmd & wait $!". fd 9 (the reaper's pipe) and the caller's
#    stdout/stderr are not given to anything that may outlive the caller.
#  * nsenter'd commands stay in the caller's cgroup but live in the
#    container's pid namespace: they die with its PID 1. Long-lived things
#    inside are started through systemd, never through nsenter.
#  * journald writes asynchronously: read the journal by following it
#    until the line shows up (tests/e2e/lib.sh), never once.

CT_PREFIX=microvm-ct-
CT_LIB=$(readlink -f "${BASH_SOURCE[0]}")
CT_TMP=${MICROVM_CT_TMP:-/tmp}
CT_BOOT_TIMEOUT=${MICROVM_CT_BOOT_TIMEOUT:-120}
CT_STOP_TIMEOUT=${MICROVM_CT_STOP_TIMEOUT:-120}
# The in-container PATH and environment of ct_exec: not the caller's (meson's
# test environment, sanitizer options).
CT_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CT_NAME="" CT_BASE="" CT_ROOT="" CT_LOG="" CT_OWNER="" CT_CG2="" CT_CGSD=""
CT_NSPAWN_PID="" CT_PID1="" CT_PIDNS="" CT_PIDNS_FD="" CT_DEVS="" CT_DONE="" CT_BOOT_MS=""
# More arguments for the container's systemd, e.g. systemd.setenv=VAR=VALUE
# (in a container systemd reads its "kernel command line" from its argv).
CT_INIT_ARGS=()
# More systemd-nspawn options, e.g. --bind=/dev/kvm.
CT_NSPAWN_ARGS=()
# The unit the container's systemd boots into (ct_create writes this one).
CT_BOOT_TARGET=microvm-ct.target
# yes: a network namespace of its own (--private-network); no: the host's.
CT_PRIVATE_NETWORK=yes

ct_log() {
        printf '%s\n' "${CT_LOG_TAG:-container}: $*" >&2
}

ct_now_ms() {
        local t=${EPOCHREALTIME/[.,]/}
        echo $((t / 1000))
}

# Alive and not a zombie (an orphan reparented to a slow reaper looks alive
# to kill -0 long after it exited).
ct_alive() {
        local s
        [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 1
        s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        s=${s##*) }
        [ "${s%% *}" != Z ]
}

ct_starttime() {
        local s
        s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        s=${s##*) }
        # after "comm) ": field 3 is state; starttime is field 22
        set -- $s
        echo "${20}"
}

# Mount points of a file system type, optionally with a super option
# (e.g. "cgroup name=systemd"), from our mountinfo.
ct_mounts_of_type() {
        awk -v t="$1" -v o="${2:-}" '{
                for (i = 7; i <= NF; i++) if ($i == "-") break
                if ($(i + 1) == t && (o == "" || index("," $(i + 3) ",", "," o ",")))
                        print $5
        }' /proc/self/mountinfo
}

ct_cgroup_mounts() {
        { ct_mounts_of_type cgroup2; ct_mounts_of_type cgroup; } | sort -u
}

# Prints why this machine cannot run the container and returns 0, or
# returns 1 when it can.
ct_unusable() {
        local c
        if [ "$(id -u)" != 0 ]; then
                echo "needs root (boots a systemd container with systemd-nspawn)"
                return 0
        fi
        for c in systemd-nspawn nsenter systemd-id128 mountpoint; do
                if ! command -v "$c" >/dev/null; then
                        echo "$c is not installed (apt-get install systemd-container util-linux)"
                        return 0
                fi
        done
        if [ ! -c /dev/net/tun ]; then
                echo "no /dev/net/tun (the private network of the container and the VMs' taps need it)"
                return 0
        fi
        if [ -z "$(ct_mounts_of_type cgroup2)" ]; then
                echo "no cgroup2 file system mounted (the units need cgroup v2)"
                return 0
        fi
        if ! grep -qw overlay /proc/filesystems && ! modprobe -q overlay 2>/dev/null; then
                echo "no overlayfs in this kernel (the container is an overlay of /)"
                return 0
        fi
        if [ -n "${container:-}" ] || [ -e /run/.containerenv ]; then
                echo "already inside a container (${container:-podman}); nspawn cannot nest here"
                return 0
        fi
        return 1
}

ct_init() {
        CT_NAME=$1
        CT_BASE=$CT_TMP/$CT_NAME
        CT_ROOT=$CT_BASE/root
        CT_LOG=$CT_TMP/$CT_NAME.log
        CT_OWNER=$CT_TMP/$CT_NAME.owner
        CT_CG2=$(ct_mounts_of_type cgroup2 | head -n 1)
        CT_CGSD=$(ct_mounts_of_type cgroup name=systemd | head -n 1)
}

# ---------------------------------------------------------------- creation

# ct_create_copy DIR: instead of ct_create, a root that is a copy of DIR (a
# bootstrapped Debian, scripts/fresh-host-test) in $CT_BASE on the file
# system of $CT_TMP, with its own machine id. The marker $CT_BASE/.copy
# tells ct_teardown (also the reaper's) to delete the copy.
ct_create_copy() {
        ct_init "$CT_PREFIX$$-$RANDOM"
        CT_DONE=
        echo "$$ $(ct_starttime $$)" >"$CT_OWNER"
        mkdir -m 0700 "$CT_BASE"
        : >"$CT_BASE/.copy"
        ct_start_reaper
        CT_DEVS=""
        cp -a --reflink=auto "$1" "$CT_ROOT" 9>&- &
        wait $! || return 1
        systemd-id128 new >"$CT_ROOT/etc/machine-id"
}

# The overlay root, with everything a boot needs; the caller then installs
# into $CT_ROOT.
ct_create() {
        ct_init "$CT_PREFIX$$-$RANDOM"
        CT_DONE=
        # Owner record first, outside the tmpfs: ct_cleanup_stale leaves an
        # instance alone while its caller or its reaper lives.
        echo "$$ $(ct_starttime $$)" >"$CT_OWNER"
        mkdir -m 0700 "$CT_BASE"
        # Upper and work dirs on a tmpfs: never below the lower dir (/), and
        # gone with one umount. Its source names the instance.
        mount -t tmpfs -o mode=0755 "$CT_NAME" "$CT_BASE"
        ct_start_reaper
        mkdir "$CT_BASE/upper" "$CT_BASE/work" "$CT_ROOT"
        mount -t overlay overlay -o "lowerdir=/,upperdir=$CT_BASE/upper,workdir=$CT_BASE/work" "$CT_ROOT"
        CT_DEVS="$(mountpoint -d "$CT_ROOT") $(mountpoint -d "$CT_BASE")"

        # Its own machine id (systemd-machine-id-setup --root would copy the
        # host's or D-Bus's): MACs and the journal derive from it.
        systemd-id128 new >"$CT_ROOT/etc/machine-id"
        mkdir -p "$CT_ROOT/var/lib/dbus"
        ln -sf /etc/machine-id "$CT_ROOT/var/lib/dbus/machine-id"

        # Boot into a target of our own (systemd.unit= on the command line):
        # sysinit (journald, tmpfiles) and sockets, none of the services or
        # timers the host enables for multi-user.target.
        cat >"$CT_ROOT/etc/systemd/system/microvm-ct.target" <<'EOF'
# Written by microvm's tests/e2e/container.sh: the container's boot target.
[Unit]
Description=microvm test container
Requires=sysinit.target sockets.target
After=sysinit.target sockets.target
AllowIsolate=yes
EOF
}

# The reaper: a process in its own session (beyond meson's killpg) whose
# stdin is a pipe only we hold open, on fd 9. Our exit, however it happens,
# ends its read; it then tears the instance down unless we did.
ct_start_reaper() {
        local fifo=$CT_TMP/$CT_NAME.lifeline
        rm -f "$fifo"
        mkfifo -m 0600 "$fifo"
        (
                exec 9>&-
                exec setsid bash -c '. "$1" && ct_reap "$2"' ct-reaper "$CT_LIB" "$CT_NAME" \
                        <"$fifo" >"$CT_TMP/$CT_NAME.reaper.log" 2>&1
        ) &
        # Blocks until the reaper has opened its end.
        exec 9>"$fifo"
        rm -f "$fifo"
        echo "$! $(ct_starttime $!)" >>"$CT_OWNER"
}

ct_reap() {
        ct_init "$1"
        trap '' HUP INT TERM PIPE
        while read -r _; do :; done
        # Our caller is gone. Did it finish its teardown?
        if [ ! -e "$CT_OWNER" ]; then
                rm -f "$CT_TMP/$CT_NAME.reaper.log"
                return 0
        fi
        CT_LOG_TAG="reaper $CT_NAME"
        ct_log "$(date -Is): the caller ended without tearing the container down; doing it"
        if ct_teardown && ct_verify_clean; then
                ct_log "done, nothing left"
        else
                ct_log "teardown incomplete; the next run's ct_cleanup_stale retries"
        fi
}

# ct_install_microvm BUILD JAILER FIRECRACKER [FILE...]: the project as
# "meson install" puts it on a host, from the build dir BUILD, into the
# container's root (its tmpfs upper layer); the jailer and firecracker test
# doubles root-owned 0755 in root-owned directories (the host config check
# demands that of a real jailer and firecracker) and FILEs (scripts run
# inside) into /usr/local/lib/microvm-test/.
CT_TESTLIB=/usr/local/lib/microvm-test
ct_install_microvm() {
        local build=$1 jailer=$2 firecracker=$3 f mode
        shift 3
        if ! meson install -C "$build" --destdir "$CT_ROOT" --no-rebuild --quiet >"$CT_BASE/install.log" 2>&1; then
                ct_log "meson install -C $build --destdir $CT_ROOT failed:"
                sed 's/^/    /' "$CT_BASE/install.log" >&2
                return 1
        fi
        rm -f "$CT_BASE/install.log"
        install -d -o root -g root -m 0755 "$CT_ROOT$CT_TESTLIB"
        install -o root -g root -m 0755 "$jailer" "$CT_ROOT$CT_TESTLIB/jailer"
        install -o root -g root -m 0755 "$firecracker" "$CT_ROOT$CT_TESTLIB/firecracker"
        for f in "$@"; do
                mode=0644
                [ ! -x "$f" ] || mode=0755
                install -o root -g root -m "$mode" "$f" "$CT_ROOT$CT_TESTLIB/"
        done
}

# ---------------------------------------------------------------- booting

ct_boot() {
        local args=() t0
        t0=$(ct_now_ms)
        # nspawn starts in a cgroup of its own in cgroup2 and in the v1
        # name=systemd hierarchy (where nspawn --keep-unit also makes its
        # payload/supervisor dirs on a hybrid host).
        mkdir "$CT_CG2/$CT_NAME"
        if [ -n "$CT_CGSD" ]; then
                mkdir "$CT_CGSD/$CT_NAME"
        fi
        args=(--quiet -D "$CT_ROOT" -M "$CT_NAME" --boot
              --register=no --keep-unit --link-journal=no
              --console=passive "${CT_NSPAWN_ARGS[@]}")
        [ "$CT_PRIVATE_NETWORK" = no ] || args+=(--private-network)
        (
                exec 9>&-
                echo "$BASHPID" >"$CT_CG2/$CT_NAME/cgroup.procs"
                if [ -n "$CT_CGSD" ]; then
                        echo "$BASHPID" >"$CT_CGSD/$CT_NAME/cgroup.procs"
                fi
                SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 exec setsid systemd-nspawn "${args[@]}" \
                        systemd.unit="$CT_BOOT_TARGET" systemd.show_status=0 "${CT_INIT_ARGS[@]}" \
                        </dev/null >"$CT_LOG" 2>&1
        ) &
        CT_NSPAWN_PID=$!
        ct_find_pid1 || return 1
        CT_PIDNS=$(readlink "/proc/$CT_PID1/ns/pid")
        # Held open until ct_destroy has checked for leftovers: a freed
        # namespace's inode number is soon another's (a busy host starts
        # containers all the time), and ct_verify_clean compares numbers.
        exec {CT_PIDNS_FD}<"/proc/$CT_PID1/ns/pid"
        ct_wait_running || return 1
        CT_BOOT_MS=$(( $(ct_now_ms) - t0 ))
}

# ct_delegate_controller CONTROLLER: make a cgroup v2 controller that the
# host's cgroup2 root offers available inside the container (for the
# jailer double's ancestor writes, see scenarios.sh): "+CONTROLLER" in
# cgroup.subtree_control of the host's cgroup2 root (when not there yet:
# recorded in $CT_TMP/$CT_NAME.controllers, ct_teardown takes it out again)
# and of the instance's cgroup, whose processes live in payload/ and
# supervisor/. Only for controllers systemd leaves alone (hugetlb, misc,
# rdma): the container's systemd must not depend on them. Returns 1 when
# the host has no such controller or refuses.
ct_delegate_controller() {
        local c=$1
        [[ " $(cat "$CT_CG2/cgroup.controllers") " == *" $c "* ]] || return 1
        if [[ " $(cat "$CT_CG2/cgroup.subtree_control") " != *" $c "* ]]; then
                echo "$c" >>"$CT_TMP/$CT_NAME.controllers"
                echo "+$c" >"$CT_CG2/cgroup.subtree_control" 2>/dev/null || return 1
        fi
        echo "+$c" >"$CT_CG2/$CT_NAME/cgroup.subtree_control" 2>/dev/null
}

# The container's PID 1: nspawn's child named systemd whose pid in its own
# namespace is 1.
ct_find_pid1() {
        local deadline c
        deadline=$(( $(ct_now_ms) + CT_BOOT_TIMEOUT * 1000 ))
        while [ "$(ct_now_ms)" -lt "$deadline" ]; do
                if ! ct_alive "$CT_NSPAWN_PID"; then
                        ct_log "systemd-nspawn exited during start-up:"
                        sed 's/^/    /' "$CT_LOG" >&2
                        return 1
                fi
                for c in $(cat /proc/"$CT_NSPAWN_PID"/task/*/children 2>/dev/null); do
                        if [ "$(cat "/proc/$c/comm" 2>/dev/null)" = systemd ] &&
                           grep -Eq '^NSpid:.*[[:space:]]1$' "/proc/$c/status" 2>/dev/null; then
                                CT_PID1=$c
                                return 0
                        fi
                done
                sleep 0.01
        done
        ct_log "no container PID 1 after ${CT_BOOT_TIMEOUT}s"
        return 1
}

# systemctl is-system-running --wait blocks until the boot is done; it
# fails at once only while PID 1's socket does not exist yet ("Failed to
# connect to bus", rarely "offline"): retry those.
ct_wait_running() {
        local deadline state left out=$CT_TMP/$CT_NAME.state
        deadline=$(( $(ct_now_ms) + CT_BOOT_TIMEOUT * 1000 ))
        while :; do
                left=$(( (deadline - $(ct_now_ms)) / 1000 + 1 ))
                ct_exec_bg timeout "$left" systemctl is-system-running --wait >"$out" 2>&1 || true
                state=$(tail -n 1 "$out")
                case $state in
                running) break ;;
                degraded)
                        ct_log "container booted degraded:"
                        ct_exec systemctl --failed --no-legend >&2 || true
                        break ;;
                maintenance | stopping)
                        ct_log "container boot failed: system state $state"
                        return 1 ;;
                esac
                if [ "$(ct_now_ms)" -ge "$deadline" ] || ! ct_alive "$CT_NSPAWN_PID"; then
                        ct_log "container did not boot (last state: $state)"
                        sed 's/^/    /' "$CT_LOG" >&2
                        return 1
                fi
                sleep 0.01
        done
        rm -f "$out"
}

# ---------------------------------------------------------------- using it

# A command inside the container, in every namespace of its PID 1, with a
# clean environment. Not for anything that must outlive the command: start
# such things as units.
ct_exec() {
        nsenter -t "$CT_PID1" -a \
                env -i PATH="$CT_PATH" LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= \
                SYSTEMD_LOG_COLOR=0 "$@" 9>&-
}

# The same, interruptible: our traps run while it runs.
ct_exec_bg() {
        ct_exec "$@" &
        wait $!
}

# ---------------------------------------------------------------- teardown

ct_destroy() {
        local rc=0
        ct_poweroff || rc=1
        ct_teardown || rc=1
        ct_verify_clean || rc=1
        if [ -n "$CT_PIDNS_FD" ]; then
                exec {CT_PIDNS_FD}<&-
                CT_PIDNS_FD=
        fi
        CT_DONE=1
        return $rc
}

# Clean shutdown (SIGRTMIN+4 to PID 1 = systemctl poweroff, without D-Bus),
# cgroup.kill after CT_STOP_TIMEOUT.
ct_poweroff() {
        local deadline
        [ -n "$CT_NSPAWN_PID" ] || return 0
        if ct_alive "$CT_PID1"; then
                kill -s SIGRTMIN+4 "$CT_PID1" 2>/dev/null || true
        fi
        deadline=$(( $(ct_now_ms) + CT_STOP_TIMEOUT * 1000 ))
        while ct_alive "$CT_NSPAWN_PID" && [ "$(ct_now_ms)" -lt "$deadline" ]; do
                sleep 0.01
        done
        if ct_alive "$CT_NSPAWN_PID"; then
                ct_log "the container did not power off within ${CT_STOP_TIMEOUT}s; killing it"
                ct_kill
        fi
        wait "$CT_NSPAWN_PID" 2>/dev/null || true
        CT_NSPAWN_PID=
}

# Hard stop: kill every process in the instance's cgroup subtree, nspawn
# included, and wait until the subtree is empty.
ct_kill() {
        local cg=$CT_CG2/$CT_NAME deadline p
        [ -d "$cg" ] || return 0
        if [ -e "$cg/cgroup.kill" ]; then
                echo 1 >"$cg/cgroup.kill" 2>/dev/null || true
        else
                # Before Linux 5.14: SIGKILL every pid, until none is left.
                find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null |
                        while read -r p; do kill -9 "$p" 2>/dev/null; done
        fi
        deadline=$(( $(ct_now_ms) + 10000 ))
        while grep -q '^populated 1' "$cg/cgroup.events" 2>/dev/null; do
                if [ "$(ct_now_ms)" -ge "$deadline" ]; then
                        ct_log "cgroup $cg still populated 10s after the kill"
                        return 1
                fi
                if [ ! -e "$cg/cgroup.kill" ]; then
                        find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null |
                                while read -r p; do kill -9 "$p" 2>/dev/null; done
                fi
                sleep 0.005
        done
        if [ -n "$CT_NSPAWN_PID" ]; then
                wait "$CT_NSPAWN_PID" 2>/dev/null || true
        fi
}

# A host crash: every process of the instance killed at once (no
# shutdown, no ExecStop), its cgroups and nspawn's lock removed, the root
# (its overlay) kept, so that ct_boot boots the same root again, as a host
# comes back after a power cut: /run and /tmp are new tmpfs, everything
# else is as the crash left it.
ct_crash() {
        local h cg lock
        lock=/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$CT_ROOT")
        # no "Killed" job report for nspawn: its death is the point here
        [ -z "$CT_NSPAWN_PID" ] || disown "$CT_NSPAWN_PID" 2>/dev/null || true
        ct_kill || return 1
        for h in $(ct_cgroup_mounts); do
                cg=$h/$CT_NAME
                [ -d "$cg" ] || continue
                find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
                if [ -d "$cg" ]; then
                        ct_log "cannot remove cgroup $cg after the crash"
                        return 1
                fi
        done
        rm -f "$lock"
        rm -rf --one-file-system "/run/systemd/nspawn/propagate/$CT_NAME"
        ct_wait_pidns_empty 10000
        CT_NSPAWN_PID=
        CT_PID1=
        CT_PIDNS=
}

# A graceful host reboot: the container powered off as systemctl poweroff
# does (ct_poweroff: every unit stopped, ExecStop= included), then what its
# end leaves on the host removed as after ct_crash, so that ct_boot boots
# the same root again.
ct_poweroff_for_reboot() {
        local h cg lock
        lock=/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$CT_ROOT")
        ct_poweroff || return 1
        for h in $(ct_cgroup_mounts); do
                cg=$h/$CT_NAME
                [ -d "$cg" ] || continue
                find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
                if [ -d "$cg" ]; then
                        ct_log "cannot remove cgroup $cg after the poweroff"
                        return 1
                fi
        done
        rm -f "$lock"
        rm -rf --one-file-system "/run/systemd/nspawn/propagate/$CT_NAME"
        ct_wait_pidns_empty 10000
        CT_PID1=
        CT_PIDNS=
}

ct_umount() {
        for _ in $(seq 100); do
                mountpoint -q "$1" 2>/dev/null || return 0
                umount "$1" 2>/dev/null && return 0
                # a just-killed process may hold a file open for a moment
                sleep 0.02
        done
        ct_log "$1 still busy; detaching it lazily"
        umount -l "$1"
}

# Idempotent, for a live, half-made or dead instance ($CT_NAME set): kills
# what runs, removes cgroups in every hierarchy, nspawn's leftovers, the
# mounts and the directories.
ct_teardown() {
        local rc=0 h cg lock="" l
        if [ -n "$CT_CG2" ] && [ -d "$CT_CG2/$CT_NAME" ]; then
                ct_kill || rc=1
        fi
        if mountpoint -q "$CT_ROOT" 2>/dev/null; then
                [ -n "$CT_DEVS" ] || CT_DEVS="$(mountpoint -d "$CT_ROOT") $(mountpoint -d "$CT_BASE")"
                lock=/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$CT_ROOT")
        elif [ -e "$CT_BASE/.copy" ] && [ -d "$CT_ROOT" ]; then
                lock=/run/systemd/nspawn/locks/inode-$(stat -c %d:%i "$CT_ROOT")
        fi
        # Loop devices are global: one attached inside and left would pin
        # the tmpfs. The tests attach none; a tool might leak one.
        for l in $(ct_loops_on_our_devs); do
                losetup -d "$l" 2>/dev/null && ct_log "detached leaked loop device $l"
        done
        for h in $(ct_cgroup_mounts); do
                cg=$h/$CT_NAME
                [ -d "$cg" ] || continue
                # depth first; fails while anything still lives in it
                find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
                if [ -d "$cg" ]; then
                        ct_log "cannot remove cgroup $cg: $(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null | tr '\n' ' ')"
                        rc=1
                fi
        done
        # Controllers ct_delegate_controller enabled in the host's root,
        # once nothing of ours uses them.
        if [ -f "$CT_TMP/$CT_NAME.controllers" ] && [ -n "$CT_CG2" ] && [ ! -d "$CT_CG2/$CT_NAME" ]; then
                while read -r h; do
                        echo "-$h" >"$CT_CG2/cgroup.subtree_control" 2>/dev/null ||
                                ct_log "cannot disable the $h controller in $CT_CG2 again (in use elsewhere?)"
                done <"$CT_TMP/$CT_NAME.controllers"
                rm -f "$CT_TMP/$CT_NAME.controllers"
        fi
        # nspawn removes these itself, except when it was killed.
        [ -z "$lock" ] || rm -f "$lock"
        if [ -d "/run/systemd/nspawn/propagate/$CT_NAME" ]; then
                rm -rf --one-file-system "/run/systemd/nspawn/propagate/$CT_NAME"
        fi
        ct_umount "$CT_ROOT" || rc=1
        ct_umount "$CT_BASE" || rc=1
        if [ -e "$CT_BASE/.copy" ]; then
                # ct_create_copy's root, on the host's disk
                rm -rf --one-file-system "$CT_BASE" || rc=1
        elif [ -d "$CT_BASE" ]; then
                rmdir "$CT_BASE" || rc=1
        fi
        rm -f "$CT_TMP/$CT_NAME.lifeline" "$CT_TMP/$CT_NAME.state"
        if [ $rc = 0 ]; then
                # nspawn's own log: kept only when something went wrong
                [ -n "${CT_KEEP_LOG:-}" ] || rm -f "$CT_LOG"
                rm -f "$CT_OWNER"
        fi
        return $rc
}

ct_loops_on_our_devs() {
        local d
        command -v losetup >/dev/null || return 0
        if [ -e "$CT_BASE/.copy" ]; then
                # a copied root is no file system of its own: loops whose
                # backing file is below it
                losetup -n -l -O NAME,BACK-FILE 2>/dev/null | awk -v p="$CT_BASE/" 'index($2, p) == 1 { print $1 }'
                return 0
        fi
        for d in $CT_DEVS; do
                losetup -n -l -O NAME,BACK-MAJ:MIN 2>/dev/null | awk -v d="$d" '$2 == d { print $1 }'
        done
}

# ct_wait_pidns_empty MS: until no process of the container's pid namespace
# is left, at most MS milliseconds.
ct_wait_pidns_empty() {
        local deadline=$(( $(ct_now_ms) + $1 )) p left
        while :; do
                left=
                for p in /proc/[0-9]*; do
                        [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$CT_PIDNS" ] && left=1 && break
                done
                [ -n "$left" ] && [ "$(ct_now_ms)" -lt "$deadline" ] || return 0
                sleep 0.01
        done
}

# Nothing of the instance left on the host: mounts, cgroups in any
# hierarchy, processes of its pid namespace, nspawn's files, directories,
# loop devices on its file systems.
ct_verify_clean() {
        local bad=0 h p
        if grep -F -e " $CT_BASE" -e " $CT_NAME " /proc/self/mountinfo >&2; then
                ct_log "DEBRIS: mounts (above)"
                bad=1
        fi
        for h in $(ct_cgroup_mounts); do
                if [ -e "$h/$CT_NAME" ]; then
                        ct_log "DEBRIS: cgroup $h/$CT_NAME"
                        bad=1
                fi
        done
        if [ -n "$CT_PIDNS" ]; then
                # A killed process is in /proc until it is reaped: give the
                # reaping a bounded moment, then whatever is left is debris.
                ct_wait_pidns_empty 10000
                for p in /proc/[0-9]*; do
                        if [ "$(readlink "$p/ns/pid" 2>/dev/null)" = "$CT_PIDNS" ]; then
                                ct_log "DEBRIS: process ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)) of the container's pid namespace"
                                bad=1
                        fi
                done
        fi
        for p in "$CT_NSPAWN_PID" "$CT_PID1"; do
                if ct_alive "$p"; then
                        ct_log "DEBRIS: process $p ($(cat "/proc/$p/comm" 2>/dev/null)) alive"
                        bad=1
                fi
        done
        for p in "/run/systemd/nspawn/propagate/$CT_NAME" "$CT_BASE" "$CT_OWNER" "$CT_TMP/$CT_NAME.controllers"; do
                if [ -e "$p" ]; then
                        ct_log "DEBRIS: $p"
                        bad=1
                fi
        done
        if [ -n "$(ct_loops_on_our_devs)" ]; then
                ct_log "DEBRIS: loop devices on the container's file systems: $(ct_loops_on_our_devs | tr '\n' ' ')"
                bad=1
        fi
        return $bad
}

# For the caller's EXIT trap. After a signal: leave at once (the reaper,
# beyond meson's SIGKILL, tears down). Otherwise tear down here.
ct_on_exit() {
        local rc=$?
        set +e
        trap - EXIT
        if [ -n "$CT_NAME" ] && [ -z "$CT_DONE" ]; then
                if [ "$rc" -gt 128 ]; then
                        ct_log "interrupted (status $rc); the reaper tears the container down"
                else
                        ct_destroy || rc=1
                fi
        fi
        exit "$rc"
}

# Tears down leftovers of earlier runs whose caller and reaper are both
# gone (SIGKILL of both, a crash): found by name in the cgroup hierarchies,
# among tmpfs mounts (source = instance name), in $CT_TMP and among
# nspawn's propagate dirs.
ct_cleanup_stale() {
        local n pid start keep
        for n in $( {
                        for h in $(ct_cgroup_mounts); do ls -d "$h/$CT_PREFIX"* 2>/dev/null; done
                        ls -d "$CT_TMP/$CT_PREFIX"* /run/systemd/nspawn/propagate/"$CT_PREFIX"* 2>/dev/null
                        awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break
                               if ($(i + 1) == "tmpfs") print $(i + 2) }' /proc/self/mountinfo
                    } | xargs -rn1 basename | sed -E 's/\.(owner|log|reaper\.log|state|lifeline)$//' | sort -u); do
                case $n in "$CT_PREFIX"[0-9]*) ;; *) continue ;; esac
                keep=
                if [ -r "$CT_TMP/$n.owner" ]; then
                        while read -r pid start; do
                                if ct_alive "$pid" && [ "$(ct_starttime "$pid")" = "$start" ]; then
                                        keep=$pid
                                fi
                        done <"$CT_TMP/$n.owner"
                elif [ ! -e "$CT_TMP/$n" ] && { [ -e "$CT_TMP/$n.reaper.log" ] || [ -e "$CT_TMP/$n.log" ]; }; then
                        # only logs kept for diagnosis: nothing to tear down
                        continue
                fi
                [ -z "$keep" ] || continue
                (
                        CT_LOG_TAG="stale $n"
                        ct_init "$n"
                        CT_KEEP_LOG=1
                        ct_log "tearing down a leftover instance"
                        ct_teardown && ct_verify_clean
                ) || true
        done
}
