"""A search's statements run as generic plans on the shopper read path, which reads in
autocommit: Postgres plans each statement once per connection, not once per execution (a
``SET LOCAL`` outside a transaction is ignored, so the search opens a read-only one), and
the connection goes back to the pool outside any transaction, whether the search ended well
or not. And what a search reads is bounded by what can be reached: when a full pool of
products is named after the query, other matches are not read at all."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from catalog.models import Product
from catalog.products import repositories
from catalog.products.services import ProductCatalog
from catalog_testkit import Kit, unique
from ember_devkit.testing.statements import parameter_texts, statements_sent
from litestar import Litestar
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

PLANS = text(
    "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
    " WHERE (statement LIKE '%ts_rank_cd%' OR statement LIKE '%word_trigrams%')"
    " AND statement NOT LIKE '%pg_prepared_statements%'"
)


async def _driver(session: AsyncSession) -> Any:
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


async def test_search_statements_run_as_generic_plans_in_autocommit(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    word = "zq" + uuid.uuid4().hex[:8]
    product = await kit.product(name=f"{word} Reserve")
    settings = catalog_app.state.catalog_settings
    async with catalog_app.state.db_reads() as session:
        catalog = ProductCatalog(session, settings)
        driver = await _driver(session)
        # The pooled connection may have run searches of this shape for earlier tests.
        before = {row.statement: row for row in (await session.execute(PLANS)).all()}
        for _ in range(2):
            body, _ = await catalog.search(words=[word], page=1, page_size=20)
            assert str(product["id"]).encode() in body
            assert not driver.is_in_transaction()
        after = (await session.execute(PLANS)).all()
    # The typo candidates and the page, each run twice, neither planned for its values (the
    # connection's other statements, of other shapes, did not run).
    used = {
        row.statement: (
            row.generic_plans - getattr(before.get(row.statement), "generic_plans", 0),
            row.custom_plans - getattr(before.get(row.statement), "custom_plans", 0),
        )
        for row in after
    }
    assert sorted(runs for runs in used.values() if runs != (0, 0)) == [(2, 0), (2, 0)], used


async def test_a_search_on_its_own_pool_is_its_statements_alone(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search pool's connections carry the search's settings from their start: a search
    there sends no ``BEGIN``/``SET LOCAL``/``COMMIT`` (two round trips of four), and its
    statements still run as generic plans with table scans from the first page. The search
    route reads there; the service's other connections keep Postgres' defaults."""
    import asyncpg.connection

    word = "zq" + uuid.uuid4().hex[:8]
    product = await kit.product(name=f"{word} Reserve")
    scripts: list[str] = []
    execute = asyncpg.connection.Connection.execute

    async def recorded(self: Any, query: str, *args: Any, **kwargs: Any) -> Any:
        scripts.append(query)
        return await execute(self, query, *args, **kwargs)

    settings = text(
        "SELECT current_setting('plan_cache_mode'), current_setting('synchronize_seqscans')"
    )
    async with catalog_app.state.search_sessions() as session:
        catalog = ProductCatalog(session, catalog_app.state.catalog_settings)
        driver = await _driver(session)
        assert tuple((await session.execute(settings)).one()) == ("force_generic_plan", "off")
        before = {row.statement: row for row in (await session.execute(PLANS)).all()}
        monkeypatch.setattr(asyncpg.connection.Connection, "execute", recorded)
        for _ in range(2):
            body, _ = await catalog.search(words=[word], page=1, page_size=20)
            assert str(product["id"]).encode() in body
            assert not driver.is_in_transaction()
        monkeypatch.undo()
        after = (await session.execute(PLANS)).all()
    assert scripts == []
    used = sorted(
        (
            row.generic_plans - getattr(before.get(row.statement), "generic_plans", 0),
            row.custom_plans - getattr(before.get(row.statement), "custom_plans", 0),
        )
        for row in after
    )
    assert [runs for runs in used if runs != (0, 0)] == [(2, 0), (2, 0)], used
    # The route reads on that pool; the service's own connections keep the defaults.
    with statements_sent(
        catalog_app.state.search_engine, lambda sql, *_: "page" if "ts_rank_cd" in sql else None
    ) as sent:
        response = await client.get(
            "/api/products/search", params={"q": word}, headers={"X-Cache-Bypass": "1"}
        )
    assert response.status_code == 200, response.text
    assert sent == ["page"]
    async with catalog_app.state.db_reads() as session:
        assert tuple((await session.execute(settings)).one()) == ("auto", "on")


async def test_a_failed_search_leaves_no_transaction_open(
    catalog_app: Litestar, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("the search failed")

    monkeypatch.setattr(repositories.ProductReads, "search", broken)
    async with catalog_app.state.db_reads() as session:
        driver = await _driver(session)
        with pytest.raises(RuntimeError, match="the search failed"):
            await ProductCatalog(session, catalog_app.state.catalog_settings).search(
                words=["coffee"], page=1, page_size=20
            )
        assert not driver.is_in_transaction()
        # The connection still answers, in autocommit: no aborted transaction was left behind.
        assert await session.scalar(text("SELECT current_setting('plan_cache_mode')")) == "auto"


async def test_other_matches_are_read_only_when_few_products_are_named_after_the_query(
    client: httpx.AsyncClient, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(repositories, "SEARCH_CANDIDATES", 3)
    repositories._search_statements.cache_clear()
    try:
        few, many = ("zq" + uuid.uuid4().hex[:8] for _ in range(2))
        # One product named after the word: the pool of names is not full, and the products
        # with the word only in their text are found too, after it.
        named = await kit.product(name=f"{few} Reserve")
        in_text = [
            await kit.product(name=unique("Plain"), description=f"Notes of {few}.")
            for _ in range(2)
        ]
        body = (await client.get("/api/products/search", params={"q": few})).json()
        ids = [item["id"] for item in body["items"]]
        assert ids[0] == named["id"]
        assert set(ids[1:]) == {p["id"] for p in in_text}
        assert body["total"] == 3
        # Three named after it fill the pool: they are the answer, the text matches are not
        # read (made first, they come first in the table, where the other pool was taken from).
        for _ in range(3):
            await kit.product(name=unique("Plain"), description=f"Notes of {many}.")
        named_all = [await kit.product(name=f"{many} Reserve {n}") for n in range(3)]
        body = (await client.get("/api/products/search", params={"q": many})).json()
        assert {item["id"] for item in body["items"]} == {p["id"] for p in named_all}
        assert body["total"] == 3
    finally:
        repositories._search_statements.cache_clear()


async def test_the_search_transaction_starts_table_scans_at_the_first_page(
    catalog_app: Litestar, client: httpx.AsyncClient
) -> None:
    """The probe reads the table's first products: a scan started where another scan of the
    table is (synchronized scans) would test other products on each search."""
    setting = text("SELECT current_setting('synchronize_seqscans')")
    async with catalog_app.state.db_reads() as session:
        async with repositories.ProductReads(session).generic_plans():
            assert await session.scalar(setting) == "off"
        assert await session.scalar(setting) == "on"


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def _probed(ran: list[dict[str, Any]]) -> list[str]:
    """Which of the table's first products were read: the sample's, the probe's (``head``)."""
    return sorted(n["Alias"] for n in ran if n.get("Alias") in ("sample", "head"))


async def _executed(
    session: AsyncSession, word: str, *, verbose: bool = False
) -> list[dict[str, Any]]:
    """The plan nodes that ran for a search of ``word``, as the app runs it (generic plan)."""
    page, _ = repositories._search_statements((0,))
    values = repositories._search_values(repositories.SearchPlan([word], {}), 20, 0)
    connection = await session.connection()
    compiled = page.compile(dialect=connection.dialect)
    bound = compiled.construct_params(values)
    driver = await _driver(session)
    async with repositories.ProductReads(session).generic_plans():
        found = await driver.fetchval(
            f"EXPLAIN (ANALYZE, VERBOSE {verbose}, FORMAT JSON) " + compiled.string,
            *(bound[name] for name in compiled.positiontup or ()),
        )
    plan = (json.loads(found) if isinstance(found, str) else found)[0]["Plan"]
    return [node for node in _nodes(plan) if node.get("Actual Loops", 0) > 0]


async def test_the_table_is_probed_only_for_a_word_its_first_products_often_have(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A word as common in the sample as the probe needs: its pools come off the probe and no
    GIN index is read (a bitmap index scan gathers every match: "lot", 50,000 of them at 50k).
    A rare word: only the sample is tested, then the index gives its few matches (testing
    PROBE_ROWS products for it cost ~1 ms for nothing)."""
    monkeypatch.setattr(repositories, "SEARCH_CANDIDATES", 2)
    # The sample and the probe are the whole (test) table: a word 2 products have is common.
    monkeypatch.setattr(repositories, "PROBE_ROWS", 10**6)
    monkeypatch.setattr(repositories, "PROBE_SAMPLE", 10**6)
    repositories._search_statements.cache_clear()
    try:
        common, rare = ("zq" + uuid.uuid4().hex[:8] for _ in range(2))
        named = [await kit.product(name=f"{common} Reserve {n}") for n in range(3)]
        single = await kit.product(name=f"{rare} Reserve")
        async with catalog_app.state.db_reads() as session:
            ran = await _executed(session, common)
            # (The SKU pool's lookup, of a null query here, finds nothing.)
            gin = [n for n in ran if n.get("Index Name", "").startswith("ix_products_search")]
            assert not [n for n in gin if n["Actual Rows"] > 0], gin
            assert "ix_products_search_name" not in {n["Index Name"] for n in gin}
            assert _probed(ran) == ["head", "sample"]
            ran = await _executed(session, rare)
            # Only the sample; how its few matches are then found (the GIN index or, on a
            # test table this small, a scan) is the planner's choice.
            assert _probed(ran) == ["sample"]
        body = (await client.get("/api/products/search", params={"q": common})).json()
        assert body["total"] == 2
        assert {item["id"] for item in body["items"]} <= {p["id"] for p in named}
        body = (await client.get("/api/products/search", params={"q": rare})).json()
        assert [item["id"] for item in body["items"]] == [single["id"]]
    finally:
        repositories._search_statements.cache_clear()


async def test_a_query_no_product_has_in_full_is_answered_by_one_statement(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """Several words no product has together: the products with any of them, ranked, come
    from the same statement as the attempt with every word (the second was a round trip and
    a plan of its own, and made "kenya berry" the slowest of the benchmark's queries). The
    total of a page past the ranked ones is still that of the products with any word."""
    first, second, third, fourth = ("zq" + uuid.uuid4().hex[:8] for _ in range(4))
    one = await kit.product(name=f"{first} Reserve")
    other = await kit.product(name=unique("Plain"), description=f"Notes of {second}.")
    together = [await kit.product(name=f"{third} {fourth} Lot {n}") for n in range(2)]
    await kit.product(name=f"{third} Reserve")

    def searches(statement: str, _parameters: Any, _connection: Any) -> str | None:
        if "ts_rank_cd" in statement:
            return "page"
        if "search_vector" in statement and "count(" in statement:
            return "count"
        return None

    async def search(q: str, page: int = 1) -> tuple[dict[str, Any], list[str]]:
        with statements_sent(catalog_app.state.search_engine, searches) as sent:
            response = await client.get(
                "/api/products/search",
                params={"q": q, "page": page, "page_size": 2},
                headers={"X-Cache-Bypass": "1"},
            )
        assert response.status_code == 200, response.text
        return response.json(), list(sent)

    body, sent = await search(f"{first} {second}")
    assert {item["id"] for item in body["items"]} == {one["id"], other["id"]}
    assert body["total"] == 2
    assert sent == ["page"]
    # Past the ranked products: the page statement finds none, the count says how many.
    body, sent = await search(f"{first} {second}", page=3)
    assert (body["items"], body["total"]) == ([], 2)
    assert sent == ["page", "count"]
    # Products with every word: only they, never those with one of the words.
    body, sent = await search(f"{third} {fourth}")
    assert {item["id"] for item in body["items"]} == {p["id"] for p in together}
    assert body["total"] == 2
    assert sent == ["page"]
    body, sent = await search(f"{third} {fourth}", page=2)
    assert (body["items"], body["total"]) == ([], 2)
    assert sent == ["page", "count"]


async def test_a_word_that_is_its_own_stem_is_one_term_of_the_query_ranked_once(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """A typed word is matched both stemmed and as typed; when the stem is the word itself the
    two are one term (twice, a GIN index scan gathered the prefix's matches twice and the
    ranking walked a query twice its size). A query with no typo alternatives is its words as
    typed: its rank is computed once, and is the same sum."""
    word = "zq" + uuid.uuid4().hex[:8]
    product = await kit.product(name=f"{word} Reserve", description=f"More {word}.")
    values = repositories._search_values(repositories.SearchPlan([word, "coffees"], {}), 20, 0)
    terms = select(func.numnode(repositories._typed(0)), func.numnode(repositories._typed(1)))
    async with catalog_app.state.db_reads() as session:
        # "zq...:*" once; "coffe:* | 'coffees':*", two terms and their "|".
        assert tuple((await session.execute(terms, values)).one()) == (1, 3)
        ran = await _executed(session, word, verbose=True)
        (rank,) = [
            output
            for node in ran
            for output in node.get("Output", [])
            if "ts_rank_cd" in output and node.get("Relation Name") == "products"
        ][:1]
        # Ranked by one call when the query is its words as typed (a one-time test).
        assert rank.startswith("(CASE WHEN $"), rank
        assert "THEN ('3'::double precision * ts_rank_cd(" in rank, rank
        rows, _ = await repositories.ProductReads(session).search(
            repositories.SearchPlan([word], {}), limit=20, offset=0
        )
        query = func.to_tsquery(repositories._ENGLISH, f"{word}:*")
        expected = await session.scalar(
            select(3 * func.ts_rank_cd(Product.search_vector, query)).where(
                Product.id == uuid.UUID(product["id"])
            )
        )
    assert [(row.id, row.rank) for row in rows] == [(uuid.UUID(product["id"]), expected)]


async def test_typo_alternatives_the_typed_prefix_already_matches_do_not_widen_the_query(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """A catalog word that starts as the typed word does ("ethiopian" for "ethiopia") is one
    of its typo alternatives, shown in ``matched_words``, but the query is not widened with
    it: the typed word's prefix already matches it, so the statement is smaller (one GIN
    entry and one ``ts_rank_cd`` term less) and the answer the same. A real typo is kept."""
    word = "zq" + uuid.uuid4().hex[:8]
    longer, typo = word + "n", word[:-1] + ("x" if word[-1] != "x" else "y")
    named = await kit.product(name=f"{word} Reserve")
    extended = await kit.product(name=f"{longer} Reserve")
    typoed = await kit.product(name=f"{typo} Reserve")

    def bound(statement: str, parameters: Any, _connection: Any) -> str | None:
        return " ".join(sorted(parameter_texts(parameters))) if "ts_rank_cd" in statement else None

    with statements_sent(catalog_app.state.search_engine, bound) as sent:
        body = (await client.get("/api/products/search", params={"q": word})).json()
    assert {item["id"] for item in body["items"]} == {p["id"] for p in (named, extended, typoed)}
    assert body["items"][0]["id"] == named["id"]
    assert {longer, typo} <= set(body["matched_words"])
    (values,) = sent
    assert typo in values.split()
    assert longer not in values.split()


async def test_the_search_statement_is_compiled_once_not_keyed_on_every_call(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """SQLAlchemy walks a statement for its cache key on every execution: 0.8-2.4 ms of the
    catalog's CPU per search for statements this size (6.7 ms for three words). The search
    runs the SQL compiled once per shape, the same text each time, and answers as before."""
    words = ["zq" + uuid.uuid4().hex[:8] for _ in range(2)]
    named = [await kit.product(name=f"{word} Reserve") for word in words]
    executed: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, sql: str, _params: Any, context: Any, *_: Any) -> None:
        if "ts_rank_cd" in sql:
            executed.append((sql, context.compiled))

    sync_engine = catalog_app.state.search_engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        for word, product in zip(words, named, strict=True):
            params = {"q": word}
            body = (await client.get("/api/products/search", params=params)).json()
            assert [item["id"] for item in body["items"]] == [product["id"]]
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    # Sent as SQL (no statement for SQLAlchemy to compile or look up), the same both times.
    assert [compiled for _, compiled in executed] == [None, None]
    assert executed[0][0] == executed[1][0]


async def test_the_typo_statement_is_compiled_once_too(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """The typo candidates' statement, on every search with words: sent as the SQL compiled
    once (it was a ``text()`` built and keyed by SQLAlchemy on each call), finding the same
    alternatives."""
    word = "zq" + uuid.uuid4().hex[:8]
    await kit.product(name=f"{word[:-1]}x Reserve")
    executed: list[Any] = []

    def record(_conn: Any, _cursor: Any, sql: str, _params: Any, context: Any, *_: Any) -> None:
        if "word_trigrams" in sql:
            executed.append(context.compiled)

    sync_engine = catalog_app.state.search_engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        body = (await client.get("/api/products/search", params={"q": word})).json()
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)
    assert f"{word[:-1]}x" in body["matched_words"]
    assert executed == [None]


def test_a_word_far_commoner_than_the_rarest_is_left_out_of_the_index_condition() -> None:
    """Of several words, those whose prefix matches over ``NARROW_RATIO`` times as many
    products as the rarest's are not searched in the GIN index ("washed": 20,000 postings at
    50k, ~2.5 ms, to keep 200 rows the rarest word's 2,500 already hold); the rarest is taken
    among words without typo alternatives, and a word without an estimate always stays."""
    plan = repositories.SearchPlan
    shares = {"ethiopia": 0.25, "yirgacheffe": 0.05, "washed": 0.4}
    words = ["ethiopia", "yirgacheffe", "washed"]
    assert repositories.index_mask(plan(words, {}, frequency=shares)) == 0b010
    assert repositories.index_mask(plan(words, {}, frequency={**shares, "ethiopia": 0.15})) == (
        0b011
    )
    # No estimates (a table not analyzed yet), or one word: every word.
    assert repositories.index_mask(plan(words, {})) == 0b111
    assert repositories.index_mask(plan(["washed"], {}, frequency=shares)) == 0b1
    # A word with typo alternatives is no bound: its alternatives' share is not estimated.
    widened = plan(words, {}, widen={"yirgacheffe": ["yirgacheff"]}, frequency=shares)
    assert repositories.index_mask(widened) == 0b111
    unknown = plan(words, {}, frequency={"yirgacheffe": 0.05, "washed": 0.4})
    assert repositories.index_mask(unknown) == 0b011


async def test_the_index_is_searched_for_the_rarest_word_and_the_rows_for_every_word(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """The typo statement estimates each word's share of products from the column's
    statistics (several words only); the pool of products with every word then reads the
    GIN index for the rare word alone and tests its rows for the whole query: the same
    products, ranked alike, as when the index is searched for every word (at 50k, "ethiopia
    yirgacheffe washed": its page statement 5.6-6.0 -> 2.9-3.2 ms of backend CPU)."""
    common, rare = ("zq" + uuid.uuid4().hex[:8] for _ in range(2))
    both = [await kit.product(name=unique("Plain"), description=f"{common} {rare}.")]
    for n in range(8):
        await kit.product(name=unique("Plain"), description=f"{common} note {n}.")
    await kit.product(name=unique("Plain"), description=f"{rare} alone.")
    async with catalog_app.state.db_reads() as session:
        await session.execute(text("ANALYZE catalog.products"))
        reads = repositories.ProductReads(session)
        typos = await reads.typo_words([common, rare])
        assert set(typos.frequency) == {common, rare}, typos
        assert (await reads.typo_words([common])).frequency == {}
        narrow = repositories.SearchPlan([common, rare], {}, frequency={common: 0.5, rare: 0.01})
        assert repositories.index_mask(narrow) == 0b10
        assert repositories._search_values(narrow, 20, 0)["keep"] == 0b10
        wide = repositories.SearchPlan([common, rare], {})
        narrowed_rows, narrowed_total = await reads.search(narrow, limit=20, offset=0)
        rows, total = await reads.search(wide, limit=20, offset=0)
    assert [(r.id, r.rank) for r in narrowed_rows] == [(r.id, r.rank) for r in rows]
    assert [str(r.id) for r in rows] == [p["id"] for p in both]
    assert narrowed_total == total == 1


async def test_only_a_query_of_several_words_reads_the_statistics(
    catalog_app: Litestar, client: httpx.AsyncClient, kit: Kit
) -> None:
    """For one word there is no word to leave out of the index condition: its typo statement
    is the one without the estimates (which cost it 0.1-0.2 ms of the backend's CPU)."""
    first, second = ("zq" + uuid.uuid4().hex[:8] for _ in range(2))
    await kit.product(name=f"{first} {second} Reserve")

    def typos(statement: str, _parameters: Any, _connection: Any) -> str | None:
        if "word_trigrams" not in statement:
            return None
        return "estimates" if "pg_stats" in statement else "typos"

    async def search(q: str) -> list[str]:
        with statements_sent(catalog_app.state.search_engine, typos) as sent:
            response = await client.get(
                "/api/products/search", params={"q": q}, headers={"X-Cache-Bypass": "1"}
            )
        assert response.status_code == 200, response.text
        assert response.json()["total"] == 1
        return list(sent)

    assert await search(first) == ["typos"]
    assert await search(f"{first} {second}") == ["estimates"]
