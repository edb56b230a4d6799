"""Offset pagination: the page every listing answers with, and the rows a page stands for.

A listing takes ``page`` (from 1) and ``page_size`` as query parameters (each service bounds
them), asks its repository for the rows ``**window(page, page_size)`` (its ``limit`` and
``offset``) and answers ``Page[Item](items=..., total=..., page=page, page_size=page_size)``.
"""

from __future__ import annotations

import math
from typing import Generic, TypedDict, TypeVar

import msgspec

T = TypeVar("T")


class Window(TypedDict):
    """The rows one page covers, as a query's ``LIMIT`` and ``OFFSET`` (keyword arguments of
    every repository's page query)."""

    limit: int
    offset: int


def window(page: int, page_size: int) -> Window:
    """The rows of page ``page`` (1-based) when a page holds ``page_size`` rows."""
    return {"limit": page_size, "offset": (page - 1) * page_size}


def pages_for(total: int, page_size: int) -> int:
    """How many pages ``total`` rows fill (at least one: an empty listing is one empty page)."""
    return max(1, math.ceil(total / page_size))


class Page(msgspec.Struct, Generic[T], kw_only=True):
    items: list[T]
    #: Rows in the whole listing, not on this page.
    total: int
    page: int
    page_size: int


class NumberedPage(Page[T], Generic[T], kw_only=True):
    """A page that also says how many pages the listing has (catalog's listings, which the
    storefront pages through by number)."""

    pages: int

    @classmethod
    def of(cls, items: list[T], *, total: int, page: int, page_size: int) -> NumberedPage[T]:
        return cls(
            items=items,
            total=total,
            page=page,
            page_size=page_size,
            pages=pages_for(total, page_size),
        )
