#!/bin/bash
# netsandbox.sh [CMD...]: run CMD (default: bash) as root inside a private network and mount
# namespace, so that no packet CMD or its children send can leave this machine.
#
# Inside:
#   - lo is up and the default routes (v4 and v6) are blackholes: anything not sent over a link
#     that CMD itself creates (veth, TAP, namespaces) is dropped;
#   - /etc/resolv.conf says "nameserver 127.0.0.1", so a stray resolver lookup goes to loopback
#     (where a test may run its own DNS server) and never to the real upstream;
#   - /run/netns is a fresh tmpfs, so `ip netns add` names never clash with the outer machine;
#   - USERNET_SANDBOX=1, and a nested call just runs CMD.
# Everything CMD creates (namespaces, veths, TAPs, mounts) dies with it; nothing outside changes.
set -euo pipefail
[ $# -gt 0 ] || set -- bash
if [ "${USERNET_SANDBOX:-}" = 1 ]; then exec "$@"; fi
[ "$(id -u)" = 0 ] || { echo "netsandbox.sh: needs root (it creates network and mount namespaces)" >&2; exit 2; }

# --propagation private: mounts made inside (resolv.conf, /run/netns, test mounts) never reach
# the outer mount namespace.  No --fork: unshare execs, so CMD keeps this PID and gets signals.
exec unshare --net --mount --propagation private -- env USERNET_SANDBOX=1 bash -c '
  set -euo pipefail
  ip link set lo up
  ip route add blackhole default
  # A machine with IPv6 disabled has no v6 routing table; then there is nothing to leak to.
  ip -6 route add blackhole default 2>/dev/null || true

  # The file lives on a tmpfs of this mount namespace: it goes with the sandbox, and it is an
  # ordinary file that every user (and user namespace, e.g. Podman'"'"'s) can open.
  mkdir -p /run/usernet-sandbox
  mount -t tmpfs -o mode=755,size=64k usernet-sandbox /run/usernet-sandbox
  printf "nameserver 127.0.0.1\n" > /run/usernet-sandbox/resolv.conf
  chmod 644 /run/usernet-sandbox/resolv.conf
  mount --bind /run/usernet-sandbox/resolv.conf /etc/resolv.conf

  mkdir -p /run/netns
  mount -t tmpfs -o mode=755 usernet-sandbox-netns /run/netns
  exec "$@"' netsandbox "$@"
