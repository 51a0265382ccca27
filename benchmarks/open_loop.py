"""An open-loop HTTP load generator: requests at a fixed arrival rate, whatever the server does.

wrk (and `hey -q`) are closed-loop: a connection sends its next request only once the last
one is answered, so a server that slows down gets fewer requests and its queueing never
shows (coordinated omission). Here request i is due at `start + i / rate`; it is sent on an
idle keep-alive connection, or a new one if every open connection is busy (up to
`--max-connections`; past that it counts as dropped), and its latency runs from when it
was due, not when it could be sent. One process, asyncio on uvloop, the bodies encoded
once, httptools parsing the answers: on this machine it costs ~30 µs of CPU a request
(printed as `cpu_share`, the share of one core it used), so at a few thousand requests/s it
leaves the server its cores.

    python benchmarks/open_loop.py --url http://127.0.0.1:8000 --path /predict \
        --bodies bodies.json --rate 500 --duration 20 [--header 'X-API-Key: k']

Prints one JSON line: rate asked and achieved, p50/p90/p99/max ms, errors, dropped, cpu_share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from urllib.parse import urlsplit


def request_bytes(host: str, path: str, body: str, headers: dict[str, str]) -> bytes:
    data = body.encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        "Content-Type: application/json",
        f"Content-Length: {len(data)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class Connection(asyncio.Protocol):
    """One keep-alive connection: one request in flight at a time."""

    def __init__(self, pool: Pool):
        import httptools

        self.pool, self.transport = pool, None
        self.parser = httptools.HttpResponseParser(self)
        self.due = 0.0
        self.status_ok = True
        self.connected = pool.loop.create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connected.set_result(True)

    def connection_lost(self, exc) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionError("closed"))
        self.pool.lost(self)

    def send(self, data: bytes, due: float) -> None:
        self.due, self.status_ok = due, True
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception:
            self.pool.errors += 1
            self.transport.close()

    def on_status(self, status: bytes) -> None:
        self.status_ok = 200 <= self.parser.get_status_code() < 300

    def on_message_complete(self) -> None:
        self.pool.done(self, time.perf_counter() - self.due, self.status_ok)


class Pool:
    def __init__(self, loop, host: str, port: int, limit: int):
        self.loop, self.host, self.port, self.limit = loop, host, port, limit
        self.idle: list[Connection] = []
        self.busy: set[Connection] = set()
        self.opening = 0
        self.latencies: list[float] = []
        self.errors = self.dropped = 0
        self.measuring = False

    async def open(self) -> Connection | None:
        self.opening += 1
        try:
            _, conn = await self.loop.create_connection(
                lambda: Connection(self), self.host, self.port
            )
            await conn.connected
            return conn
        except OSError:
            self.errors += 1
            return None
        finally:
            self.opening -= 1

    async def send(self, data: bytes, due: float) -> None:
        if self.idle:
            conn = self.idle.pop()
        elif len(self.busy) + self.opening < self.limit:
            conn = await self.open()
            if conn is None:
                return
        else:
            if self.measuring:
                self.dropped += 1
            return
        self.busy.add(conn)
        conn.send(data, due)

    def done(self, conn: Connection, seconds: float, ok: bool) -> None:
        self.busy.discard(conn)
        self.idle.append(conn)
        if self.measuring:
            if ok:
                self.latencies.append(seconds)
            else:
                self.errors += 1

    def lost(self, conn: Connection) -> None:
        if conn in self.busy:
            self.busy.discard(conn)
            if self.measuring:
                self.errors += 1
        if conn in self.idle:
            self.idle.remove(conn)


async def run(args, payloads: list[bytes]) -> dict:
    loop = asyncio.get_running_loop()
    url = urlsplit(args.url)
    pool = Pool(loop, url.hostname, url.port or 80, args.max_connections)
    interval = 1.0 / args.rate
    total = int(args.rate * (args.warmup + args.duration))
    warm = int(args.rate * args.warmup)
    start = time.perf_counter() + 0.05
    tasks: set[asyncio.Task] = set()  # kept until done (the loop holds tasks weakly)
    usage = None
    measured_from = 0.0
    for i in range(total):
        due = start + i * interval
        if i == warm:
            pool.measuring = True
            usage = resource.getrusage(resource.RUSAGE_SELF)
            measured_from = time.perf_counter()
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        # Every request whose time has come is sent now, at its own due time.
        task = loop.create_task(pool.send(payloads[i % len(payloads)], due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    deadline = time.perf_counter() + args.timeout
    while pool.busy and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - measured_from
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    late = len(pool.busy)  # never answered within the timeout
    lat = sorted(pool.latencies)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")

    return {
        "rate": args.rate,
        "achieved": len(lat) / args.duration,
        "answered": len(lat),
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000 if lat else float("nan"),
        "errors": pool.errors + late,
        "dropped": pool.dropped,
        "connections": len(pool.idle) + len(pool.busy),
        "cpu_share": cpu / elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--bodies", required=True, help="a JSON file: a list of body strings")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3, help="seconds sent, not measured")
    parser.add_argument("--max-connections", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=10, help="wait for the last answers")
    parser.add_argument("--header", action="append", default=[], help="'Name: value'")
    args = parser.parse_args()
    headers = dict(h.split(": ", 1) for h in args.header)
    url = urlsplit(args.url)
    with open(args.bodies) as file:
        bodies = json.load(file)
    payloads = [request_bytes(url.netloc, args.path, b, headers) for b in bodies]
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(args, payloads))))


if __name__ == "__main__":
    main()
