"""Reconciliation (DESIGN.md flow 6): find and fix drift between what each channel shows and what
the availability rule says it should show, and explain each difference.

The safety net, not the mechanism: it reads the system of record and the channel now (batched),
computes the rule's figure exactly as a push would (``AvailabilityPush.expected``: SoR free now,
less the sales received but not yet applied), and names the likely cause of every difference.
``fix`` corrects through the normal queue (an availability entry: compare-and-set, idempotency,
ordering and rate limits apply, and the figure is recomputed at dispatch, so a fix can never
raise a channel above the rule); a key with a delivery in flight is never corrected, it is
reported as such.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from ..connectors.base import Capability, ReadsListed
from ..domain import AvailabilityChanged
from ..errors import BridgeError, RejectedError
from ..mapping.binder import Binder
from ..mapping.compile import UnmappedError
from ..queue.base import Entry, NewEntry, Queue
from .availability import AvailabilityPush
from .figures import FigureStore

log = logging.getLogger(__name__)
#: keys read from a channel (and the SoR) per call
BATCH = 250
#: documents the bridge wrote in the last this many seconds are checked to be there exactly once
AUDIT_WINDOW_S = 2 * 86400.0
#: at most this many documents per system and run (one search each, within the system's rate limits)
AUDIT_LIMIT = 2000
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Difference:
    system: str
    item: str
    location: str  # the channel's location code
    shows: Decimal | None  # None: the channel does not list the item there
    should: Decimal | None  # None: the rule cannot say now (see cause)
    cause: str
    fixed: bool = False


@dataclass
class Report:
    started_at: float
    finished_at: float = 0.0
    checked: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    #: systems that could not be reconciled, and why
    skipped: dict[str, str] = field(default_factory=dict)

    def drift(self) -> dict[str, int]:
        counts = {system: 0 for system in self.checked}
        for diff in self.differences:
            counts[diff.system] = counts.get(diff.system, 0) + 1
        return counts

    def as_json(self) -> str:
        return json.dumps(asdict(self), default=lambda v: number(v) if isinstance(v, Decimal) else str(v), indent=2)


class Reconciler:
    def __init__(self, mappings, connectors: dict, push: AvailabilityPush, queue: Queue, figures: FigureStore):
        self.mappings, self.connectors, self.push = mappings, connectors, push
        self.queue, self.figures = queue, figures
        #: at most this many keys per channel (a sample run), else all
        self.limit: int | None = None

    def run(self, system: str | None = None, location: str | None = None, *, fix: bool = False,
            progress: Progress | None = None, clock: Callable[[], float] = time.time) -> Report:
        report = Report(started_at=clock())
        for mapping in self.mappings.mirrors():
            self._check(report, mapping, system, progress, Capability.READ_AVAILABILITY, "the mirror's stock",
                        lambda m: [(sku, loc) for loc in self._mirror_locations(m, location) for sku in self._catalogue()],
                        lambda m, c, chunk: self._compare_mirror(m, c, chunk))
        for mapping in self.mappings.channels():
            self._check(report, mapping, system, progress, Capability.READ_LISTED, "what the channel shows",
                        lambda m: self.keys(m, location), lambda m, c, chunk: self._compare(m, c, chunk, fix))
        for name, connector in self.connectors.items():
            if Capability.AUDIT_DOCUMENTS in connector.capabilities and system in (None, name) and location is None:
                self._audit(report, name, connector, clock())
        report.finished_at = clock()
        return report

    def _audit(self, report: Report, name: str, connector, now: float) -> None:
        """The documents the bridge wrote in ``name`` (its ledger) searched by their keys: a move
        is missing when no document carries its key any more, doubled when several do."""
        try:
            audited = connector.audit_documents(now - AUDIT_WINDOW_S, self.limit or AUDIT_LIMIT)
        except BridgeError as exc:
            report.skipped[f"{name} (documents)"] = f"cannot search its documents: {exc}"
            return
        report.checked[name] = report.checked.get(name, 0) + len(audited)
        for intent, ids in audited:
            if len(ids) != 1:
                report.differences.append(Difference(name, _moves(intent.keys), "-", Decimal(len(ids)), Decimal(1),
                                                     _document_cause(name, intent, ids)))

    def _check(self, report: Report, mapping, system: str | None, progress: Progress | None, needs: Capability,
               what: str, keys_of: Callable, compare: Callable) -> None:
        """One system: its keys in batches through ``compare``, counted and reported."""
        if system is not None and mapping.system != system:
            return
        connector = self.connectors.get(mapping.system)
        if connector is None or needs not in connector.capabilities:
            report.skipped[mapping.system] = f"its connector cannot read {what}"
            return
        keys = keys_of(mapping)
        report.checked[mapping.system] = len(keys)
        for start in range(0, len(keys), BATCH):
            chunk = keys[start:start + BATCH]
            report.differences.extend(compare(mapping, connector, chunk))
            if progress:
                progress(len(chunk))

    @staticmethod
    def _mirror_locations(mapping, location: str | None) -> list[str]:
        return [e.internal for e in mapping.locations.map
                if (e.role or mapping.role) == "mirror" and location in (None, e.internal)]

    def _catalogue(self) -> list[str]:
        """Every SKU any mapping lists or any channel was pushed (mirrors have no catalogue of their own)."""
        skus: set[str] = set()
        for mapping in self.mappings.systems.values():
            table = self.mappings.lookups.get(mapping.system)
            skus |= {o.sku for o in mapping.items.overrides} | set(table.codes if table else ())
            skus |= {item for item, _ in self.figures.items(mapping.system)}
        return sorted(skus)

    def _compare_mirror(self, mapping, connector, keys: Sequence[tuple[str, str]]) -> list[Difference]:
        """The mirror's on-hand against the system of record's: a report, never a fix (a correction
        would be a document in the mirror, which only people should decide)."""
        binder = Binder(mapping, self.mappings.lookups.get(mapping.system))
        try:
            mirror = connector.read_availability(keys)
        except BridgeError as exc:
            return [Difference(mapping.system, sku, binder.location_code(loc) or loc, None, None,
                               f"cannot read the mirror: {exc}") for sku, loc in keys]
        sor = self.push.reader.read(keys)
        moving = self._unfinished(mapping.system, "move")
        dead = self._dead_of(mapping.system, "move")
        out = []
        for key in keys:
            held, truth = mirror.get(key), sor.get(key)
            should = truth.on_hand if not isinstance(truth, BridgeError) and truth is not None else None
            shows = held.on_hand if held is not None else None
            if shows == should or (shows is None and should is None):
                continue
            out.append(Difference(mapping.system, key[0], binder.location_code(key[1]) or key[1], shows, should,
                                  _mirror_cause(key, shows, should, truth, moving, dead)))
        return out

    def keys(self, mapping, location: str | None = None) -> list[tuple[str, str]]:
        """(SKU, representative internal location) for every synced item at every channel location:
        the SKUs the mapping lists (overrides, lookup table) and every SKU ever pushed there."""
        table = self.mappings.lookups.get(mapping.system)
        skus = {o.sku for o in mapping.items.overrides} | set(table.codes if table else ())
        codes = list(dict.fromkeys(e.code for e in mapping.locations.map if (e.role or mapping.role) == "channel"))
        pushed = self.figures.items(mapping.system)
        skus |= {item for item, _ in pushed}
        keys = [(sku, mapping.internal_location(code) or mapping.internal_locations(code)[0])
                for code in codes for sku in sorted(skus)]
        keys = [k for k in keys if location is None or k[1] == location]
        return _sample(keys, self.limit) if self.limit is not None else keys

    def _compare(self, mapping, connector: ReadsListed, keys: Sequence[tuple[str, str]],
                 fix: bool) -> list[Difference]:
        binder = Binder(mapping, self.mappings.lookups.get(mapping.system))
        try:
            shows = connector.read_listed(keys)
        except BridgeError as exc:
            return [Difference(mapping.system, sku, binder.location_code(loc) or loc, None, None,
                               f"cannot read the channel: {exc}") for sku, loc in keys]
        should = self.push.expected(mapping.system, keys)
        busy = self._in_flight(mapping.system)
        dead = self._dead(mapping.system)
        out = []
        for key in keys:
            diff = self._difference(mapping, binder, key, shows.get(key), should[key], busy, dead)
            if diff is not None:
                out.append(self._fixed(mapping, key, diff) if fix and _fixable(diff, key, busy) else diff)
        return out

    def _difference(self, mapping, binder: Binder, key: tuple[str, str], shows: Decimal | None,
                    should: Decimal | BridgeError, busy: dict, dead: dict) -> Difference | None:
        code = binder.location_code(key[1]) or key[1]
        if isinstance(should, BridgeError):
            if shows is None:
                return None  # neither the SoR nor the channel has it: nothing to show, nothing shown
            return Difference(mapping.system, key[0], code, shows, None, f"the rule cannot say now: {should}")
        if shows == should:
            return None
        return Difference(mapping.system, key[0], code, shows, should,
                          self._cause(mapping, binder, key, code, shows, should, busy, dead))

    def _cause(self, mapping, binder: Binder, key: tuple[str, str], code: str, shows: Decimal | None,
               should: Decimal, busy: dict, dead: dict) -> str:
        try:
            binder.item_code(key[0])
        except UnmappedError as exc:
            return f"unmapped SKU: {exc}"
        if key in busy:
            return f"a delivery is in flight (entry {busy[key].id}, {busy[key].state.value})"
        if key in dead:
            return f"a dead-lettered delivery (entry {dead[key].id}: erp-bridge dlq show {dead[key].id})"
        if shows is None:
            return "the channel does not list the item at this location (connect it there in the channel)"
        pending = self.push.reader.pending(*key)
        if pending:
            return f"sales received but not yet applied in the system of record ({-pending} units)"
        pushed = self.figures.get(mapping.system, key[0], code)
        if pushed is not None and pushed == should:
            return f"changed on the platform (the bridge pushed {pushed}; it shows {shows})"
        return (f"an availability change did not reach the channel (last pushed "
                f"{'nothing' if pushed is None else pushed})")

    def _in_flight(self, target: str) -> dict[tuple[str, str], Entry]:
        return {k: es[0] for k, es in self._unfinished(target, "availability").items()}

    def _dead(self, target: str) -> dict[tuple[str, str], Entry]:
        return {k: es[0] for k, es in self._dead_of(target, "availability").items()}

    def _unfinished(self, target: str, kind: str) -> dict[tuple[str, str], list[Entry]]:
        return _by_key(e for e in self.queue.unfinished(target) if e.kind == kind)

    def _dead_of(self, target: str, kind: str) -> dict[tuple[str, str], list[Entry]]:
        return _by_key(e for e in self.queue.dead_letters(target, limit=100_000) if e.kind == kind)

    def _fixed(self, mapping, key: tuple[str, str], diff: Difference) -> Difference:
        """Correct through the queue: forget the last pushed figure (the channel does not show
        it), then one availability entry; the push recomputes the figure and compares-and-sets."""
        self.figures.forget(mapping.system, key[0], diff.location)
        sor = self.mappings.system_of_record(key[1]).system
        event = AvailabilityChanged(system=sor, item=key[0], location=key[1], origin="reconcile")
        self.queue.enqueue([NewEntry(target=mapping.system, kind="availability", item=key[0], location=key[1],
                                     idempotency_key=f"{mapping.system}:reconcile:{key[0]}@{key[1]}:{time.time():.6f}",
                                     payload=event.model_dump(mode="json"), coalesce=True)])
        return Difference(**{**asdict(diff), "fixed": True})


def _by_key(entries: Iterable[Entry]) -> dict[tuple[str, str], list[Entry]]:
    out: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        out.setdefault((entry.item, entry.location), []).append(entry)
    return out


def _mirror_cause(key: tuple[str, str], shows: Decimal | None, should: Decimal | None, truth,
                  moving: dict, dead: dict) -> str:
    if isinstance(truth, BridgeError) and not isinstance(truth, RejectedError):
        return f"cannot read the system of record now: {truth}"
    if key in moving:
        return f"{len(moving[key])} move(s) on their way to the mirror (entry {moving[key][0].id} first)"
    if key in dead:
        return f"a dead-lettered move (entry {dead[key][0].id}: erp-bridge dlq show {dead[key][0].id})"
    if shows is None:
        return "the mirror does not hold the item at this location"
    if should is None:
        return "the system of record does not hold the item at this location"
    return ("the stock differs with no move pending: an adjustment made in the mirror or the system of record "
            "outside the bridge, or a move the system of record did not journal")


def _moves(keys: Sequence[str]) -> str:
    return keys[0] if len(keys) == 1 else f"{keys[0]} (+{len(keys) - 1} more in the same document)"


def _document_cause(name: str, intent, ids: list[str]) -> str:
    if not ids:
        return (f"missing in {name}: no {intent.kind} document carries reference {intent.document_key} any more "
                f"(it was {intent.doc_entry}): deleted or cancelled there; post it again in {name} by hand "
                f"with that reference, or the stock stays apart")
    return (f"doubled in {name}: {intent.kind} documents {', '.join(ids)} all carry reference "
            f"{intent.document_key}; cancel all but one in {name}")


def _sample(keys: list[tuple[str, str]], size: int) -> list[tuple[str, str]]:
    """A different slice each hour, so hourly samples cover the whole catalogue over time."""
    if len(keys) <= size:
        return keys
    start = (int(time.time() // 3600) * size) % len(keys)
    return (keys + keys)[start:start + size]


def _fixable(diff: Difference, key: tuple[str, str], busy: dict) -> bool:
    """Never a key with a delivery in flight, never an unmapped one, never without a rule figure."""
    return diff.should is not None and key not in busy and not diff.cause.startswith("unmapped")


def number(value: Decimal) -> str:
    """6, 6.5, 1000: a quantity as people write it (not 6.0 nor 1E+3), whichever system said it."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "") else text


def save(report: Report, path: Path) -> None:
    """The last report, kept for the admin API (written whole, then renamed)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(report.as_json())
    tmp.replace(path)


def rows(report: Report) -> Iterable[dict[str, str]]:
    for d in report.differences:
        yield {"system": d.system, "item": d.item, "location": d.location,
               "shows": "-" if d.shows is None else number(d.shows), "should": "-" if d.should is None else number(d.should),
               "fixed": "yes" if d.fixed else "no", "cause": d.cause}


# --- running it against a built runtime (CLI, schedule, admin API) -------------------------------
LAST_REPORT = "reconcile-last.json"
_DRIFT = None


def reconcile(runtime, system: str | None = None, location: str | None = None, *, fix: bool = False,
              sample: int | None = None, progress: Progress | None = None) -> Report:
    """One run over ``runtime``'s mappings and connectors; the report is kept and the drift
    gauges set. ``sample``: check only that many keys per channel, the oldest-pushed first."""
    push = AvailabilityPush(runtime.mappings, runtime.reader, runtime.figures)
    reconciler = Reconciler(runtime.mappings, runtime.connectors, push, runtime.queue, runtime.figures)
    if sample is not None:
        reconciler.limit = sample
    report = reconciler.run(system, location, fix=fix, progress=progress)
    save(report, Path(runtime.settings.data_dir) / LAST_REPORT)
    gauge = drift_gauge()
    for name, count in report.drift().items():
        gauge.labels(system=name).set(count)
    show(report, runtime.connectors)
    return report


def show(report: Report, connectors: dict) -> None:
    """Hand the differences to every system that shows them to its users (Odoo: Stock Sync >
    Reconciliation). A failure is logged, never fatal: the report is kept by the bridge anyway."""
    if not report.checked:
        return
    run_at = datetime.fromtimestamp(report.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    found = list(rows(report))
    for name, connector in connectors.items():
        if Capability.REPORT_DRIFT not in connector.capabilities:
            continue
        try:
            connector.report_drift(run_at, sorted(report.checked), found)
        except BridgeError as exc:
            log.warning("reconciliation: %s did not take the report: %s", name, exc,
                        extra={"system": name, "error": str(exc)})


def last_report(data_dir: Path) -> dict | None:
    path = Path(data_dir) / LAST_REPORT
    return json.loads(path.read_text()) if path.exists() else None


def drift_gauge():
    global _DRIFT
    if _DRIFT is None:
        from prometheus_client import Gauge

        _DRIFT = Gauge("erp_bridge_reconcile_drift_keys", "Keys whose channel figure differed from the rule "
                       "at the last reconciliation, per system", ["system"])
    return _DRIFT
