#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite (as root):
# formatting, lints, unit tests, packet tests under BPF_PROG_TEST_RUN and
# end-to-end tests with real traffic in network namespaces; the Helm chart's
# checks (charts/ballast/tests/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all -- --check
bash charts/ballast/tests/check.sh   # the Helm chart, examples and images (helm, kubernetes-validate)
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
