#!/usr/bin/env bash
# The project's one test command: installs what the tests need (cached under .cache/),
# starts the test servers on 127.0.0.1, runs the whole test suite, stops the servers.
# Extra arguments go to `cargo test` (e.g. .ci/test.sh --test replicate).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PEERS_NEEDED=(litestream litestream-v3 weed gcs sftp webdav azurite nats)

command -v cargo >/dev/null || { echo "cargo is required (install a Rust toolchain)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }

.ci/peers.sh install "${PEERS_NEEDED[@]}"
trap '.ci/peers.sh stop "${PEERS_NEEDED[@]}" >/dev/null 2>&1 || true' EXIT
.ci/peers.sh start "${PEERS_NEEDED[@]}"
# shellcheck disable=SC1091
source .cache/peers/env
# The official binary's S3 client fails when AWS_CA_BUNDLE is set; tests never leave
# loopback and never use instance metadata.
unset AWS_CA_BUNDLE
export AWS_EC2_METADATA_DISABLED=true GCE_METADATA_HOST=127.0.0.1:9
# An Azure client without key or SAS would ask a managed-identity endpoint: keep even an
# accidental one on loopback (a closed port) instead of the instance metadata service.
export IDENTITY_ENDPOINT=http://127.0.0.1:9/msi IDENTITY_HEADER=none

# The edge build (static, cli + s3 only): size and dependency checks, then tests/edge.rs
# replicates with it to S3 over HTTPS.
.ci/edge.sh
export LITESTREAM_TEST_EDGE_BIN=$PWD/target/x86_64-unknown-linux-gnu/edge/litestream

# The loadable extension; tests/vfs_extension.rs loads it into python3 and sqlite3.
.ci/vfs.sh
export LITESTREAM_TEST_VFS_SO=${CARGO_TARGET_DIR:-$PWD/target}/release/liblitestream_vfs.so

cargo test --all-features "$@"
