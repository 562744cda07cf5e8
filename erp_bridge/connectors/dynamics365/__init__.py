"""Microsoft Dynamics 365 Supply Chain Management, two kinds (docs/connectors/dynamics365.md):

- ``dynamics365`` (finops.py): Finance & Operations OData, the ERP itself: movement journals as
  one ``$batch`` changeset each, on-hand from ``WarehousesOnHandV2``;
- ``dynamics365_iv`` (inventory_visibility.py): the Inventory Visibility service, where the
  merchant has it: on-hand change events de-duplicated by their ``id``, on-hand index queries.

Two kinds rather than one kind with a switch: the APIs share nothing but Azure AD (different
hosts, tokens, payloads and exactly-once mechanisms), and a typed kind makes the schema say which
keys each needs.
"""
