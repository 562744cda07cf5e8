"""WooCommerce: webhooks in (order.created, order.updated), stock_quantity out (batch endpoints)."""
