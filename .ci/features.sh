#!/usr/bin/env bash
# Every backend feature alone, the library with no feature, and the defaults: each builds
# and passes its unit tests, so no feature combination rots.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for f in "" s3 gcs azure webdav nats sftp tls webpki-roots cli vfs; do
  echo "--- cargo test --lib --no-default-features --features '$f'"
  cargo test --quiet --lib --no-default-features --features "bundled $f"
done
echo "--- cargo test --lib (defaults)"
cargo test --quiet --lib
