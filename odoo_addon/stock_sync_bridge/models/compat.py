# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The only place that knows Odoo 17.0 from 18.0.

Odoo 18 replaced ``type == 'product'`` by the ``is_storable`` flag and renamed the
``warehouse`` context key of the quantity fields to ``warehouse_id``. Everything else in
the module calls these helpers, so porting touches this file only.
"""

from odoo import release

ODOO_MAJOR = release.version_info[0]


def is_storable(product):
    """True when the product keeps stock in quants (storable)."""
    if ODOO_MAJOR >= 18:
        return bool(product.is_storable)
    return product.type == "product"


def storable_domain():
    """Domain selecting storable products, for searches."""
    if ODOO_MAJOR >= 18:
        return [("is_storable", "=", True)]
    return [("type", "=", "product")]


def warehouse_context_key():
    """Context key the quantity fields read to restrict to one warehouse."""
    return "warehouse_id" if ODOO_MAJOR >= 18 else "warehouse"
