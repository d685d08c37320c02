#!/bin/bash
# deps.sh: install the Debian packages that the demo and the tests need, if any are missing.
# Idempotent and noninteractive; runs `apt-get update` only when something has to be installed.
set -euo pipefail

# What each group is for (so nobody drops one without knowing what breaks):
#   - network plumbing the tests drive:     iproute2 iputils-ping arping util-linux (unshare,
#                                           nsenter, setpriv) procps psmisc
#   - traffic sources and sinks:            iperf3 ncat socat curl udhcpc busybox-static dnsmasq-base
#                                           bind9-dnsutils python3-scapy
#   - capture and inspection:               tcpdump tshark jq
#   - the anchors we compare against:       slirp4netns passt vde2; sockperf (request/response
#                                           latency, bench/e2e/nat-throughput.mjs)
#   - RFC behaviour tests of the NAT:       coturn (turnutils_natdiscovery, the RFC 5780 NAT
#                                           behaviour client, and turnserver, its two-address
#                                           STUN server; test/e2e/nat-rfc.test.ts starts it in
#                                           the sandbox only — its service never runs here)
#   - real clients of usernet-slirp4netns:  rootlesskit, podman (busybox-static, not busybox: its
#                                           static binary is a container's rootfs without a
#                                           registry), uidmap (newuidmap), libcap2-bin
#                                           (getpcaps, to check the sandbox's capabilities)
#   - `npm ci` builds the TAP addon with node-gyp, which needs a C/C++ toolchain and python3.
PACKAGES=(
  iproute2 iputils-ping iperf3 ncat socat tcpdump tshark udhcpc busybox-static dnsmasq-base
  bind9-dnsutils slirp4netns vde2 python3-scapy passt arping curl jq procps psmisc util-linux
  rootlesskit podman uidmap libcap2-bin coturn sockperf
  make g++ python3
)

[ "$(id -u)" = 0 ] || { echo "deps.sh: needs root (it installs Debian packages with apt-get)" >&2; exit 2; }
command -v apt-get >/dev/null && command -v dpkg-query >/dev/null ||
  { echo "deps.sh: needs a Debian-based system (apt-get, dpkg-query)" >&2; exit 2; }

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

# Rootless containers open /dev/net/tun as their own user: distributions ship it mode 0666, some
# minimal images 0600. Make it what distributions ship.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun && echo "deps.sh: /dev/net/tun made mode 0666 (as distributions ship it)"
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps.sh: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# tshark's postinst asks whether non-root users may capture; answer "no" up front so the
# question can never block an unattended install (the tests capture as root anyway).
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
# Nothing installed here may start a service in the host's namespaces (coturn's turnserver would
# listen on every address): a policy-rc.d that exits 101 tells invoke-rc.d "not now" for the whole
# install. One already in place (Docker images ship one) is left as it is; ours goes afterwards.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# deps.sh: no service starts during the install\nexit 101\n' > "$POLICY"
  chmod 0755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi
apt-get -o Acquire::Retries=3 update
apt-get -o Acquire::Retries=3 install -y --no-install-recommends "${missing[@]}"
echo "deps.sh: done"
