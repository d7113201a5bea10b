#!/usr/bin/env python3
"""An application writing to a SQLite database from another process (Python's own SQLite),
driven line by line on stdin by the Rust tests. Each command answers one line on stdout:
"ok ..." or "err ...".

  mixed SEED N         N transactions of inserts/updates/deletes over several tables
  big SEED             one transaction of more than 1000 pages
  vacuum               delete the bulk rows and VACUUM (the database shrinks)
  checkpoint MODE      PRAGMA wal_checkpoint(MODE)
  saturate SECONDS     100-row transactions as fast as possible; answers
                       "ok TXNS BUSY_ERRORS MAX_COMMIT_MS"
  quit
"""
import random
import sqlite3
import sys
import time

path = sys.argv[1]
busy_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 5000
conn = sqlite3.connect(path, timeout=busy_ms / 1000.0, isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.executescript(
    """
    CREATE TABLE IF NOT EXISTS accounts(id INTEGER PRIMARY KEY, name TEXT NOT NULL, balance INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS accounts_name ON accounts(name);
    CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, account INTEGER, kind TEXT, payload BLOB);
    CREATE TABLE IF NOT EXISTS notes(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;
    """
)


def txn(fn):
    conn.execute("BEGIN IMMEDIATE")
    try:
        fn()
        conn.execute("COMMIT")
    except Exception:
        conn.execute("ROLLBACK")
        raise


def mixed(rng, step):
    def body():
        k = rng.randrange(4)
        if k == 0:
            for _ in range(1 + rng.randrange(50)):
                conn.execute("INSERT INTO accounts(name, balance) VALUES (?, ?)",
                             (f"acct-{rng.randrange(100000)}", rng.randrange(10000)))
        elif k == 1:
            conn.execute("UPDATE accounts SET balance = balance + ? WHERE id % 7 = ?",
                         (rng.randrange(100), rng.randrange(7)))
        elif k == 2:
            conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY random() LIMIT ?)",
                         (rng.randrange(30),))
            conn.execute("DELETE FROM accounts WHERE id % 11 = ?", (rng.randrange(11),))
        else:
            for _ in range(1 + rng.randrange(20)):
                conn.execute("INSERT INTO events(account, kind, payload) VALUES (?, 'evt', ?)",
                             (rng.randrange(1000), rng.randbytes(100 + rng.randrange(3000))))
        conn.execute("INSERT OR REPLACE INTO notes(k, v) VALUES ('step', ?)", (str(step),))
    txn(body)


def big(rng):
    def body():
        for _ in range(6000):
            conn.execute("INSERT INTO events(account, kind, payload) VALUES (?, 'bulk', ?)",
                         (rng.randrange(1000), rng.randbytes(1000)))
    txn(body)


def saturate(seconds):
    rng = random.Random(99)
    deadline = time.monotonic() + seconds
    n = busy = 0
    worst = 0.0
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO events(account, kind, payload) VALUES (?, 'sat', ?)",
                             [(rng.randrange(1000), rng.randbytes(200)) for _ in range(100)])
            conn.execute("COMMIT")
            n += 1
        except sqlite3.OperationalError as e:
            busy += 1
            sys.stderr.write(f"writer error: {e}\n")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.OperationalError:
                pass
        worst = max(worst, time.monotonic() - t0)
    return n, busy, int(worst * 1000)


step = 0
for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    cmd = parts[0]
    try:
        if cmd == "mixed":
            rng = random.Random(int(parts[1]))
            for _ in range(int(parts[2])):
                mixed(rng, step)
                step += 1
            print("ok", flush=True)
        elif cmd == "big":
            big(random.Random(int(parts[1])))
            print("ok", flush=True)
        elif cmd == "vacuum":
            conn.execute("DELETE FROM events WHERE kind IN ('bulk', 'sat')")
            conn.execute("VACUUM")
            print("ok", flush=True)
        elif cmd == "checkpoint":
            r = conn.execute(f"PRAGMA wal_checkpoint({parts[1]})").fetchone()
            print("ok", *r, flush=True)
        elif cmd == "saturate":
            n, busy, worst = saturate(float(parts[1]))
            print("ok", n, busy, worst, flush=True)
        elif cmd == "quit":
            print("ok", flush=True)
            break
        else:
            print("err unknown command", cmd, flush=True)
    except Exception as e:  # report and keep serving
        print("err", repr(e).replace("\n", " "), flush=True)
conn.close()
