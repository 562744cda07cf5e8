"""Prometheus objects the HTTP ``/metrics`` endpoint exposes.

Counters and histograms are labelled by target; queue depth is collected from ``queue.stats()``
at scrape time, so it is right even when another process (a second worker) moves the entries.
"""
from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric

from ..queue.base import Queue

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0, 3600.0)


class QueueCollector:
    """Queue depth per state and target, and the age of the oldest pending entry."""

    def __init__(self) -> None:
        self.queue: Queue | None = None

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("erp_bridge_queue_depth", "Queue entries per state and target",
                                  labels=["state", "target"])
        age = GaugeMetricFamily("erp_bridge_queue_oldest_pending_age_seconds",
                                "Age of the oldest pending entry per target", labels=["target"])
        for stats in self.queue.stats() if self.queue is not None else ():
            for state, n in stats.depth.items():
                depth.add_metric([state.value, stats.target], n)
            if stats.oldest_pending_age_s is not None:
                age.add_metric([stats.target], stats.oldest_pending_age_s)
        yield depth
        yield age


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.deliveries = Counter("erp_bridge_deliveries", "Entries delivered", ["target"], registry=r)
        self.retries = Counter("erp_bridge_retries", "Attempts that will be retried", ["target"], registry=r)
        self.throttled = Counter("erp_bridge_throttled",
                                 "Entries a system refused for its rate limit or quota (HTTP 429, Cin7's 503), by the system "
                                 "that refused (the target, or the system of record a push read); they wait without "
                                 "counting an attempt while its calls pause", ["target"], registry=r)
        self.dead_letters = Counter("erp_bridge_dead_letters", "Entries dead-lettered", ["target"], registry=r)
        self.sales_overdue = Counter("erp_bridge_sale_retries_overdue",
                                     "Retries of channel sales past retry.max_attempts (they never dead-letter "
                                     "on a retryable failure: alert on this)", ["target"], registry=r)
        self.attempt_seconds = Histogram("erp_bridge_delivery_duration_seconds",
                                         "Duration of one delivery call to a target", ["target"],
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.lag_seconds = Histogram("erp_bridge_delivery_lag_seconds",
                                     "From enqueue to delivered, per target", ["target"],
                                     buckets=LAG_BUCKETS, registry=r)
        self.queue = QueueCollector()
        r.register(self.queue)

    def watch(self, queue: Queue) -> None:
        """Report this queue's depth from now on."""
        self.queue.queue = queue


_default: DispatchMetrics | None = None
_default_lock = threading.Lock()


def default_metrics() -> DispatchMetrics:
    """The process-wide metrics on prometheus_client's global REGISTRY (created once, since a
    metric name can be registered only once per registry)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DispatchMetrics(REGISTRY)
        return _default
