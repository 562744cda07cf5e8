#!/usr/bin/env python3
"""Pull endpoints under load: the real service (`erp-bridge serve`, config in a temp dir) answering
from a warm cache, driven by wrk on loopback.

The system of record is SAP Business One behind its real connector, talking to the Service
Layer fake (tests/fakes/sap_b1.py) in this process: it is read once per item to warm the cache
(fresh_s is raised to 3600 s so every measured answer comes from the cache; the pending
decrements are still read from the SQLite queue on every request, as in production).

Two runs per endpoint: "max" (closed loop, --connections) for requests/s, and "paced" (each
connection waits so the total offered rate is about --rate) for the latency at that rate.
wrk's own percentiles come back through a Lua done() hook.

    apt-get install -y wrk
    .venv/bin/python scripts/bench_pull.py [--duration 15] [--rate 1000] [--connections 32]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.sap_b1 import FakeServiceLayer  # noqa: E402
from tests.unit.pull.harness import TOKEN  # noqa: E402
from tests.unit.pull.stack import SL_USER, WEBHOOK_SECRET, write_mappings  # noqa: E402

FORM = ".catalog=bench&.code=CHAIR-BLUE&.id=chair-blue&.quantity=1&.price=49.00"
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


def lua(method: str, body: str | None, headers: dict[str, str], delay_ms: float | None) -> str:
    lines = [f'wrk.method = "{method}"'] + [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body:
        lines.append(f'wrk.body = "{body}"')
    if delay_ms:
        lines.append(f"function delay() return {delay_ms:.3f} end")
    return "\n".join(lines) + DONE


def start_service(work: Path, sap_url: str, port: int) -> subprocess.Popen:
    mappings = write_mappings(work / "mappings", sap_url, fresh_s=3600)
    levels = mappings / "digital_river.yaml"
    levels.write_text(levels.read_text().replace("fresh_s: 5", "fresh_s: 3600"))
    (work / "config.yaml").write_text(f"data_dir: var\nmappings_dir: mappings\nlog_level: WARNING\n"
                                      f"http: {{host: 127.0.0.1, port: {port}}}\n")
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
    """One request per endpoint: reads SAP live and fills the cache. Returns the real-time headers."""
    request = urllib.request.Request(f"{base}/realtime/yahoo_store", data=FORM.encode(), method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=5) as response:
        headers = {k.lower(): v for k, v in response.headers.items()}
    levels = urllib.request.Request(base + LEVELS, headers={"Authorization": f"Bearer {TOKEN}"})
    urllib.request.urlopen(levels, timeout=5).read()
    return headers


def run_wrk(url: str, script: str, connections: int, duration: int, work: Path, name: str) -> dict:
    path = work / f"{name}.lua"
    path.write_text(script)
    command = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "-s", str(path), url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    result["rps"] = result["requests"] / result["seconds"]
    result["command"] = " ".join(command[:-3] + [f"{name}.lua", url])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--rate", type=int, default=1000, help="offered requests/s of the paced run")
    parser.add_argument("--connections", type=int, default=32, help="connections of the max run")
    parser.add_argument("--port", type=int, default=18470)
    args = parser.parse_args()
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory() as tmp, FakeServiceLayer(*SL_USER) as sl:
        sl.stock("CHAIR-BLUE", "01", 6)
        sl.stock("CHAIR-RED", "01", 0)
        work = Path(tmp)
        proc = start_service(work, sl.url, args.port)
        try:
            wait_ready(base, proc)
            headers = warm(base)
            print(f"warm: Available={headers.get('available')} source={headers.get('x-availability-source')}")
            form_headers = {"Content-Type": "application/x-www-form-urlencoded"}
            auth = {"Authorization": f"Bearer {TOKEN}"}
            paced_c = 50  # each waits 50 ms after an answer: ~1,000 req/s offered at 1 ms answers
            cases = [("realtime", f"{base}/realtime/yahoo_store", "POST", FORM, form_headers),
                     ("inventory-levels", base + LEVELS, "GET", None, auth)]
            for name, url, method, body, hdrs in cases:
                for mode, conns, delay in (("max", args.connections, None),
                                           ("paced", paced_c, 1000.0 * paced_c / args.rate)):
                    r = run_wrk(url, lua(method, body, hdrs, delay), conns, args.duration, work, f"{name}-{mode}")
                    print(f"{name:17} {mode:6} c={conns:<3} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                          f"p90 {r['p90_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  max {r['max_ms']:7.2f} ms  "
                          f"errors {r['errors']} non-2xx {r['non2xx']}")
                    print(f"    {r['command']}")
            print(f"SAP reads during the run: {sum(1 for x in sl.received if x.path.startswith('Items'))}")
        finally:
            proc.terminate()
            proc.wait(20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
