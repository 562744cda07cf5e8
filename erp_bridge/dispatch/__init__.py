"""Lease -> route -> connector -> ack / retry / dead-letter; rate limits."""
