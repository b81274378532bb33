# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/lib.sh — helpers for scripts that run *inside* the e2e container
# (tests/e2e/scenarios.sh, bench/e2e's inner part): the host config and
# images, VM configs, unit state, the journal, debris checks.
#
# Waiting is on events, never on a fixed sleep: systemctl start/stop block
# on their jobs; journal lines are followed (journalctl -f, inotify) until
# they show up or a deadline passes; unit state and files are re-checked at
# a short interval until a deadline.

E2E_LIBDIR=/usr/local/lib/microvm-test
E2E_IMAGES=/var/lib/microvm/images
E2E_CHROOT_BASE=/srv/jailer
E2E_EXEC_NAME=firecracker
E2E_STATE_DIR=/var/lib/microvm
E2E_RUN_DIR=/run/microvm
E2E_VM_DIR=/etc/microvm/vms
E2E_CG=/sys/fs/cgroup
E2E_SLICE_CG=$E2E_CG/microvm.slice
E2E_MEMORY_OVERHEAD=$((64 << 20))
E2E_UID_MIN=1000000
E2E_UID_MAX=1065535

now_ms() {
        local t=${EPOCHREALTIME/[.,]/}
        echo $((t / 1000))
}

# The host config pointing at the test doubles, and guest images: the
# firecracker double only opens them (a few KiB "kernel", a sparse disk).
e2e_setup() {
        install -d -m 0755 /etc/microvm "$E2E_VM_DIR"
        cat >/etc/microvm/microvm.conf.tmp <<EOF
# Written by microvm's e2e suite: the jailer and firecracker test doubles.
[host]
jailer = $E2E_LIBDIR/jailer
firecracker = $E2E_LIBDIR/firecracker
chroot_base = $E2E_CHROOT_BASE
state_dir = $E2E_STATE_DIR
uid_range = $E2E_UID_MIN-$E2E_UID_MAX
memory_overhead = 64M
EOF
        mv -f /etc/microvm/microvm.conf.tmp /etc/microvm/microvm.conf
        install -d -m 0700 "$E2E_STATE_DIR"
        install -d -m 0755 "$E2E_IMAGES"
        if [ ! -e "$E2E_IMAGES/vmlinux" ]; then
                head -c 8192 /dev/urandom >"$E2E_IMAGES/vmlinux.tmp"
                chmod 0644 "$E2E_IMAGES/vmlinux.tmp"
                mv "$E2E_IMAGES/vmlinux.tmp" "$E2E_IMAGES/vmlinux"
        fi
        if [ ! -e "$E2E_IMAGES/rootfs.ext4" ]; then
                truncate -s 64M "$E2E_IMAGES/rootfs.ext4.tmp"
                chmod 0644 "$E2E_IMAGES/rootfs.ext4.tmp"
                mv "$E2E_IMAGES/rootfs.ext4.tmp" "$E2E_IMAGES/rootfs.ext4"
        fi
}

# vm_config ID [KEY=VALUE...] writes /etc/microvm/vms/ID.conf (atomically).
# KEYs are [vm] keys, "drive_KEY" for the root drive, "knobs" for
# fcdouble.* parameters appended to the kernel command line, "cmdline" for
# a command line of its own instead (knobs then ignored). Defaults: a
# small VM, restart = no, stop_timeout = 5s, a writable file drive.
vm_config() {
        local id=$1 kv k knobs="" f cmdline=""
        local -A vm=([description]="e2e VM $id" [memory]=128M [kernel]=$E2E_IMAGES/vmlinux
                     [restart]=no [stop_timeout]=5s)
        local -A drive=([mode]=file [path]=$E2E_IMAGES/rootfs.ext4 [root]=yes)
        shift
        for kv in "$@"; do
                k=${kv%%=*}
                case $k in
                knobs) knobs=" ${kv#*=}" ;;
                cmdline) cmdline=${kv#*=} ;;
                drive_*) drive[${k#drive_}]=${kv#*=} ;;
                *) vm[$k]=${kv#*=} ;;
                esac
        done
        f=$E2E_VM_DIR/$id.conf
        {
                echo "# VM $id (written by microvm's tests/e2e/lib.sh); see microvm.conf(5)"
                echo "[vm]"
                for k in $(printf '%s\n' "${!vm[@]}" | sort); do echo "$k = ${vm[$k]}"; done
                echo "cmdline = \"${cmdline:-console=ttyS0 reboot=k panic=1$knobs}\""
                echo
                echo "[drive.root]"
                for k in $(printf '%s\n' "${!drive[@]}" | sort); do echo "$k = ${drive[$k]}"; done
        } >"$f.tmp"
        chmod 0644 "$f.tmp"
        mv -f "$f.tmp" "$f"
}

unit_of() {
        echo "microvm@$1.service"
}

# uprop UNIT PROPERTY / vprop ID PROPERTY: systemd's view.
uprop() {
        systemctl show -p "$2" --value "$1"
}
vprop() {
        uprop "$(unit_of "$1")" "$2"
}

# load_props UNIT PROPERTY...: systemd's view, into P[PROPERTY], in one call.
declare -gA P
load_props() {
        local unit=$1 k v args=()
        shift
        for k in "$@"; do args+=(-p "$k"); done
        P=()
        while IFS='=' read -r k v; do
                P[$k]=$v
        done < <(systemctl show "${args[@]}" "$unit")
}

# wait_until SECONDS DESCRIPTION COMMAND...: re-checks COMMAND every 10 ms
# until it succeeds; on timeout says what it waited for and fails.
wait_until() {
        local secs=$1 what=$2 deadline
        shift 2
        deadline=$(( $(now_ms) + secs * 1000 ))
        until "$@"; do
                if [ "$(now_ms)" -ge "$deadline" ]; then
                        echo "timed out after ${secs}s waiting for $what"
                        return 1
                fi
                sleep 0.01
        done
}

state_is() { # state_is ID ACTIVESTATE [SUBSTATE]
        local s
        s=$(systemctl show -p ActiveState -p SubState --value "$(unit_of "$1")" | tr '\n' ' ')
        case $s in
        "$2 ${3:-}"*) return 0 ;;
        esac
        return 1
}

wait_state() { # wait_state ID ACTIVESTATE [SUBSTATE [SECONDS]]
        wait_until "${4:-20}" "$(unit_of "$1") to be $2${3:+/$3} (is $(vprop "$1" ActiveState)/$(vprop "$1" SubState))" \
                state_is "$1" "$2" "${3:-}"
}

# journalctl, in these scripts, first asks journald to store what it was
# sent until now (--sync returns once journald has processed its pending
# input and written it): a tool's or the console's last line, written just
# before "systemctl start" returned, may still sit in a socket buffer.
# Without it, a check of the journal right after an action is a race, and
# "no such line" proves nothing. Following (-f) needs no sync.
journalctl() {
        command journalctl --sync 2>/dev/null || true
        command journalctl "$@"
}

# wait_journal SECONDS ERE JOURNALCTL-ARGS...: follows the journal (all of
# it, then new entries as journald writes them) until a message matches.
wait_journal() {
        local secs=$1 re=$2 rc=1 fd pid
        shift 2
        exec {fd}< <(exec timeout "$secs" journalctl --no-pager -q -f -n all -o cat "$@" 2>/dev/null)
        pid=$!
        if grep -m 1 -qE -- "$re" <&$fd; then
                rc=0
        fi
        kill "$pid" 2>/dev/null || true
        exec {fd}<&-
        if [ $rc != 0 ]; then
                echo "no journal line matching /$re/ within ${secs}s for: journalctl $*"
        fi
        return $rc
}

# journal_gap_ms ERE1 ERE2 JOURNALCTL-ARGS...: milliseconds between the
# last line matching ERE1 and the first after it matching ERE2, by the
# journal's monotonic timestamps (empty when either is missing).
journal_gap_ms() {
        local a=$1 b=$2
        shift 2
        journalctl --no-pager -q -o export --output-fields=MESSAGE "$@" 2>/dev/null | awk -v a="$a" -v b="$b" '
                /^__MONOTONIC_TIMESTAMP=/ { t = substr($0, 23) }
                /^MESSAGE=/ { m = substr($0, 9)
                        if (m ~ a) { t1 = t; t2 = "" }
                        else if (t1 != "" && t2 == "" && m ~ b) t2 = t }
                END { if (t1 != "" && t2 != "") printf "%d\n", (t2 - t1) / 1000 }'
}

# journal_has ERE JOURNALCTL-ARGS...: the journal has such a line now.
journal_has() {
        local re=$1
        shift
        journalctl --no-pager -q -o cat "$@" 2>/dev/null | grep -qE -- "$re"
}

vm_uid() {
        local u
        read -r u 2>/dev/null <"$E2E_STATE_DIR/$1/uid" || return 1
        echo "$u"
}

# Pids of processes running as uid $1.
pids_of_uid() {
        awk -v u="$1" '$1 == "Uid:" && $2 == u { split(FILENAME, p, "/"); print p[3] }' \
                /proc/[0-9]*/status 2>/dev/null
}

# bulk_prop PROPERTY ID...: "ID VALUE" per VM, from one systemctl call.
bulk_prop() {
        local prop=$1 id units=()
        shift
        for id in "$@"; do units+=("$(unit_of "$id")"); done
        systemctl show -p Id -p "$prop" "${units[@]}" | awk -v p="$prop" 'BEGIN { RS = ""; FS = "\n" } {
                id = ""; v = ""
                for (i = 1; i <= NF; i++) {
                        if ($i ~ /^Id=/) id = substr($i, 4)
                        else if (index($i, p "=") == 1) v = substr($i, length(p) + 2)
                }
                sub(/^microvm@/, "", id); sub(/\.service$/, "", id); print id, v }'
}

# What is left of VM $1 (nothing printed: nothing left): an active unit,
# jail, run dir, cgroup subtree, processes of its uid. $2: its ActiveState,
# if known.
vm_debris() {
        local id=$1 s=${2:-} uid
        [ -n "$s" ] || s=$(vprop "$id" ActiveState)
        case $s in inactive | failed) ;; *) echo "unit $(unit_of "$id") is $s" ;; esac
        [ ! -e "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id" ] ||
                echo "jail $E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id: $(find "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/$id" | head -n 20 | tr '\n' ' ')"
        [ ! -e "$E2E_RUN_DIR/$id" ] ||
                echo "run dir $E2E_RUN_DIR/$id: $(find "$E2E_RUN_DIR/$id" | head -n 20 | tr '\n' ' ')"
        [ ! -e "$E2E_SLICE_CG/microvm@$id.service" ] ||
                echo "cgroup: $(find "$E2E_SLICE_CG/microvm@$id.service" -type d | tr '\n' ' ')"
        if uid=$(vm_uid "$id"); then
                s=$(pids_of_uid "$uid" | tr '\n' ' ')
                [ -z "$s" ] || echo "processes of uid $uid: $s"
        fi
}

no_debris() {
        [ -z "$(vm_debris "$1")" ]
}

# Fails, saying what is left, unless nothing is (systemd prunes an empty
# unit cgroup right after the stop job: allow it a moment).
assert_no_debris() {
        local id state
        while read -r id state; do
                [ -n "$(vm_debris "$id" "$state")" ] || continue
                if ! wait_until 5 "no debris of $id" no_debris "$id" >/dev/null; then
                        echo "debris of VM $id:"
                        vm_debris "$id" | sed 's/^/    /'
                        return 1
                fi
        done < <(bulk_prop ActiveState "$@")
}

# The last status of an Exec*= command, from systemctl show (e.g.
# "code=killed status=9/KILL").
exec_status() { # exec_status ID ExecStartPre
        vprop "$1" "$2" | sed -n 's/.*; code=\([^ ]*\) ; status=\([^ ]*\) .*/code=\1 status=\2/p' | tail -n 1
}

exec_succeeded() { # exec_succeeded ID ExecStopPost: its last run exited 0
        case $(exec_status "$1" "$2") in
        "code=exited status=0" | "code=exited status=0/SUCCESS") return 0 ;;
        esac
        echo "$2 of $(unit_of "$1"): $(exec_status "$1" "$2")"
        return 1
}

vm_dump() { # diagnostics for a VM: state, journal
        local id
        for id in "$@"; do
                echo "--- $(unit_of "$id"): $(systemctl show -p ActiveState -p SubState -p Result -p MainPID -p NRestarts "$(unit_of "$id")" | tr '\n' ' ')"
                journalctl --no-pager -q -o short-monotonic -u "$(unit_of "$id")" | tail -n 60
        done
}
