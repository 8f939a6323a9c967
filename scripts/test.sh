#!/usr/bin/env bash
# The whole test suite: Rust unit and integration tests, then the browser
# end-to-end tests in Debian's Chromium inside a loopback-only network namespace.
# Needs: cargo, node/npm, /usr/bin/chromium, and root (for `unshare -n`).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -j 2 --workspace --bins
cargo test -j 2 --workspace
# Faults injected on purpose: only in this build of the sfu crate and its binary.
cargo test -j 2 -p sfu --features fault-injection --test faults
# That build left its binary (test-only hooks, inert without their SDP markers)
# in target/debug/sfu: keep it apart for the one browser test that needs it,
# and put the normal binary back (cargo only copies it; both builds are cached).
cp target/debug/sfu target/debug/sfu-fault-injection
cargo build -j 2 -p sfu --bin sfu

# The aiortc interop client's virtualenv (pinned in
# web-client/tests/interop/requirements.txt): made here, outside the namespace.
req=web-client/tests/interop/requirements.txt
if ! cmp -s "$req" target/interop-venv/requirements.txt; then
  rm -rf target/interop-venv
  python3 -m venv target/interop-venv
  target/interop-venv/bin/pip install -q -r "$req"
  cp "$req" target/interop-venv/requirements.txt
fi

cd web-client
[ -d node_modules/puppeteer-core ] || npm ci --no-audit --no-fund
# Only `lo` exists inside the namespace, so Chromium gathers 127.0.0.1 and no
# packet can leave the machine.
SFU_FAULT_BIN="$PWD/../target/debug/sfu-fault-injection" \
  unshare -n sh -c 'ip link set lo up && exec node --test tests/'
