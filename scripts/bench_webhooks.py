#!/usr/bin/env python3
"""Webhook intake against its ceiling, in one run (issue 15). Prints figures; asserts nothing.

  .venv/bin/python scripts/bench_webhooks.py [--rounds 3] [--seconds 10] [--connections 16] [--skus 1]
                                             [--bridge-src DIR] [--before-src DIR] [--profile FILE.pstats]

Each round runs, one after the other, with the same wrk command and the same pre-signed Shopify
``orders/create`` bodies (wrk, Debian package ``wrk``):

- **bridge**: ``erp-bridge serve`` as shipped (embedded SQLite queue, ``synchronous=FULL``, the
  workers in the same process) with the example Shopify mapping and an unreachable system of
  record, so intake alone is measured: HMAC over the raw body, JSON, normalisation, routing, and
  the durable commit before the 200. The entries really stored are counted afterwards.
- **bare**: the ceiling. The same HTTP stack (``erp_bridge.http.server.uvicorn_config``: uvicorn,
  its httptools protocol with the header bounds, the same loop, ``InputGuard`` with the same bounds,
  the same GIL switch interval)
  and the same framework and route kind, serving one route that verifies the Shopify HMAC over
  the raw body and answers 200, storing nothing.

The rounds alternate (bridge, bare, bridge, bare, ...) so both see the same machine; the table
gives the median of the rounds and the load average before each. The bridge's figure is the lower
of its 2xx answers/s and its decrements really stored/s. Beside each run: the server's CPU per
answered request (all its threads; of it, its main thread's, the event loop), from /proc: on a
shared machine a steadier comparison than the rates, though not the target. Targets: >= 1,000 deliveries/s, p99 <
50 ms, and >= 0.5 of the bare app.
"""
from __future__ import annotations

import argparse
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_slice import WEBHOOK_SECRET, intake_config, lua_script  # noqa: E402
from fastapi import APIRouter, FastAPI, Request  # noqa: E402  (module level: the route's annotations name them)
from fastapi.responses import JSONResponse  # noqa: E402

SECRETS = {"ERP_BRIDGE_SECRETS__ODOO_USER": "u", "ERP_BRIDGE_SECRETS__ODOO_PASSWORD": "p",
           "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "t", "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET}
TARGET_RATE, TARGET_P99_MS, TARGET_RATIO = 1000.0, 50.0, 0.5


@dataclass
class Run:
    kind: str
    load: str
    rate: float  # 2xx answers/s (bridge: the lower of that and decrements stored/s)
    answered: float  # all answers/s, as wrk counts them
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: str
    stored: int | None = None
    cpu_us: float = 0.0  # the server process's CPU per answered request (all threads)
    loop_us: float = 0.0  # of which its main thread's (the event loop)


# --- the ceiling: same stack, HMAC only -----------------------------------------------------------
def bare_app(settings):
    """FastAPI + InputGuard, one route of the same kind as the bridge's webhook route."""
    from erp_bridge.connectors.runtime.webhooks import base64_digest_matches, hmac_sha256
    from erp_bridge.http.guard import InputGuard

    router, secret = APIRouter(), WEBHOOK_SECRET.encode()

    @router.post("/webhooks/{system}")
    async def receive(system: str, request: Request) -> JSONResponse:
        body = await request.body()
        given = request.headers.get("x-shopify-hmac-sha256") or ""
        if not given or not base64_digest_matches(given, hmac_sha256(secret, body), "X-Shopify-Hmac-Sha256"):
            return JSONResponse({"error": "X-Shopify-Hmac-Sha256 does not match the body"}, status_code=401)
        return JSONResponse({"accepted": 1}, status_code=200)

    app = FastAPI(title="bare")
    app.include_router(router)
    http = settings.http
    app.add_middleware(InputGuard, max_body_bytes=http.max_body_bytes, route_body_bytes=http.route_body_bytes,
                       body_timeout_s=http.body_timeout_s, max_concurrent_requests=http.max_concurrent_requests,
                       max_header_bytes=http.max_header_bytes)
    return app


def serve_bare(port: int) -> None:
    from erp_bridge.http.server import NotifyingServer, share_the_gil, uvicorn_config
    from erp_bridge.settings import Settings

    share_the_gil()  # as serve() does, and the same server class (its heap settled after start)
    settings = Settings(http={"port": port}, log_level="WARNING")
    NotifyingServer(uvicorn_config(settings, bare_app(settings))).run()


# --- the profile (--profile): cProfile in every thread of the serve process ------------------------
def serve_profiled(out: str, config: str) -> None:
    """``erp-bridge serve`` with one cProfile per thread (the event loop, the threadpool that
    verifies and commits, the dispatcher's workers), merged into ``out`` when the server stops."""
    import cProfile
    import pstats
    import signal
    import threading

    from erp_bridge.cli import main as cli

    profiles = [cProfile.Profile()]

    def first_event(*_):  # a new thread's first event: give it a profiler of its own
        profiles.append(cProfile.Profile())
        profiles[-1].enable()

    threading.setprofile(first_event)
    # uvicorn re-raises the SIGTERM it stopped on once it is done: exit through the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    profiles[0].enable()
    try:
        cli(["--config", config, "serve"])
    finally:
        profiles[0].disable()
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.dump_stats(out)


# --- one measured run ------------------------------------------------------------------------------
def wrk(port: int, lua: Path, seconds: int, connections: int) -> str:
    return subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(lua),
                           f"http://127.0.0.1:{port}"], capture_output=True, text=True, check=True).stdout


def parse_wrk(out: str, kind: str, load: str) -> Run:
    total = int(re.search(r"(\d+) requests in ([\d.]+)(\w+)", out).group(1))
    seconds = _seconds(*re.search(r"requests in ([\d.]+)(\w+)", out).groups())
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
    errors = m.group(1) if (m := re.search(r"Socket errors: (.*)", out)) else "none"
    return Run(kind, load, (total - non_2xx) / seconds, total / seconds, _latency(out, "50"), _latency(out, "99"),
               non_2xx, errors)


def _seconds(value: str, unit: str) -> float:
    return float(value) * {"s": 1, "m": 60, "ms": 0.001}[unit]


def _latency(out: str, pct: str) -> float:
    value, unit = re.search(rf"^\s+{pct}%\s+([\d.]+)(\w+)", out, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(all threads, main thread) CPU seconds of ``pid`` so far, from /proc."""
    def of(stat: str) -> float:
        fields = stat[stat.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    main = of(Path(f"/proc/{pid}/task/{pid}/stat").read_text())  # /proc/{pid}/stat sums the threads
    threads = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            threads += of((task / "stat").read_text())
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return threads, main


def measured(proc: subprocess.Popen, port: int, lua: Path, args, kind: str) -> Run:
    """wrk against the server, with the server's CPU per answered request beside its figures."""
    load = load_average()
    before = cpu_seconds(proc.pid)
    run = parse_wrk(wrk(port, lua, args.seconds, args.connections), kind, load)
    after = cpu_seconds(proc.pid)
    answered = run.answered * args.seconds
    run.cpu_us, run.loop_us = ((a - b) / answered * 1e6 if answered else 0.0 for a, b in zip(after, before))
    return run


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def start(cmd: list[str], env: dict, port: int) -> subprocess.Popen:
    from tests.integration.odoo.bridge import wait_until

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: proc.poll() is not None or _up(port), 60, "the server")
    if proc.poll() is not None:
        sys.exit(f"{cmd} exited with {proc.returncode} before answering")
    return proc


def _up(port: int) -> bool:
    import requests

    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code < 500
    except requests.ConnectionError:
        return False


def run_bridge(tmp: Path, lua: Path, args, src: str | None = None, kind: str = "bridge") -> Run:
    """``src``: another checkout's erp_bridge package, e.g. the commit before a change."""
    from tests.integration.odoo.server import free_port

    port = free_port()
    work = Path(tempfile.mkdtemp(dir=tmp))
    config = intake_config(work, port, args.skus)
    cmd = [str(REPO / ".venv/bin/erp-bridge"), "--config", str(config), "serve"]
    if args.profile:
        cmd = [sys.executable, __file__, "--profiled-serve", args.profile, str(config)]
    env = {**os.environ, **SECRETS}
    if src:
        env["PYTHONPATH"] = str(Path(src).resolve())
    proc = start(cmd, env, port)
    try:
        run = measured(proc, port, lua, args, kind)
    finally:
        proc.terminate()
        proc.wait(60)
    db = sqlite3.connect(work / "data" / "queue.sqlite3")
    run.stored = db.execute("SELECT COUNT(*) FROM entries WHERE kind = 'decrement'").fetchone()[0]
    db.close()
    run.rate = min(run.rate, run.stored / args.seconds)
    return run


def run_bare(lua: Path, args) -> Run:
    from tests.integration.odoo.server import free_port

    port = free_port()
    proc = start([sys.executable, __file__, "--serve-bare", str(port)], dict(os.environ), port)
    try:
        return measured(proc, port, lua, args, "bare")
    finally:
        proc.terminate()
        proc.wait(60)


# --- the table -------------------------------------------------------------------------------------
def row(run: Run, ratio: str = "") -> str:
    stored = "" if run.stored is None else str(run.stored)
    return (f"| {run.kind} | {run.load} | {run.rate:,.0f} | {run.p50_ms:.1f} | {run.p99_ms:.1f} | {run.non_2xx} "
            f"| {stored} | {run.cpu_us:.0f} | {run.loop_us:.0f} | {run.errors} | {ratio} |")


def report(bridge: list[Run], bare: list[Run], args, before: list[Run]) -> None:
    print(f"\nwrk -t2 -c{args.connections} -d{args.seconds}s, {args.skus} SKU(s), {len(bridge)} rounds, "
          f"{os.cpu_count()} cores\n")
    print("| run | load avg before | 2xx/s | p50 ms | p99 ms | non-2xx | decrements stored | CPU us/req | "
          "of it the loop's | socket errors | bridge/bare |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for n, (b, c) in enumerate(zip(bridge, bare)):
        print(row(b, f"{b.rate / c.rate:.2f}" if c.rate else "n/a"))
        if before:
            print(row(before[n], f"{before[n].rate / c.rate:.2f}" if c.rate else "n/a"))
        print(row(c))
    if before:
        print(f"\nbefore ({args.before_src}), median of the same rounds: "
              f"{statistics.median(r.rate for r in before):,.0f}/s, ratio "
              f"{statistics.median(p.rate / c.rate if c.rate else 0.0 for p, c in zip(before, bare)):.2f}; server CPU "
              f"{statistics.median(r.cpu_us for r in before):.0f} us/request (loop {statistics.median(r.loop_us for r in before):.0f})")
    rate = statistics.median(r.rate for r in bridge)
    p99 = statistics.median(r.p99_ms for r in bridge)
    ceiling = statistics.median(r.rate for r in bare)
    ratio = statistics.median(b.rate / c.rate if c.rate else 0.0 for b, c in zip(bridge, bare))
    print(f"\nmedian of {len(bridge)} rounds: bridge {rate:,.0f}/s (p99 {p99:.1f} ms), "
          f"bare {ceiling:,.0f}/s (p99 {statistics.median(r.p99_ms for r in bare):.1f} ms); server CPU per request: "
          f"bridge {statistics.median(r.cpu_us for r in bridge):.0f} us (loop {statistics.median(r.loop_us for r in bridge):.0f}), "
          f"bare {statistics.median(r.cpu_us for r in bare):.0f} us (loop {statistics.median(r.loop_us for r in bare):.0f})\n")
    refused = sum(r.non_2xx for r in bridge + bare)
    if refused:
        print(f"WARNING: {refused} answers were not 2xx (a 401 means the bodies and signatures do not match): "
              "the figures below are not valid\n")
    print("| target | project | ceiling | ratio | met? |\n|---|---:|---:|---:|---|")
    print(f"| deliveries/s >= {TARGET_RATE:,.0f} | {rate:,.0f} | | | {_met(rate >= TARGET_RATE)} |")
    print(f"| p99 < {TARGET_P99_MS:.0f} ms | {p99:.1f} ms | | | {_met(p99 < TARGET_P99_MS and rate > 0)} |")
    print(f"| >= {TARGET_RATIO} of bare | {rate:,.0f}/s | {ceiling:,.0f}/s | {ratio:.2f} | {_met(ratio >= TARGET_RATIO)} |")


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--skus", type=int, default=1, help="orders spread over this many SKUs (1: one hot SKU)")
    parser.add_argument("--profile", metavar="FILE.pstats",
                        help="run the bridge under cProfile (every thread) and write the merged profile here; "
                             "the figures of a profiled run are not comparable")
    parser.add_argument("--bridge-src", metavar="DIR",
                        help="run the bridge from the erp_bridge package in DIR instead of this checkout "
                             "(e.g. `git archive <commit> erp_bridge | tar -x -C DIR`); the ceiling stays this one")
    parser.add_argument("--before-src", metavar="DIR",
                        help="also run, in every round between the bridge and the ceiling, the erp_bridge package in "
                             "DIR (e.g. the commit before a change): a before/after comparison measured interleaved")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--profiled-serve", nargs=2, metavar=("OUT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        return serve_bare(args.serve_bare)
    if args.profiled_serve:
        return serve_profiled(*args.profiled_serve)
    bridge, bare, before = list[Run](), list[Run](), list[Run]()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # distinct orders: a round that sends more than this repeats some, stored once (rightly), and
        # the bridge's figure is then the lower stored/s. Not more: with 80,000 every answer, the bare
        # app's too, was a 401 (a signature not matching its body; not investigated, likely wrk's Lua)
        lua_script(tmp / "orders.lua", 60_000, args.skus)
        for n in range(args.rounds):
            bridge.append(run_bridge(tmp, tmp / "orders.lua", args, args.bridge_src))
            if args.before_src:
                before.append(run_bridge(tmp, tmp / "orders.lua", args, args.before_src, "before"))
            bare.append(run_bare(tmp / "orders.lua", args))
            print(f"round {n + 1}: " + "\n         ".join(row(r[-1]) for r in (bridge, before, bare) if r), flush=True)
    report(bridge, bare, args, before)


if __name__ == "__main__":
    main()
