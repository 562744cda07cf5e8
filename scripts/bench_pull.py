#!/usr/bin/env python3
"""Pull endpoints under load: the real service (`erp-bridge serve`, config in a temp dir) answering
from a warm cache, driven by wrk on loopback, with and without a backlog of pending decrements.

The system of record is SAP Business One behind its real connector, talking to the Service
Layer fake (tests/fakes/sap_b1.py) in this process: it is read once per item to warm the cache
(fresh_s is raised to 3600 s so every measured answer comes from the cache; the pending
decrements are still read from the queue on every request, as in production).

Two phases in one run: first with nothing queued, then with a backlog (``--pending N``, default
20,000): N sales of one item (CHAIR-BLUE: chair-blue at WH/Stock) queued straight into the
service's queue for SAP, which refuses goods issues all run long (503: they stay pending, the
head retrying with backoff). In each phase, rounds interleaved: the ceiling (the trivial
``GET /healthz`` on the same server), the real-time check of CHAIR-BLUE and, with the backlog,
of an item with nothing pending (BOND-CHAIR). "flat": the p99 with N pending is at most 1.25
times the p99 with none (the ceiling's own drift between the phases is printed beside it).

With ``--webhooks RATE`` a third phase runs the same cases with the backlog while a second wrk
sends signed Shopify ``orders/create`` deliveries of the busy item to ``/webhooks/shopify`` at
about RATE/s (16 connections, Poisson waits; every order distinct, so each is verified, stored
and answered 200 after its commit): the pull's latency while the same event loop takes in a
stream of sales. The webhook stream's own rate, p99 and refusals are printed beside it.

Modes: "paced" (each of 50 connections waits after each answer so the total offered rate is
about --rate; the target's mode: p99 < 10 ms at 1,000 req/s) and, with ``--max``, "max" (closed loop,
--connections) for requests/s. Each figure is the median over --rounds rounds; a run with
timeouts (wrk --timeout 2 s) counts its p99 as 2 s. wrk's own percentiles come back through a
Lua done() hook. The paced waits are exponential around their mean (``--arrivals poisson``): the
requests of 50 independent connections then arrive as a Poisson stream of --rate/s. Until
2026-11-30 each wait was exactly the mean (``--arrivals lockstep``): the 50 connections stayed in
step and sent bursts of 50 requests at once every 50 ms, so the p99 measured how long the server
takes to answer 50 simultaneous requests (about 50 times one request's CPU time), not a steady
1,000 requests/s.

    apt-get install -y wrk
    .venv/bin/python scripts/bench_pull.py [--pending 20000] [--rounds 3] [--duration 10]
        [--rate 1000] [--arrivals poisson|lockstep] [--max --connections 32]
        [--webhooks 500] [--queue-url "postgresql:///erp_bridge_test?options=-csearch_path%3D<an empty schema>"]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from erp_bridge.domain import Decrement  # noqa: E402
from erp_bridge.queue import RetryPolicy, open_queue  # noqa: E402
from erp_bridge.queue.base import NewEntry  # noqa: E402
from tests.fakes.http_server import Fault  # noqa: E402
from tests.fakes.sap_b1 import FakeServiceLayer, sap_error  # noqa: E402
from tests.unit.pull.harness import TOKEN  # noqa: E402
from tests.unit.pull.stack import SL_USER, WEBHOOK_SECRET, write_mappings  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from bench_slice import lua_script  # noqa: E402

FORM = ".catalog=bench&.code={code}&.id={code}&.quantity=1&.price=49.00"
#: the item with the backlog, and the one without (both option-less items of yahoo_store.yaml)
BUSY, IDLE = "CHAIR-BLUE", "BOND-CHAIR"
BUSY_KEY = ("sap_b1", "chair-blue", "WH/Stock")  # (target, item, location) of the backlog
BUSY_SHOPIFY_SKU = "chair-blue"  # mappings/shopify_items.csv: the busy item's SKU in the shop
WEBHOOK_CONNECTIONS = 16
SHOP_LOCATION = "gid://shopify/Location/61234567"  # mappings/shopify.yaml: sells from WH/Stock
FLAT = 1.25  # p99 with N pending / p99 with none, at most
TIMEOUT_S = 2  # wrk's: a request unanswered by then is an error, and the run's p99 counts as this
LEVELS = ("/inventory-levels?inventoryItemIds=310abe81-69f6-44e5-85df-2674045e5460,"
          "ce4ce2de-530c-4da2-bf8a-f0f8cf059095&shipToCountry=SE")
DONE = """
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "seconds": %.3f, "errors": %d, "non2xx": %d, '
    .. '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
    latency:percentile(99) / 1e3, latency.max / 1e3))
end
"""


#: each connection's wait after an answer: exponential around the mean, so the connections'
#: requests arrive independently (Poisson, as shoppers do), seeded per wrk thread
POISSON = """
local counter = 0
function setup(thread) counter = counter + 1; thread:set("id", counter) end
function init(args) math.randomseed(os.time() * 7919 + id) end
function delay() return -math.log(1 - math.random()) * %.3f end
"""


def lua(method: str, body: str | None, headers: dict[str, str], delay_ms: float | None,
        arrivals: str = "poisson") -> str:
    lines = [f'wrk.method = "{method}"'] + [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body:
        lines.append(f'wrk.body = "{body}"')
    if delay_ms and arrivals == "poisson":
        lines.append(POISSON % delay_ms)
    elif delay_ms:  # lockstep: every connection waits the same, so they stay in step and come in bursts
        lines.append(f"function delay() return {delay_ms:.3f} end")
    return "\n".join(lines) + DONE


def start_service(work: Path, sap_url: str, port: int, queue_url: str) -> subprocess.Popen:
    mappings = write_mappings(work / "mappings", sap_url, fresh_s=3600)
    levels = mappings / "digital_river.yaml"
    levels.write_text(levels.read_text().replace("fresh_s: 5", "fresh_s: 3600"))
    (work / "config.yaml").write_text(f"data_dir: var\nmappings_dir: mappings\nlog_level: WARNING\n"
                                      f"http: {{host: 127.0.0.1, port: {port}}}\nqueue: {{url: '{queue_url}'}}\n")
    env = {**os.environ, "ERP_BRIDGE_SECRETS__SAP_B1_USER": SL_USER[1],
           "ERP_BRIDGE_SECRETS__SAP_B1_PASSWORD": SL_USER[2], "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "unused",
           "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET,
           "ERP_BRIDGE_SECRETS__DIGITAL_RIVER_PULL_TOKEN": TOKEN}
    return subprocess.Popen([str(ROOT / ".venv/bin/erp-bridge"), "--config", str(work / "config.yaml"), "serve"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"erp-bridge serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(f"{base}/healthz", timeout=1).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("erp-bridge serve did not answer /healthz")


def warm(base: str) -> dict[str, str]:
    """One request per endpoint and item: reads SAP live and fills the cache. Returns the headers
    of the real-time answer for the busy item."""
    for code in (IDLE, BUSY):
        request = urllib.request.Request(f"{base}/realtime/yahoo_store", data=FORM.format(code=code).encode(),
                                         method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"})
        with urllib.request.urlopen(request, timeout=5) as response:
            headers = {k.lower(): v for k, v in response.headers.items()}
    levels = urllib.request.Request(base + LEVELS, headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(levels, timeout=5).read()
    return headers


def plant(queue_url: str, n: int) -> float:
    """N Shopify sales of the busy item, queued for SAP in batches as the webhook intake queues
    them (sync.router.channel_change: internal key, the channel's change as payload). Returns the
    seconds it took."""
    queue, started = open_queue(queue_url, RetryPolicy()), time.perf_counter()
    for first in range(0, n, 1000):
        queue.enqueue([sale(i) for i in range(first, min(n, first + 1000))])
    queue.close()
    took, now = time.perf_counter() - started, pending(queue_url)
    assert now <= -n, f"planted {n} decrements but {now} are pending"
    return took


def pending(queue_url: str) -> Decimal:
    """The busy key's decrements not yet applied (<= 0)."""
    queue = open_queue(queue_url, RetryPolicy())
    try:
        return queue.pending_quantity(*BUSY_KEY, kinds={"decrement"})
    finally:
        queue.close()


def sale(i: int) -> NewEntry:
    change = Decrement(channel="shopify", order=f"bench-{i}", line="1", item="chair-blue",
                       location=SHOP_LOCATION, quantity=1)
    target, item, location = BUSY_KEY
    return NewEntry(target=target, kind=change.kind, item=item, location=location, quantity=change.signed_quantity,
                    idempotency_key=change.idempotency_key, payload=change.model_dump(mode="json"))


def run_wrk(url: str, script: str, connections: int, duration: int, work: Path, name: str) -> dict:
    path = work / f"{name}.lua"
    path.write_text(script)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", f"--timeout={TIMEOUT_S}s", "-s", str(path), url]
    result = wrk_result(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    result["rps"] = result["requests"] / result["seconds"]
    if result["errors"] or not result["requests"]:  # timed out (wrk keeps no latency for those)
        result["p99_ms"] = max(result["p99_ms"], TIMEOUT_S * 1000.0)
    result["command"] = " ".join(command[:-3] + [f"{name}.lua", url])
    return result


Case = tuple[str, str, str, str | None, dict[str, str] | None, int, float | None]


def cases(base: str, args, backlog: bool, webhooks: bool = False) -> list[Case]:
    """(name, url, method, body, headers, connections, delay_ms) of the runs of one round: before
    the backlog the ceiling and the busy item (nothing queued at all); with it, the same two and
    the idle item (its key has nothing pending, the target has the backlog); with ``webhooks``
    (the backlog and the webhook stream), the ceiling and the busy item."""
    paced_c = 50  # each waits 50 ms after an answer: ~1,000 req/s offered at 1 ms answers
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    realtime = f"{base}/realtime/yahoo_store"
    n = phase(args, backlog, webhooks)
    endpoints = [(f"healthz (ceiling) [{n}]", f"{base}/healthz", "GET", None, None),
                 (f"realtime, {n} pending", realtime, "POST", FORM.format(code=BUSY), form)]
    if backlog and not webhooks:
        endpoints.append((f"realtime, other item [{n}]", realtime, "POST", FORM.format(code=IDLE), form))
    modes = [(paced_c, 1000.0 * paced_c / args.rate)] + ([(args.connections, None)] if args.max else [])
    return [(f"{name}{'' if delay else ' max'}", url, method, body, hdrs, conns, delay)
            for conns, delay in modes for name, url, method, body, hdrs in endpoints]


def phase(args, backlog: bool, webhooks: bool) -> str:
    """A phase's label in its cases' names: the pending decrements, and the webhook stream."""
    n = args.pending if backlog else 0
    return f"{n} + {args.webhooks} webhooks/s" if webhooks else str(n)


def measure(base: str, work: Path, args, backlog: bool, webhooks: bool = False) -> dict[str, list[dict]]:
    """--rounds rounds of every case, the order rotated each round (the machine is shared). With
    ``webhooks``, each run has the webhook stream beside it (started a second before, stopped
    a second after); its figures are kept under the case's name + " (webhooks)"."""
    results: dict[str, list[dict]] = {}
    todo, runs = cases(base, args, backlog, webhooks), 0
    for r in range(args.rounds):
        for name, url, method, body, hdrs, conns, delay in todo[r % len(todo):] + todo[:r % len(todo)]:
            slug = f"run{len(results.get(name, []))}-{abs(hash(name))}"
            stream = start_webhooks(base, work, args, runs := runs + 1) if webhooks else None
            result = run_wrk(url, lua(method, body, hdrs or {}, delay, args.arrivals), conns, args.duration, work, slug)
            results.setdefault(name, []).append(result)
            line = (f"  round {r + 1} {name:33} {result['rps']:7.0f} req/s  p50 {result['p50_ms']:7.2f} ms"
                    f"  p99 {result['p99_ms']:8.2f} ms  errors {result['errors']} non-2xx {result['non2xx']}")
            if stream:
                got = finish_webhooks(stream)
                results.setdefault(f"{name} (webhooks)", []).append(got)
                line += (f"  | webhooks {got['rps']:5.0f}/s p99 {got['p99_ms']:6.2f} ms errors {got['errors']}"
                         f" non-2xx {got['non2xx']}")
            print(f"{line}  load {load()}", flush=True)
    return results


def webhook_script(work: Path, args, run: int) -> Path:
    """The webhook stream's wrk script for its ``run``-th run: signed orders of the busy item, none
    sent by an earlier run (so every answered one is a new sale), each of the connections waiting
    an exponential time after each answer (about --webhooks/s in all)."""
    path, count = work / f"webhooks-{run}.lua", 2 * args.webhooks * (args.duration + 3)
    wait_ms = 1000.0 * WEBHOOK_CONNECTIONS / args.webhooks
    pace = ("function init(args) math.randomseed(os.time() * 7919 + salt) end\n"
            f"function delay() return -math.log(1 - math.random()) * {wait_ms:.3f} end\n")
    lua_script(path, count, secret=WEBHOOK_SECRET, sku=BUSY_SHOPIFY_SKU, extra=pace + DONE,
               first=1_000_000 + run * count)
    return path


def start_webhooks(base: str, work: Path, args, run: int) -> subprocess.Popen:
    command = ["wrk", "-t2", f"-c{WEBHOOK_CONNECTIONS}", f"-d{args.duration + 2}s", f"--timeout={TIMEOUT_S}s",
               "-s", str(webhook_script(work, args, run)), base]
    stream = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    return stream


def wrk_result(out: str) -> dict:
    """The figures the Lua ``done`` hook (DONE) printed."""
    return json.loads(out.split("RESULT ", 1)[1].splitlines()[0])


def finish_webhooks(stream: subprocess.Popen) -> dict:
    result = wrk_result(stream.communicate(timeout=60)[0])
    result["rps"] = (result["requests"] - result["non2xx"]) / result["seconds"]
    return result


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def median(runs: list[dict], field: str) -> float:
    return statistics.median(r[field] for r in runs)


def report(results: dict[str, list[dict]], args) -> None:
    """The table (medians over the rounds) and the verdicts of the paced runs."""
    print(f"\n{'case (paced at ' + str(args.rate) + ' req/s offered unless max)':45} {'req/s':>7} {'p50 ms':>8}"
          f" {'p99 ms':>8} {'errors':>6} {'p99/ceiling':>11}")
    for name, runs in results.items():
        if name.endswith(" (webhooks)"):
            print(f"{'  beside it: ' + name:45} {median(runs, 'rps'):7.0f} {median(runs, 'p50_ms'):8.2f}"
                  f" {median(runs, 'p99_ms'):8.2f} {sum(r['errors'] for r in runs):6}"
                  f"  non-2xx {sum(r['non2xx'] for r in runs)}")
            continue
        ceiling = median(results[_ceiling(name)], "p99_ms")
        print(f"{name:45} {median(runs, 'rps'):7.0f} {median(runs, 'p50_ms'):8.2f} {median(runs, 'p99_ms'):8.2f}"
              f" {sum(r['errors'] for r in runs):6} {median(runs, 'p99_ms') / ceiling:11.2f}")
    p99 = {n: median(results[n], "p99_ms") for n in results}
    idle, busy = p99["realtime, 0 pending"], p99[f"realtime, {args.pending} pending"]
    fast, flat = busy < 10 and idle < 10, busy / idle <= FLAT
    drift = p99[f"healthz (ceiling) [{args.pending}]"] / p99["healthz (ceiling) [0]"]
    print(f"\ntarget (issue 15): real-time p99 < 10 ms at an offered {args.rate} req/s: {'met' if fast else 'NOT met'}"
          f" (p99 {idle:.2f} ms with nothing pending, {busy:.2f} ms with {args.pending})")
    print(f"target: flat in pending decrements, p99({args.pending}) / p99(0) <= {FLAT}: {'met' if flat else 'NOT met'}"
          f" ({busy / idle:.2f}; the ceiling's own p99 moved x{drift:.2f} between the two phases)")
    if args.webhooks:
        during = p99[f"realtime, {phase(args, True, True)} pending"]
        print(f"target: real-time p99 < 10 ms at an offered {args.rate} req/s while about {args.webhooks} webhooks/s"
              f" are taken in: {'met' if during < 10 else 'NOT met'} (p99 {during:.2f} ms with {args.pending} pending)")


def _ceiling(name: str) -> str:
    """The ceiling run of the same phase and mode as the case ``name``."""
    if name.startswith("healthz"):
        return name
    n = name.split("[")[1].split("]")[0] if "[" in name else name.split(",", 1)[1].strip().rsplit(" pending", 1)[0]
    return f"healthz (ceiling) [{n}]" + (" max" if name.endswith(" max") else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pending", type=int, default=20_000, help="decrements queued for the busy item")
    parser.add_argument("--rate", type=int, default=1000, help="offered requests/s of the paced runs")
    parser.add_argument("--arrivals", choices=("poisson", "lockstep"), default="poisson",
                        help="paced runs: each connection waits an exponential time around its mean (poisson), or "
                             "exactly its mean (lockstep: the 50 connections then stay in step and arrive in bursts "
                             "of 50, how this script measured until 2026-11-30)")
    parser.add_argument("--max", action="store_true", help="also closed-loop runs (requests/s)")
    parser.add_argument("--connections", type=int, default=32, help="connections of the max runs")
    parser.add_argument("--port", type=int, default=18470)
    parser.add_argument("--webhooks", type=int, default=0, metavar="RATE",
                        help="a third phase: the backlog's cases again while Shopify order webhooks of the busy "
                             "item arrive at about RATE/s (0: no such phase)")
    parser.add_argument("--queue-url", default="", help="the service's queue (default: SQLite in the temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, FakeServiceLayer(*SL_USER) as sl:
        return run(Path(tmp), sl, args)


def run(work: Path, sl: FakeServiceLayer, args) -> int:
    base, queue_url = f"http://127.0.0.1:{args.port}", args.queue_url or f"sqlite:///{work}/var/queue.sqlite3"
    # in stock with the backlog (and, with --webhooks, the stream's sales): available, as the idle item
    sl.stock("CHAIR-BLUE", "01", args.pending + 6 + (10**7 if args.webhooks else 0))
    sl.stock("A00007", "01", 6)
    # SAP refuses goods issues for the whole run: the backlog stays pending (the head retries, backing off)
    sl.fail_next(*[Fault(status=503, path="InventoryGenExits", body=sap_error(-1, "busy")) for _ in range(1000)])
    proc = start_service(work, sl.url, args.port, queue_url)
    try:
        wait_ready(base, proc)
        headers = warm(base)
        print(f"warm: Available={headers.get('available')} source={headers.get('x-availability-source')};"
              f" queue {queue_url.split('?')[0]}")
        print(f"load average before: {load()} ({os.cpu_count()} CPUs); wrk -t2, {args.duration} s per run")
        results = measure(base, work, args, backlog=False)
        took = plant(queue_url, args.pending)
        print(f"planted {args.pending} pending decrements of {BUSY_KEY} in {took:.1f} s")
        results.update(measure(base, work, args, backlog=True))
        if args.webhooks:
            results.update(measure(base, work, args, backlog=True, webhooks=True))
            streams = [r for n, runs in results.items() if n.endswith(" (webhooks)") for r in runs]
            answered = sum(r["requests"] - r["non2xx"] for r in streams)
            # every sale is new and stays pending (SAP refuses goods issues); wrk stops with up to one
            # request per connection in flight, which may be stored without its answer being read
            stored, cut = -pending(queue_url) - args.pending, WEBHOOK_CONNECTIONS * len(streams)
            print(f"webhook sales answered 2xx: {answered}; stored: {stored} (pending now minus the {args.pending} "
                  f"planted): {'every answered sale stored' if answered <= stored <= answered + cut else 'DIFFER'}"
                  f" ({stored - answered} more: sent as wrk stopped, at most {cut})")
        report(results, args)
        print(f"SAP item reads during the run: {sum(1 for x in sl.received if x.path.startswith('Items'))} "
              f"(the warm-up's: every measured answer came from the cache); load average after: {load()}")
    finally:
        proc.terminate()
        proc.wait(20)
    return 0  # the verdict is printed: speed is reported, never asserted


if __name__ == "__main__":
    raise SystemExit(main())
