"""The PostgreSQL queue's rows and hot statements (postgres.py holds the rules that use them)."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any

from ..storage import postgres as pg
from .base import ENTRY_FIELDS, SOR_CHANGE_KINDS, Entry, NewEntry, State, built_entry

Clock = Callable[[], float]
Row = dict[str, Any]
Key = tuple[str, str, str]
OPEN = "state IN ('pending', 'leased')"
dumps = partial(json.dumps, default=str)


def to_dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else at(epoch)


@lru_cache(maxsize=1024)
def at(epoch: float) -> datetime:
    """A timestamp column that is never NULL. Cached: the entries of one batch share their
    timestamps (one clock reading per transaction), five per entry read back; a datetime is immutable."""
    return datetime.fromtimestamp(epoch, UTC)


_STATES = {s.value: s for s in State}
def entry_of(row: Row, payload: dict[str, Any] | None = None) -> Entry:
    values = {name: row[name] for name in ENTRY_FIELDS}
    values.update(state=_STATES[row["state"]], available_at=at(row["available_at"]),
                  created_at=at(row["created_at"]), updated_at=at(row["updated_at"]),
                  lease_until=to_dt(row["lease_until"]))
    if payload is not None:
        values["payload"] = payload
    return built_entry(values)


def new_entry(entry_id: int, new: NewEntry, now: float) -> Entry:
    """The entry just inserted from ``new`` (what reading its row back would give)."""
    stamp = at(now)
    return built_entry({"id": entry_id, "target": new.target, "kind": new.kind, "item": new.item,
                   "location": new.location, "idempotency_key": new.idempotency_key, "payload": new.payload,
                   "quantity": new.quantity, "state": State.PENDING, "attempts": 0, "available_at": stamp,
                   "created_at": stamp, "updated_at": stamp, "lease_owner": None, "lease_until": None,
                   "last_error": None, "superseded_by": None})


#: the advisory lock id of an ordering key (a collision only serialises two keys a little more)
KEY_HASH = "hashtextextended({0}target || chr(31) || {0}item || chr(31) || {0}location, 0)"
# Locks are taken in hash order (a sorted subquery feeds them), so transactions cannot wait on
# each other in a cycle; a deadlock would still only rerun the transaction (storage.postgres.run).
LOCK_KEYS = ("SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT {hash} AS h FROM"
             " json_to_recordset(%s::json) AS k(target text, item text, location text) ORDER BY h) s")
LOCK_IDS = ("SELECT count(pg_advisory_xact_lock(h)) FROM (SELECT DISTINCT {hash} AS h FROM bridge_entries"
            " WHERE id = ANY(%s::bigint[]) ORDER BY h) s").format(hash=KEY_HASH.format(""))
LOCK_KEYS = LOCK_KEYS.format(hash=KEY_HASH.format("k."))
#: the batch's key locks and the wake-up of idle workers (sent at commit) in one statement
LOCK_KEYS_AND_WAKE = f"SELECT pg_notify('{pg.CHANNEL}', ''), ({LOCK_KEYS})"
#: Commit durability per statement, as the SQLite queue's NORMAL (postgres.py's docstring says
#: why it is safe): the lease and the ack commit without waiting for their WAL flush. A function
#: call, not SET LOCAL: it rides in a statement the transaction sends anyway (no extra statement
#: per cycle) and lasts until that transaction ends; every other commit keeps the session's
#: setting (the server's default: on), the enqueue's above all.
RELAXED = "set_config('synchronous_commit', 'off', true)"
#: the ack's key locks, its commit relaxed
LOCK_IDS_RELAXED = f"SELECT {RELAXED}, ({LOCK_IDS})"


def lock_keys(conn: pg.Conn, keys: Iterable[Key]) -> None:
    rows = [{"target": t, "item": i, "location": l} for t, i, l in set(keys)]
    if rows:
        conn.execute(LOCK_KEYS, (dumps(rows),))


def batch_json(entries: Sequence[NewEntry]) -> str:
    """A batch as one JSON parameter (LOCK_KEYS and INSERT_MANY read it): one C-encoded string
    instead of seven arrays psycopg builds element by element in Python. ``first`` marks the
    first entry of each key in the batch, the only one that may become its head."""
    seen: set[Key] = set()
    rows = []
    for e in entries:
        key = (e.target, e.item, e.location)
        rows.append({"target": e.target, "kind": e.kind, "item": e.item, "location": e.location,
                     "key": e.idempotency_key, "payload": e.payload, "first": key not in seen,
                     "quantity": None if e.quantity is None else str(e.quantity)})
        seen.add(key)
    return dumps(rows)


def id_array(ids: Iterable[int]) -> str:
    """Entry ids as one ``bigint[]`` literal: psycopg dumps a list element by element in Python
    (about 5 us per id; an ack binds its ids twice)."""
    return "{" + ",".join(map(str, ids)) + "}"


def lock_ids(conn: pg.Conn, ids: Sequence[int]) -> None:
    """Lock the ordering keys of these entries (an entry's key never changes)."""
    conn.execute(LOCK_IDS, (list(ids),))


# Key lookups are LATERAL ... LIMIT 1 probes of an index, row by row: without them the planner, on a
# table autovacuum has not analysed yet, hashes every open entry (and the dead index entries of
# finished ones) once per statement, a cost that grows with the table.
INSERT_MANY = (  # the first new entry of a key with nothing unfinished is its head at once
    "INSERT INTO bridge_entries (target, kind, item, location, idempotency_key, payload, quantity, state,"
    " available_at, created_at, updated_at, head) SELECT t, k, i, l, key, p, q, 'pending', %s, %s, %s,"
    " first AND busy IS NULL FROM ROWS FROM (json_to_recordset(%s::json) AS (target text, kind text, item text,"
    " location text, key text, payload jsonb, quantity numeric, first boolean)) WITH ORDINALITY AS"
    " n(t, k, i, l, key, p, q, first, ord) LEFT JOIN LATERAL (SELECT true AS busy FROM bridge_entries o"
    f" WHERE n.first AND o.target = n.t AND o.item = n.i AND o.location = n.l AND o.{OPEN} LIMIT 1) b ON true"
    " ORDER BY ord ON CONFLICT (target, idempotency_key) DO NOTHING"
    " RETURNING id, target, item, location, idempotency_key, head")
PROMOTE = (  # per key: its oldest unfinished entry becomes its head, unless the key has one
    "UPDATE bridge_entries e SET head = true FROM {keys} CROSS JOIN LATERAL (SELECT o.id FROM bridge_entries o"
    f" WHERE o.target = k.t AND o.item = k.i AND o.location = k.l AND o.{OPEN} ORDER BY o.id LIMIT 1) first"
    " WHERE e.id = first.id AND NOT EXISTS (SELECT 1 FROM bridge_entries h WHERE h.target = k.t"
    " AND h.item = k.i AND h.location = k.l AND h.head)")
PROMOTE_KEYS = PROMOTE.format(keys="(SELECT DISTINCT * FROM unnest(%s::text[], %s::text[], %s::text[])) AS k(t, i, l)")
TARGETS = "(%(targets)s::text[] IS NULL OR target = ANY(%(targets)s))"
EXPIRED = ("SELECT id FROM bridge_entries WHERE state = 'leased' AND lease_until <= %(now)s"
           f" AND {TARGETS} ORDER BY lease_until LIMIT %(limit)s")
_DUE = ("due AS (SELECT id FROM bridge_entries WHERE head AND state = 'pending' AND available_at <= %(now)s"
        f" AND {TARGETS} ORDER BY available_at, id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)")
_LEASED = ("UPDATE bridge_entries e SET state = 'leased', lease_owner = %(worker)s, lease_until = %(until)s,"
           " leased_at = %(now)s, updated_at = %(now)s FROM due WHERE e.id = due.id RETURNING e.*")
LEASE = f"WITH {_DUE} {_LEASED}"
# The lease, and whether leases ran out that expiry must take back first (``expired``), in one
# statement: the result has one row even when nothing was leased (then its columns are NULL).
# Its commit is relaxed (RELAXED; the expiry that may follow is a transaction of its own, which
# keeps the session's durability: it may dead-letter an entry).
LEASE_OR_EXPIRED = (f"WITH {_DUE}, leased AS ({_LEASED}) SELECT l.*, x.expired FROM (SELECT EXISTS (SELECT"
                    f" FROM bridge_entries WHERE state = 'leased' AND lease_until <= %(now)s AND {TARGETS})"
                    f" AS expired, {RELAXED} AS relaxed) x LEFT JOIN leased l ON true")
# Ack and promotion in one statement. A leased entry is its key's head, so once it is
# done the key has none: its oldest other unfinished entry (in this statement's snapshot, taken
# after the key locks) is promoted. No other entry of the key can be in the batch (one head per key).
# ``lease_owner`` is set exactly while an entry is leased (every way out of 'leased' clears it), so
# it alone says "leased by this worker": naming ``state`` too would let the planner pick the lease
# index, which keeps an entry per lease ever taken until vacuum, over the primary key.
# The delivered attempt stays in the row (delivered_by, delivered_s; migration 6), as on SQLite:
# no attempts row (ATTEMPTS reads it back; it started at updated_at - delivered_s).
_ACK = ("WITH done AS (UPDATE bridge_entries SET state = 'done', head = false, attempts = attempts + 1,"
        " updated_at = %(now)s, lease_owner = NULL, lease_until = NULL, delivered_by = %(worker)s,"
        " delivered_s = %(duration)s WHERE id = ANY(%(ids)s::bigint[]) AND lease_owner = %(worker)s"
        " RETURNING id, target, item, location, kind),"
        " promoted AS (UPDATE bridge_entries e SET head = true FROM done d CROSS JOIN LATERAL (SELECT o.id FROM"
        " bridge_entries o WHERE o.target = d.target AND o.item = d.item AND o.location = d.location"
        f" AND o.{OPEN} AND o.id <> d.id ORDER BY o.id LIMIT 1) first WHERE e.id = first.id){{applied}}"
        " SELECT id AS entry_id FROM done{sent}")
ACK = _ACK.format(applied="", sent="")
#: ACK that also tells every process's pull cache the (item, location) keys of the changes it
#: applied to a system of record (pg.APPLIED; sent by PostgreSQL at the commit, with the ack).
#: Used once a pull client is configured (PostgresQueue.announce_applied): about 70 us more per
#: ack at batch 1, 5-10 % of the ack at batch 64 (issue 15, seventh round).
ACK_ANNOUNCING = _ACK.format(
    applied=(f", applied AS (SELECT pg_notify('{pg.APPLIED}', CASE WHEN length(k) > {pg.APPLIED_MAX} THEN '*'"
             " ELSE k END) FROM (SELECT json_agg(DISTINCT jsonb_build_array(item, location))::text AS k"
             f" FROM done WHERE kind IN ({', '.join(repr(k) for k in sorted(SOR_CHANGE_KINDS))})) a"
             " WHERE k IS NOT NULL)"),
    # a one-time filter: the planner runs it once, before anything (a join it could remove)
    sent=" WHERE (SELECT count(*) FROM applied) >= 0")
#: an entry's attempts: its attempts rows (retries, expired leases, releases, dead letters,
#: discards; and the delivered attempts of rows acked before migration 6, or by an older
#: version), then the delivered attempt its row keeps, in the order they happened
ATTEMPTS = (
    "SELECT 0 AS part, id, entry_id, number, worker, outcome, started_at, duration_s, error FROM bridge_attempts"
    " WHERE entry_id = %(id)s UNION ALL SELECT 1, id, id, attempts, delivered_by, 'delivered',"
    " updated_at - delivered_s, delivered_s, NULL FROM bridge_entries WHERE id = %(id)s AND delivered_by IS NOT NULL"
    " ORDER BY part, id")
