# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/hosts/hosts.sh — N booted systemd containers that act as separate
# hosts reached over a real ssh connection, for the multi-host tests
# (test-remote: microvmctl -H; test-ansible: the Ansible collection).
# Sourced by bash; everything it defines starts with hosts_ or HOSTS_.
# Root only.
#
#     . tests/hosts/hosts.sh
#     reason=$(hosts_unusable) && skip "$reason"
#     hosts_prepare_root() { ...install into $1 (a root) for host $2... }
#     trap 'hosts_on_exit' EXIT; trap 'exit 143' TERM; trap 'exit 130' INT
#     hosts_up 3                    # host1..host3 booted, sshd up, reachable
#     hosts_ctl ssh host2 true      # a command on the controller side
#     hosts_exec 2 systemctl ...    # a command inside host2 (nsenter)
#     hosts_down                    # poweroff, teardown, nothing left
#
# The lifelines are fds of the caller's shell: a child that outlives the
# caller holds them open and keeps the hosts up until it ends. Run such
# things (ssh with ControlPersist, anything started in the background)
# through hosts_ctl or hosts_exec, which close them.
#
# What it builds:
#  * each host is tests/e2e/container.sh's container (the host's / under a
#    tmpfs overlay, its own machine id, a private network namespace, pure
#    cgroup v2, a minimal boot target), booted by a "keeper": a background
#    subshell that owns the container (container.sh keeps one container per
#    shell) and tears it down when the caller closes the keeper's lifeline
#    pipe, however the caller ends (its exit, a signal, SIGKILL);
#  * a network namespace of the test's own (held by a process that also
#    exits when the lifeline closes) with a bridge, 192.0.2.1/24 (TEST-NET-1,
#    RFC 5737: an address the test made, reachable from nowhere else), and
#    one veth pair per host, host N at 192.0.2.(10+N) as "hostN";
#  * an sshd in each host (a unit of its own, microvm-test-sshd.service,
#    with a config of its own in /etc/microvm-test/ssh: the host's ssh
#    config and host keys are not used), a fresh ed25519 host key per host
#    and a fresh client key, both made for this run;
#  * the controller side: $HOSTS_DIR/ssh_config (host aliases, the client
#    key, a known_hosts file of the generated host keys, strict checking)
#    and $HOSTS_DIR/bin/{ssh,scp,sftp}, wrappers that run them with it:
#    hosts_ctl runs a command in the test's network namespace with it
#    first in PATH, so "microvmctl -H root@host2" (sd-bus runs "ssh" from
#    PATH) and Ansible's ssh connection both use it.

HOSTS_LIB=$(readlink -f "${BASH_SOURCE[0]}")
HOSTS_SRC=$(dirname "$(dirname "$(dirname "$HOSTS_LIB")")")
. "$HOSTS_SRC/tests/e2e/container.sh"
CT_PREFIX=microvm-hosts-
CT_LOG_TAG=hosts
HOSTS_NET=192.0.2
HOSTS_DIR=""
HOSTS_N=0
HOSTS_NETNS_PID=""
HOSTS_PID1=()
HOSTS_NAME=()
HOSTS_KEEPER=()
HOSTS_LIFE=()           # write ends of the lifelines (the keepers', the netns holder's)
HOSTS_READY=()          # the keepers' ready fifos, open read-write while they boot
HOSTS_BOOT_MS=""        # hosts_up's wall time until every host ran systemd
HOSTS_BOOT_MS_OF=()     # each host's own boot time

hosts_log() {
        printf '%s\n' "hosts: $*" >&2
}

# Prints why this machine cannot run the hosts and returns 0, or returns 1.
hosts_unusable() {
        local c
        if ct_unusable; then
                return 0
        fi
        if [ "$(systemd-detect-virt --container 2>/dev/null)" = systemd-nspawn ]; then
                echo "already in a systemd-nspawn container: the multi-host tests run on the host"
                return 0
        fi
        for c in /usr/sbin/sshd ssh ssh-keygen ip unshare; do
                if ! command -v "$c" >/dev/null; then
                        echo "$c is not installed (scripts/deps --test installs openssh-server, openssh-client, iproute2)"
                        return 0
                fi
        done
        return 1
}

hosts_addr() {
        echo "$HOSTS_NET.$((10 + $1))"
}

# A command on the controller side: in the test's network namespace, with
# the ssh wrapper first in PATH, without the lifelines (an ssh master that
# lingers must not keep the hosts alive after the caller is gone).
hosts_ctl() {
        (
                for fd in "${HOSTS_LIFE[@]}"; do eval "exec $fd>&-"; done
                PATH=$HOSTS_DIR/bin:$PATH exec nsenter --net="/proc/$HOSTS_NETNS_PID/ns/net" -- "$@"
        )
}

# hosts_exec N CMD...: a command inside host N, as ct_exec runs one.
hosts_exec() {
        local CT_PID1=${HOSTS_PID1[$1]}
        shift
        (
                for fd in "${HOSTS_LIFE[@]}"; do eval "exec $fd>&-"; done
                ct_exec "$@"
        )
}

# The caller's hook (define it before hosts_up): hosts_prepare_root ROOT N
# installs what host N needs into its root before it boots. Default:
# nothing.
if ! declare -F hosts_prepare_root >/dev/null; then
        hosts_prepare_root() { :; }
fi

# What every host gets besides the caller's hook: the sshd unit and config,
# the host key and the authorized client key.
hosts_install_sshd() {
        local root=$1 i=$2 d=$1/etc/microvm-test/ssh
        install -d -o root -g root -m 0755 "$root/etc/microvm-test" "$d"
        install -o root -g root -m 0600 "$HOSTS_DIR/host$i/ssh_host_ed25519_key" "$d/"
        install -o root -g root -m 0644 "$HOSTS_DIR/host$i/ssh_host_ed25519_key.pub" "$d/"
        install -o root -g root -m 0644 "$HOSTS_DIR/client/id_ed25519.pub" "$d/authorized_keys"
        cat >"$d/sshd_config" <<EOF
# Written by microvm's tests/hosts/hosts.sh: the test's sshd in host$i.
ListenAddress $(hosts_addr "$i")
HostKey /etc/microvm-test/ssh/ssh_host_ed25519_key
AuthorizedKeysFile /etc/microvm-test/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
        cat >"$root/etc/systemd/system/microvm-test-sshd.service" <<'EOF'
# Written by microvm's tests/hosts/hosts.sh.
[Unit]
Description=sshd of the microvm multi-host test
After=network.target

[Service]
Type=notify
RuntimeDirectory=sshd
RuntimeDirectoryMode=0755
ExecStart=/usr/sbin/sshd -D -e -f /etc/microvm-test/ssh/sshd_config
KillMode=process
EOF
}

# The keeper of host N (a background subshell): creates the container,
# boots it, reports "ok PID1 NAME" (or "fail") on its ready fifo, then
# waits on its lifeline (stdin) and tears the container down when it ends.
hosts_keeper() {
        local i=$1 ready=$HOSTS_DIR/host$1/ready fd rc
        exec 8>"$ready"
        for fd in "${HOSTS_LIFE[@]}" "${HOSTS_READY[@]}"; do eval "exec $fd>&-"; done
        CT_LOG_TAG=host$i
        trap 'ct_on_exit' EXIT
        trap 'exit 143' TERM
        trap 'exit 130' INT
        trap 'exit 129' HUP
        if ! ct_create || ! hosts_install_sshd "$CT_ROOT" "$i" || ! hosts_prepare_root "$CT_ROOT" "$i" || ! ct_boot; then
                echo fail >&8
                exit 1
        fi
        echo "ok $CT_PID1 $CT_NAME $CT_BOOT_MS" >&8
        exec 8>&-
        while read -r _; do :; done
        rc=0
        ct_destroy || rc=1
        trap - EXIT
        exit $rc
}

# The scratch dirs of runs that were killed (their containers are
# container.sh's to clean up: ct_cleanup_stale): keys, ssh config and
# sockets of runs whose owner is gone.
hosts_cleanup_stale() {
        local d pid start
        for d in /run/microvm-hosts.??????; do
                [ -d "$d" ] || continue
                pid= start=
                # no owner yet: a run that is just starting
                read -r pid start <"$d/owner" 2>/dev/null || continue
                if ct_alive "$pid" && [ "$(ct_starttime "$pid")" = "$start" ]; then
                        continue
                fi
                rm -rf --one-file-system "$d"
        done
}

# hosts_up N: host1..hostN booted (in parallel), networked, sshd running
# and answering with the generated key. Returns 1 (with the keepers' logs
# on stderr) when any step fails.
hosts_up() {
        local n=$1 i fd line t0 w status pid1 name ms c
        HOSTS_N=$n
        t0=$(ct_now_ms)
        ct_cleanup_stale
        hosts_cleanup_stale
        HOSTS_DIR=$(mktemp -d /run/microvm-hosts.XXXXXX)
        chmod 0700 "$HOSTS_DIR"
        echo "$$ $(ct_starttime $$)" >"$HOSTS_DIR/owner"
        mkdir -m 0700 "$HOSTS_DIR/bin" "$HOSTS_DIR/client"
        ssh-keygen -q -t ed25519 -N '' -C "microvm-test-controller" -f "$HOSTS_DIR/client/id_ed25519" || return 1
        : >"$HOSTS_DIR/known_hosts"
        {
                echo "# Written by microvm's tests/hosts/hosts.sh: only the hosts this run made."
                for i in $(seq "$n"); do
                        printf 'Host host%s\n    HostName %s\n' "$i" "$(hosts_addr "$i")"
                done
                cat <<EOF
Host *
    User root
    IdentityFile $HOSTS_DIR/client/id_ed25519
    IdentitiesOnly yes
    UserKnownHostsFile $HOSTS_DIR/known_hosts
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    BatchMode yes
    ConnectTimeout 10
    ControlMaster auto
    ControlPath $HOSTS_DIR/cm-%C
    ControlPersist 60
    LogLevel ERROR
EOF
        } >"$HOSTS_DIR/ssh_config"
        for c in ssh scp sftp; do
                printf '#!/bin/sh\n# the %s client of the test, with its config\nexec /usr/bin/%s -F %s "$@"\n' \
                        "$c" "$c" "$HOSTS_DIR/ssh_config" >"$HOSTS_DIR/bin/$c"
                chmod 0755 "$HOSTS_DIR/bin/$c"
        done
        for i in $(seq "$n"); do
                mkdir -m 0700 "$HOSTS_DIR/host$i"
                ssh-keygen -q -t ed25519 -N '' -C "host$i" -f "$HOSTS_DIR/host$i/ssh_host_ed25519_key" || return 1
                echo "host$i,$(hosts_addr "$i") $(cut -d' ' -f1,2 "$HOSTS_DIR/host$i/ssh_host_ed25519_key.pub")" \
                        >>"$HOSTS_DIR/known_hosts"
        done

        # The network namespace: held by a process that reads its lifeline.
        mkfifo -m 0600 "$HOSTS_DIR/netns.life"
        (
                for fd in "${HOSTS_LIFE[@]}"; do eval "exec $fd>&-"; done
                exec unshare --net -- bash -c 'while read -r _; do :; done' <"$HOSTS_DIR/netns.life" \
                        >/dev/null 2>&1
        ) &
        HOSTS_NETNS_PID=$!
        exec {fd}>"$HOSTS_DIR/netns.life"
        HOSTS_LIFE+=("$fd")
        rm -f "$HOSTS_DIR/netns.life"
        # unshare has made the namespace once its exec'd bash runs
        while [ "$(readlink "/proc/$HOSTS_NETNS_PID/ns/net" 2>/dev/null)" = "$(readlink /proc/self/ns/net)" ] ||
              [ "$(cat "/proc/$HOSTS_NETNS_PID/comm" 2>/dev/null)" != bash ]; do
                ct_alive "$HOSTS_NETNS_PID" || { hosts_log "the network namespace holder died"; return 1; }
                sleep 0.01
        done
        nsenter --net="/proc/$HOSTS_NETNS_PID/ns/net" sh -ec "
                ip link set lo up
                ip link add microvm-test0 type bridge
                ip addr add $HOSTS_NET.1/24 dev microvm-test0
                ip link set microvm-test0 up" || return 1

        # The keepers, all booting at once. Their ready fifos are open
        # read-write here first: neither side's open blocks, and a keeper
        # that dies before reporting leaves a timeout, not a hang.
        for i in $(seq "$n"); do
                mkfifo -m 0600 "$HOSTS_DIR/host$i/life" "$HOSTS_DIR/host$i/ready"
                exec {w}<>"$HOSTS_DIR/host$i/ready"
                HOSTS_READY[i]=$w
        done
        for i in $(seq "$n"); do
                hosts_keeper "$i" <"$HOSTS_DIR/host$i/life" >"$HOSTS_DIR/host$i/log" 2>&1 &
                HOSTS_KEEPER[i]=$!
                exec {fd}>"$HOSTS_DIR/host$i/life"
                HOSTS_LIFE+=("$fd")
                rm -f "$HOSTS_DIR/host$i/life"
        done
        for i in $(seq "$n"); do
                line=
                read -r -t "$((CT_BOOT_TIMEOUT + 60))" line <&"${HOSTS_READY[i]}" || true
                read -r status pid1 name ms <<<"$line"
                if [ "$status" != ok ]; then
                        hosts_log "host$i did not boot:"
                        sed 's/^/    /' "$HOSTS_DIR/host$i/log" >&2
                        return 1
                fi
                HOSTS_PID1[i]=$pid1
                HOSTS_NAME[i]=$name
                HOSTS_BOOT_MS_OF[i]=$ms
        done
        for i in $(seq "$n"); do
                eval "exec ${HOSTS_READY[i]}<&-"
                rm -f "$HOSTS_DIR/host$i/ready"
        done
        HOSTS_READY=()
        HOSTS_BOOT_MS=$(( $(ct_now_ms) - t0 ))

        for i in $(seq "$n"); do
                nsenter --net="/proc/$HOSTS_NETNS_PID/ns/net" sh -ec "
                        ip link add mvh$i type veth peer name host0 netns ${HOSTS_PID1[i]}
                        ip link set mvh$i master microvm-test0
                        ip link set mvh$i up" || return 1
                nsenter --net="/proc/${HOSTS_PID1[i]}/ns/net" sh -ec "
                        ip link set lo up
                        ip addr add $(hosts_addr "$i")/24 dev host0
                        ip link set host0 up" || return 1
                if ! hosts_exec "$i" systemctl start microvm-test-sshd.service; then
                        hosts_exec "$i" journalctl -u microvm-test-sshd.service --no-pager >&2
                        return 1
                fi
        done
        # Each host answers over ssh, with the key checked (the veth's
        # link comes up asynchronously: the first connect may be refused).
        for i in $(seq "$n"); do
                local deadline=$(( $(ct_now_ms) + 30000 ))
                until hosts_ctl ssh "host$i" true 2>"$HOSTS_DIR/ssh.err"; do
                        if [ "$(ct_now_ms)" -ge "$deadline" ]; then
                                hosts_log "host$i: no ssh connection within 30s:"
                                sed 's/^/    /' "$HOSTS_DIR/ssh.err" >&2
                                return 1
                        fi
                        sleep 0.1
                done
        done
}

# Every host powered off and torn down (in parallel), the ssh masters and
# the network namespace gone; checks that nothing is left. Returns 1 on
# debris (the keepers' logs on stderr).
hosts_down() {
        local rc=0 i fd
        [ -n "$HOSTS_DIR" ] || return 0
        for i in $(seq "$HOSTS_N"); do
                [ -z "$HOSTS_NETNS_PID" ] ||
                        hosts_ctl ssh -O exit "host$i" >/dev/null 2>&1 || true
        done
        for fd in "${HOSTS_LIFE[@]}"; do eval "exec $fd>&-"; done
        HOSTS_LIFE=()
        for i in $(seq "$HOSTS_N"); do
                [ -n "${HOSTS_KEEPER[i]:-}" ] || continue
                if ! wait "${HOSTS_KEEPER[i]}"; then
                        hosts_log "host$i: teardown incomplete:"
                        sed 's/^/    /' "$HOSTS_DIR/host$i/log" >&2
                        rc=1
                fi
                HOSTS_KEEPER[i]=
        done
        if [ -n "$HOSTS_NETNS_PID" ]; then
                wait "$HOSTS_NETNS_PID" 2>/dev/null || true
                HOSTS_NETNS_PID=
        fi
        rm -rf "$HOSTS_DIR"
        HOSTS_DIR=
        return $rc
}

# For the caller's EXIT trap. After a signal: leave at once (the keepers
# got the signal too, and container.sh's reapers tear down). Otherwise
# tear down here.
hosts_on_exit() {
        local rc=$?
        set +e
        trap - EXIT
        if [ "$rc" -gt 128 ]; then
                hosts_log "interrupted (status $rc); the keepers and reapers tear the hosts down"
        else
                hosts_down || rc=1
        fi
        exit "$rc"
}

# hosts_install_doubles ROOT JAILER FIRECRACKER [FILE...]: for a host's
# root (from hosts_prepare_root): the jailer and firecracker test doubles
# and FILEs in $CT_TESTLIB (root-owned 0755 in root-owned directories, as
# the host config check demands of the real binaries), and guest images
# in /srv/microvm-test/images: a few KiB "kernel" and a sparse 64M root
# disk (the firecracker double only opens them).
HOSTS_IMAGES=/srv/microvm-test/images
hosts_install_doubles() {
        local root=$1 jailer=$2 firecracker=$3 f mode
        shift 3
        install -d -o root -g root -m 0755 "$root$CT_TESTLIB" "$root/srv/microvm-test" "$root$HOSTS_IMAGES"
        install -o root -g root -m 0755 "$jailer" "$root$CT_TESTLIB/jailer"
        install -o root -g root -m 0755 "$firecracker" "$root$CT_TESTLIB/firecracker"
        for f in "$@"; do
                mode=0644
                [ ! -x "$f" ] || mode=0755
                install -o root -g root -m "$mode" "$f" "$root$CT_TESTLIB/"
        done
        head -c 8192 /dev/urandom >"$root$HOSTS_IMAGES/vmlinux"
        truncate -s 64M "$root$HOSTS_IMAGES/rootfs.ext4"
        chmod 0644 "$root$HOSTS_IMAGES/vmlinux" "$root$HOSTS_IMAGES/rootfs.ext4"
}
