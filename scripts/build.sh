#!/bin/bash
# build.sh: build usernet from a clean checkout — the native TAP addon (node-gyp) and the
# TypeScript — and check that both programs start. CI runs it (.ci/run) and so does
# docker/Dockerfile, so the image's build is exercised even where no Docker engine exists.
# Needs Node.js >= 20 with npm, make, g++ and python3 (scripts/deps.sh installs them on Debian).
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

major=$(node -p 'process.versions.node.split(".")[0]')
[ "$major" -ge 20 ] || { echo "build.sh: Node.js >= 20 is needed, this is $(node --version)" >&2; exit 1; }

npm ci
# npm ci's install script (scripts/build-addon.mjs) only warns when the addon cannot be built, so
# that a user's `npm install` never fails for want of a compiler; here it must have been built.
if ! node -e 'try { require("./build/Release/usernet_native.node") } catch (e) { console.error(e.message.split("\n")[0]); process.exit(1) }'; then
  echo "build.sh: the native addon was not built or does not load (build/Release/usernet_native.node); node-gyp's output:" >&2
  tail -n 40 build/addon-build.log >&2 2>/dev/null || true
  exit 1
fi
npm run build
# Both entry points load the addon and the compiled code.
node bin/usernet.js --version >/dev/null
node bin/usernet-slirp4netns.js --version | head -n 1
echo "build.sh: built usernet $(node -p 'require("./package.json").version')"
