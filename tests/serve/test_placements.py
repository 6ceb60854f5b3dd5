"""Placements in process: each page's own candidates, reasons and sources, the page's item and the cart never
recommended, anonymous shoppers on seeded pages, and the request rules (a product page needs its item, a search its query)."""

import numpy as np
import pytest
from pydantic import ValidationError

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.title_search import TitleSearch
from hyperrec.data.sequences import Interactions
from hyperrec.serve.schemas import RecommendRequest
from tests.serve.test_flow import NOW, ask, bought_ids, known_user, make_flow


def event(kind: str, session: str, item: str, **fields) -> dict:
    return {"event_type": kind, "session_id": session, "item_id": item, "timestamp": NOW} | fields


@pytest.fixture(scope="module")
def flow(exported, tmp_path_factory):
    return make_flow(exported, tmp_path_factory.mktemp("placements"))


def ids(answer) -> list[str]:
    return [i.item_id for i in answer.items]


def test_bought_together_adds_up_the_seeds_rows_and_names_the_heaviest_seed():
    baskets = [[np.array([0, 1, 2])], [np.array([0, 1])], [np.array([1, 3])], [np.array([2, 3])]]
    together = BoughtTogether.from_history(Interactions(4, baskets, [[0.0]] * 4), top=2)
    row = together.indices[together.indptr[1] : together.indptr[2]]
    assert list(row) == [0, 2]  # item 1: with 0 twice (cosine 2/sqrt(2*3)), then 2 and 3 at 1/sqrt(2*3): the lower index
    related = together.of(np.array([0, 1]))
    assert 0 not in related.items and 1 not in related.items  # the seeds themselves are no candidates
    assert list(related.items) == [2] and related.via[0] == 0  # 2 is bought with 0 (1/sqrt(2*2)) more than with 1
    assert len(together.of(np.array([], np.int64)).items) == 0


def test_title_search_ranks_matching_titles_and_ignores_unknown_words():
    search = TitleSearch(np.array(["red running shoe", "blue shoe", "red hat", ""], dtype=object))
    items, scores = search.search("Red shoes shoe", 10)
    assert list(items[:1]) == [0] and set(items) == {0, 1, 2} and np.all(np.diff(scores) <= 0)
    assert len(search.search("zzz the", 10)[0]) == 0
    assert len(TitleSearch(np.array(["", ""], dtype=object)).search("shoe", 10)[0]) == 0


def test_a_product_page_shows_items_bought_with_or_like_its_item_never_the_item_itself(flow):
    user = known_user(flow)
    table = flow.items[flow.current].table
    anchor = table.item_ids[flow.items[flow.current].popular_in_stock[0]]
    answer = ask(flow, user, k=10, context={"page": "product"}, item_id=anchor)
    assert answer.placement == "product" and answer.served_by == "ranker" and not answer.degraded
    assert anchor not in ids(answer) and len(ids(answer)) == 10
    together = flow.registry.bundle(flow.current).bought_together()
    related = set(table.item_ids[together.of(np.array([list(table.item_ids).index(anchor)])).items])
    for item in answer.items:
        assert {"bought_with", "similar"} & set(item.sources), item
        if "bought_with" in item.sources:
            assert item.item_id in related
        if not item.reason.startswith("you b"):
            assert item.reason in (f"bought with {anchor}", f"like {anchor}")
    assert ids(answer) != ids(ask(flow, user, k=10))  # not the home list


def test_an_anonymous_shopper_on_a_product_page_gets_its_list_not_popularity(flow):
    anchor = flow.items[flow.current].table.item_ids[5]
    answer = asked = ask_session(flow, "fresh-session", context={"page": "product"}, item_id=anchor)
    assert asked.served_by == "ranker" and answer.placement == "product"
    assert all({"bought_with", "similar"} & set(i.sources) for i in answer.items)


def ask_session(flow, session: str, **fields):
    import asyncio

    return asyncio.run(flow.recommend(RecommendRequest(session_id=session, **fields)))


def test_a_product_page_for_an_item_the_model_does_not_know_answers_home_and_says_so(flow):
    answer = ask(flow, known_user(flow), k=5, context={"page": "product"}, item_id="no-such-item")
    assert answer.placement == "home" and answer.served_by == "ranker"
    assert any("no-such-item is not in" in d for d in answer.degraded)


def test_the_cart_page_completes_the_live_cart_from_items_bought_with_it(flow):
    table = flow.items[flow.current].table
    cart = [table.item_ids[i] for i in flow.items[flow.current].popular_in_stock[10:12]]
    flow.ingest([event("add_to_cart", "cart-session", item) for item in cart])
    answer = ask_session(flow, "cart-session", context={"page": "cart"}, k=10)
    assert answer.placement == "cart" and answer.served_by == "ranker"
    assert not set(cart) & set(ids(answer))
    with_cart = [i for i in answer.items if "bought_with" in i.sources and not i.reason.startswith("you b")]
    assert with_cart and all(i.reason in {f"bought with {c}" for c in cart} for i in with_cart)


def test_discover_never_shows_the_shoppers_own_items(flow):
    user = known_user(flow)
    answer = ask(flow, user, k=10, context={"page": "discover"})
    assert answer.placement == "discover" and answer.served_by == "ranker"
    assert not set(ids(answer)) & bought_ids(flow, user)
    assert all("repeat" not in i.sources for i in answer.items)


def test_search_shows_the_titles_matching_the_query_and_without_a_match_the_home_list(flow):
    table = flow.items[flow.current].table
    word = str(table.title[0]).split()[0]  # a category name of the synthetic shop
    answer = ask(flow, known_user(flow), k=10, context={"page": "search"}, query=word.upper())
    assert answer.placement == "search" and answer.served_by == "ranker" and not answer.degraded
    titles = dict(zip(table.item_ids, table.title))
    assert answer.items and all(word in titles[i.item_id].split() for i in answer.items if "search" in i.sources)
    assert all("search" in i.sources or i.reason == "popular right now" for i in answer.items)
    missed = ask(flow, known_user(flow), k=10, context={"page": "search"}, query="zzzz")
    assert missed.placement == "home" and any("no title in the catalogue matches" in d for d in missed.degraded)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"context": {"page": "checkout"}}, ("context", "page")),
        ({"context": {"page": "product"}}, ("item_id",)),
        ({"context": {"page": "search"}}, ("query",)),
        ({"context": {"page": "search"}, "query": " \t"}, ("query",)),
    ],
)
def test_a_placement_without_what_it_needs_is_rejected_naming_the_field(fields, field):
    with pytest.raises(ValidationError) as raised:
        RecommendRequest(user_id="u", **fields)
    assert [e["loc"] for e in raised.value.errors()] == [field]
