#!/usr/bin/env bash
# The edge build, exactly as the README documents it: builds it, checks that it is static,
# that it has not grown past its ceiling, and the library's dependency count with the `s3`
# backend alone (at most 25 crates in `cargo tree -e normal`), and prints the figures.
# The target is 3 MiB; BENCHMARKS.md says why the binary is above it (static glibc, std,
# SQLite and rustls/ring are 3.0 MiB together before any code of ours). tests/edge.rs then replicates with it
# to S3 over HTTPS (LITESTREAM_TEST_EDGE_BIN, exported by .ci/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET_BYTES=$((3 * 1024 * 1024))
# A regression ceiling, a little above the size measured on 2026-12-03 (3.49 MiB, after
# the trimmed SQLite of .cargo/config.toml, the edge link of src/build.rs and the
# built-in Mozilla roots made optional; 4.53 MiB before).
MAX_BYTES=$((36 * 1024 * 1024 / 10))
MAX_CRATES=25
TARGET=x86_64-unknown-linux-gnu
BIN=target/$TARGET/edge/litestream

start=$(date +%s)
RUSTFLAGS='-C target-feature=+crt-static' \
  cargo build --profile edge --no-default-features --features cli,s3 --target "$TARGET"
secs=$(( $(date +%s) - start ))
bytes=$(stat -c %s "$BIN")
crates=$(cargo tree -e normal --no-default-features --features s3 --prefix none \
  | sed 's/ (\*)$//' | sort -u | wc -l)
linking=static
readelf -lW "$BIN" | grep -q INTERP && linking="dynamic (not static!)"
printf 'edge build: %s, %d bytes (%s MiB), %s; built in %ds\n' "$BIN" "$bytes" \
  "$(awk "BEGIN { printf \"%.2f\", $bytes / 1048576 }")" "$linking" "$secs"
printf 'library with --no-default-features --features s3: %d crates (cargo tree -e normal)\n' "$crates"
fail=0
[ "$linking" = static ] || { echo "the edge binary is not static" >&2; fail=1; }
if [ "$bytes" -gt "$MAX_BYTES" ]; then
  echo "edge binary is $bytes bytes, over its ceiling of $MAX_BYTES: it grew" >&2; fail=1
elif [ "$bytes" -gt "$TARGET_BYTES" ]; then
  echo "note: edge binary is $bytes bytes, above the 3 MiB target ($TARGET_BYTES); see BENCHMARKS.md" >&2
fi
if [ "$crates" -gt "$MAX_CRATES" ]; then
  echo "the s3-only library has $crates crates, over the budget of $MAX_CRATES" >&2; fail=1
fi
exit $fail
