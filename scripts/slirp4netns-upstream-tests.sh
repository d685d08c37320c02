#!/bin/bash
# slirp4netns-upstream-tests.sh SRC [TEST...]: run slirp4netns's own test suite against
# usernet-slirp4netns.
#
# SRC is a checkout of https://github.com/rootless-containers/slirp4netns (its tests/ are not in
# the Debian package), or a bare git directory of it (tests/ is taken from HEAD). TEST names pick
# tests (e.g. api-socket dhcp); default: all of tests/test-slirp4netns-*.sh.
#
# How: a directory holding a `slirp4netns` that runs bin/usernet-slirp4netns.js goes first on
# PATH; each test runs with bash, as the unprivileged user usernet-test (the tests make rootless
# namespaces with `unshare -r`), in a fresh working directory, inside test/sandbox/netsandbox.sh
# (blackhole default routes: nothing leaves the machine), with a 120 s limit. Exit status 77 is a
# skip, as in automake. Prints one line per test and `N passed, N failed, N skipped`.
#
# Needs root (for the sandbox), the project built (npm ci), and the tools the tests use: ncat,
# udhcpc, jq, nsenter, getpcaps (libcap2-bin), findmnt.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
[ $# -ge 1 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src=$1
shift

if [ "${USERNET_SANDBOX:-}" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "slirp4netns-upstream-tests.sh: needs root (it runs the tests in a network sandbox)" >&2; exit 2; }
  exec "$here/test/sandbox/netsandbox.sh" "$0" "$src" "$@"
fi

[ -f "$here/dist/src/slirp/main.js" ] || { echo "usernet is not built: run npm ci in $here" >&2; exit 2; }
user=usernet-test
id -u "$user" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
[ -c /dev/net/tun ] && chmod 0666 /dev/net/tun

work=$(mktemp -d /tmp/usernet-s4n-upstream.XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
if [ -d "$src/tests" ]; then
  cp -r "$src/tests" "$work/tests"
elif git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null; then
  git --git-dir="$src" archive HEAD tests | tar -x -C "$work"
else
  echo "$src: neither a slirp4netns checkout (no tests/) nor its git directory" >&2
  exit 2
fi
mkdir "$work/bin"
cat >"$work/bin/slirp4netns" <<EOF
#!/bin/sh
exec "$here/bin/usernet-slirp4netns" "\$@"
EOF
chmod 755 "$work/bin/slirp4netns"
chmod -R a+rX "$work"

if [ $# -gt 0 ]; then
  tests=()
  for t in "$@"; do tests+=("$work/tests/test-slirp4netns-${t#test-slirp4netns-}"); done
  tests=("${tests[@]/%.sh/}")
  tests=("${tests[@]/%/.sh}")
else
  tests=("$work"/tests/test-slirp4netns-*.sh)
fi

pass=0 fail=0 skip=0
for t in "${tests[@]}"; do
  name=$(basename "$t" .sh)
  [ -f "$t" ] || { echo "FAIL $name (no such test)"; fail=$((fail + 1)); continue; }
  dir="$work/run-$name"
  mkdir "$dir" && chown "$user" "$dir"
  log="$work/$name.log"
  set +e
  (cd "$dir" && timeout --kill-after=5 120 setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups \
    env -i PATH="$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" HOME="$dir" TMPDIR=/tmp \
    bash "$t") >"$log" 2>&1
  rc=$?
  set -e
  case $rc in
    0) echo "PASS $name"; pass=$((pass + 1)) ;;
    77) echo "SKIP $name"; skip=$((skip + 1)) ;;
    *) echo "FAIL $name (exit $rc); last lines:"; tail -n 15 "$log" | sed 's/^/    /'; fail=$((fail + 1)) ;;
  esac
  # Whatever a test left running as the test user goes now (each test's own trap kills most).
  pkill -9 -u "$user" 2>/dev/null || true
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
