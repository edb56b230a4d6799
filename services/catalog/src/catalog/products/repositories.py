"""Every product query: the shopper read path (plain column selects, no ORM objects), search,
and the admin repository."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
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
    null,
    or_,
    select,
    text,
    true,
    union,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSQUERY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.types import Float, Integer, Text

from catalog.inventory.repositories import product_available
from catalog.models import Category, Product, ProductCount, ProductImage

#: Fuzzy matches kept per query word, and the similarity they need (0..1, Jaccard on trigrams).
FUZZY_PER_WORD = 4
FUZZY_THRESHOLD = 0.3
#: Matches a search ranks at most (twice: among name matches, and, when fewer than that many
#: names match, among all): a word most products have (a category, "coffee") would otherwise
#: rank the whole catalog on every such query. The total says how many were ranked, which is
#: what can be paged through.
SEARCH_CANDIDATES = 200
#: Products (the table's first, in its physical order) searched first for a word most products
#: have: when at least ``SEARCH_CANDIDATES`` of them match, they are a pool, and the GIN index
#: is not read. A count of rows, not of pages: how many products the table's first pages hold
#: depends on its history (after ``bench/grow.py`` the first 64 pages held 23 products).
PROBE_ROWS = 600
#: Products tested first, to tell whether probing ``PROBE_ROWS`` is worth it.
PROBE_SAMPLE = 50
#: Added to the rank of the product one of whose variants has the SKU searched for: above any
#: text rank.
SKU_RANK = 1_000_000.0
#: A word of a several-word query is left out of the GIN index condition of the pool of
#: products with every word when its prefix matches more than this many times as many
#: products as the query's rarest word (estimated, ``index_mask``); the rows the index then
#: yields are tested for the whole query. Gathering a prefix's postings costs ~0.12 us each
#: (``wash:*``, 20,000 at 50k: ~2.5 ms), testing a row on the heap ~1.3 us, and the pool stops
#: at ``SEARCH_CANDIDATES`` rows that pass.
NARROW_RATIO = 4


def _primary_image(nth: int = 0, name: str = "primary_image") -> Any:
    return (
        select(ProductImage.url, ProductImage.alt)
        .where(ProductImage.product_id == Product.id)
        .order_by(ProductImage.is_primary.desc(), ProductImage.position, ProductImage.id)
        .offset(nth)
        .limit(1)
        .lateral(name)
    )


def _hover_image() -> Any:
    """The picture after the primary one: a listing shows it when the pointer rests on a card."""
    return _primary_image(1, "hover_image")


_HOVER = _hover_image()


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
        product_available().label("available"),
        image.c.url.label("image_url"),
        image.c.alt.label("image_alt"),
        _HOVER.c.url.label("hover_url"),
        _HOVER.c.alt.label("hover_alt"),
    ]


def _with_joins(stmt: Select[Any], image: Any) -> Select[Any]:
    return (
        stmt.select_from(Product)
        .outerjoin(Category, Category.id == Product.category_id)
        .outerjoin(image, true())
        .outerjoin(_HOVER, true())
    )


_ORDERINGS: dict[str, tuple[Any, ...]] = {
    "newest": (Product.created_at.desc(), Product.id.desc()),
    "price": (Product.price.asc(), Product.id.asc()),
    "price_desc": (Product.price.desc(), Product.id.asc()),
    "name": (func.lower(Product.name).asc(), Product.id.asc()),
}


#: ``product_counts``' scope for the whole catalog.
EVERY_CATEGORY = uuid.UUID(int=0)


@functools.cache
def _listing_statements(sort: str, *, by_category: bool) -> tuple[Select[Any], Select[Any]]:
    """A listing page's query and its total's, built once per shape (values are bound at
    execution), so a request neither rebuilds nor re-keys a statement of this size."""
    total = func.coalesce(
        select(ProductCount.active)
        .where(ProductCount.scope == bindparam("scope"))
        .scalar_subquery(),
        0,
    )
    offset = bindparam("offset", type_=Integer)
    limit = bindparam("limit", type_=Integer)
    # Plain ``active`` (not ``IS TRUE``): the listing indexes are partial on it. The offset
    # tests are one-time filters: a page past the last reads no index at all, and a page in
    # the second half of the listing is read from its end (the same index backwards), so no
    # page skips more than half the listing.
    where: list[Any] = [Product.active, offset < total]
    if by_category:
        where.append(Product.category_id == bindparam("category_id"))
    from_start = (
        select(Product.id)
        .where(*where, offset * 2 <= total)
        .order_by(*_ORDERINGS[sort])
        .limit(limit)
        .offset(offset)
    )
    from_end = (
        select(Product.id)
        .where(*where, offset * 2 > total)
        .order_by(*_REVERSED[sort])
        # Evaluated even when the branch's filter is false: never negative.
        .limit(func.greatest(func.least(limit, total - offset), 0))
        .offset(func.greatest(total - offset - limit, 0))
    )
    # Only one branch runs; the outer limit tells the planner how few ids come out (else it
    # guesses thousands from the second branch's computed limit and hash-joins whole tables).
    either = union_all(from_start, from_end).subquery("either")
    ids = select(either.c.id).limit(limit).subquery("page")
    image = _primary_image()
    page = (
        _with_joins(select(*_summary_columns(image), total.label("total")), image)
        .join(ids, ids.c.id == Product.id)
        .order_by(*_ORDERINGS[sort])
    )
    return page, select(total)


#: Each listing order read backwards (the same index, scanned from its end).
_REVERSED: dict[str, tuple[Any, ...]] = {
    "newest": (Product.created_at.asc(), Product.id.asc()),
    "price": (Product.price.desc(), Product.id.desc()),
    "price_desc": (Product.price.asc(), Product.id.desc()),
    "name": (func.lower(Product.name).desc(), Product.id.desc()),
}


@dataclass(frozen=True)
class SearchPlan:
    """A search's words, each with the catalog words that look like it (typo tolerance)."""

    words: list[str]
    fuzzy: dict[str, list[str]]
    #: The query as a variant's SKU (lowercased), when it can be one; else empty.
    sku: str = ""
    #: Per word, the alternatives the query is widened with: ``fuzzy``'s less those the typed
    #: word's own prefix already matches (``TypoWords.widen``); ``None``: all of them.
    widen: dict[str, list[str]] | None = None
    #: Per word, the estimated share of products whose vector its prefix matches (from the
    #: column's statistics, ``TypoWords.frequency``); a word without one is never left out of
    #: the index condition (``index_mask``).
    frequency: dict[str, float] | None = None

    @property
    def matched_words(self) -> list[str]:
        return list(dict.fromkeys(w for word in self.words for w in self.fuzzy.get(word, [])))

    def alternatives(self, word: str) -> list[str]:
        return (self.fuzzy if self.widen is None else self.widen).get(word, [])


@dataclass(frozen=True)
class TypoWords:
    """Per query word, the catalog words that look like it, best first (``found``), and those
    of them the query is widened with (``widen``): not the ones the typed word's prefix
    already matches ("ethiopian" for "ethiopia", "yirgacheffe" for "yirg", "berries" for
    "berry", stemmed "berri"). Such a one matches no row and no position the prefix does not,
    so the matches and every rank are the same without it; with it, each GIN scan gathered
    one more entry's matches and ``ts_rank_cd`` walked a larger query (and a query left with
    its typed words only is ranked by one call)."""

    found: dict[str, list[str]]
    widen: dict[str, list[str]]
    #: Per word, the estimated share of products its prefix matches (``SearchPlan.frequency``).
    frequency: dict[str, float] = field(default_factory=dict)


_ENGLISH: Any = literal_column("'english'::regconfig")
#: A product name's words, as ``ix_products_search_name`` indexes them (the same expression).
NAME_VECTOR: Any = func.to_tsvector(_ENGLISH, Product.name)


#: Bound values of the same query restricted to weight A (the name's words in
#: ``search_vector``) carry this suffix: a name match tested on the stored vector.
_NAME = "n"


def index_mask(plan: SearchPlan) -> int:
    """Which words (bit ``i``: word ``i``) the GIN index condition of the pool of products
    with every word keeps: all but those whose estimated share of products is over
    ``NARROW_RATIO`` times the rarest's. The rarest is taken among words without typo
    alternatives (an alternative's share is not estimated, so a word with some has no upper
    bound); a word without an estimate stays. The answer does not depend on it: the rows the
    narrower condition yields are tested for the whole query, in the same (the heap's) order;
    only what the index gathers does ("ethiopia yirgacheffe washed" at 50k: the postings of
    ``yirgacheff:*``, 2,500, instead of those of the three prefixes, 32,500)."""
    every = (1 << len(plan.words)) - 1
    if len(plan.words) < 2 or not plan.frequency:
        return every
    known = {
        i: share
        for i, word in enumerate(plan.words)
        if (share := plan.frequency.get(word)) is not None
    }
    bounded = [(share, i) for i, share in known.items() if not plan.alternatives(plan.words[i])]
    if not bounded:
        return every
    rarest, kept = min(bounded)
    mask = every
    for i, share in known.items():
        if i != kept and share > NARROW_RATIO * rarest:
            mask &= ~(1 << i)
    return mask


def _typed(i: int, suffix: str = "") -> Any:
    """Typed word ``i``, matched as a prefix both stemmed ("coffees" -> coffe:*, bound as
    ``p<i>``) and as the very lexeme (``e<i>``: Postgres may split a lone "5599e84aa9" that it
    indexed whole inside a name). A stop word stays empty, so it constrains nothing.

    When the stem is the word itself ("kenya", "ethiopia": most words) the two are one: the
    same prefix twice matches the same rows and ranks them alike, but a GIN index scan
    gathered its matches twice (the empty "kenya berry" AND: 1.3 -> 0.6 ms) and
    ``ts_rank_cd`` walks a query twice its size."""
    stemmed = func.to_tsquery(_ENGLISH, bindparam(f"p{i}{suffix}", type_=Text))
    exact = cast(bindparam(f"e{i}{suffix}", type_=Text), TSQUERY)
    return case(
        (or_(func.numnode(stemmed) == 0, stemmed == exact), stemmed),
        else_=stemmed.op("||")(exact),
    )


def _group(i: int, alternatives: int, suffix: str = "") -> Any:
    """Word ``i`` or any of its typo alternatives (bound as ``a<i>_<j>``)."""
    query = _typed(i, suffix)
    for j in range(alternatives):
        query = query.op("||")(
            func.to_tsquery(_ENGLISH, bindparam(f"a{i}_{j}{suffix}", type_=Text))
        )
    return query


def _search_values(plan: SearchPlan, limit: int, offset: int) -> dict[str, Any]:
    # A SKU is its own lexeme, "#" and the SKU (see the search_variants migration); the SKU
    # pattern admits no quote or backslash, so quoting it is enough.
    values: dict[str, Any] = {
        "limit": limit,
        "offset": offset,
        "sku": f"'#{plan.sku}'" if plan.sku else "",
        "keep": index_mask(plan),
    }
    for suffix, weight in (("", ""), (_NAME, "A")):
        for i, word in enumerate(plan.words):
            values[f"p{i}{suffix}"] = f"{word}:*{weight}"
            values[f"e{i}{suffix}"] = f"'{word}':*{weight}"
            for j, alternative in enumerate(plan.alternatives(word)):
                values[f"a{i}_{j}{suffix}"] = f"{alternative}:{weight}" if weight else alternative
    return values


def _probe(query: Any, name_query: Any, wanted: Any, name: str) -> Any:
    """The matches among the table's first ``PROBE_ROWS`` products (physical order, which its
    materialized rows keep), each flagged ``named`` when its name matches (``name_query``, the
    query restricted to weight A, the name's in ``search_vector``); one scan serves both pools.

    A bitmap index scan cannot stop early: for a word most products have it gathered every
    match ("lot": 49,980 entries, 9.5 ms at 50k; "coffee": 27,500, 8.7 ms) to keep 200. The
    probe finds the same first matches (both read the heap in its order) in 0.3-0.5 ms. It
    runs only when the first ``PROBE_SAMPLE`` products show a word that common (a one-time
    filter): testing ``PROBE_ROWS`` products for a rare word cost it up to 1 ms for nothing,
    the sample costs it ~0.1 ms. The scans must start at the table's first page:
    ``synchronize_seqscans`` is off in the search's transaction (``_SEARCH_SETTINGS``), else
    each may start where another scan of the table is. ``wanted``: a condition without which
    neither the sample nor the probe is read (a one-time filter, tested first)."""
    sample = select(Product.active, Product.search_vector).limit(PROBE_SAMPLE).subquery("sample")
    sampled = (
        select(func.count())
        .select_from(sample)
        .where(sample.c.active, sample.c.search_vector.op("@@")(query))
        .scalar_subquery()
    )
    # Common enough that PROBE_ROWS products likely hold SEARCH_CANDIDATES matches.
    common = sampled * PROBE_ROWS >= PROBE_SAMPLE * SEARCH_CANDIDATES
    head = (
        select(Product.id, Product.active, Product.search_vector).limit(PROBE_ROWS).subquery("head")
    )
    return (
        select(head.c.id, head.c.search_vector.op("@@")(name_query).label("named"))
        .where(wanted, common, head.c.active, head.c.search_vector.op("@@")(query))
        .cte(name)
        .prefix_with("MATERIALIZED")
    )


def _first_matches(
    vector: Any,
    query: Any,
    *,
    columns: Sequence[Any],
    probed: Any,
    covered: Any,
    wanted: Any,
    narrowed: tuple[Any, Any] | None = None,
) -> Any:
    """The first ``SEARCH_CANDIDATES`` active products (in the table's order) whose ``vector``
    matches, as ``columns`` (the id and what ranks it): the probe's (``probed``, a select of
    ids) when it ``covered`` that many, else through the GIN index of ``vector``, ranked on
    the heap row the index led to (not read again by id: 200 lookups of ``pk_products``, 800
    buffers). ``wanted``: a condition without which neither is read (a one-time filter).
    ``narrowed``: the query the index is searched with (some of ``query``'s words, which every
    row matching ``query`` matches) and whether it is narrower than ``query`` (a one-time
    test); its rows are then tested for ``query`` by a function the planner cannot turn into
    an index condition (``ts_match_vq`` is what ``@@`` calls), so the index gathers the
    postings of those words only."""
    matching = [vector.op("@@")(query)]
    if narrowed is not None:
        index_query, narrower = narrowed
        matching = [
            vector.op("@@")(index_query),
            or_(~narrower, func.ts_match_vq(vector, query)),
        ]
    indexed = select(*columns).where(Product.active, *matching).limit(SEARCH_CANDIDATES)
    ids = probed.subquery()
    from_probe = select(*columns).join(ids, ids.c.id == Product.id)
    return union_all(
        from_probe.where(and_(wanted, covered)),
        select(indexed.subquery()).where(and_(wanted, ~covered)),
    )


def _combine(queries: Sequence[Any], operator: str) -> Any:
    combined = queries[0]
    for query in queries[1:]:
        combined = combined.op(operator)(query)
    return combined


#: The typo statement: per query word, the catalog words most like it; for a query of several
#: words also each word's estimated share of products (``_ESTIMATES``, ``_ESTIMATE_ROWS``).
_TYPO_SQL = """
        WITH q AS MATERIALIZED (
            SELECT word, trigrams, array_to_tsvector(trigrams) AS lexemes
            FROM (
                SELECT w AS word, catalog.word_trigrams(w) AS trigrams FROM unnest(:words) AS w
            ) AS typed
        ),
{estimates}        scored AS (
            SELECT query_word, candidate,
                   shared::float8 / (query_size + candidate_size - shared) AS similarity
            FROM (
                SELECT q.word AS query_word, sw.word AS candidate,
                       length(q.lexemes) AS query_size,
                       cardinality(sw.trigrams) AS candidate_size,
                       length(q.lexemes) - length(ts_delete(q.lexemes, sw.trigrams)) AS shared
                FROM q
                JOIN catalog.search_words AS sw
                  ON sw.trigrams && q.trigrams
                 AND sw.word <> q.word
                 AND cardinality(sw.trigrams)
                     BETWEEN cardinality(q.trigrams) * :threshold
                         AND cardinality(q.trigrams) / :threshold
            ) AS pairs
        ),
        ranked AS (
            SELECT query_word, candidate,
                   row_number() OVER (
                       PARTITION BY query_word ORDER BY similarity DESC, candidate
                   ) AS place
            FROM scored
            WHERE similarity >= :threshold
        )
        SELECT query_word, candidate,{columns}
               -- As the search's query has the typed word (``_typed``): stemmed and as
               -- typed, each a prefix, or nothing for a stop word.
               numnode(to_tsquery('english', query_word || ':*')) > 0
               AND numnode(to_tsquery('english', candidate)) = 1
               AND to_tsvector('english', candidate) @@ (
                   to_tsquery('english', query_word || ':*')
                   || (quote_literal(query_word) || ':*')::tsquery
               ) AS covered
        FROM ranked WHERE place <= :per_word
{estimate_rows}        ORDER BY query_word, place
"""
#: What ``_TYPO_SQL`` adds for a query of several words (``_TYPO_ESTIMATES``).
_ESTIMATES = """
        -- Per word, the share of products whose vector its prefix matches (the last rows),
        -- estimated from the column's statistics: what ANALYZE keeps of its most common
        -- lexemes; a lexeme not among them, half the least common's share, as Postgres' own
        -- estimate has it. None for a word that is not one lexeme, or before the table is
        -- analyzed.
        stem AS MATERIALIZED (
            SELECT word, lexemes[1] AS lexeme
            FROM (
                SELECT word, tsvector_to_array(to_tsvector('english', word)) AS lexemes
                FROM q
            ) AS stemmed
            WHERE cardinality(lexemes) = 1
        ),
        stats AS MATERIALIZED (
            SELECT lexemes, shares, shares[cardinality(lexemes) + 1] AS least
            FROM (
                SELECT most_common_elems::text::text[] AS lexemes,
                       most_common_elem_freqs AS shares
                FROM pg_catalog.pg_stats
                WHERE schemaname = 'catalog' AND tablename = 'products'
                  AND attname = 'search_vector' AND most_common_elems IS NOT NULL
                LIMIT 1
            ) AS analyzed
        ),
"""
_ESTIMATE_ROWS = """
        UNION ALL
        SELECT stem.word, NULL, 0, (
                   SELECT greatest(coalesce(sum(m.share), 0), stats.least / 2)
                   FROM unnest(stats.lexemes, stats.shares) AS m (lexeme, share)
                   WHERE starts_with(m.lexeme, stem.lexeme) OR starts_with(m.lexeme, stem.word)
               ), NULL
        FROM stem, stats
"""


def _typo_statement(*, estimates: bool) -> Any:
    sql = _TYPO_SQL.format(
        estimates=_ESTIMATES.strip("\n") + "\n" if estimates else "",
        columns=" place, NULL::float8 AS frequency," if estimates else "",
        estimate_rows=_ESTIMATE_ROWS.strip("\n") + "\n" if estimates else "",
    )
    return text(sql).bindparams(
        bindparam("words", type_=ARRAY(Text)),
        bindparam("threshold", type_=Float),
        bindparam("per_word", type_=Integer),
    )


#: ``ProductReads.typo_words``' statements, built once: for one word, and for several, which
#: also estimates each word's share of products (``index_mask``; for one word there is nothing
#: to choose, and the estimate cost it 0.1-0.2 ms of the backend's CPU).
_TYPO_WORDS = _typo_statement(estimates=False)
_TYPO_ESTIMATES = _typo_statement(estimates=True)


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
        """A page of a listing and the listing's total, at a cost that does not grow with the
        catalog: the total is read from ``product_counts``; the page's ids come off the index
        of its order (an index-only scan, deep pages included, and no index read at all past
        the last product); only those ids are joined to their category, stock and picture."""
        page, total = _listing_statements(sort, by_category=category_id is not None)
        values = {
            "scope": EVERY_CATEGORY if category_id is None else category_id,
            "category_id": category_id,
            "limit": limit,
            "offset": offset,
        }
        rows = (await self.session.execute(page, values)).all()
        if rows:
            return rows, int(rows[0].total)
        return rows, int(await self.session.scalar(total, values) or 0)

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
                Product.options,
                Product.updated_at,
                Category.id.label("category_id"),
                Category.slug.label("category_slug"),
                Category.name.label("category_name"),
                product_available().label("available"),
            )
            .select_from(Product)
            .outerjoin(Category, Category.id == Product.category_id)
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

    @contextlib.asynccontextmanager
    async def generic_plans(self) -> AsyncIterator[None]:
        """Within it, this session's statements run as generic plans (``typo_words`` and
        ``search``), with the search's settings (``_SEARCH_SETTINGS``). ``SET LOCAL`` lasts
        until the transaction's end, and the shopper read path runs in autocommit, where each
        statement is its own transaction: there a ``SET LOCAL`` changed nothing, so a read-only
        transaction is opened for the block, with its ``BEGIN`` and the settings sent in one
        round trip.

        On the search pool's connections, which carry the settings for their whole life, it
        sends nothing: a search there is its two statements, in autocommit (without the
        ``BEGIN`` and ``COMMIT`` round trips, through Caddy at 16 searches at once at 50k: the
        catalog's CPU per search 1.9 -> 1.55 ms, Postgres' 4.0 -> 3.75 ms, medians)."""
        connection = await self.session.connection()
        if connection.sync_engine.get_execution_options().get(SEARCH_SETTINGS_OPTION):
            yield
            return
        pooled = await connection.get_raw_connection()
        if not getattr(pooled.dbapi_connection, "autocommit", False):
            for setting in _SEARCH_SETTINGS:
                await self.session.execute(text(setting))
            yield
            return
        driver: Any = pooled.driver_connection
        # No arguments: the simple query protocol, which takes several statements at once.
        await driver.execute("; ".join(("BEGIN READ ONLY", *_SEARCH_SETTINGS)))
        try:
            yield
        except BaseException:
            # A connection that cannot even roll back is broken, and the pool discards it.
            with contextlib.suppress(Exception):
                await driver.execute("ROLLBACK")
            raise
        await driver.execute("COMMIT")

    async def fuzzy_words(self, words: Sequence[str]) -> dict[str, list[str]]:
        """For each query word, the catalog words that look like it (typos), best first."""
        return (await self.typo_words(words)).found

    async def typo_words(self, words: Sequence[str]) -> TypoWords:
        """For each query word, the catalog words that look like it (typos), best first, and
        whether the word's own prefix already matches each (``TypoWords``).

        Candidates share a trigram with the word (through the GIN index); their similarity is
        the Jaccard index of the two trigram sets, as pg_trgm defines it. Only the best few a
        word keeps leave the database, however large the lexicon has grown: a word whose size
        alone rules the threshold out is not even compared. The shared trigrams are counted by
        one C function per candidate (the word's trigrams as a tsvector, less the candidate's:
        ``ts_delete``), not by a subquery per candidate, which cost 4 times as much.
        """
        if not words:
            return TypoWords({}, {})
        found: dict[str, list[str]] = {}
        widen: dict[str, list[str]] = {}
        parameters = {
            "words": list(words),
            "threshold": FUZZY_THRESHOLD,
            "per_word": FUZZY_PER_WORD,
        }
        # As SQL compiled once, past SQLAlchemy's execute (see ``ProductReads.search``).
        connection = await self.session.connection()
        typos = _compiled(_TYPO_ESTIMATES if len(words) > 1 else _TYPO_WORDS, connection.dialect)
        frequency: dict[str, float] = {}
        for row in await connection.exec_driver_sql(typos.sql, typos.arguments(parameters)):
            if row.candidate is None:
                frequency[row.query_word] = row.frequency
                continue
            found.setdefault(row.query_word, []).append(row.candidate)
            if not row.covered:
                widen.setdefault(row.query_word, []).append(row.candidate)
        return TypoWords(found, widen, frequency)

    async def search(
        self, plan: SearchPlan, *, limit: int, offset: int
    ) -> tuple[Sequence[Row[Any]], int]:
        shape = tuple(len(plan.alternatives(word)) for word in plan.words)
        values = _search_values(plan, limit, offset)
        # On the session's connection, as SQL compiled once per shape (these statements load
        # no objects and have no result types to convert): SQLAlchemy's execution walks a
        # statement this size for its cache key on every call, 0.8-2.4 ms of the catalog's CPU
        # per search (6.7 ms for three words), and the ORM's another 0.3 ms.
        connection = await self.session.connection()
        page, counted = _compiled_search(shape, connection.dialect)
        rows = (await connection.exec_driver_sql(page.sql, page.arguments(values))).all()
        if rows:
            return rows, int(rows[0].total)
        if offset == 0:
            return rows, 0
        found = await connection.exec_driver_sql(counted.sql, counted.arguments(values))
        return rows, int(found.scalar() or 0)


#: A search statement is planned once per connection, as Postgres plans it for the values it
#: has no use for (it cannot see the words inside the InitPlans, and the pools' plan does not
#: depend on them). Left to itself it plans the first 5 executions of each statement on each
#: connection for their values (4-6 ms of planning at 50k for a 2-10 ms execution), and with
#: a statement per query shape and a pool of connections most searches were such first ones.
#: And the probe's scan of the table's first products (``_probe``) starts at its first page:
#: Postgres otherwise starts a scan of a table larger than a quarter of ``shared_buffers``
#: where another scan of it is, and the probe would test other products on each search.
#: The search pool's connections carry them from their start (``SEARCH_SETTINGS_OPTION``);
#: on any other connection ``ProductReads.generic_plans`` sets them for the search's transaction.
SEARCH_SETTINGS = {"plan_cache_mode": "force_generic_plan", "synchronize_seqscans": "off"}
_SEARCH_SETTINGS = tuple(f"SET LOCAL {name} = {value}" for name, value in SEARCH_SETTINGS.items())
#: The execution option of an engine whose connections were opened with ``SEARCH_SETTINGS``
#: (``catalog.app``'s search pool).
SEARCH_SETTINGS_OPTION = "ember_search_settings"


def _matches(
    shape: tuple[int, ...],
    operator: str,
    *,
    exact_query: Any,
    sku_match: Any,
    sku: Any,
    wanted: Any,
) -> tuple[list[Any], Any]:
    """The pools of a query whose words are joined by ``operator`` (``&&``: every word, and the
    product selling the SKU typed; ``||``: any word), each a select of (id, rank, lower(name)),
    and the count of its matches (the total of a page past the ranked ones). ``wanted``: a
    condition without which no pool is read (a one-time filter)."""
    suffix = "" if operator == "&&" else "_any"
    # Each query is built once per execution (an InitPlan), not once per row it is tested on or
    # ranks: the statement runs as a generic plan, where ``to_tsquery`` of a bound value is no
    # constant, and would otherwise be parsed and stemmed again for every candidate row.
    query = select(
        _combine([_group(i, alternatives) for i, alternatives in enumerate(shape)], operator)
    ).scalar_subquery()
    name_query = select(
        _combine([_group(i, n, _NAME) for i, n in enumerate(shape)], operator)
    ).scalar_subquery()
    # Words as typed rank above the typo-corrected alternatives they were widened with; the
    # product whose variant has the very SKU typed ranks above all. A query without
    # alternatives (a word the lexicon has nothing like) is its words as typed: ranked once,
    # by the same sum (each term a float4 in a float8: a + 2a and 3a are both exact).
    same = select(query == exact_query).scalar_subquery()
    text_rank = func.ts_rank_cd(Product.search_vector, query)
    rank = case(
        (same, 3 * text_rank),
        else_=text_rank + 2 * func.ts_rank_cd(Product.search_vector, exact_query),
    ) + case((sku_match, SKU_RANK), else_=0)
    # Candidates: the first matches the index yields, and first those whose name matches
    # (their own index), so a broad query still ranks the products named after it.
    # What each pool yields: the product and its rank, computed where its row is read.
    ranked = (Product.id, rank.label("rank"), func.lower(Product.name).label("sort_name"))
    probe = _probe(query, name_query, wanted, f"probe{suffix}")
    probe_named = select(func.count()).select_from(probe).where(probe.c.named).scalar_subquery()
    by_name = (
        _first_matches(
            NAME_VECTOR,
            query,
            columns=ranked,
            probed=select(probe.c.id).where(probe.c.named).limit(SEARCH_CANDIDATES),
            covered=probe_named >= SEARCH_CANDIDATES,
            wanted=wanted,
        )
        .cte(f"by_name{suffix}")
        .prefix_with("MATERIALIZED")
    )
    # Other matches only when fewer than SEARCH_CANDIDATES products are named after the
    # query: when that many are, they fill the pages that can be reached and rank above the
    # rest, whose pool was the costliest read of such a query (a bitmap of every product
    # with the word anywhere, 7,500 for "ethiopia" at 50k) and half of what was ranked.
    named_few = select(func.count()).select_from(by_name).scalar_subquery() < SEARCH_CANDIDATES
    probe_all = select(func.count()).select_from(probe).scalar_subquery()
    narrowed = None
    if operator == "&&" and len(shape) > 1:
        # The pool of products with every word, through ``ix_products_search_vector``: the
        # index searched for the words ``keep`` names (``index_mask``), its rows tested for all
        # of them. Not the name pool: its index is on an expression, which a test of a row
        # computes again (``to_tsvector`` of the name), and it is small.
        keep = bindparam("keep", type_=Integer)
        empty: Any = literal_column("''::tsquery")
        index_query = select(
            _combine(
                [
                    case((keep.op("&")(1 << i) != 0, _group(i, n)), else_=empty)
                    for i, n in enumerate(shape)
                ],
                "&&",
            )
        ).scalar_subquery()
        narrowed = (index_query, select(keep != (1 << len(shape)) - 1).scalar_subquery())
    anywhere = _first_matches(
        Product.search_vector,
        query,
        columns=ranked,
        probed=select(probe.c.id).limit(SEARCH_CANDIDATES),
        covered=probe_all >= SEARCH_CANDIDATES,
        wanted=and_(wanted, named_few),
        narrowed=narrowed,
    )
    pools = [select(by_name), anywhere]
    if operator == "&&":
        # A SKU's lexeme is in one product's vector (SKUs are unique): one GIN lookup, and
        # none at all when the query cannot be a SKU.
        pools.append(select(*ranked).where(sku != "", Product.active, sku_match).limit(1))
    matches = (
        select(Product.id)
        .where(Product.active, Product.search_vector.op("@@")(query))
        .limit(SEARCH_CANDIDATES)
        .subquery(f"matches{suffix}")
    )
    return pools, select(func.count()).select_from(matches).scalar_subquery()


@dataclass(frozen=True)
class _Compiled:
    """A statement as SQL for the driver, and the order of its positional parameters; those
    the statement holds itself (its constants) already filled in."""

    sql: str
    names: tuple[str, ...]
    fixed: dict[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Any) -> _Compiled:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        fixed = {
            name: bind.value
            for name, bind in compiled.binds.items()
            if not bind.required and bind.callable is None
        }
        return cls(compiled.string, tuple(compiled.positiontup or ()), fixed)

    def arguments(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(values[name] if name in values else self.fixed[name] for name in self.names)


def _compiled_search(shape: tuple[int, ...], dialect: Any) -> tuple[_Compiled, _Compiled]:
    """``_search_statements`` compiled for ``dialect``, once per statement."""
    page, counted = _search_statements(shape)
    return _compiled(page, dialect), _compiled(counted, dialect)


#: Keyed by the statement itself: a statement built again (``_search_statements``' cache
#: cleared) is compiled again.
@functools.lru_cache(maxsize=512)
def _compiled(statement: ClauseElement, dialect: Any) -> _Compiled:
    return _Compiled.of(statement, dialect)


@functools.lru_cache(maxsize=256)
def _search_statements(shape: tuple[int, ...]) -> tuple[Select[Any], Select[Any]]:
    """A search page's query and its count's, for queries of one shape (how many words, how
    many typo alternatives each; the words are bound at execution), built once.

    The products with every word; when none has them all (and the query is several words,
    not one token that can be a SKU), those with any, ranked: in the same statement, whose
    second part's pools are one-time filtered off when the first found a product, so a query
    no product matches in full costs one round trip and one plan, not two. A token that can
    be a SKU ("ETH-YIRG-ES-1KG", a SKU no variant has, or no longer sells) falls back to
    nothing: a fragment of a code ("es") is not what was looked for.

    The cost is bounded: at most ``SEARCH_CANDIDATES`` matches are ranked (a word every
    product has would otherwise rank the catalog), only the page's ones are joined to their
    category, stock and picture, and the total is the number of ranked matches (what can be
    paged through)."""
    exact_query = select(_combine([_typed(i) for i in range(len(shape))], "||")).scalar_subquery()
    # Null unless the query can be a SKU: a null tsquery matches nothing, through no index.
    sku = bindparam("sku", type_=Text)
    sku_query = select(case((sku == "", null()), else_=cast(sku, TSQUERY))).scalar_subquery()
    sku_match = Product.search_vector.op("@@")(sku_query)
    common = {"exact_query": exact_query, "sku_match": sku_match, "sku": sku}
    every, every_count = _matches(shape, "&&", wanted=true(), **common)
    # A product in two pools has the same rank in both (one expression): UNION keeps one.
    hits = union(*every).cte("hits").prefix_with("MATERIALIZED")
    count = every_count
    if len(shape) > 1:
        found = select(func.count()).select_from(hits).scalar_subquery()
        any_word, any_count = _matches(shape, "||", wanted=and_(sku == "", found == 0), **common)
        hits = union(select(hits), *any_word).cte("answer").prefix_with("MATERIALIZED")
        count = case((or_(sku != "", every_count > 0), every_count), else_=any_count)
    page = (
        select(hits.c.id, hits.c.rank)
        .order_by(hits.c.rank.desc(), hits.c.sort_name, hits.c.id)
        .limit(bindparam("limit", type_=Integer))
        .offset(bindparam("offset", type_=Integer))
        .subquery("page")
    )
    total = select(func.count()).select_from(hits).scalar_subquery()
    image = _primary_image()
    stmt = (
        _with_joins(
            select(
                *_summary_columns(image),
                page.c.rank,
                func.coalesce(sku_match, False).label("sku_match"),
                total.label("total"),
            ),
            image,
        )
        .join(page, page.c.id == Product.id)
        .order_by(page.c.rank.desc(), func.lower(Product.name), Product.id)
    )
    return stmt, select(count)


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
