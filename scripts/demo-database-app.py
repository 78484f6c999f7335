"""The application of the database demo (scripts/demo-database): a small web
app that writes one row per request into PostgreSQL, as a real app behind
nginx would, and answers 500 when the database fails it.

    POST /write?id=N   inserts a row for request N, commits, answers 200;
                       500 (and a line on stderr) on any database error
    GET  /up           200 without touching the database (the health check)

It connects with libpq's multi-host string (--dsn), e.g.
"host=/run/a,/run/b port=5432,5432 target_session_attrs=read-write": libpq
tries each server and keeps the one that accepts writes, so after a
primary swap a new connection finds the new primary by itself.

Connections are pooled, as web frameworks do. A connection that failed is
closed, never reused. One that sits in the pool is looked at before it is
handed out: if its socket is readable while idle, the server has said
goodbye (a shutdown sends a FATAL message and closes), so it is dropped and
another one is made. That costs no round trip, and it is what keeps the
first request after a swap from failing on a connection whose server was
already known to be gone.

Run by scripts/demo-database with Debian's python3 and python3-psycopg2:
    python3 demo-database-app.py --port PORT --dsn DSN
"""

import argparse
import select
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2


class Pool:
    """Idle connections to the database, checked on the way out."""

    def __init__(self, dsn):
        self.dsn = dsn
        self.idle = []
        self.lock = threading.Lock()

    def get(self):
        while True:
            with self.lock:
                if not self.idle:
                    break
                conn = self.idle.pop()
            if self.alive(conn):
                return conn
            log("dropping a pooled connection its server closed")
            conn.close()
        return psycopg2.connect(self.dsn)

    def put(self, conn):
        with self.lock:
            self.idle.append(conn)

    @staticmethod
    def alive(conn):
        # An idle connection has nothing to read unless the server sent
        # something on its own: a termination message, or end of file.
        if conn.closed:
            return False
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        return not readable


def log(message):
    stamp = time.strftime("%H:%M:%S", time.localtime())
    print(f"{stamp} app: {message}", file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    pool = None  # set in main

    def do_GET(self):
        if urlsplit(self.path).path == "/up":
            self.answer(200, "up\n")
        else:
            self.answer(404, "not found\n")

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/write":
            self.answer(404, "not found\n")
            return
        try:
            request_id = int(parse_qs(url.query)["id"][0])
        except (KeyError, ValueError):
            self.answer(400, "needs ?id=N, N an integer\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        conn = None
        try:
            conn = self.pool.get()
            with conn.cursor() as cur:
                # current_setting('cluster_name') records which server took
                # the row: the demo counts rows per server.
                cur.execute(
                    "INSERT INTO writes (request_id, server) "
                    "VALUES (%s, current_setting('cluster_name'))",
                    (request_id,),
                )
            conn.commit()
        except psycopg2.Error as e:
            log(f"request {request_id}: database error: {str(e).strip()}")
            if conn is not None:
                conn.close()
            self.answer(500, "database error\n")
            return
        self.pool.put(conn)
        self.answer(200, f"wrote {request_id}\n")

    def answer(self, status, body):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        pass  # nginx's access log has every request


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True, help="libpq connection string")
    args = parser.parse_args()
    Handler.pool = Pool(args.dsn)
    # A listen backlog for the burst of held requests nginx lets go at once.
    ThreadingHTTPServer.request_queue_size = 128
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    log(f"listening on 127.0.0.1:{args.port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
