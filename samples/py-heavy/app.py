#!/usr/bin/env python3
"""py-heavy: a sample application whose start-up is slow the way a Python
service's is: it imports a large part of the standard library (as a web
framework and its plugins do) and then does real set-up work — it generates
a catalogue of rows, writes and parses it as CSV, loads it into an in-memory
SQLite table with indexes, reads a configuration document as XML and
compiles its routing rules — before it listens.

    PORT=8080 python3 app.py

GET /healthz answers 200 once everything is loaded. POST /predict (or
/query) with a small JSON body, e.g. {"category": 7, "region": "eu"} or
{"x": 1}, runs one indexed SQLite query and answers JSON. The instance
listens on 127.0.0.1:$PORT only and stops on SIGTERM or SIGINT, letting the
requests in flight finish (at most 2 s).

Standard library only.
"""

import time

T0 = time.monotonic()

# The heavy imports: what a real service pulls in at start, most of which
# a request never touches.
import argparse  # noqa: E402,F401
import asyncio  # noqa: E402,F401
import concurrent.futures  # noqa: E402,F401
import configparser  # noqa: E402,F401
import csv  # noqa: E402
import dataclasses  # noqa: E402,F401
import decimal  # noqa: E402
import difflib  # noqa: E402,F401
import email.mime.multipart  # noqa: E402,F401
import email.mime.text  # noqa: E402,F401
import email.parser  # noqa: E402,F401
import email.policy  # noqa: E402,F401
import gzip  # noqa: E402,F401
import hashlib  # noqa: E402
import html.parser  # noqa: E402,F401
import http.client  # noqa: E402,F401
import http.cookies  # noqa: E402,F401
import http.server  # noqa: E402
import inspect  # noqa: E402,F401
import io  # noqa: E402
import ipaddress  # noqa: E402,F401
import json  # noqa: E402
import logging  # noqa: E402
import logging.handlers  # noqa: E402,F401
import multiprocessing  # noqa: E402,F401
import os  # noqa: E402
import pickle  # noqa: E402,F401
import random  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import socketserver  # noqa: E402
import sqlite3  # noqa: E402
import ssl  # noqa: E402,F401
import statistics  # noqa: E402
import sys  # noqa: E402
import tarfile  # noqa: E402,F401
import tempfile  # noqa: E402,F401
import threading  # noqa: E402
import tomllib  # noqa: E402,F401
import typing  # noqa: E402,F401
import unittest  # noqa: E402,F401
import unittest.mock  # noqa: E402,F401
import urllib.parse  # noqa: E402,F401
import urllib.request  # noqa: E402,F401
import uuid  # noqa: E402
import wsgiref.simple_server  # noqa: E402,F401
import xml.dom.minidom  # noqa: E402,F401
import xml.etree.ElementTree as ET  # noqa: E402
import xmlrpc.server  # noqa: E402,F401
import zipfile  # noqa: E402,F401

T_IMPORTED = time.monotonic()

ROWS = 60_000
CATEGORIES = 64
REGIONS = ("eu", "us", "ap", "sa", "af", "me")
NAMESPACE = uuid.UUID("6f0c8a5e-3c1d-4f6e-9a57-0b9d2c4e7a10")

CONFIG_XML = """<service name="py-heavy">
  <routes>%s</routes>
  <limits body="65536" rows="10"/>
</service>""" % "".join(
    '<route pattern="^/api/v%d/(?P&lt;kind&gt;[a-z]+)/(?P&lt;id&gt;[0-9a-f-]{8,36})(?:/(?P&lt;sub&gt;%s))?$" name="r%d"/>'
    % (i % 4 + 1, "|".join("s%d_%d" % (i, j) for j in range(8)), i)
    for i in range(300)
)

log = logging.getLogger("py-heavy")


def build_catalogue():
    """Generate the rows, round-trip them through CSV and load them into an
    in-memory SQLite database with its indexes. Returns the connection and
    a summary of the prices."""
    rng = random.Random(20261207)
    cents = decimal.Decimal("0.01")
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(("id", "sku", "category", "region", "price", "qty", "name"))
    for i in range(ROWS):
        price = (decimal.Decimal(rng.randint(100, 99_999)) * cents).quantize(cents)
        w.writerow((
            i,
            uuid.uuid5(NAMESPACE, str(i)),
            rng.randrange(CATEGORIES),
            REGIONS[rng.randrange(len(REGIONS))],
            price,
            rng.randint(0, 500),
            "item-%x" % rng.getrandbits(40),
        ))
    text.seek(0)
    r = csv.reader(text)
    next(r)
    rows = [
        (int(i), sku, int(cat), region, int(decimal.Decimal(price) * 100), int(qty), name)
        for i, sku, cat, region, price, qty, name in r
    ]

    scratch = os.environ.get("FOREWARM_SCRATCH")
    if scratch:
        # Where SQLite spills while it sorts, e.g. to build an index.
        os.environ["SQLITE_TMPDIR"] = scratch
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, category INTEGER NOT NULL,"
        " region TEXT NOT NULL, price_cents INTEGER NOT NULL, qty INTEGER NOT NULL, name TEXT NOT NULL)"
    )
    db.execute("BEGIN")
    db.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    db.execute("COMMIT")
    db.execute("CREATE INDEX items_cat_region ON items (category, region, price_cents)")
    db.execute("CREATE UNIQUE INDEX items_sku ON items (sku)")
    db.execute("ANALYZE")
    prices = [row[4] for row in rows]
    summary = {
        "rows": len(rows),
        "mean_price": round(statistics.fmean(prices) / 100, 2),
        "median_price": statistics.median(prices) / 100,
        "digest": hashlib.sha256(text.getvalue().encode()).hexdigest()[:16],
    }
    text.close()  # the database holds the rows from here on
    return db, summary


def load_routes():
    """Parse the configuration and compile its routing rules."""
    root = ET.fromstring(CONFIG_XML)
    routes = [(r.get("name"), re.compile(r.get("pattern"))) for r in root.iter("route")]
    limits = root.find("limits")
    return routes, int(limits.get("body")), int(limits.get("rows"))


class App:
    def __init__(self):
        self.db, self.summary = build_catalogue()
        self.routes, self.max_body, self.max_rows = load_routes()
        self.lock = threading.Lock()  # one query on the connection at a time
        self.inflight = 0
        self.idle = threading.Condition()

    QUERY = (
        "SELECT count(*), coalesce(avg(price_cents), 0), coalesce(max(qty), 0)"
        " FROM items WHERE category = ? AND region = ? AND price_cents BETWEEN ? AND ?"
    )
    TOP = (
        "SELECT sku, name, price_cents FROM items WHERE category = ? AND region = ?"
        " ORDER BY price_cents DESC LIMIT ?"
    )

    def predict(self, body):
        """Answer one query: the rows of a category and region in a price
        band, with the most expensive few. x, when given, picks the
        category, the region and the band."""
        if not isinstance(body, dict):
            raise ValueError("the body is a JSON object")
        x = body.get("x", 0)
        if isinstance(x, list):
            x = sum(v for v in x if isinstance(v, (int, float)) and not isinstance(v, bool))
        if not isinstance(x, (int, float)) or isinstance(x, bool) or x != x or x in (float("inf"), float("-inf")):
            raise ValueError('"x" is a number or a list of numbers')
        h = int(hashlib.blake2b(repr(x).encode(), digest_size=8).hexdigest(), 16)
        category = body.get("category", h % CATEGORIES)
        region = body.get("region", REGIONS[(h >> 8) % len(REGIONS)])
        if not isinstance(category, int) or isinstance(category, bool) or not 0 <= category < CATEGORIES:
            raise ValueError('"category" is an integer in 0..%d' % (CATEGORIES - 1))
        if region not in REGIONS:
            raise ValueError('"region" is one of %s' % ", ".join(REGIONS))
        low = (h >> 16) % 50_000 + 100
        high = low + 50_000
        with self.lock:
            count, avg, max_qty = self.db.execute(self.QUERY, (category, region, low, high)).fetchone()
            top = self.db.execute(self.TOP, (category, region, self.max_rows)).fetchmany(3)
        return {
            "category": category,
            "region": region,
            "band": [low / 100, high / 100],
            "count": count,
            "avg_price": round(avg / 100, 2),
            "max_qty": max_qty,
            "top": [{"sku": s, "name": n, "price": p / 100} for s, n, p in top],
        }


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep connections open between requests
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server_version = "py-heavy"
    sys_version = ""
    app = None  # set in main

    def log_message(self, format, *args):  # no access log: it costs per request
        pass

    def reply(self, status, obj):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path == "/healthz":
            self.reply(200, {"ok": True, "rows": self.app.summary["rows"], "startup_ms": STARTUP_MS})
        elif self.path == "/":
            self.reply(200, {"app": "py-heavy", **self.app.summary})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        with self.app.idle:
            self.app.inflight += 1
        try:
            self.post()
        finally:
            with self.app.idle:
                self.app.inflight -= 1
                self.app.idle.notify_all()

    def post(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self.reply(411, {"error": "send the body with a Content-Length"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0 or length > self.app.max_body:
            self.close_connection = True
            self.reply(413 if length > 0 else 400, {"error": "the body has a Content-Length of at most %d" % self.app.max_body})
            return
        raw = self.rfile.read(length) if length else b"{}"
        if self.path not in ("/predict", "/query"):
            self.reply(404, {"error": "not found"})
            return
        try:
            body = json.loads(raw or b"{}")
            self.reply(200, self.app.predict(body))
        except (ValueError, TypeError) as e:
            self.reply(400, {"error": str(e)})


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def server_bind(self):
        # Skip HTTPServer.server_bind's reverse name look-up of the address.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


STARTUP_MS = 0


def main():
    global STARTUP_MS
    logging.basicConfig(level=logging.INFO, format="py-heavy: %(message)s", stream=sys.stderr)
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    app = App()
    Handler.app = app
    port = int(os.environ.get("PORT", "8080"))
    # Bind only once everything is loaded: a connection that is accepted is
    # one that can be served.
    server = Server(("127.0.0.1", port), Handler)
    STARTUP_MS = round((time.monotonic() - T0) * 1000)
    log.info(
        "imports %d ms, set-up %d ms (%d rows, %d routes); listening on 127.0.0.1:%d",
        round((T_IMPORTED - T0) * 1000), round((time.monotonic() - T_IMPORTED) * 1000),
        app.summary["rows"], len(app.routes), port,
    )
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    while not stopping.wait(3600):
        pass
    server.shutdown()  # no new connections
    server.server_close()
    deadline = time.monotonic() + 2
    with app.idle:
        while app.inflight and time.monotonic() < deadline:
            app.idle.wait(deadline - time.monotonic())
    log.info("stopped")


if __name__ == "__main__":
    main()
