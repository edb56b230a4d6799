"""Every product query: the shopper read path (plain column selects, no ORM objects), search,
and the admin repository."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from advanced_alchemy.repository import SQLAlchemyAsyncRepository
from sqlalchemy import (
    Row,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Text

from catalog.models import Category, Inventory, Product, ProductImage

#: Fuzzy matches kept per query word, and the similarity they need (0..1, Jaccard on trigrams).
FUZZY_PER_WORD = 4
FUZZY_THRESHOLD = 0.3


def _primary_image() -> Any:
    return (
        select(ProductImage.url, ProductImage.alt)
        .where(ProductImage.product_id == Product.id)
        .order_by(ProductImage.is_primary.desc(), ProductImage.position, ProductImage.id)
        .limit(1)
        .lateral("primary_image")
    )


def _summary_columns(image: Any) -> list[Any]:
    return [
        Product.id,
        Product.slug,
        Product.name,
        Product.summary,
        Product.price,
        Product.currency,
        Product.origin,
        Product.roast,
        Product.tasting_notes,
        Category.id.label("category_id"),
        Category.slug.label("category_slug"),
        Category.name.label("category_name"),
        func.coalesce(Inventory.on_hand - Inventory.reserved, 0).label("available"),
        image.c.url.label("image_url"),
        image.c.alt.label("image_alt"),
    ]


def _with_joins(stmt: Select[Any], image: Any) -> Select[Any]:
    return (
        stmt.select_from(Product)
        .outerjoin(Category, Category.id == Product.category_id)
        .outerjoin(Inventory, Inventory.product_id == Product.id)
        .outerjoin(image, true())
    )


_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "newest": (Product.created_at.desc(), Product.id.desc()),
    "price": (Product.price.asc(), Product.id.asc()),
    "price_desc": (Product.price.desc(), Product.id.asc()),
    "name": (func.lower(Product.name).asc(), Product.id.asc()),
}


@dataclass(frozen=True)
class SearchPlan:
    """A search's words, each with the catalog words that look like it (typo tolerance)."""

    words: list[str]
    fuzzy: dict[str, list[str]]

    @property
    def matched_words(self) -> list[str]:
        return list(dict.fromkeys(w for word in self.words for w in self.fuzzy.get(word, [])))


_ENGLISH: Any = literal_column("'english'::regconfig")


def _typed(word: str) -> Any:
    """A typed word, matched as a prefix both stemmed ("coffees" -> coffe:*) and as the very
    lexeme (Postgres may split a lone "5599e84aa9" that it indexed whole inside a name).
    A stop word stays empty, so it constrains nothing."""
    stemmed = func.to_tsquery(_ENGLISH, f"{word}:*")
    exact = cast(f"'{word}':*", TSQUERY)
    return case((func.numnode(stemmed) == 0, stemmed), else_=stemmed.op("||")(exact))


def _group(word: str, alternatives: Sequence[str]) -> Any:
    query = _typed(word)
    for alternative in alternatives:
        query = query.op("||")(func.to_tsquery(_ENGLISH, alternative))
    return query


def _combine(queries: Sequence[Any], operator: str) -> Any:
    combined = queries[0]
    for query in queries[1:]:
        combined = combined.op(operator)(query)
    return combined


class ProductReads:
    """The queries behind the shopper API (run only on a cache miss)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def category_id_by_slug(self, slug: str) -> uuid.UUID | None:
        return await self.session.scalar(
            select(Category.id).where(func.lower(Category.slug) == slug.lower())
        )

    async def listing(
        self, *, category_id: uuid.UUID | None, sort: str, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        image = _primary_image()
        where: list[Any] = [Product.active.is_(True)]
        if category_id is not None:
            where.append(Product.category_id == category_id)
        stmt = (
            _with_joins(select(*_summary_columns(image), func.count().over().label("total")), image)
            .where(*where)
            .order_by(*_ORDERINGS[sort])
            .limit(limit)
            .offset(offset)
        )
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return rows, int(rows[0].total)
        total = await self.session.scalar(select(func.count()).select_from(Product).where(*where))
        return rows, int(total or 0)

    async def detail(
        self, *, slug: str | None = None, product_id: uuid.UUID | None = None
    ) -> tuple[Row[Any] | None, Sequence[Row[Any]]]:
        stmt = (
            select(
                Product.id,
                Product.slug,
                Product.name,
                Product.summary,
                Product.description,
                Product.price,
                Product.currency,
                Product.origin,
                Product.roast,
                Product.process,
                Product.tasting_notes,
                Product.weight_grams,
                Product.updated_at,
                Category.id.label("category_id"),
                Category.slug.label("category_slug"),
                Category.name.label("category_name"),
                func.coalesce(Inventory.on_hand - Inventory.reserved, 0).label("available"),
            )
            .select_from(Product)
            .outerjoin(Category, Category.id == Product.category_id)
            .outerjoin(Inventory, Inventory.product_id == Product.id)
            .where(Product.active.is_(True))
        )
        if product_id is not None:
            stmt = stmt.where(Product.id == product_id)
        else:
            assert slug is not None
            stmt = stmt.where(func.lower(Product.slug) == slug.lower())
        row: Any = (await self.session.execute(stmt)).first()
        if row is None:
            return None, []
        images: Sequence[Any] = (
            await self.session.execute(
                select(
                    ProductImage.id,
                    ProductImage.url,
                    ProductImage.alt,
                    ProductImage.position,
                    ProductImage.is_primary,
                )
                .where(ProductImage.product_id == row.id)
                .order_by(ProductImage.position, ProductImage.id)
            )
        ).all()
        return row, images

    async def fuzzy_words(self, words: Sequence[str]) -> dict[str, list[str]]:
        """For each query word, the catalog words that look like it (typos), best first.

        Postgres finds the candidates (words sharing a trigram, through the GIN index); their
        similarity (Jaccard over trigram sets, as pg_trgm defines it) is computed here, where
        it costs microseconds instead of a SQL function call per candidate.
        """
        if not words:
            return {}
        stmt = text(
            """
            WITH q AS MATERIALIZED (
                SELECT w AS word, catalog.word_trigrams(w) AS trigrams FROM unnest(:words) AS w
            )
            SELECT q.word AS query_word, q.trigrams AS query_trigrams,
                   sw.word AS candidate, sw.trigrams AS trigrams
            FROM q JOIN catalog.search_words AS sw ON sw.trigrams && q.trigrams
            """
        ).bindparams(bindparam("words", type_=ARRAY(Text)))
        scored: dict[str, list[tuple[float, str]]] = {}
        for row in await self.session.execute(stmt, {"words": list(words)}):
            if row.candidate == row.query_word:
                continue
            mine, theirs = set(row.query_trigrams), set(row.trigrams)
            similarity = len(mine & theirs) / len(mine | theirs)
            if similarity >= FUZZY_THRESHOLD:
                scored.setdefault(row.query_word, []).append((-similarity, row.candidate))
        return {
            word: [w for _, w in sorted(found)[:FUZZY_PER_WORD]] for word, found in scored.items()
        }

    async def search(
        self, plan: SearchPlan, *, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        groups = [_group(word, plan.fuzzy.get(word, [])) for word in plan.words]
        exact = _combine([_typed(word) for word in plan.words], "||")
        rows, total = await self._search(_combine(groups, "&&"), exact, limit, offset)
        if total == 0 and len(groups) > 1:
            # No product has every word: fall back to products with any of them, ranked.
            rows, total = await self._search(_combine(groups, "||"), exact, limit, offset)
        return rows, total

    async def _search(
        self, query: Any, exact_query: Any, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        image = _primary_image()
        # Words as typed rank above the typo-corrected alternatives they were widened with.
        rank = func.ts_rank_cd(Product.search_vector, query) + 2 * func.ts_rank_cd(
            Product.search_vector, exact_query
        )
        where = and_(Product.active.is_(True), Product.search_vector.op("@@")(query))
        stmt = (
            _with_joins(
                select(
                    *_summary_columns(image), rank.label("rank"), func.count().over().label("total")
                ),
                image,
            )
            .where(where)
            .order_by(rank.desc(), func.lower(Product.name), Product.id)
            .limit(limit)
            .offset(offset)
        )
        rows = (await self.session.execute(stmt)).all()
        if rows:
            return rows, int(rows[0].total)
        if offset == 0:
            return rows, 0
        total = await self.session.scalar(select(func.count()).select_from(Product).where(where))
        return rows, int(total or 0)


class ProductRepository(SQLAlchemyAsyncRepository[Product]):
    model_type = Product

    async def slug_taken(self, slug: str, *, excluding: uuid.UUID | None = None) -> bool:
        stmt = select(Product.id).where(func.lower(Product.slug) == slug.lower())
        if excluding is not None:
            stmt = stmt.where(Product.id != excluding)
        return (await self.session.scalar(stmt.limit(1))) is not None

    async def slugs_like(self, base: str) -> set[str]:
        rows = await self.session.scalars(
            select(func.lower(Product.slug)).where(
                func.lower(Product.slug).like(base.lower() + "%")
            )
        )
        return set(rows)

    async def admin_page(
        self,
        *,
        limit: int,
        offset: int,
        category_id: uuid.UUID | None,
        status: str,
        q: str | None,
    ) -> tuple[Sequence[Product], int]:
        conditions: list[Any] = []
        if category_id is not None:
            conditions.append(Product.category_id == category_id)
        if status == "active":
            conditions.append(Product.active.is_(True))
        elif status == "archived":
            conditions.append(Product.active.is_(False))
        if q:
            pattern = (
                "%" + q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            )
            conditions.append(
                func.lower(Product.name).like(pattern, escape="\\")
                | func.lower(Product.slug).like(pattern, escape="\\")
            )
        total = await self.session.scalar(
            select(func.count()).select_from(Product).where(*conditions)
        )
        products = await self.session.scalars(
            select(Product)
            .where(*conditions)
            .order_by(Product.created_at.desc(), Product.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return list(products), int(total or 0)

    async def set_active(self, product_id: uuid.UUID, *, active: bool) -> None:
        await self.session.execute(
            update(Product)
            .where(Product.id == product_id)
            .values(active=active, archived_at=None if active else func.now())
        )


class ImageRepository(SQLAlchemyAsyncRepository[ProductImage]):
    model_type = ProductImage

    async def of_product(self, product_id: uuid.UUID) -> list[ProductImage]:
        rows = await self.session.scalars(
            select(ProductImage)
            .where(ProductImage.product_id == product_id)
            .order_by(ProductImage.position, ProductImage.id)
        )
        return list(rows)

    async def of_products(
        self, product_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[ProductImage]]:
        found: dict[uuid.UUID, list[ProductImage]] = {pid: [] for pid in product_ids}
        if not product_ids:
            return found
        rows = await self.session.scalars(
            select(ProductImage)
            .where(ProductImage.product_id.in_(product_ids))
            .order_by(ProductImage.product_id, ProductImage.position, ProductImage.id)
        )
        for image in rows:
            found[image.product_id].append(image)
        return found

    async def clear_primary(self, product_id: uuid.UUID) -> None:
        await self.session.execute(
            update(ProductImage)
            .where(ProductImage.product_id == product_id, ProductImage.is_primary.is_(True))
            .values(is_primary=False)
        )
        # The partial unique index is checked per statement: flush the change first.
        await self.session.flush()
