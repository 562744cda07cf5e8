"""Durable queue: SQLite (embedded default) and PostgreSQL."""
