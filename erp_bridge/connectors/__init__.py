"""Connectors: one module per system; the only code that does I/O with a system."""
