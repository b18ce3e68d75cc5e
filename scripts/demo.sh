#!/usr/bin/env bash
# Sets up a fresh machine and runs the local demo (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --locked -p ballast-demo
exec ./target/release/ballast-demo "$@"
