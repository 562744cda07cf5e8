"""The connector runtime: what every HTTP system shares, written once (DESIGN.md, "Connectors: a
runtime, not a package per system").

- ``sender.Sender``: timeouts, per-thread sessions, auth, classification, redaction;
- ``auth``: one strategy per auth kind of the mapping schema, on oauthlib / requests-oauthlib;
- ``classify``: ``writes.on_status`` + ``Retry-After`` -> retry / reject / ignore;
- ``batch.until_down``: the first retryable failure stops the rest of a batch;
- ``paginate``: page-number and OData next-link paginators;
- ``ledger`` + ``documents``: exactly-once documents for targets without an idempotency key;
- ``context.ConnectorContext``: what a connector factory is given.
"""
