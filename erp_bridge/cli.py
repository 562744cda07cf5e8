"""The ``erp-bridge`` command. Exit codes: 0 ok, 1 failure, 2 configuration or usage error."""
from __future__ import annotations

import argparse
import json
import os
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path

from .errors import ConfigError

CONFIG_HELP = "config file (YAML); default: $ERP_BRIDGE_CONFIG, else built-in defaults"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = getattr(args, "handler", None) or cmd_serve
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"erp-bridge: the configuration is not valid, nothing was started:\n{_indent(exc)}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _indent(exc: Exception) -> str:
    return "\n".join(f"  {line}" for line in str(exc).splitlines())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="erp-bridge", description="Real-time stock sync bridge.")
    parser.add_argument("--config", type=Path, default=_default_config(), help=CONFIG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="HTTP service and workers in one process (the default)")
    serve.add_argument("--host", help="listen address (overrides http.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides http.port)")
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="workers only, no HTTP service")
    worker.add_argument("--metrics-port", type=int,
                        help="serve Prometheus /metrics on this port at http.host (overrides workers.metrics_port)")
    worker.set_defaults(handler=cmd_worker)

    status = sub.add_parser("status", help="queue depth, oldest pending age, dead letters per target; pollers;"
                                           " calls in flight; processes on the database")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=cmd_status)

    _add_dlq(sub)
    _add_config(sub)
    _add_db(sub)
    _add_mappings(sub)
    for p in sub.choices.values():  # --config is accepted after the command too
        p.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=CONFIG_HELP)
    return parser


def _default_config() -> Path | None:
    value = os.environ.get("ERP_BRIDGE_CONFIG")
    return Path(value) if value else None


def _add_dlq(sub) -> None:
    rec = sub.add_parser("reconcile", help="compare every channel with the availability rule; --fix corrects")
    rec.add_argument("--system", help="only this channel (a mapping's system name)")
    rec.add_argument("--location", help="only this internal location (e.g. WH/Stock)")
    rec.add_argument("--fix", action="store_true", help="correct what is safe to correct, through the queue")
    rec.add_argument("--format", choices=("table", "json", "csv"), default="table")
    rec.set_defaults(handler=cmd_reconcile)

    dlq = sub.add_parser("dlq", help="dead letters: list, show, replay").add_subparsers(
        dest="dlq_command", metavar="ACTION", required=True)
    lst = dlq.add_parser("list", help="list dead letters")
    lst.add_argument("--target")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--offset", type=int, default=0)
    lst.set_defaults(handler=cmd_dlq_list)
    show = dlq.add_parser("show", help="one entry with every attempt")
    show.add_argument("entry_id", type=int)
    show.set_defaults(handler=cmd_dlq_show)
    replay = dlq.add_parser("replay", help="put dead letters back in the queue")
    replay.add_argument("entry_ids", type=int, nargs="*")
    replay.add_argument("--all", action="store_true", help="every dead letter (of --target, if given)")
    replay.add_argument("--target")
    replay.set_defaults(handler=cmd_dlq_replay)
    discard = dlq.add_parser("discard", help="resolve a dead letter without delivering it (reason recorded)")
    discard.add_argument("entry_ids", type=int, nargs="+")
    discard.add_argument("--reason", required=True, help="why (recorded with the entry)")
    discard.set_defaults(handler=cmd_dlq_discard)


def _add_db(sub) -> None:
    db = sub.add_parser("db", help="storage (queue, figures, ledgers)").add_subparsers(
        dest="db_command", metavar="ACTION", required=True)
    migrate = db.add_parser("migrate", help="bring the storage schema up to date (runs each migration once)")
    migrate.add_argument("--inbox-from", metavar="SQLITE_URL", help="moving to PostgreSQL: also copy the channel "
                         "inboxes (cursors, seen and counted keys, webhook references) of this SQLite queue")
    migrate.set_defaults(handler=cmd_db_migrate)


def cmd_db_migrate(args) -> int:
    from .storage.migrate import carry_inboxes, migrate_storage

    url = _settings(args).queue_url
    print(migrate_storage(url))
    if args.inbox_from:
        print(carry_inboxes(args.inbox_from, url))
    return 0


def _add_config(sub) -> None:
    config = sub.add_parser("config", help="configuration").add_subparsers(
        dest="config_command", metavar="ACTION", required=True)
    config.add_parser("check", help="validate and print the effective configuration, secrets masked"
                      ).set_defaults(handler=cmd_config_check)


def _add_mappings(sub) -> None:
    mappings = sub.add_parser("mappings", help="mapping files").add_subparsers(
        dest="mappings_command", metavar="ACTION", required=True)
    check = mappings.add_parser("check", help="validate mapping files (all of mappings_dir by default)")
    check.add_argument("files", type=Path, nargs="*")
    check.add_argument("--secrets", action="store_true",
                       help="also require every named secret to be configured here (production host)")
    check.set_defaults(handler=cmd_mappings_check)
    schema = mappings.add_parser("schema", help="write the JSON Schema editors validate against")
    schema.add_argument("--output", type=Path, help="default: <mappings_dir>/schema.json")
    schema.set_defaults(handler=cmd_mappings_schema)
    preview = mappings.add_parser("preview", help="print the HTTP request(s) an event becomes; sends nothing")
    preview.add_argument("system")
    preview.add_argument("--event", type=Path, required=True, help="event as a JSON file")
    preview.set_defaults(handler=cmd_mappings_preview)


# --- commands ---------------------------------------------------------------------------------

def _settings(args, service: bool = False, **overrides):
    """Services log JSON to stdout (journald); other commands to stderr, keeping stdout for output."""
    from .logs import setup_logging
    from .settings import load_settings

    settings = load_settings(args.config, **overrides)
    setup_logging(settings.log_level, settings.secret_values(), stream=sys.stdout if service else sys.stderr)
    return settings


def cmd_serve(args) -> int:
    from .http.server import serve

    http = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    overrides = {"http": {k: v for k, v in http.items() if v is not None}} if any(http.values()) else {}
    settings = _settings(args, service=True, **overrides)
    return serve(settings)


def cmd_worker(args) -> int:
    from .runtime import run_workers

    port = getattr(args, "metrics_port", None)
    overrides = {"workers": {"metrics_port": port}} if port is not None else {}
    return run_workers(_settings(args, service=True, **overrides))


def cmd_status(args) -> int:
    from .runtime import open_queue_for

    settings = _settings(args)
    with open_queue_for(settings, existing=True) as queue:
        rows = [{"target": s.target, **{str(k): v for k, v in s.depth.items()},
                 "oldest_pending_age_s": s.oldest_pending_age_s} for s in queue.stats()]
        calls = queue.shared_limits().held()  # PostgreSQL: every process's calls in flight
        processes = queue.processes()  # PostgreSQL: every bridge process connected to the database
    pollers = _poller_statuses(settings.queue_url)
    if args.json:
        print(json.dumps({"queue": rows, "pollers": pollers, "calls_in_flight": calls, "processes": processes},
                         indent=2))
        return 0
    if not rows:
        print("queue is empty")
    else:
        print(f"{'target':<20} {'pending':>8} {'leased':>8} {'done':>10} {'dead':>6}  oldest pending")
        for r in rows:
            age = "-" if r["oldest_pending_age_s"] is None else f"{r['oldest_pending_age_s']:.1f}s"
            print(f"{r['target']:<20} {r.get('pending', 0):>8} {r.get('leased', 0):>8} "
                  f"{r.get('done', 0):>10} {r.get('dead', 0):>6}  {age}")
    if processes:
        print(f"processes on the database: {len(processes)} (" + ", ".join(
            f"{p['process']}: {p['sessions']} sessions since {p['since']}" for p in processes) + ")")
    for target, holders in calls.items():
        print(f"calls in flight to {target}: {len(holders)} ({', '.join(holders)})")
    for p in pollers:
        lag = "-" if p["lag_s"] is None else f"{p['lag_s']:.0f}s behind"
        error = f"; last error: {_safe(str(p['last_error']))}" if p["last_error"] else ""
        print(f"poller {p['system']}/{p['resource']}: read up to {p['cursor'] or '-'} ({lag}), "
              f"last success {p['last_success'] or 'never'}{error}")
    return 0


def _poller_statuses(storage_url: str) -> list[dict]:
    """What every channel poller (any process) stored about its progress (runtime/polling.py)."""
    from .connectors.runtime.inbox import Inbox
    from .connectors.runtime.polling import statuses

    inbox = Inbox(storage_url, "-")  # the SQLite file or the PostgreSQL database: every process's cursors
    try:
        return statuses(inbox)
    finally:
        inbox.close()


def cmd_reconcile(args) -> int:
    """Exit 0 when every channel shows the rule's figure (or every difference was corrected), else 1."""
    from .runtime import build_runtime
    from .sync.reconcile import reconcile, rows

    runtime = build_runtime(_settings(args))
    try:
        with _progress_bar(args.format == "table") as bar:
            report = reconcile(runtime, args.system, args.location, fix=args.fix, progress=bar)
    finally:
        runtime.close()
    found = list(rows(report))
    if args.format == "json":
        print(report.as_json())
    elif args.format == "csv":
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=["system", "item", "location", "shows", "should", "fixed", "cause"])
        writer.writeheader()
        writer.writerows(found)
    else:
        _print_reconcile(report, found)
    return 0 if all(r["fixed"] == "yes" for r in found) else 1


def _progress_bar(enabled: bool):
    """A terminal progress bar (tqdm, on stderr) for long runs; nothing when not a terminal."""
    from contextlib import nullcontext

    if not (enabled and sys.stderr.isatty()):
        return nullcontext(None)
    from tqdm import tqdm

    class _Bar:
        def __enter__(self):
            self.bar = tqdm(unit="key", desc="reconcile", file=sys.stderr)
            return self.bar.update

        def __exit__(self, *exc):
            self.bar.close()
    return _Bar()


def _print_reconcile(report, found: list[dict]) -> None:
    for system, count in sorted(report.checked.items()):
        print(f"{system}: {count} key(s) checked, {report.drift().get(system, 0)} differ")
    for system, why in sorted(report.skipped.items()):
        print(f"{system}: not reconciled: {why}")
    if found:
        print(f"\n{'system':<12} {'item':<20} {'location':<16} {'shows':>8} {'should':>8} {'fixed':<5}  cause")
        for r in found:
            print(f"{r['system']:<12} {_safe(r['item']):<20} {_safe(r['location']):<16} {r['shows']:>8} "
                  f"{r['should']:>8} {r['fixed']:<5}  {_safe(r['cause'])}")


def _safe(text: str | None) -> str:
    """Text from channels (SKUs, errors) shown on a terminal: control and format characters
    (escape sequences, bidi overrides) are printed escaped, never interpreted."""
    if not text:
        return ""
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else
                   ch.encode("unicode_escape").decode("ascii") for ch in text)


def cmd_dlq_list(args) -> int:
    from .logs import Redactor
    from .runtime import open_queue_for

    settings = _settings(args)
    redact = Redactor(settings.secret_values())
    with open_queue_for(settings, existing=True) as queue:
        entries = queue.dead_letters(target=args.target, limit=args.limit, offset=args.offset)
    if not entries:
        print("no dead letters")
    for e in entries:
        print(f"{e.id:>8}  {_safe(e.target):<16} {e.kind:<12} {_safe(e.item)}@{_safe(e.location)}  "
              f"attempts={e.attempts}  {e.updated_at:%Y-%m-%d %H:%M:%S}  {_safe(redact(e.last_error))}")
    return 0


def cmd_dlq_show(args) -> int:
    from .http.admin import entry_json
    from .logs import Redactor
    from .runtime import open_queue_for

    settings = _settings(args)
    redact = Redactor(settings.secret_values())
    with open_queue_for(settings, existing=True) as queue:
        entry = queue.get(args.entry_id)
        if entry is None:
            print(f"erp-bridge: no queue entry {args.entry_id}", file=sys.stderr)
            return 1
        attempts = queue.attempts(args.entry_id)
    print(json.dumps(entry_json(entry, redact), indent=2))  # JSON escapes control characters
    for a in attempts:
        print(f"attempt {a.number}: {a.outcome} by {_safe(a.worker)} at {a.started_at:%Y-%m-%d %H:%M:%S} "
              f"in {a.duration_s * 1000:.0f} ms {_safe(redact(a.error))}")
    return 0


def cmd_dlq_replay(args) -> int:
    from .runtime import open_queue_for

    if not args.entry_ids and not args.all:
        print("erp-bridge: name entry ids, or use --all", file=sys.stderr)
        return 2
    with open_queue_for(_settings(args), existing=True) as queue:
        ids = args.entry_ids or _all_dead_ids(queue, args.target)
        failed = 0
        for n, entry_id in enumerate(ids, 1):
            try:
                queue.replay(entry_id)
            except (KeyError, ValueError) as exc:
                failed += 1
                print(f"entry {entry_id}: not replayed: {exc}", file=sys.stderr)
            _progress(n, len(ids))
    print(f"replayed {len(ids) - failed} of {len(ids)}")
    return 1 if failed else 0


def cmd_dlq_discard(args) -> int:
    from .runtime import open_queue_for

    who = f"cli:{os.environ.get('USER') or os.getuid()}"
    failed = 0
    with open_queue_for(_settings(args), existing=True) as queue:
        for entry_id in args.entry_ids:
            try:
                queue.discard(entry_id, args.reason, who=who)
            except (KeyError, ValueError) as exc:
                failed += 1
                print(f"entry {entry_id}: not discarded: {_safe(str(exc))}", file=sys.stderr)
    print(f"discarded {len(args.entry_ids) - failed} of {len(args.entry_ids)}")
    return 1 if failed else 0


def _all_dead_ids(queue, target: str | None) -> list[int]:
    ids, offset = [], 0
    while batch := queue.dead_letters(target=target, limit=500, offset=offset):
        ids += [e.id for e in batch]
        offset += len(batch)
    return ids


def _progress(done: int, total: int) -> None:
    if sys.stderr.isatty() and (done == total or done % 100 == 0):
        print(f"\r{done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)


def cmd_config_check(args) -> int:
    from .settings import masked_dump

    settings = _settings(args)
    print(json.dumps(masked_dump(settings), indent=2))
    from .runtime import check_mappings

    for line in check_mappings(settings):
        print(line)
    print("configuration is valid")
    return 0


def cmd_mappings_check(args) -> int:
    from .mapping import cli_support
    from .runtime import mapping_files

    settings = _settings(args)
    missing = [str(f) for f in args.files if not f.exists()]
    if missing:
        raise ConfigError("\n".join(f"{f}: no such file or directory" for f in missing))
    files = args.files or mapping_files(settings)  # a missing or empty mappings_dir is an error
    secret_names = set(settings.secrets) if args.secrets else None
    for line in cli_support.check(files, secret_names=secret_names):
        print(line)
    return 0


def cmd_mappings_schema(args) -> int:
    from .mapping import cli_support

    settings = _settings(args)
    output = args.output or Path(settings.mappings_dir) / "schema.json"
    cli_support.write_schema(output)
    print(f"wrote {output}")
    return 0


def cmd_mappings_preview(args) -> int:
    from .mapping import cli_support
    from .mapping.compile import UnmappedError
    from .runtime import mapping_files

    settings = _settings(args)
    mapping_files(settings)
    try:
        print(cli_support.preview(args.system, args.event, Path(settings.mappings_dir)))
    except UnmappedError as exc:  # what dispatch would dead-letter: say why, no traceback
        print(f"erp-bridge: {args.system} cannot map this event (it would dead-letter): {_safe(str(exc))}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
