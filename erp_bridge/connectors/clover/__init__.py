"""Clover: order webhooks in (ids only: stored, then resolved by a worker), item_stocks out.
See docs/connectors/clover.md."""
