"""Issue 9: unauthenticated input is bounded. Starts `erp-bridge serve` (as the systemd unit runs
it: LimitNOFILE=65536) on 127.0.0.1 with the example Shopify mapping, then:

1. oversized bodies: N clients each send a B MB body to /webhooks/shopify at once, half with a
   declared Content-Length, half chunked; the server's peak RSS is sampled from /proc;
2. slowloris: C connections send a request line and headers one byte at a time and never finish
   (reconnecting when the server cuts them off); meanwhile /healthz is asked every 0.2 s and its
   answers and latencies are counted.

Prints the figures; exits 1 if RSS went over 150 MB or /healthz failed to answer. Bounded in time
and count; sends traffic to 127.0.0.1 only.

    .venv/bin/python scripts/bench_http_bounds.py [--clients 10] [--mb 100] [--slow 1100] [--seconds 15]
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
ERP_BRIDGE = str(Path(sys.executable).with_name("erp-bridge"))
RSS_LIMIT_MB = 150.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, rss_mb(self.pid))
            time.sleep(0.02)


def start(tmp: Path, port: int) -> subprocess.Popen:
    maps = tmp / "mappings"
    shutil.copytree(REPO / "mappings", maps)
    for path in maps.glob("*.yaml"):  # nothing may leave the machine: every system on a closed port
        text = re.sub(r"base_url: https?://\S+?(/admin/api/\S+)?(\s)", r"base_url: http://127.0.0.1:9\1\2",
                      path.read_text())
        path.write_text(re.sub(r"token_url: https?://\S+", "token_url: http://127.0.0.1:9/token", text))
    (tmp / "bridge.yaml").write_text(f"data_dir: {tmp / 'data'}\nmappings_dir: {maps}\nlog_level: ERROR\n"
                                     f"http: {{port: {port}}}\n")
    env = {**os.environ, "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": "t", "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": "w",
           "ERP_BRIDGE_SECRETS__ODOO_USER": "u", "ERP_BRIDGE_SECRETS__ODOO_PASSWORD": "p",
           "ERP_BRIDGE_SECRETS__ODOO_NUDGE_SECRET": "n"}

    def unit_limits():  # what the systemd unit sets (LimitNOFILE=65536), or this host's hard limit
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        limit = 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    proc = subprocess.Popen([ERP_BRIDGE, "--config", str(tmp / "bridge.yaml"), "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=unit_limits)
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except requests.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the service did not start") from None
            time.sleep(0.2)


def oversized(port: int, clients: int, mb: int) -> dict:
    statuses: list = []

    def send(declared: bool) -> None:
        chunk = b"x" * (1024 * 1024)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                head = b"POST /webhooks/shopify HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
                head += (b"Content-Length: %d\r\n\r\n" % (mb * len(chunk))) if declared else b"Transfer-Encoding: chunked\r\n\r\n"
                sock.sendall(head)
                for _ in range(mb):
                    sock.sendall(chunk if declared else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                statuses.append(sock.recv(64).split(b" ")[1].decode())
        except OSError:  # the server answered 413 and closed while we were still sending
            statuses.append("closed-after-413")

    threads = [threading.Thread(target=send, args=(i % 2 == 0,)) for i in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return {"answers": sorted(statuses), "seconds": round(time.monotonic() - started, 2)}


def slowloris(port: int, count: int, seconds: float) -> dict:
    stop = threading.Event()
    opened, cut = [0], [0]
    request = b"POST /webhooks/shopify HTTP/1.1\r\nHost: b\r\nX-Slow: " + b"a" * 4000

    def hold() -> None:
        socks: list[socket.socket] = []
        while not stop.is_set():
            while len(socks) < count and not stop.is_set():
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
                    opened[0] += 1
                except OSError:
                    time.sleep(0.05)
                    break
            alive = []
            for i, sock in enumerate(socks):
                try:
                    sock.send(request[(opened[0] + i) % len(request):][:1])
                    alive.append(sock)
                except OSError:
                    cut[0] += 1
                    sock.close()
            socks = alive
            stop.wait(0.5)
        for sock in socks:
            sock.close()

    attacker = threading.Thread(target=hold, daemon=True)
    attacker.start()
    time.sleep(2)  # let the connections pile up
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        try:
            ok = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            ok = False
        latencies.append(time.monotonic() - t0) if ok else None
        failures += not ok
        time.sleep(0.2)
    stop.set()
    attacker.join(10)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else None
    return {"healthz_ok": len(latencies), "healthz_failed": failures,
            "healthz_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
            "healthz_p99_ms": round(p99 * 1000, 1) if p99 else None,
            "slow_connections_opened": opened[0], "cut_by_server": cut[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--slow", type=int, default=1100)
    parser.add_argument("--seconds", type=float, default=15)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-bounds-") as tmp:
        proc = start(Path(tmp), port)
        peak = Peak(proc.pid)
        peak.start()
        try:
            base = rss_mb(proc.pid)
            big = oversized(port, args.clients, args.mb)
            slow = slowloris(port, args.slow, args.seconds)
        finally:
            peak.stop.set()
            proc.terminate()
            proc.wait(30)
    print(f"RSS at start {base:.1f} MB, peak {peak.peak:.1f} MB (limit {RSS_LIMIT_MB:.0f} MB)")
    print(f"{args.clients} clients x {args.mb} MB bodies: {big}")
    print(f"{args.slow} slow connections for {args.seconds:g} s: {slow}")
    ok = peak.peak < RSS_LIMIT_MB and slow["healthz_failed"] == 0 and slow["healthz_ok"] > 0
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
