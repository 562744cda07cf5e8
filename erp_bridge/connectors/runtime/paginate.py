"""Pagination strategies behind one two-method interface (dlt's paginators, smaller).

``first(params)`` gives the first page's request; ``next(state, body)`` the following one, or
None after the last page. They read only the answer's body, so a test drives them with dicts.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class PageState:
    params: dict[str, Any] = field(default_factory=dict)
    #: an absolute next URL the target gave (OData nextLink); None: the call's own URL
    url: str | None = None


class Paginator(Protocol):
    def first(self, params: dict[str, Any]) -> PageState: ...

    def next(self, state: PageState, body: Any) -> PageState | None: ...


@dataclass(frozen=True)
class PageNumber:
    """``page=1,2,...`` with a page size; ``has_more(body)`` says whether another page follows
    (Zoho: ``page_context.has_more_page``)."""

    has_more: Callable[[Any], bool]
    page_param: str = "page"
    size_param: str = "per_page"
    size: int = 200

    def first(self, params: dict[str, Any]) -> PageState:
        return PageState({**params, self.page_param: 1, self.size_param: self.size})

    def next(self, state: PageState, body: Any) -> PageState | None:
        if not self.has_more(body):
            return None
        return replace(state, params={**state.params, self.page_param: int(state.params[self.page_param]) + 1})


@dataclass(frozen=True)
class NextLink:
    """OData: follow ``@odata.nextLink`` (V4) or ``odata.nextLink`` (V3) until there is none."""

    fields: tuple[str, ...] = ("@odata.nextLink", "odata.nextLink")
    base_url: str = ""

    def first(self, params: dict[str, Any]) -> PageState:
        return PageState(params)

    def next(self, state: PageState, body: Any) -> PageState | None:
        link = next((body.get(f) for f in self.fields if isinstance(body, dict) and body.get(f)), None)
        if not link:
            return None
        url = link if "://" in link else f"{self.base_url.rstrip('/')}/{link.lstrip('/')}"
        return PageState({}, url)  # the link carries the query (filter, skip token) itself
