# Copyright 2025 Stock Sync contributors
# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl).
"""The only place that knows Odoo 17.0 from 18.0 and 19.0.

- 18 replaced ``type == 'product'`` by the ``is_storable`` flag and renamed the
  ``warehouse`` context key of the quantity fields to ``warehouse_id``;
- 18 renamed the ``tree`` view type to ``list`` (arch root tag and ``view_mode``);
- 19 replaced ``_sql_constraints`` by ``models.Constraint`` attributes and the groups'
  ``category_id`` by ``privilege_id`` (a ``res.groups.privilege`` in that category), and
  limits API keys per group (``api_key_duration``; the bridge group allows 90 days).
The module's XML is written for 17; ``adapt_record`` rewrites this module's own records
while they load (``_load_records`` of the three models concerned), so one set of data
files serves every version.
"""

import re

from odoo import models, release

ODOO_MAJOR = release.version_info[0]
MODULE = "stock_sync_bridge"
BOT_KEY_DAYS = 90.0


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


def storable_fields():
    """The product fields that decide storability (for @api.depends)."""
    return ["is_storable"] if ODOO_MAJOR >= 18 else ["type"]


def storable_values():
    """Values that make a new product storable."""
    if ODOO_MAJOR >= 18:
        return {"type": "consu", "is_storable": True}
    return {"type": "product"}


def move_values(name, values):
    """stock.move values with its description: 19 has no ``name`` on moves any more."""
    if ODOO_MAJOR >= 19:
        return dict(values)
    return dict(values, name=name)


def warehouse_context_key():
    """Context key the quantity fields read to restrict to one warehouse."""
    return "warehouse_id" if ODOO_MAJOR >= 18 else "warehouse"


def groups_field():
    """The many2many of res.users to res.groups."""
    return "group_ids" if ODOO_MAJOR >= 19 else "groups_id"


def sql_constraints(namespace, constraints):
    """Declare ``[(name, definition, message)]`` in a model's class body the way this
    version reads them: ``compat.sql_constraints(locals(), [...])``."""
    if ODOO_MAJOR >= 19:
        for name, definition, message in constraints:
            namespace["_" + name] = models.Constraint(definition, message)
    else:
        namespace["_sql_constraints"] = constraints


_TREE_TAG = re.compile(r"<(/?)tree\b")


def adapt_record(env, model, data):
    """Rewrite one of this module's records (``{'xml_id', 'values'}``) for this version."""
    if ODOO_MAJOR < 18 or not (data.get("xml_id") or "").startswith(MODULE + "."):
        return data
    values = dict(data["values"])
    if model == "ir.ui.view" and isinstance(values.get("arch"), str):
        values["arch"] = _TREE_TAG.sub(r"<\1list", values["arch"])
    elif model == "ir.actions.act_window" and values.get("view_mode"):
        values["view_mode"] = ",".join(
            "list" if mode == "tree" else mode for mode in values["view_mode"].split(",")
        )
    elif model == "res.groups" and ODOO_MAJOR >= 19:
        if values.get("category_id"):
            values["privilege_id"] = _privilege(env, values.pop("category_id"), values).id
        # the bot user's JSON-2 API keys may last up to three months (Odoo's default: 1 day)
        values.setdefault("api_key_duration", BOT_KEY_DAYS)
    return dict(data, values=values)


def _privilege(env, category_id, values):
    privileges = env["res.groups.privilege"]
    found = privileges.search([("category_id", "=", category_id)], limit=1)
    category = env["ir.module.category"].browse(category_id)
    return found or privileges.create({"name": category.name, "category_id": category_id})
