"""Multi-worker Odoo (--workers>0) from the venv scripts/odoo-prepare.sh builds: it used to
crash-loop (pkg_resources.DistributionNotFound: zope.interface) until the extra pins of
../shared/odoo/odoo-<ver>.requirements-extra.txt were installed."""
from __future__ import annotations

import time
import urllib.request

import pytest

from . import server as srv

pytestmark = pytest.mark.odoo


def test_prefork_server_with_two_workers_serves_and_does_not_crash_loop(odoo_server):
    server = srv.OdooServer(odoo_server.python, odoo_server.db, workers=2)
    try:
        for _ in range(10):  # a few requests, spread over both HTTP workers
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/web/login", timeout=10) as page:
                assert page.status == 200
        time.sleep(8)  # the gevent worker and the cron worker start (and used to die) meanwhile
        log = server.log_tail(200_000)
        assert "DistributionNotFound" not in log
        assert "Traceback" not in log, server.log_tail()
        assert server.proc.poll() is None
    finally:
        server.close()
