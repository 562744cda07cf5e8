"""Start and drive a real Odoo (17.0, 18.0 or 19.0) for the integration tests and benchmarks.

Environment (scripts/test.sh sets all of them per version through scripts/odoo-prepare.sh):
- ODOO_VERSION      17.0 (default), 18.0 or 19.0
- ODOO_SRC          extracted Odoo source tree of that version; unset: scripts/odoo-prepare.sh
                    unpacks ../shared/odoo/odoo-<ver>-trimmed.tar.gz (ODOO_SHARED) into its cache
- ODOO_PYTHON       interpreter with Odoo's requirements (default: the venv odoo-prepare.sh builds)
- ODOO_TEMPLATE_DB  template database with sale_stock (default: the one odoo-prepare.sh makes)
- PostgreSQL: started by odoo-prepare.sh; libpq defaults (PGHOST/PGPORT/PGUSER) honoured.
The tests themselves run in the project's .venv (erp_bridge, odoorpc, pytest); only the Odoo
server runs under ODOO_PYTHON. The server always binds 127.0.0.1 on a free port.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ADDONS = REPO / "odoo_addon"
STARTUP_TIMEOUT = 120  # seconds; module install plus registry load
HTTP_TIMEOUT = 2  # seconds, per readiness probe


def version() -> str:
    return os.environ.get("ODOO_VERSION") or "17.0"


def major() -> int:
    return int(version().split(".")[0])


def shared_tarball() -> Path:
    shared = Path(os.environ.get("ODOO_SHARED") or REPO.parent / "shared" / "odoo")
    return shared / f"odoo-{version()}-trimmed.tar.gz"


def unavailable() -> str | None:
    """Why no real Odoo can run here, or None when one can."""
    if os.environ.get("ODOO_SRC") or shared_tarball().is_file():
        return None
    return (f"no Odoo {version()} here: ODOO_SRC is not set and {shared_tarball()} is absent "
            "(../shared/odoo holds the trimmed trees; see docs/odoo-module.md)")


def odoo_src() -> Path | None:
    value = os.environ.get("ODOO_SRC")
    return Path(value) if value else None


def prepare() -> str:
    """Run scripts/odoo-prepare.sh (tree, venv, PostgreSQL, template DB) unless the caller
    already did; export what it prints into os.environ; return the interpreter."""
    needed = ("ODOO_SRC", "ODOO_PYTHON", "ODOO_TEMPLATE_DB")
    if not all(os.environ.get(k) for k in needed):
        out = subprocess.run(
            [str(REPO / "scripts" / "odoo-prepare.sh"), version()],
            check=True, capture_output=True, text=True, timeout=1800,
        )
        for line in out.stdout.splitlines():
            if line.startswith("export ") and "=" in line:
                key, value = line[len("export "):].split("=", 1)
                os.environ[key] = value
    return os.environ["ODOO_PYTHON"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def template_db() -> str:
    return os.environ["ODOO_TEMPLATE_DB"]


def copy_db(name: str) -> None:
    subprocess.run(["dropdb", "--if-exists", name], check=True, timeout=60)
    subprocess.run(["createdb", "-T", template_db(), name], check=True, timeout=120)


def drop_db(name: str) -> None:
    subprocess.run(["dropdb", "--if-exists", name], check=False, timeout=60)


def base_cmd(python: str, db: str) -> list[str]:
    src = odoo_src()
    return [
        python, str(src / "odoo-bin"),
        f"--addons-path={src}/addons,{src}/odoo/addons,{ADDONS}",
        "-d", db, f"--db-filter=^{db}$", "--http-interface=127.0.0.1",
        "--max-cron-threads=0", "--without-demo=all",
    ]


def install(python: str, db: str, modules: str) -> None:
    """Install modules with --stop-after-init (fails loudly with the log tail)."""
    cmd = base_cmd(python, db) + ["-i", modules, "--stop-after-init", "--log-level=warn",
                                  f"--http-port={free_port()}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0 or "ERROR" in proc.stderr:
        raise RuntimeError(f"installing {modules} failed:\n{proc.stderr[-4000:]}")


API_KEY_SCRIPT = """
import datetime
user = env["res.users"].search([("login", "=", %(login)r)])
key = env["res.users.apikeys"].with_user(user)._generate(
    "rpc", %(name)r, datetime.datetime.now() + datetime.timedelta(days=%(days)d))
env.cr.commit()
print("API_KEY=" + key)
"""


def generate_api_key(python: str, db: str, login: str, name: str = "bridge", days: int = 89) -> str:
    """An API key of ``login`` (Odoo 19: scope rpc, expiring), made as that user in
    ``odoo-bin shell`` - what the user does in Preferences > Account Security."""
    src = odoo_src()
    proc = subprocess.run(
        [python, str(src / "odoo-bin"), "shell", f"--addons-path={src}/addons,{src}/odoo/addons,{ADDONS}",
         "-d", db, "--no-http", "--log-level=warn"],
        input=API_KEY_SCRIPT % {"login": login, "name": name, "days": days},
        capture_output=True, text=True, timeout=300,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("API_KEY="):
            return line[len("API_KEY="):]
    raise RuntimeError(f"no API key for {login}:\n{proc.stderr[-3000:]}")


class OdooServer:
    """A threaded Odoo server on a free loopback port, stopped on close()."""

    def __init__(self, python: str, db: str, workers: int = 0):
        """``workers=0``: Odoo's threaded server; more: its multi-process (prefork) server,
        with the gevent worker for websockets on another free port."""
        self.python, self.db, self.port = python, db, free_port()
        self.log = tempfile.NamedTemporaryFile(
            prefix=f"odoo-{db}-", suffix=".log", delete=False
        )
        extra = [f"--workers={workers}"]
        if workers:
            extra += [f"--gevent-port={free_port()}"]
        self.proc = subprocess.Popen(
            base_cmd(python, db) + [f"--http-port={self.port}", "--log-level=info"] + extra,
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.port}/web/webclient/version_info"
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Odoo exited early:\n{self.log_tail()}")
            try:
                req = urllib.request.Request(url, data=b'{"params": {}}',
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=HTTP_TIMEOUT).read()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Odoo did not answer in {STARTUP_TIMEOUT}s:\n{self.log_tail()}")

    def log_size(self) -> int:
        return Path(self.log.name).stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log.name, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_tail(self, chars: int = 4000) -> str:
        return Path(self.log.name).read_text(errors="replace")[-chars:]

    def client(self, login: str, password: str):
        import odoorpc  # imported late: only the Odoo venv has it

        odoo = odoorpc.ODOO("127.0.0.1", port=self.port, timeout=120)
        odoo.login(self.db, login, password)
        return odoo

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()


def call(odoo, model: str, method: str, *args, context: dict | None = None, **kwargs):
    """execute_kw with an explicit context (odoorpc's env context is global)."""
    if context is not None:
        kwargs["context"] = dict(odoo.env.context, **context)
    return odoo.execute_kw(model, method, list(args), kwargs)


def storable() -> dict:
    """Product values that make a storable product on this Odoo version."""
    return {"type": "consu", "is_storable": True} if major() >= 18 else {"type": "product"}


def groups_field() -> str:
    """res.users' groups field: groups_id until 18, group_ids from 19."""
    return "group_ids" if major() >= 19 else "groups_id"
