# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/scenarios-metrics.sh — microvm-metrics.socket against the
# container's real systemd (sourced by scenarios.sh, which runs them): a real
# Prometheus server scrapes it over loopback and is asked through its HTTP
# API; promtool checks the exposition; a hung VMM does not stall a scrape;
# no process of ours outlives a scrape; microvmctl metrics.

METRICS_ADDR=127.0.0.1:29102
PROM_ADDR=127.0.0.1:29190
PROM_DIR=/run/e2e-prometheus
PROM_UNIT=e2e-prometheus.service

# scrape [PATH]: one HTTP GET of the socket, the body on stdout.
scrape() {
        curl -sS --max-time 10 -o - -w '' "http://$METRICS_ADDR${1:-/metrics}"
}

# No scrape unit active and no microvm-metrics process: nothing of ours
# runs between scrapes.
no_scrape_left() {
        [ -z "$(systemctl list-units --no-legend --plain 'microvm-metrics@*' 2>/dev/null |
                awk '$3 != "inactive" && $3 != "failed"')" ] && ! pgrep -x microvm-metrics >/dev/null
}

metrics_socket_start() {
        systemctl start microvm-metrics.socket || fail "systemctl start microvm-metrics.socket failed" || return
        [ "$(uprop microvm-metrics.socket ActiveState)" = active ] ||
                fail "microvm-metrics.socket is $(uprop microvm-metrics.socket ActiveState)" || return
}

# promql QUERY: the result vector of an instant query, one "labels value"
# line per series (labels as Prometheus prints them, sorted).
promql() {
        curl -sS --max-time 5 --data-urlencode "query=$1" "http://$PROM_ADDR/api/v1/query" | python3 -c '
import json, sys
d = json.load(sys.stdin)
if d.get("status") != "success":
    sys.exit("query failed: %s" % d)
for r in sorted(d["data"]["result"], key=lambda r: sorted(r["metric"].items())):
    m = {k: v for k, v in r["metric"].items() if k not in ("instance", "job", "__name__")}
    print(",".join("%s=%s" % kv for kv in sorted(m.items())), r["value"][1])'
}

# promql_value QUERY: the one value of a query with one series (empty when
# it has none).
promql_value() {
        promql "$1" | awk 'NF { print $NF; exit }'
}

promql_has() { # promql_has QUERY LINE
        promql "$1" | grep -qxF -- "$2"
}

# The same for a series' last sample of the last 30 s: one scrape that ran
# past its timeout on a loaded machine makes every series stale (an instant
# query then finds none) until the next one, which is no failure of ours.
promql_last_has() { # promql_last_has SELECTOR LINE
        promql_has "last_over_time($1[30s])" "$2"
}
promql_last_value() {
        promql_value "last_over_time($1[30s])"
}

prometheus_start() {
        command -v prometheus >/dev/null || { echo "no prometheus binary (Debian package prometheus)"; return 77; }
        rm -rf "$PROM_DIR"
        install -d -m 0755 "$PROM_DIR"
        cat >"$PROM_DIR/prometheus.yml" <<EOF
global:
  scrape_interval: 2s
  scrape_timeout: 2s
scrape_configs:
  - job_name: microvm
    static_configs:
      - targets: ['$METRICS_ADDR']
EOF
        # A transient unit: stopped (and gone) at the end, whatever happens.
        systemd-run --quiet --unit="$PROM_UNIT" --property=Type=exec \
                prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
                --web.listen-address="$PROM_ADDR" --log.level=warn ||
                fail "prometheus did not start" || return
        wait_until 60 "prometheus to answer on $PROM_ADDR" \
                curl -sf --max-time 1 -o /dev/null "http://$PROM_ADDR/-/ready" || return
}

prometheus_stop() {
        systemctl stop "$PROM_UNIT" 2>/dev/null
        systemctl reset-failed "$PROM_UNIT" 2>/dev/null
        rm -rf "$PROM_DIR"
}

m_up3() {
        [ "$(promql_value 'count(microvm_up{id=~"metr[abc]"} == 1)')" = 3 ]
}

moved() { # moved QUERY OLD: the value is now above OLD
        local v
        v=$(promql_value "$1")
        [ -n "$v" ] && python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) else 1)' "$v" "$2"
}

# Three VMs (two with traffic), a real Prometheus scraping the socket every
# two seconds: the series are there with the right labels and values, the
# counters of the VMs with traffic move, the idle one's stay at 0; promtool
# accepts the exposition; no scrape process is left once scraping stops.
sc_metrics_prometheus() {
        local out v1 v2 rc
        vm_config metra vcpus=2 knobs="fcdouble.traffic=1000000"
        vm_config metrb knobs="fcdouble.traffic=500000"
        vm_config metrc
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm metra metrb metrc || return
        assert_vms_running metra metrb metrc || return
        metrics_socket_start || return

        out=$(scrape) || fail "GET /metrics failed" || return
        printf '%s\n' "$out" | promtool check metrics || fail "promtool check metrics refused the exposition:
$out" || return
        grep -qx 'microvm_up{id="metra"} 1' <<<"$out" || fail "no microvm_up for metra:
$out" || return
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$METRICS_ADDR/")" = 404 ] ||
                fail "GET / is not 404" || return

        prometheus_start || { rc=$?; prometheus_stop; return $rc; }
        (
                wait_until 60 "Prometheus to see the 3 VMs up" m_up3 || exit 1
                promql_last_has 'microvm_vcpus{id="metra"}' 'id=metra 2' || fail "microvm_vcpus of metra: $(promql 'microvm_vcpus')" || exit 1
                promql_last_has 'microvm_memory_configured_bytes{id="metrc"}' "id=metrc $((128 << 20))" ||
                        fail "memory_configured of metrc: $(promql 'microvm_memory_configured_bytes')" || exit 1
                promql_last_has 'microvm_restarts_total{id="metrb"}' 'id=metrb 0' || fail "restarts of metrb: $(promql 'microvm_restarts_total')" || exit 1
                promql_last_has 'microvm_unit_state{id="metra",state="active"}' 'id=metra,state=active 1' || fail "unit_state" || exit 1
                [ "$(promql_value 'last_over_time(microvm_start_time_seconds{id="metra"}[30s]) > 1e9')" != "" ] || fail "no start time for metra" || exit 1
                promql_last_has 'microvm_firecracker_flush_ok{id="metra"}' 'id=metra 1' || fail "flush_ok: $(promql microvm_firecracker_flush_ok)" || exit 1
                [ "$(promql_last_value 'microvm_vms_running')" -ge 3 ] || fail "vms_running: $(promql microvm_vms_running)" || exit 1
                [ "$(promql_last_value 'microvm_vms_configured')" -ge 3 ] || fail "vms_configured: $(promql microvm_vms_configured)" || exit 1
                [ -n "$(promql_last_value 'microvm_uids_free')" ] || fail "no uids_free" || exit 1
                # The counters move with the double's traffic knob ...
                wait_until 30 "block read bytes of metra above 0" moved 'microvm_block_read_bytes_total{id="metra",drive="root"}' 0 || exit 1
                v1=$(promql_value 'microvm_block_read_bytes_total{id="metra",drive="root"}')
                v2=$(promql_value 'microvm_vcpu_exits_total{id="metrb",reason="mmio_read"}')
                wait_until 30 "block read bytes of metra to grow past $v1" moved 'microvm_block_read_bytes_total{id="metra",drive="root"}' "$v1" || exit 1
                wait_until 30 "vCPU exits of metrb to grow past $v2" moved 'microvm_vcpu_exits_total{id="metrb",reason="mmio_read"}' "$v2" || exit 1
                wait_until 30 "rate() of metra's written bytes" moved 'rate(microvm_block_written_bytes_total{id="metra"}[5s])' 0 || exit 1
                # ... and the idle VM's do not.
                promql_last_has 'microvm_block_read_bytes_total{id="metrc"}' 'drive=root,id=metrc 0' ||
                        fail "metrc (no traffic) has block reads: $(promql 'microvm_block_read_bytes_total')" || exit 1
                # The API counts: our FlushMetrics of each scrape.
                wait_until 30 "API PUT actions of metrc counted" moved 'microvm_api_requests_total{id="metrc",method="put",request="actions"}' 1 || exit 1
                [ "$(promql_value 'max_over_time(up{job="microvm"}[30s])')" = 1 ] || fail "Prometheus' own up for the job was never 1 in 30 s" || exit 1
        ) || { prometheus_stop; return 1; }
        prometheus_stop

        # The running sums, root-only in the run dir, of the file in the jail.
        [ "$(stat -c '%U %a' "$E2E_RUN_DIR/metra/fc-metrics.sum" 2>&1)" = "root 600" ] ||
                fail "no root-only running sum: $(ls -l "$E2E_RUN_DIR/metra/" 2>&1)" || return
        head -n 1 "$E2E_RUN_DIR/metra/fc-metrics.sum" | grep -qx 'microvm-fc-metrics 1' || fail "sum file header" || return
        [ "$(stat -c '%F %u' "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/metra/root/run/fc-metrics.json")" = "regular file $(vm_uid metra)" ] ||
                fail "firecracker's metrics file is not a regular file of the VM's uid" || return

        # Nothing of ours between scrapes.
        wait_until 10 "no scrape unit or microvm-metrics process left" no_scrape_left || return
        # Our two GETs and at least two of Prometheus' scrapes (the counters
        # moved between two), each its own connection and process.
        [ "$(uprop microvm-metrics.socket NAccepted)" -ge 4 ] || fail "the socket accepted only $(uprop microvm-metrics.socket NAccepted)" || return
        note "Prometheus scraped $(( $(uprop microvm-metrics.socket NAccepted) - 2 )) times"
        stop_vm metra metrb metrc || return
        rm -f "$E2E_VM_DIR"/metr[abc].conf
        systemctl daemon-reload
}

# A VMM that accepts API connections and never answers: the scrape still
# returns within its time (FlushMetrics waits 250 ms), with the hung VM's
# unit figures and flush_ok 0, the healthy one's flush_ok 1.
sc_metrics_hung_vmm() {
        local out t0 dt
        vm_config methung knobs="fcdouble.hang_vmm_after_ms=500"
        vm_config metok
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm methung metok || return
        assert_vms_running methung metok || return
        wait_journal 20 'fcdouble: hang=vmm: the VMM event loop is wedged' -u microvm@methung.service || return
        metrics_socket_start || return
        t0=$(now_ms)
        out=$(scrape) || fail "GET /metrics failed with a hung VMM" || return
        dt=$(( $(now_ms) - t0 ))
        note "scrape with a hung VMM: $dt ms"
        # The hang never ends; the scrape must not wait on it (250 ms per
        # VM). The bound leaves room for a loaded machine or a sanitizer
        # build, and stays well below curl's 10 s.
        [ "$dt" -lt 5000 ] || fail "the scrape took $dt ms with a hung VMM" || return
        grep -qx 'microvm_up{id="methung"} 1' <<<"$out" || fail "no up for the hung VM:
$out" || return
        grep -qx 'microvm_firecracker_flush_ok{id="methung"} 0' <<<"$out" || fail "flush_ok of the hung VM is not 0:
$out" || return
        grep -qx 'microvm_firecracker_flush_ok{id="metok"} 1' <<<"$out" || fail "flush_ok of the healthy VM is not 1:
$out" || return
        printf '%s\n' "$out" | promtool check metrics || fail "promtool refused the exposition" || return
        wait_until 10 "no scrape unit or microvm-metrics process left" no_scrape_left || return
        stop_vm methung metok || return
        rm -f "$E2E_VM_DIR"/methung.conf "$E2E_VM_DIR"/metok.conf
        systemctl daemon-reload
}

# firecracker_log_level = warning: firecracker gets --level Warning, and
# neither the start's API requests (microvm-ready) nor a scrape's
# FlushMetrics nor the stop's SendCtrlAltDel leave a line in the VM's
# journal; a VM at the default level logs each of them.
sc_metrics_log_level() {
        local out pid
        vm_config melquiet firecracker_log_level=warning
        vm_config melinfo
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm melquiet melinfo || return
        assert_vms_running melquiet melinfo || return
        pid=$(vprop melquiet MainPID)
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--api-sock /run/firecracker.socket --level Warning $' ||
                fail "firecracker of melquiet runs without --level Warning: $(tr '\0' ' ' <"/proc/$pid/cmdline")" || return
        pid=$(vprop melinfo MainPID)
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- '--level' &&
                { fail "firecracker of melinfo was given a --level: $(tr '\0' ' ' <"/proc/$pid/cmdline")"; return; }
        metrics_socket_start || return
        out=$(scrape) || fail "GET /metrics failed" || return
        grep -qx 'microvm_firecracker_flush_ok{id="melquiet"} 1' <<<"$out" || fail "melquiet did not flush:
$out" || return
        wait_journal 20 'The API server received a Put request on "/actions" with body .*FlushMetrics' \
                -u microvm@melinfo.service || return
        stop_vm melquiet melinfo || return
        # The shutdown's console lines come after every API request in the
        # same stream: once they are in the journal, so is all before them.
        wait_journal 20 'Reached target final.target' -u microvm@melquiet.service || return
        wait_journal 20 'The API server received a Put request on "/actions" with body .*SendCtrlAltDel' \
                -u microvm@melinfo.service || return
        if journal_has 'The API server received|The request was executed successfully' -u microvm@melquiet.service; then
                fail "firecracker at Warning logged API requests:
$(journalctl --no-pager -q -o cat -u microvm@melquiet.service | grep -E 'The API server|executed successfully')"
                return
        fi
        wait_until 10 "no scrape unit or microvm-metrics process left" no_scrape_left || return
        rm -f "$E2E_VM_DIR"/melquiet.conf "$E2E_VM_DIR"/melinfo.conf
        systemctl daemon-reload
}

# The scrape's own sandbox (lib/jail/mount-sandbox.h), looked at in a real
# scrape held right after it was made (test hook metrics-confined): in the
# scrape's mount namespace, even root with every capability cannot write
# /etc, /proc/sys or the cgroup tree; the run directory and the chroot base
# can be written; /tmp is an empty read-only tmpfs. Released, the scrape
# answers as any other.
sc_metrics_sandbox() {
        local hold=/run/e2e-hold d=/run/systemd/system/microvm-metrics@.service.d p pid err out st prm
        need_hooks "$(dirname "$(tool_path microvm-reclaim.service)")/microvm-metrics"
        vm_config msand
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm msand || return
        assert_vms_running msand || return
        mkdir -p $d
        printf '[Service]\nEnvironment=MICROVM_TEST_PAUSE_AT=metrics-confined MICROVM_TEST_PAUSE_FIFO=%s\n' $hold \
                >$d/e2e-hold.conf
        systemctl daemon-reload || fail "daemon-reload failed" || return
        hold_fifos $hold
        metrics_socket_start || return
        scrape >/run/e2e-scrape.out & p=$!
        timeout 60 cat $hold.reached >/dev/null || fail "microvm-metrics never reached its hold" || return
        pid=$(pgrep -x microvm-metrics) || fail "no microvm-metrics process at the hold" || return
        # Its own seccomp filter (with what the unit's seccomp options would
        # be: tests/unit/test-seccomp-util.c tries each), no new privileges,
        # and no CAP_FSETID, on which the filter's openat2() rests.
        st=$(cat /proc/"$pid"/status)
        grep -qE '^Seccomp:[[:space:]]+2$' <<<"$st" || fail "the scrape has no seccomp filter:
$st" || return
        grep -qE '^NoNewPrivs:[[:space:]]+1$' <<<"$st" || fail "the scrape may gain privileges" || return
        prm=$(sed -n 's/^CapPrm:[[:space:]]*//p' <<<"$st")
        [ $(( 0x$prm & (1 << 4) )) = 0 ] || fail "the scrape may have CAP_FSETID (CapPrm $prm)" || return
        in_scrape() { nsenter -t "$pid" -m -- "$@" 2>&1; }
        for f in /etc/e2e-sandbox /proc/sys/kernel/domainname "$E2E_CG/cgroup.procs"; do
                if err=$(in_scrape sh -c "echo 0 >>$f"); then
                        fail "root wrote $f in the scrape's namespace"
                        return
                fi
                grep -q 'Read-only file system' <<<"$err" || fail "writing $f failed, but not as read-only: $err" || return
        done
        if err=$(in_scrape mkdir "$E2E_CG/e2e-sandbox"); then
                rmdir "$E2E_CG/e2e-sandbox"
                fail "root made a cgroup in the scrape's namespace"
                return
        fi
        for f in "$E2E_RUN_DIR/e2e-sandbox" "$E2E_CHROOT_BASE/e2e-sandbox"; do
                in_scrape touch "$f" >/dev/null || fail "$f cannot be written in the scrape's namespace" || return
                [ -e "$f" ] || fail "$f written in the scrape's namespace is not the host's" || return
                rm -f "$f"
        done
        [ -z "$(in_scrape ls -A /tmp)" ] || fail "/tmp is not empty in the scrape's namespace: $(in_scrape ls -A /tmp)" || return
        in_scrape touch /tmp/e2e-sandbox >/dev/null && fail "/tmp is writable in the scrape's namespace" && return
        # the host's own view is untouched
        touch /etc/e2e-sandbox && rm /etc/e2e-sandbox || fail "/etc is read-only on the host" || return
        timeout 10 sh -c "echo go >$hold" || fail "the scrape did not wait at its hold" || return
        wait $p || fail "the held scrape failed" || return
        out=$(cat /run/e2e-scrape.out)
        grep -qx 'microvm_up{id="msand"} 1' <<<"$out" || fail "the held scrape has no up for msand:
$out" || return
        rm -rf $d $hold $hold.reached /run/e2e-scrape.out
        systemctl daemon-reload
        wait_until 10 "no scrape unit or microvm-metrics process left" no_scrape_left || return
        stop_vm msand || return
        rm -f "$E2E_VM_DIR"/msand.conf
        systemctl daemon-reload
}

# The cgroup figures, for the controllers the unit's cgroup has (cpu.stat's
# usage_usec always); a controller that does not reach the container is
# named and its figure must be absent.
sc_metrics_cgroup() {
        local out cg ctrls missing=()
        vm_config metcg
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm metcg || return
        assert_vm_running metcg || return
        metrics_socket_start || return
        out=$(scrape) || fail "GET /metrics failed" || return
        grep -qE '^microvm_cpu_usage_seconds_total\{id="metcg"\} [0-9]+\.[0-9]{6}$' <<<"$out" ||
                fail "no cpu usage for metcg:
$out" || return
        cg=$E2E_SLICE_CG/microvm@metcg.service
        ctrls=$(cat "$cg/cgroup.controllers")
        for c in memory:microvm_memory_current_bytes pids:microvm_pids io:microvm_io_read_bytes_total; do
                if [[ " $ctrls " == *" ${c%%:*} "* ]]; then
                        grep -qE "^${c#*:}\\{id=\"metcg\"\\} [0-9]+$" <<<"$out" || fail "no ${c#*:} although $cg has ${c%%:*}:
$out" || return
                else
                        missing+=("${c%%:*}")
                        ! grep -q "^${c#*:}{id=\"metcg\"}" <<<"$out" || fail "${c#*:} without the ${c%%:*} controller" || return
                fi
        done
        stop_vm metcg || return
        rm -f "$E2E_VM_DIR"/metcg.conf
        systemctl daemon-reload
        if [ ${#missing[@]} -gt 0 ]; then
                echo "cgroup controllers ${missing[*]} do not reach the container (hybrid host): their figures are absent, as they must be"
                return 77
        fi
}

# microvmctl metrics: text and --json for the same figures.
sc_metrics_ctl() {
        local out errs cursor n
        vm_config metctl knobs="fcdouble.traffic=100000"
        vm_config metctl2
        systemctl daemon-reload || fail "daemon-reload failed" || return
        start_vm metctl || return
        start_vm metctl2 || return
        assert_vm_running metctl || return
        assert_vm_running metctl2 || return
        cursor=$(journalctl -q -n 0 --show-cursor 2>/dev/null | sed -n 's/^-- cursor: //p')
        [ -n "$cursor" ] || fail "no journal cursor" || return
        out=$(microvmctl metrics metctl) || fail "microvmctl metrics failed" || return
        # Only the VM asked for is asked to flush (firecracker logs each
        # API request at Info). That metctl2 was not asked is read once a
        # later request of its own (GET /, straight to its API socket) is in
        # the journal: one stream, in order. (By firecracker's instance tag,
        # not journalctl -u: systemd 252's --after-cursor with a match skips
        # the first matching entry.)
        requests() { # ID ERE N: N requests of VM ID matching ERE since the cursor
                [ "$(journalctl -q -o cat --after-cursor "$cursor" | grep -F "[$1:fc_api] The API server received" |
                        grep -cE "$2")" = "$3" ]
        }
        wait_until 10 "metctl's FlushMetrics in its journal" requests metctl FlushMetrics 1 || return
        curl -sS -o /dev/null --unix-socket "$E2E_CHROOT_BASE/$E2E_EXEC_NAME/metctl2/root/run/firecracker.socket" \
                http://localhost/ || fail "GET / of metctl2's API failed" || return
        wait_until 10 "metctl2's GET / in its journal" requests metctl2 'Get request on "/"' 1 || return
        requests metctl2 FlushMetrics 0 || fail "microvmctl metrics metctl asked metctl2 to flush too" || return
        stop_vm metctl2 || return
        grep -q '^metctl: active, 0 restarts, 1 vCPUs, 128 MiB$' <<<"$out" || fail "microvmctl metrics:
$out" || return
        grep -qE '^  drive root +[0-9]+ / [0-9]+ bytes' <<<"$out" || fail "no drive line:
$out" || return
        out=$(microvmctl --json metrics metctl) || fail "microvmctl --json metrics failed" || return
        errs=$(printf '[%s]' "$out" | "$CTL_CHECK" "$CTL_SCHEMA" metrics) ||
                fail "microvmctl --json metrics does not match the schema: $errs
$out" || return
        python3 -c '
import json, sys
d = json.loads(sys.argv[1])
v = [x for x in d["vms"] if x["id"] == "metctl"]
assert len(v) == 1, d
v = v[0]
assert v["active_state"] == "active", v
assert v["vcpus"] == 1 and v["memory_configured_bytes"] == 128 << 20, v
assert v["firecracker_flush_ok"] is True, v
assert "block_root.read_bytes" in v["firecracker"], v
' "$out" || fail "microvmctl --json metrics:
$out" || return
        stop_vm metctl || return
        rm -f "$E2E_VM_DIR"/metctl.conf "$E2E_VM_DIR"/metctl2.conf
        systemctl daemon-reload
}
