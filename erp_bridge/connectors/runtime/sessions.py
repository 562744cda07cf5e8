"""What the HTTP connectors share: one ``requests.Session`` per worker thread.

``requests`` does not document ``Session`` as thread-safe and the dispatcher calls a connector
from several threads, so each thread gets its own (keeping connection reuse), all closed together.
"""
from __future__ import annotations

import threading

import requests


class ThreadSessions:
    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: list[requests.Session] = []

    def get(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._all.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._all = self._all, []
        for session in sessions:
            session.close()
        self._local = threading.local()
