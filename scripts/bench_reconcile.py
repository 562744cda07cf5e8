#!/usr/bin/env python3
"""Reconciliation at catalogue scale: N SKUs, SAP Business One as system of record and Shopify as
the channel, both the test doubles on loopback (tests/fakes), through the real runtime.

Prints the run's time, the requests each double answered, the keys per second, the process's
peak RSS, and for comparison the ceiling measured in the same run: the time the doubles need to
answer the same requests with no reconciliation logic around them (bare HTTP reads).

    .venv/bin/python scripts/bench_reconcile.py [--skus 100000] [--drift 0.01]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from erp_bridge.connectors.shopify.connector import read_query  # noqa: E402
from tests.fakes.sap_b1 import FakeServiceLayer  # noqa: E402
from tests.fakes.shopify import LOCATION, TOKEN, WEBHOOK_SECRET, FakeShopify, example_mapping_set  # noqa: E402


def world(work: Path, skus: int, drift: float, sap: FakeServiceLayer, shop: FakeShopify) -> Path:
    items = {f"sku-{n:06d}": str(50_000_000_000_000 + n) for n in range(skus)}
    maps = work / "mappings"
    example_mapping_set(maps, shop.url, timeout_s=10, extra_items=items)
    text = (ROOT / "mappings" / "sap_b1.yaml").read_text().replace("https://sap.example.com:50000/b1s/v1", sap.url)
    (maps / "sap_b1.yaml").write_text(re.sub(r"^role: mirror$", "role: system_of_record", text, flags=re.M))
    every = max(1, round(1 / drift)) if drift else 0
    for n, (sku, code) in enumerate(items.items()):
        sap.stock(sku.upper(), "01", in_stock=20)
        shop.stock(f"gid://shopify/InventoryItem/{code}", LOCATION, 19 + (1 if every and n % every == 0 else 0))
    (work / "bridge.yaml").write_text("data_dir: data\nmappings_dir: mappings\n")
    return work / "bridge.yaml"


def ceiling(sap: FakeServiceLayer, shop: FakeShopify, sap_reads: int, shop_reads: int, threads: int) -> float:
    """The same reads, bare, at the same concurrency: no mapping, no rule, no queue, no ledger."""
    cookie = requests.post(f"{sap.url}/Login", json=dict(zip(("CompanyDB", "UserName", "Password"), sap.credentials)),
                           timeout=10).cookies
    local = threading.local()

    def get(n: int) -> None:
        http = getattr(local, "http", None) or setattr(local, "http", requests.Session()) or local.http
        http.get(f"{sap.url}/Items('SKU-{n:06d}')?$select=ItemCode,ItemWarehouseInfoCollection",
                 cookies=cookie, timeout=10).close()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(get, range(sap_reads)))
    keys = [(f"gid://shopify/InventoryItem/{50_000_000_000_000 + n}", LOCATION) for n in range(50)]
    with requests.Session() as http:  # the same 50-key read query the connector sends
        for _ in range(shop_reads):
            http.post(f"{shop.url}/admin/api/2026-07/graphql.json", headers={"X-Shopify-Access-Token": TOKEN},
                      json=read_query(keys), timeout=10).close()
    return time.perf_counter() - started


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skus", type=int, default=100_000)
    parser.add_argument("--drift", type=float, default=0.01, help="share of keys the channel shows wrong")
    args = parser.parse_args()
    from erp_bridge.runtime import build_runtime
    from erp_bridge.settings import load_settings
    from erp_bridge.sync.reconcile import reconcile

    with tempfile.TemporaryDirectory() as tmp, FakeServiceLayer() as sap, FakeShopify(TOKEN, bucket=1e9, restore_rate=1e9) as shop:
        config = world(Path(tmp), args.skus, args.drift, sap, shop)
        os.environ.update({"ERP_BRIDGE_SECRETS__SAP_B1_USER": sap.credentials[1],
                           "ERP_BRIDGE_SECRETS__SAP_B1_PASSWORD": sap.credentials[2],
                           "ERP_BRIDGE_SECRETS__SHOPIFY_TOKEN": TOKEN,
                           "ERP_BRIDGE_SECRETS__SHOPIFY_WEBHOOK_SECRET": WEBHOOK_SECRET})
        runtime = build_runtime(load_settings(config))
        before_sap, before_shop = len(sap.received), len(shop.requests)
        rss_before = _rss_mb()
        started = time.perf_counter()
        report = reconcile(runtime)
        seconds = time.perf_counter() - started
        sap_reads, shop_reads = len(sap.received) - before_sap, len(shop.requests) - before_shop
        runtime.close()
        bare = ceiling(sap, shop, sap_reads, shop_reads, threads=4)  # sap_b1.yaml limits.concurrency
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    grew = peak_mb - rss_before  # the doubles (and their N items) live in this process too
    print(json.dumps({"skus": args.skus, "keys_checked": report.checked.get("shopify"),
                      "differences": len(report.differences), "seconds": round(seconds, 2),
                      "keys_per_s": round(args.skus / seconds), "sap_requests": sap_reads,
                      "shopify_requests": shop_reads, "peak_rss_mb_with_doubles": round(peak_mb, 1),
                      "rss_growth_during_run_mb": round(grew, 1),
                      "ceiling_bare_reads_s": round(bare, 2), "ratio_to_ceiling": round(bare / seconds, 2)}, indent=2))


if __name__ == "__main__":
    main()
