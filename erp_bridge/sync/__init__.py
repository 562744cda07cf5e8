"""The synchronizers: which changes go to which targets (DESIGN.md flows 1-4).

Routing and translation are pure (mappings in, entries out); the outbox poller and the channel
intake are the only parts here that touch a queue or a connector.
"""
