#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, end-to-end over real
# sockets on 127.0.0.1, CLI). Installs what the tests need and fails loudly when it cannot.
# Usage: scripts/test.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

need() {
  # need CMD DEBIAN_PACKAGE: make sure CMD exists, installing the package if we can.
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing $pkg (for $cmd)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null
  fi
  command -v "$cmd" >/dev/null 2>&1 || { echo "error: $cmd is required (Debian package $pkg)" >&2; exit 1; }
}

need cargo cargo
need kill procps   # the CLI tests send SIGHUP/SIGTERM with kill(1)
need nginx nginx   # rampart-ratelimit's conformance test replays traces against real nginx limit_req
need redis-server redis-server   # rampart-ratelimit-redis tests run a fleet against a real Redis

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
# Every network test binds 127.0.0.1 and stops itself; the timeout is a last resort
# against a hang, far above the suite's normal run time.
timeout 30m cargo test --workspace --all-targets --locked
