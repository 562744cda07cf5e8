"""HTTP service: webhooks, pull endpoints, admin API, health, metrics."""
