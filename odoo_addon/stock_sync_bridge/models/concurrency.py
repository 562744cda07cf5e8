# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""Statements that concurrent transactions contend for, executed quietly.

Under REPEATABLE READ a contended write (the product lock of apply_stock_changes, the
marker upsert) fails with a serialization error in the second transaction; Odoo's RPC
and HTTP layers then retry the whole call with a fresh snapshot, and log that at INFO.
Odoo's cursor would also log every such failure as an ERROR "bad query", although
nothing is wrong: these statements are run with ``log_exceptions=False``, and only a
failure that is not a concurrency error is logged here, at ERROR, as Odoo would.
"""

import logging

from psycopg2 import errors as pg_errors

_logger = logging.getLogger(__name__)
CONCURRENCY_ERRORS = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.LockNotAvailable,
)


def execute_contended(cr, query, params=None):
    """``cr.execute`` that leaves concurrency errors to Odoo's retry without an ERROR line."""
    try:
        cr.execute(query, params, log_exceptions=False)
    except CONCURRENCY_ERRORS as error:
        _logger.debug("contended statement, Odoo retries the call: %s", error)
        raise
    except Exception as error:
        _logger.error("bad query: %s\nERROR: %s", query, error)
        raise
