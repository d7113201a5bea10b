#!/usr/bin/env bash
# The loadable extension (`litestream-vfs/`): builds target/release/liblitestream_vfs.so
# and checks that it exports SQLite's entry point and links no SQLite of its own.
# tests/vfs_extension.rs loads it into Debian's python3 and sqlite3 (LITESTREAM_TEST_VFS_SO,
# exported by .ci/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -p litestream-vfs
SO=${CARGO_TARGET_DIR:-target}/release/liblitestream_vfs.so
nm -D --defined-only "$SO" | grep -q ' sqlite3_litestreamvfs_init$' \
  || { echo "$SO does not export sqlite3_litestreamvfs_init" >&2; exit 1; }
if nm -D --defined-only "$SO" | grep -q ' sqlite3_open_v2$'; then
  echo "$SO carries its own SQLite: it must call the host's" >&2; exit 1
fi
printf 'loadable extension: %s, %d bytes\n' "$SO" "$(stat -c %s "$SO")"
