"""erp-bridge: keeps inventory true everywhere a merchant sells."""

__version__ = "0.1.0"
