"""A real maintenance, end to end: a PostgreSQL primary swap behind a web app
behind nginx with the intermission module, done twice with the same load,
and the two compared.

Each run starts from nothing: two PostgreSQL 15 clusters in a temporary
directory (db1 the primary, db2 its streaming standby, made with
pg_basebackup), the app of demo-database-app.py (one row per request, 500
on a database error), nginx with the module in front of it, and clients
writing through nginx without pause. Then the primary is swapped: db1 is
stopped (a fast shutdown, which first sends all its WAL to the standby),
the standby is checked to have replayed all of it, and db2 is promoted.

  Run A: the swap alone, while the clients write. Requests fail.
  Run B: the same swap inside `intermission run --drain`: the app is
         paused, what it was doing finishes, the swap runs, the app is
         resumed and the held requests go on to the new primary.

Then it counts, on the new primary, the rows each request wrote, and prints
the two runs side by side. With --check it exits 1 unless: run A had a
failed request, run B had none, in both every request answered 200 has
exactly one row (and in run B no other request has any), rows went to both
servers, the slowest request of run B waited at least as long as its swap
took, nginx logged no error (the module's audit lines aside), and the app
logged no exception, nor in run B a database error.

Everything it starts it stops, and the temporary directory goes, whatever
happens. Run it through scripts/demo-database, which builds nginx, the
module and the command line and installs the Debian packages it needs; it
calls this file with Debian's python3 (python3-psycopg2):

    python3 demo-database.py --nginx BIN --module SO --cli BIN [--check] [--keep]
    python3 demo-database.py swap DIR     (the maintenance command itself)
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg2

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
HERE = Path(__file__).resolve().parent
APP = HERE / "demo-database-app.py"
APP_NAME = "shop"

# The load: CLIENTS writers, each sending one request every INTERVAL seconds
# (or as soon as the previous one is answered, if that took longer), from
# WARMUP seconds before the swap until SETTLE seconds after it.
CLIENTS = 16
INTERVAL = 0.04
WARMUP = 1.5
SETTLE = 1.5
# Bounds, not expectations: generous for a loaded 2-core machine.
DRAIN = "10s"
READY = 30.0
REQUEST_TIMEOUT = 60.0


def say(message=""):
    print(message, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, bound=READY):
    deadline = time.monotonic() + bound
    while True:
        try:
            if check():
                return
        except (OSError, psycopg2.Error):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {bound:.0f}s")
        time.sleep(0.05)


def as_postgres(command):
    """PostgreSQL refuses to run as root: as root, run it as user postgres."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--"] + command
    return command


def run(command, **kwargs):
    # From /: user postgres may not enter the caller's directory (/root...).
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, cwd="/",
                          stderr=subprocess.STDOUT, text=True, **kwargs)


# ---------------------------------------------------------------- the database


class Cluster:
    """One PostgreSQL server: data directory, socket directory, log."""

    def __init__(self, top, name):
        self.name = name
        self.data = top / name
        self.sockets = top / f"{name}.sock"
        self.log = top / f"{name}.log"

    def dsn(self, **extra):
        parts = {"host": str(self.sockets), "port": "5432", "user": "postgres",
                 "dbname": "postgres", "connect_timeout": "5", **extra}
        return " ".join(f"{k}={v}" for k, v in parts.items())

    def configure(self):
        # Unix sockets only (no TCP port can clash with anything), in a
        # directory of its own; the name is recorded in every row.
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"\n# scripts/demo-database\nlisten_addresses = ''\n"
                       f"unix_socket_directories = '{self.sockets}'\n"
                       f"cluster_name = '{self.name}'\nshared_buffers = 16MB\n")

    def pg_ctl(self, *args):
        return run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]))

    def start(self):
        self.pg_ctl("-l", str(self.log), "-w", "-t", str(int(READY)), "start")

    def query(self, sql, **extra):
        conn = psycopg2.connect(self.dsn(**extra))
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
                rows = cur.fetchall() if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def running(self):
        return (self.data / "postmaster.pid").exists()


def make_clusters(db1, db2):
    """db1, a primary with the table, and db2, its streaming standby."""
    pg = db1.data.parent
    pg.mkdir()
    if os.geteuid() == 0:
        shutil.chown(pg, "postgres", "postgres")
    for c in (db1, db2):
        c.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(c.sockets, "postgres", "postgres")
    run(as_postgres([str(PG_BIN / "initdb"), "-D", str(db1.data), "-U", "postgres",
                     "--auth=trust", "--no-sync"]))
    db1.configure()
    db1.start()
    # No unique key on request_id on purpose: the demo counts the rows each
    # request left, so a request written twice would show, not be refused.
    db1.query("CREATE TABLE writes (request_id bigint NOT NULL, server text NOT NULL, "
              "at timestamptz NOT NULL DEFAULT now())")
    run(as_postgres([str(PG_BIN / "pg_basebackup"), "-D", str(db2.data), "-h", str(db1.sockets),
                     "-U", "postgres", "-R", "-X", "stream", "-c", "fast"]))
    db2.configure()
    db2.start()
    wait_for("db2 to stream from db1", lambda: db1.query(
        "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")[0][0] == 1)


def lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def swap(db1, db2):
    """The maintenance: db2 becomes the primary, db1 is stopped. Returns
    how long it took, in seconds."""
    start = time.monotonic()
    say(f"  swap: stopping {db1.name} (pg_ctl stop -m fast)")
    db1.pg_ctl("-w", "-t", str(int(READY)), "-m", "fast", "stop")
    # A clean shutdown waits until connected standbys have received all
    # WAL; the standby must also have replayed it before it is promoted,
    # or rows the old primary acknowledged would be missing on the new one.
    control = run([str(PG_BIN / "pg_controldata"), "-D", str(db1.data)],
                  env={**os.environ, "LC_ALL": "C"}).stdout
    last = re.search(r"^Latest checkpoint location:\s+(\S+)", control, re.M).group(1)
    wait_for(f"{db2.name} to replay up to {last}", lambda: lsn(db2.query(
        "SELECT pg_last_wal_replay_lsn()")[0][0]) >= lsn(last))
    say(f"  swap: {db2.name} has replayed all of {db1.name}'s WAL (up to {last})")
    say(f"  swap: promoting {db2.name} (pg_ctl promote)")
    db2.pg_ctl("-w", "-t", str(int(READY)), "promote")
    wait_for(f"{db2.name} to accept writes", lambda: db2.query(
        "SELECT 1", target_session_attrs="read-write"))
    took = time.monotonic() - start
    say(f"  swap: {db2.name} accepts writes; the swap took {took:.2f}s")
    return took


# ---------------------------------------------------------------- nginx, app


NGINX_CONF = """\
# Written by scripts/demo-database for one run.
load_module {module};
{user}
daemon off;
master_process on;
worker_processes 2;
error_log {prefix}/error.log notice;
pid {prefix}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    # What the clients reach: the app, whose requests can be held.
    server {{
        listen 127.0.0.1:{front};
        set $app_name {app};
        # /up, the app's health check, passes even while paused.
        location / {{
            intermission;
            set $intermission_max_time 120;
            proxy_pass http://127.0.0.1:{backend};
        }}
    }}

    # The control endpoint, on a listener of its own that only this machine reaches.
    server {{
        listen 127.0.0.1:{control};
        set $app_name {app};
        location /_intermission {{
            intermission_control;
        }}
    }}
}}
"""


class Stack:
    """One run's processes and files; closing it stops and removes them all."""

    def __init__(self, args, label):
        self.args = args
        self.top = Path(tempfile.mkdtemp(prefix=f"intermission-db-{label}-"))
        # PostgreSQL runs as another user, who must reach its directories.
        self.top.chmod(0o755)
        self.processes = []
        self.clusters = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self):
        # Known before they start, so that a failure half-way stops them too.
        self.db1, self.db2 = Cluster(self.top / "pg", "db1"), Cluster(self.top / "pg", "db2")
        self.clusters = [self.db1, self.db2]
        make_clusters(self.db1, self.db2)
        # What the swap command, run by intermission, needs to find them.
        (self.top / "stack.json").write_text(json.dumps({"pg": str(self.db1.data.parent)}))
        self.backend, self.front, self.control = free_port(), free_port(), free_port()
        dsn = (f"host={self.db1.sockets},{self.db2.sockets} port=5432,5432 user=postgres "
               "dbname=postgres connect_timeout=5 target_session_attrs=read-write")
        self.app_log = self.top / "app.log"
        app = self.spawn([sys.executable, str(APP), "--port", str(self.backend), "--dsn", dsn],
                         self.app_log)
        wait_for("the app", lambda: running(app, self.app_log) and get(self.backend, "/up") == 200)
        prefix = self.top / "nginx"
        (prefix / "tmp").mkdir(parents=True)
        self.nginx_log = prefix / "error.log"
        conf = prefix / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            module=self.args.module, prefix=prefix, front=self.front, control=self.control,
            backend=self.backend, app=APP_NAME,
            user="user root;" if os.geteuid() == 0 else ""))
        nginx = self.spawn([self.args.nginx, "-p", str(prefix), "-c", str(conf),
                            "-e", str(self.nginx_log)], self.nginx_log)
        wait_for("the app through nginx",
                 lambda: running(nginx, self.nginx_log) and get(self.front, "/up") == 200)
        wait_for("nginx's control endpoint",
                 lambda: get(self.control, "/_intermission/status") == 200)

    def spawn(self, command, log):
        with open(log, "a") as out:
            self.processes.append(subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return self.processes[-1]

    def control_url(self):
        return f"http://127.0.0.1:{self.control}/_intermission"

    def close(self):
        # nginx first (QUIT: graceful), then the app, then the servers.
        for p in reversed(self.processes):
            if p.poll() is None:
                p.send_signal(signal.SIGQUIT if p.args[0] == self.args.nginx else signal.SIGTERM)
        for p in reversed(self.processes):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for c in self.clusters:
            if c.running():
                try:
                    c.pg_ctl("-w", "-m", "immediate", "stop")
                except subprocess.CalledProcessError as e:
                    say(f"warning: could not stop {c.name}: {e.stdout.strip()}")
        if self.args.keep:
            say(f"  (kept {self.top})")
        else:
            shutil.rmtree(self.top, ignore_errors=True)


def running(process, log):
    """True while `process` runs; once it has exited, an error with its log's end."""
    if process.poll() is None:
        return True
    tail = "\n  ".join(log.read_text().strip().splitlines()[-5:])
    raise RuntimeError(f"{Path(process.args[0]).name} exited {process.returncode}:\n  {tail}")


def get(port, path, body=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        data = response.read()
        return data if body else response.status
    finally:
        conn.close()


# ---------------------------------------------------------------- the clients


class Clients:
    """CLIENTS threads writing through nginx, each request with a new id."""

    def __init__(self, port):
        self.port = port
        self.results = []  # (id, status, seconds); status 0: no answer
        self.lock = threading.Lock()
        self.next_id = 1
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.write, daemon=True) for _ in range(CLIENTS)]

    def start(self):
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT + 5)

    def write(self):
        conn = None
        while not self.stopping.is_set():
            with self.lock:
                request_id = self.next_id
                self.next_id += 1
            began = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                      timeout=REQUEST_TIMEOUT)
                conn.request("POST", f"/write?id={request_id}", body=b"")
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = None
            took = time.monotonic() - began
            with self.lock:
                self.results.append((request_id, status, took))
            time.sleep(max(0.0, INTERVAL - took))
        if conn is not None:
            conn.close()


# ---------------------------------------------------------------- one run


def unexpected_nginx_errors(log):
    """Lines at error or worse, but the module's audit lines (a pause, a
    resume, a drain), which may be logged at error so that Debian's default
    error_log keeps them."""
    audit = re.compile(f'intermission: app "{APP_NAME}" (paused|stays paused|resumed|drained)\\b')
    return [line for line in log.read_text().splitlines()
            if re.search(r"\[(error|crit|alert|emerg)\]", line) and not audit.search(line)]


def one_run(args, paused):
    label = "B" if paused else "A"
    with Stack(args, label) as stack:
        stack.start()
        clients = Clients(stack.front)
        clients.start()
        try:
            swap_took, window = swap_under_load(args, stack, paused)
        finally:
            clients.stop()
        status = json.loads(get(stack.control, "/_intermission/status?format=json", body=True))
        rows = stack.db2.query("SELECT request_id, server, count(*) FROM writes "
                               "GROUP BY request_id, server")
        app_log = stack.app_log.read_text()
        app_errors = [line for line in app_log.splitlines() if "database error" in line]
        # The app's other failures: an exception its server printed.
        logged_errors = unexpected_nginx_errors(stack.nginx_log) + [
            f"the app: {line}" for line in app_log.splitlines() if line.startswith("Traceback")]
    result = summarize(clients.results, rows, swap_took, window, app_errors, logged_errors)
    result["held"] = status["held_in_pause"] if paused else None
    return result


def swap_under_load(args, stack, paused):
    """The swap, WARMUP seconds into the load, and SETTLE seconds more of
    it; returns how long the swap and (run B) the whole pause took."""
    time.sleep(WARMUP)
    if not paused:
        took = swap(stack.db1, stack.db2)
        time.sleep(SETTLE)
        return took, None
    command = [args.cli, "run", "--drain", DRAIN, stack.control_url(), "--",
               sys.executable, str(Path(__file__).resolve()), "swap", str(stack.top)]
    say(f"  $ intermission run --drain {DRAIN} {stack.control_url()} -- "
        "demo-database.py swap ...")
    began = time.monotonic()
    maintenance = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True)
    try:
        for line in maintenance.stdout:
            line = line.rstrip("\n")
            say(line if line.startswith("  swap:") else f"  | {line}")
        maintenance.wait()
    finally:
        # Interrupted: TERM lets it stop the swap and resume, as Ctrl-C would.
        if maintenance.poll() is None:
            maintenance.terminate()
            maintenance.wait(READY)
    window = time.monotonic() - began
    if maintenance.returncode != 0:
        raise RuntimeError(f"intermission run exited {maintenance.returncode}")
    took = json.loads((stack.top / "swap.json").read_text())["took"]
    time.sleep(SETTLE)
    return took, window


def summarize(results, rows, swap_took, window, app_errors, logged_errors):
    answered_200 = {i for i, status, _ in results if status == 200}
    per_id, per_server = {}, {}
    for request_id, server, count in rows:
        per_id[request_id] = per_id.get(request_id, 0) + count
        per_server[server] = per_server.get(server, 0) + count
    return {
        "requests": len(results),
        "ok": len(answered_200),
        "failed": sum(1 for _, status, _ in results if status != 200),
        "statuses": sorted({status for _, status, _ in results}),
        "rows": sum(per_id.values()),
        "rows_db1": per_server.get("db1", 0),
        "rows_db2": per_server.get("db2", 0),
        "duplicates": sum(1 for n in per_id.values() if n > 1),
        "missing": len(answered_200 - per_id.keys()),
        "unanswered_rows": len(per_id.keys() - answered_200),
        "slowest": max(took for _, _, took in results),
        "swap": swap_took,
        "window": window,
        "app_errors": app_errors,
        "logged_errors": logged_errors,
    }


def table(a, b):
    def secs(x):
        return "-" if x is None else f"{x:.2f}s"

    lines = [
        ("", "A: swap alone", "B: inside intermission run"),
        ("requests sent", a["requests"], b["requests"]),
        ("answered 200", a["ok"], b["ok"]),
        ("failed (not 200)", a["failed"], b["failed"]),
        ("held by the pause, then answered", "-", b["held"]),
        ("rows on the new primary", a["rows"], b["rows"]),
        ("  written on db1 (old primary)", a["rows_db1"], b["rows_db1"]),
        ("  written on db2 (new primary)", a["rows_db2"], b["rows_db2"]),
        ("200 with no row (missing)", a["missing"], b["missing"]),
        ("200 with 2+ rows (duplicate)", a["duplicates"], b["duplicates"]),
        ("rows of requests not answered 200", a["unanswered_rows"], b["unanswered_rows"]),
        ("app's database errors", len(a["app_errors"]), len(b["app_errors"])),
        ("slowest request", secs(a["slowest"]), secs(b["slowest"])),
        ("swap took", secs(a["swap"]), secs(b["swap"])),
        ("pause (intermission run) took", secs(a["window"]), secs(b["window"])),
    ]
    return "\n".join(f"  {name:<36} {x!s:>16} {y!s:>28}" for name, x, y in lines)


def verdict(a, b):
    """What --check requires; each failed requirement as a sentence."""
    problems = []
    if a["failed"] == 0:
        problems.append("run A (no pause) had no failed request: the swap was not seen")
    if b["failed"] != 0:
        problems.append(f"run B (paused) had {b['failed']} failed requests "
                        f"(statuses {b['statuses']})")
    for name, r in (("A", a), ("B", b)):
        if r["missing"] or r["duplicates"]:
            problems.append(f"run {name}: {r['missing']} requests answered 200 have no row, "
                            f"{r['duplicates']} have more than one")
        if r["rows_db1"] == 0 or r["rows_db2"] == 0:
            problems.append(f"run {name}: rows were not written on both sides of the swap")
        for line in r["logged_errors"]:
            problems.append(f"run {name}: logged: {line}")
    if b["unanswered_rows"]:
        problems.append(f"run B: {b['unanswered_rows']} rows of requests not answered 200")
    for line in b["app_errors"]:
        problems.append(f"run B: the app logged: {line}")
    if b["slowest"] < b["swap"]:
        problems.append(f"run B: the slowest request waited {b['slowest']:.2f}s, less than "
                        f"the swap's {b['swap']:.2f}s: no request waited through it")
    return problems


def swap_command(top):
    """`demo-database.py swap DIR`: the maintenance command run B runs
    inside `intermission run`."""
    pg = Path(json.loads((Path(top) / "stack.json").read_text())["pg"])
    took = swap(Cluster(pg, "db1"), Cluster(pg, "db2"))
    (Path(top) / "swap.json").write_text(json.dumps({"took": took}))


def interrupted(signum, _frame):
    # Through the clean-up, as Ctrl-C does.
    print("demo-database: interrupted; stopping what it started", file=sys.stderr, flush=True)
    sys.exit(128 + signum)


def main():
    signal.signal(signal.SIGTERM, interrupted)
    if len(sys.argv) == 3 and sys.argv[1] == "swap":
        swap_command(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(
        description="A PostgreSQL primary swap behind nginx, without and with intermission.")
    parser.add_argument("--nginx", required=True, help="nginx binary the module is built for")
    parser.add_argument("--module", required=True, help="the module (.so)")
    parser.add_argument("--cli", required=True, help="the intermission command line")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless the runs show what they should (see the top of this file)")
    parser.add_argument("--keep", action="store_true",
                        help="keep each run's directory (logs, data) instead of removing it")
    args = parser.parse_args()

    postgres = run([str(PG_BIN / "postgres"), "--version"]).stdout.strip()
    nginx = run([args.nginx, "-v"]).stdout.strip().split(": ")[-1]
    say("A PostgreSQL primary swap behind nginx, twice with the same load.")
    say(f"  database  {postgres}: db1 the primary, db2 its streaming standby")
    say("  app       one row per request, 500 on a database error; it finds the primary")
    say("            with libpq's multi-host string (target_session_attrs=read-write)")
    say(f"  nginx     {nginx} with the intermission module, in front of the app")
    say(f"  clients   {CLIENTS}, writing through nginx, one request each every "
        f"{INTERVAL * 1000:.0f} ms")
    say("  swap      stop db1 (fast), check that db2 replayed all of its WAL, promote db2")
    say()
    try:
        say("Run A: the swap alone, while the clients write")
        a = one_run(args, paused=False)
        say()
        say("Run B: the same swap inside intermission run --drain (fresh clusters, same load)")
        b = one_run(args, paused=True)
    except subprocess.CalledProcessError as e:
        tail = "\n  ".join((e.stdout or "").strip().splitlines()[-5:])
        say(f"error: {' '.join(map(str, e.cmd))} exited {e.returncode}:\n  {tail}")
        return 1
    except (RuntimeError, OSError, psycopg2.Error) as e:
        say(f"error: {e}")
        return 1
    say()
    say(table(a, b))
    say()
    if a["app_errors"]:
        say(f"Run A's first database error, as the app logged it:\n  {a['app_errors'][0]}")
    say(f"Without the pause, {a['failed']} of {a['requests']} requests failed during the "
        f"{a['swap']:.2f}s swap.")
    if b["failed"] == 0:
        say(f"With it, none did: the {b['held']} requests that came during the pause were held "
            f"through the {b['swap']:.2f}s")
        say(f"swap (the slowest waited {b['slowest']:.2f}s), then each wrote its row, once, "
            "on the new primary.")
    else:
        say(f"With it, {b['failed']} failed too.")
    problems = verdict(a, b)
    if problems:
        say()
        say("Not as expected:")
        for p in problems:
            say(f"  - {p}")
    return 1 if args.check and problems else 0


if __name__ == "__main__":
    sys.exit(main())
