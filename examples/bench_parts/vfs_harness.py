"""The VFS side-by-side harness (examples/bench.rs, parts `vfs` and `vfs1g`): loads one
extension into this Python's sqlite3, reads an S3 replica through a counting proxy (a
forked child process, so the RSS reported is Python's, SQLite's and the extension's
alone), and reports JSON.

argv: SO UPSTREAM(host:port) PORT [ID]; LITESTREAM_REPLICA_URL (set by the caller: a Go
extension reads the environment the process started with) points at 127.0.0.1:PORT; ID is
the row of the cold and warm lookups (12345). stdin: "wait N" (answer "seen" once
max(id) >= N), then "idle SECS" (10 idle connections; the answer is the JSON report), or
"lookups K N" (10 connections, each K lookups of random ids in 1..=N, round robin; the
answer is the JSON report).
"""
import http.client
import http.server
import json
import os
import random
import sys
import threading
import time

so, upstream, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
lookup_id = int(sys.argv[4]) if len(sys.argv) > 4 else 12345
counts = {"list": 0, "get": 0, "other": 0, "bytes": 0}
lock = threading.Lock()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without this, a small answer waits
    # for the client's delayed ACK (tens of milliseconds a request).
    disable_nagle_algorithm = True

    def handle_any(self):
        if self.path == "/__counts":
            with lock:
                body = json.dumps(counts).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        if self.command == "GET" and ("list-type" in self.path or "prefix=" in self.path):
            kind = "list"
        elif self.command == "GET":
            kind = "get"
        else:
            kind = "other"
        with lock:
            counts[kind] += 1
        up = http.client.HTTPConnection(upstream)
        up.request(self.command, self.path, body, dict(self.headers))
        r = up.getresponse()
        data = r.read()
        with lock:
            counts["bytes"] += len(data)
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        up.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    def log_message(self, *a):
        pass


srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Proxy)
parent = os.getpid()
proxy = os.fork()
if proxy == 0:
    # The proxy: serves until the harness goes away.
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)
srv.socket.close()

import sqlite3  # noqa: E402

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(so)
URI = "file:app.db?vfs=litestream"


def total():
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/__counts")
    out = json.loads(c.getresponse().read())
    c.close()
    return out


def diff(a, b):
    return {k: b[k] - a[k] for k in a}


report = {}
t0 = time.monotonic()
c0 = total()
conn = sqlite3.connect(URI, uri=True, check_same_thread=False)
conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
report["open_seconds"] = time.monotonic() - t0
d = diff(c0, total())
report["open_lists"], report["open_gets"] = d["list"], d["get"]
report["open_bytes"] = d["bytes"]

# A cold primary-key lookup on a fresh connection, then the same query warm.
c1 = total()
t1 = time.monotonic()
conn.execute("SELECT length(v) FROM t WHERE id = ?", (lookup_id,)).fetchone()
report["cold_lookup_seconds"] = time.monotonic() - t1
d = diff(c1, total())
report["cold_lookup_gets"], report["cold_lookup_bytes"] = d["get"], d["bytes"]
c2 = total()
conn.execute("SELECT length(v) FROM t WHERE id = ?", (lookup_id,)).fetchone()
d = diff(c2, total())
report["warm_lookup_requests"] = d["get"] + d["list"]
print("ready", flush=True)

for line in sys.stdin:
    cmd, arg = line.split()[:2]
    if cmd == "wait":
        n = int(arg)
        while (conn.execute("SELECT max(id) FROM t").fetchone()[0] or 0) < n:
            time.sleep(0.02)
        print("seen", flush=True)
    elif cmd == "idle":
        conns = [sqlite3.connect(URI, uri=True) for _ in range(10)]
        for c in conns:
            c.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
        c3 = total()
        time.sleep(float(arg))
        report["idle_lists_10_conns"] = diff(c3, total())["list"]
        rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0]
        report["rss_mib_10_conns"] = int(rss.split()[1]) / 1024
        print(json.dumps(report), flush=True)
        break
    elif cmd == "lookups":
        k, n = int(arg), int(line.split()[2])
        rng = random.Random(7)
        conns = [sqlite3.connect(URI, uri=True) for _ in range(10)]
        c3, t3 = total(), time.monotonic()
        found = 0
        for _ in range(k):
            for c in conns:
                row = c.execute("SELECT length(v) FROM t WHERE id = ?", (rng.randint(1, n),)).fetchone()
                found += row is not None
        report["lookups_seconds"] = time.monotonic() - t3
        d = diff(c3, total())
        report["lookups"], report["lookups_found"] = k * len(conns), found
        report["lookups_gets"], report["lookups_bytes"] = d["get"], d["bytes"]
        report["lookups_lists"] = d["list"]
        rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS:")][0]
        report["rss_mib_10_conns"] = int(rss.split()[1]) / 1024
        print(json.dumps(report), flush=True)
        break
