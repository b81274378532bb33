# SPDX-License-Identifier: LGPL-2.1-or-later
#
# tests/e2e/fresh-root.sh — a stock Debian root for the tests that need a
# fresh host rather than this machine's own root (scripts/fresh-host-test,
# tests/deb/test-deb). Sourced; root only.
#
#   fresh_mirror                   $mirror: the first Debian archive the
#                                  host's apt sources name (one-line or
#                                  deb822; MICROVM_FRESH_MIRROR overrides)
#   fresh_archive_reachable SUITE  0 when $mirror answers for SUITE; else 1
#                                  and $why
#   fresh_bootstrap SUITE          mmdebstrap --variant=important with
#                                  systemd-sysv and dbus into the cache
#                                  (MICROVM_FRESH_CACHE, default
#                                  /var/cache/microvm-fresh-host), once per
#                                  release and mirror; prints the root's path
#                                  (the caller copies it: ct_create_copy)

fresh_mirror() {
        mirror=${MICROVM_FRESH_MIRROR:-}
        if [ -z "$mirror" ]; then
                mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                         awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
                         for f in /etc/apt/sources.list.d/*.sources; do
                                 [ -r "$f" ] && awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
                         done)
                mirror=$(printf '%s\n' $mirror | sed 's:/*$::' | grep -E '^https?://.*/debian$' | head -n 1)
                mirror=${mirror:-http://deb.debian.org/debian}
        fi
}

fresh_archive_reachable() {
        local err
        if err=$(python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20).read(1)' \
                        "$mirror/dists/$1/InRelease" 2>&1); then
                return 0
        fi
        why="$mirror/dists/$1/InRelease: $(tail -n 1 <<<"${err:-no answer}")"
        return 1
}

fresh_bootstrap() {
        local suite=$1 cache=${MICROVM_FRESH_CACHE:-/var/cache/microvm-fresh-host} stamp
        local bootstrap=(mmdebstrap --variant=important --include=systemd-sysv,dbus "$suite")
        mkdir -p "$cache"
        stamp="${bootstrap[*]} $mirror"
        (
                flock 8
                if [ ! -d "$cache/$suite" ] || [ "$(cat "$cache/$suite.stamp" 2>/dev/null)" != "$stamp" ]; then
                        echo "Bootstrapping $suite from $mirror into $cache/$suite (once)" >&2
                        rm -rf --one-file-system "$cache/$suite" "$cache/$suite.new"
                        if ! "${bootstrap[@]}" "$cache/$suite.new" "$mirror" >"$cache/$suite.log" 2>&1; then
                                tail -n 20 "$cache/$suite.log" >&2
                                exit 1
                        fi
                        mv "$cache/$suite.new" "$cache/$suite"
                        echo "$stamp" >"$cache/$suite.stamp"
                fi
        ) 8>"$cache/.lock" || { echo "mmdebstrap of $suite failed (log: $cache/$suite.log)"; return 1; }
        mkdir -p "$cache/apt-archives-$suite/partial"
        echo "$cache/$suite"
}
