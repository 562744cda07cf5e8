"""Magento's ``searchCriteria`` query parameters, named as the admin schema names them
(``searchCriteria[filterGroups][0][filters][0][conditionType]``; Magento reads the snake_case spelling
of the docs, ``filter_groups`` / ``condition_type``, the same way).

Filters in one filter group are OR'ed, filter groups are AND'ed. A second sort order on
``entity_id`` keeps the paging stable when several orders share one ``updated_at`` second.
"""
from __future__ import annotations

FILTER = "searchCriteria[filterGroups][0][filters][0]"


def criteria(field: str, value: str, condition: str, *, page: int, size: int,
             sort: str | None = None) -> dict[str, str]:
    params = {f"{FILTER}[field]": field, f"{FILTER}[value]": value, f"{FILTER}[conditionType]": condition,
              "searchCriteria[pageSize]": str(size), "searchCriteria[currentPage]": str(page)}
    if sort:
        params.update({"searchCriteria[sortOrders][0][field]": sort, "searchCriteria[sortOrders][0][direction]": "ASC",
                       "searchCriteria[sortOrders][1][field]": "entity_id",
                       "searchCriteria[sortOrders][1][direction]": "ASC"})
    return params
