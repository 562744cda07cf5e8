"""Shopify: webhooks in (orders, cancellations, refunds), availability out (GraphQL Admin API)."""
