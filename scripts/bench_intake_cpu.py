#!/usr/bin/env python3
"""The webhook route's CPU per request in one process, without HTTP, wrk or the store (issue 15):
what the framework and the route cost, steadier than bench_webhooks.py's rates on a shared machine.
Prints figures; asserts nothing.

    .venv/bin/python scripts/bench_intake_cpu.py [--requests 5000] [--rounds 5]

Each request is one ASGI call with a signed Shopify ``orders/create`` body (bench_slice.signed),
answered 200, on one event loop, one after the other, CPU time per request (``process_time``):

- **bare**: bench_webhooks.py's ceiling app (FastAPI, InputGuard, one route that verifies the HMAC
  and answers);
- **bridge, store free**: ``create_app`` of the bridge on bench_slice's intake configuration, its
  ``Runtime.store`` replaced by one that stores nothing: the framework, verification,
  normalisation and routing, i.e. the bridge's loop work per webhook besides the durable store;
- **bridge**: the same with the real store (the intake's committer thread and SQLite at
  ``synchronous=FULL``), one request at a time: the whole CPU per webhook of all threads, the
  commit's fsync not counted (it is I/O wait), one commit per webhook (no group commit: nothing
  else is waiting).

The rounds alternate the three; the table gives the median of the rounds.
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_slice import intake_config, signed  # noqa: E402
from bench_webhooks import SECRETS, bare_app  # noqa: E402


def scope(sig: str, length: int, n: int) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": "/webhooks/shopify", "raw_path": b"/webhooks/shopify", "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"x-shopify-topic", b"orders/create"), (b"x-shopify-hmac-sha256", sig.encode()),
                        (b"x-shopify-webhook-id", str(n).encode()), (b"content-length", str(length).encode())],
            "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8080), "state": {}}


async def call(app, body: str, sig: str, n: int) -> None:
    raw = body.encode()
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": raw, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope(sig, len(raw), n), receive, send)
    if sent[0]["status"] != 200:
        raise SystemExit(f"answered {sent[0]['status']}: {sent[1:]}")


def apps(tmp: Path):
    """(name, ASGI app, close) for the three contenders."""
    from erp_bridge.http.app import create_app
    from erp_bridge.runtime import build_runtime
    from erp_bridge.settings import Settings, load_settings

    os.environ.update(SECRETS)
    made = [("bare", bare_app(Settings(http={"port": 8080}, log_level="WARNING")), lambda: None)]
    for name, free in (("bridge, store free", True), ("bridge", False)):
        work = tmp / name.replace(", ", "-").replace(" ", "-")
        work.mkdir()
        config = intake_config(work, 8080)
        cwd = os.getcwd()
        os.chdir(work)  # the configuration's data_dir and mappings_dir are relative to it
        try:
            runtime = build_runtime(load_settings(config))
        finally:
            os.chdir(cwd)
        if free:
            async def store(entries):
                return []
            runtime.store = store
        made.append((name, create_app(runtime, manage_lifecycle=False), runtime.stop))
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    bodies = [signed(1_000_000 + n) for n in range(args.requests * args.rounds * 3 + 200)]  # every order new
    with tempfile.TemporaryDirectory() as tmp_name:
        contenders = apps(Path(tmp_name))
        cpu: dict[str, list[float]] = {name: [] for name, _, _ in contenders}
        loop = asyncio.new_event_loop()
        used = 0
        for _name, app, _ in contenders:  # warm-up: imports, compiled statements, caches
            for _ in range(50):
                loop.run_until_complete(call(app, *bodies[used], used))
                used += 1
        gc.collect()
        gc.freeze()  # as serve() does once started (http/server.py: settle_the_heap)
        for r in range(args.rounds):
            for name, app, _ in contenders[r % 3:] + contenders[:r % 3]:
                start = time.process_time()
                for _ in range(args.requests):
                    loop.run_until_complete(call(app, *bodies[used], used))
                    used += 1
                cpu[name].append((time.process_time() - start) / args.requests * 1e6)
        for _, _, close in contenders:
            close()
        loop.close()
    bare = statistics.median(cpu["bare"])
    print(f"CPU per request, median of {args.rounds} rounds of {args.requests} (load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}):")
    for name, values in cpu.items():
        med = statistics.median(values)
        print(f"  {name:<20} {med:7.1f} us  ({min(values):.1f}-{max(values):.1f}; {med / bare:.2f} x bare)")


if __name__ == "__main__":
    main()
