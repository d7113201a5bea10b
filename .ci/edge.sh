#!/usr/bin/env bash
# The edge build, exactly as the README documents it: builds it, checks its size (at most
# 3 MiB) and the library's dependency count with the `s3` backend alone (at most 25 crates
# in `cargo tree -e normal`), and prints the figures. tests/edge.rs then replicates with it
# to S3 over HTTPS (LITESTREAM_TEST_EDGE_BIN, exported by .ci/test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

MAX_BYTES=$((3 * 1024 * 1024))
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
  echo "edge binary is $bytes bytes, over the 3 MiB ($MAX_BYTES) budget" >&2; fail=1
fi
if [ "$crates" -gt "$MAX_CRATES" ]; then
  echo "the s3-only library has $crates crates, over the budget of $MAX_CRATES" >&2; fail=1
fi
exit $fail
