"""Lightspeed Retail X-Series (Vend): sale.update webhooks in (stored, then resolved by a worker),
inventory per product per outlet out. See docs/connectors/lightspeed_x.md."""
