"""The resolution page of an aggregate edited with inlines: the demo's Orders (issue #20, item 1).

``OrderLine`` has no version of its own; writing a line bumps its order's
version. A stale save of the order shows the lines that differ, row by row and
field by field, and saves the rows as they are now plus the user's own changes.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db.models.signals import pre_save
from django.test import Client
from django.urls import reverse

from concurrency.resolution import BASE_FIELD, CHOICE_PREFIX, STATE_FIELD
from tests.admin.test_resolution_admin import RESOLVE_FORM, _visible
from tests.demo.models import Category, Item, Order, OrderLine
from tests.support.form_reader import form_data
from tests.support.races import as_other_user

pytestmark = pytest.mark.django_db

Data = dict[str, Any]


def _client(username: str) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser(username, f"{username}@example.com", "x"))
    return client


@pytest.fixture
def order() -> Order:
    order = Order.objects.create(customer="ACME")
    for product in ("Bolts", "Nuts", "Washers"):
        OrderLine.objects.create(order=order, product=product, quantity=10)
    return Order.objects.get(pk=order.pk)


@pytest.fixture
def url(order: Order) -> str:
    return reverse("admin:demo_order_change", args=[order.pk])


@pytest.fixture
def alice() -> Client:
    return _client("alice")


@pytest.fixture
def bob() -> Client:
    return _client("bob")


def _index(data: Data, product: str) -> int:
    for key, value in data.items():
        if key.startswith("lines-") and key.endswith("-product") and value == product:
            return int(key.split("-")[1])
    raise AssertionError(f"no line {product!r} in the form")


def _edit(
    page: Any, lines: dict[str, int | None] | None = None, add: dict[str, int] | None = None, **fields: str
) -> Data:
    """Return what the browser posts for the order's change form with these changes.

    ``lines`` maps a product to its new quantity, or to ``None`` to delete the
    line; ``add`` fills the blank extra row.
    """
    data = form_data(page.content, "order_form", _save="Save", **fields)
    for product, quantity in (lines or {}).items():
        index = _index(data, product)
        if quantity is None:
            data[f"lines-{index}-DELETE"] = "on"
        else:
            data[f"lines-{index}-quantity"] = str(quantity)
    for product, quantity in (add or {}).items():
        index = int(data["lines-INITIAL_FORMS"])
        data[f"lines-{index}-product"] = product
        data[f"lines-{index}-quantity"] = str(quantity)
    return data


def _save(client: Client, url: str, **changes: Any) -> None:
    assert client.post(url, _edit(client.get(url), **changes)).status_code == 302


def _resolve(page: Any, **choices: str) -> Data:
    data = form_data(page.content, RESOLVE_FORM, _save="Save")
    data.update({CHOICE_PREFIX + name: side for name, side in choices.items()})
    return data


def _lines(order: Order) -> dict[str, int]:
    return dict(OrderLine.objects.filter(order=order).values_list("product", "quantity"))


def _version(order: Order) -> int:
    return Order.objects.get(pk=order.pk).version


def _shown(response: Any) -> dict[str, tuple[str, str, str, list[tuple[str, str, str, str, str]]]]:
    """Return the inline rows the page lists: label -> (change, status, choice, [fields])."""
    return {
        row.label: (
            row.change,
            row.status,
            row.choice if row.conflict else "",
            [(f.name, f.base, f.mine, f.theirs, f.status) for f in row.shown_fields],
        )
        for inline in response.context["inlines"]
        for row in inline.shown
    }


def _choice(response: Any, label: str, name: str | None = None) -> str:
    for inline in response.context["inlines"]:
        for row in inline.rows:
            if row.label == label:
                if name is None:
                    return row.choice.removeprefix(CHOICE_PREFIX)
                return next(f.choice for f in row.fields if f.name == name).removeprefix(CHOICE_PREFIX)
    raise AssertionError(label)


class TestTheIssue:
    def test_a_line_the_other_side_changed_is_kept_and_mine_is_saved(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Nuts": 5}))
        assert response.status_code == 409
        assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 10}
        assert _shown(response) == {
            "Bolts": ("changed", "theirs", "", [("quantity", "10", "10", "20", "theirs")]),
            "Nuts": ("changed", "mine", "", [("quantity", "10", "5", "10", "mine")]),
        }
        text = _visible(response)
        assert "Order lines" in text
        assert "“Bolts”: changed by someone else" in text and "“Nuts”: changed by you" in text
        assert "No field was changed by both sides, so there is nothing to choose" in text
        assert bob.post(url, _resolve(response)).status_code == 302
        assert _lines(order) == {"Bolts": 20, "Nuts": 5, "Washers": 10}
        assert _version(order) == 3

    def test_the_page_posts_no_line_values(self, alice: Client, bob: Client, url: str, order: Order) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Nuts": 5}))
        posted = _resolve(response)
        assert not [key for key in posted if key.startswith("lines-")]
        assert set(posted) == {
            "csrfmiddlewaretoken",
            BASE_FIELD,
            STATE_FIELD,
            "_concurrency_resolve",
            "version",
            "_save",
        }

    def test_a_line_both_changed_needs_a_choice(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Bolts": 30, "Nuts": 5}))
        assert _shown(response)["Bolts"] == (
            "changed",
            "conflict",
            "",
            [("quantity", "10", "30", "20", "conflict")],
        )
        assert "One value was changed by both: nothing is chosen for you" in _visible(response)
        choice = _choice(response, "Bolts", "quantity")
        assert f'name="{CHOICE_PREFIX}{choice}" value="mine" required>' in response.content.decode()
        # Posted without the choice: the page again, an error, nothing saved.
        again = bob.post(url, _resolve(response))
        assert again.status_code == 409
        assert "Nothing was saved: choose “Keep mine” or “Take theirs” for the value marked below." in (
            _visible(again)
        )
        assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 10}
        assert bob.post(url, _resolve(again, **{choice: "mine"})).status_code == 302
        assert _lines(order) == {"Bolts": 30, "Nuts": 5, "Washers": 10}

    def test_a_missing_choice_keeps_the_choices_made(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20}, customer="ACME Ltd")
        response = bob.post(url, _edit(page, lines={"Bolts": 30}, customer="ACME Inc."))
        assert "2 values were changed by both: nothing is chosen for you" in _visible(response)
        bolts = _choice(response, "Bolts", "quantity")
        again = bob.post(url, _resolve(response, customer="theirs"))
        assert again.status_code == 409
        assert "for the value marked below. The choices you made are kept." in _visible(again)
        kept = _resolve(again)
        assert kept[CHOICE_PREFIX + "customer"] == "theirs"
        assert CHOICE_PREFIX + bolts not in kept
        assert (Order.objects.get(pk=order.pk).customer, _lines(order)["Bolts"]) == ("ACME Ltd", 20)
        assert bob.post(url, {**kept, CHOICE_PREFIX + bolts: "mine"}).status_code == 302
        assert (Order.objects.get(pk=order.pk).customer, _lines(order)["Bolts"]) == ("ACME Ltd", 30)

    def test_take_theirs_for_a_line(self, alice: Client, bob: Client, url: str, order: Order) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Bolts": 30}, customer="ACME Ltd"))
        choice = _choice(response, "Bolts", "quantity")
        assert bob.post(url, _resolve(response, **{choice: "theirs"})).status_code == 302
        assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 10}
        assert Order.objects.get(pk=order.pk).customer == "ACME Ltd"


class TestRowsAddedAndDeleted:
    def test_rows_added_or_deleted_by_either_side(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Washers": None}, add={"Screws": 7})
        response = bob.post(url, _edit(page, lines={"Nuts": None}, add={"Rivets": 3}))
        assert response.status_code == 409
        shown = _shown(response)
        assert shown["Washers"][:2] == ("deleted", "theirs")
        assert shown["Washers"][3] == [
            ("product", "Washers", "Washers", "(deleted)", "theirs"),
            ("quantity", "10", "10", "(deleted)", "theirs"),
        ]
        assert shown["Nuts"][:2] == ("deleted", "mine")
        assert shown["Screws"][:2] == ("added", "theirs")
        assert shown["Screws"][3] == [
            ("product", "—", "—", "Screws", "theirs"),
            ("quantity", "—", "—", "7", "theirs"),
        ]
        assert shown["Rivets"][:2] == ("added", "mine")
        text = _visible(response)
        for sentence in (
            "“Washers”: deleted by someone else",
            "“Nuts”: deleted by you",
            "“Screws”: added by someone else",
            "“Rivets”: added by you",
        ):
            assert sentence in text
        assert bob.post(url, _resolve(response)).status_code == 302
        assert _lines(order) == {"Bolts": 10, "Screws": 7, "Rivets": 3}

    def test_deleted_by_me_changed_by_them(self, alice: Client, bob: Client, url: str, order: Order) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Washers": 12})
        response = bob.post(url, _edit(page, lines={"Washers": None}))
        shown = _shown(response)
        assert shown["Washers"][:2] == ("deleted", "conflict")
        assert "“Washers”: deleted by you, changed by someone else" in _visible(response)
        choice = _choice(response, "Washers")
        keep = bob.post(url, _resolve(response, **{choice: "theirs"}))
        assert keep.status_code == 302
        assert _lines(order) == {"Bolts": 10, "Nuts": 10, "Washers": 12}

    def test_deleted_by_me_changed_by_them_keep_mine_deletes(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Washers": 12})
        response = bob.post(url, _edit(page, lines={"Washers": None}))
        choice = _choice(response, "Washers")
        assert bob.post(url, _resolve(response, **{choice: "mine"})).status_code == 302
        assert _lines(order) == {"Bolts": 10, "Nuts": 10}

    @pytest.mark.parametrize(
        ("side", "expected"),
        [("mine", {"Nuts": 10, "Washers": 10, "Bolts": 30}), ("theirs", {"Nuts": 10, "Washers": 10})],
    )
    def test_changed_by_me_deleted_by_them(
        self, alice: Client, bob: Client, url: str, order: Order, side: str, expected: dict[str, int]
    ) -> None:
        page = bob.get(url)
        bolts = OrderLine.objects.get(order=order, product="Bolts").pk
        _save(alice, url, lines={"Bolts": None})
        response = bob.post(url, _edit(page, lines={"Bolts": 30}))
        assert _shown(response)["Bolts"][:2] == ("deleted", "conflict")
        assert "“Bolts”: changed by you, deleted by someone else" in _visible(response)
        choice = _choice(response, "Bolts")
        assert bob.post(url, _resolve(response, **{choice: side})).status_code == 302
        assert _lines(order) == expected
        # Keeping mine adds the line again, as a new row: the deleted one stays deleted.
        assert not OrderLine.objects.filter(pk=bolts).exists()

    def test_a_row_deleted_by_both_is_not_a_conflict(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Nuts": None})
        response = bob.post(url, _edit(page, lines={"Nuts": None, "Bolts": 1}))
        assert _shown(response)["Nuts"][:2] == ("deleted", "same")
        assert bob.post(url, _resolve(response)).status_code == 302
        assert _lines(order) == {"Bolts": 1, "Washers": 10}


class TestCheckedAgainstTheVersionShown:
    def test_a_third_save_while_resolving_shows_the_page_again(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Nuts": 5}))
        _save(alice, url, lines={"Bolts": 25, "Washers": 11})
        again = bob.post(url, _resolve(response))
        assert again.status_code == 409
        assert again.context["again"]
        assert _lines(order) == {"Bolts": 25, "Nuts": 10, "Washers": 11}
        shown = _shown(again)
        # The page before showed Bolts 20: that is where the user now starts from.
        assert shown["Bolts"][3] == [("quantity", "20", "20", "25", "theirs")]
        assert shown["Washers"][3] == [("quantity", "10", "10", "11", "theirs")]
        assert shown["Nuts"][3] == [("quantity", "10", "5", "10", "mine")]
        assert bob.post(url, _resolve(again)).status_code == 302
        assert _lines(order) == {"Bolts": 25, "Nuts": 5, "Washers": 11}
        assert _version(order) == 4

    # Each write its own transaction, as in production (a line written in the
    # transaction that created its order bumps nothing more).
    @pytest.mark.django_db(transaction=True)
    def test_a_third_save_of_a_line_outside_the_admin(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Nuts": 5}))
        line = OrderLine.objects.get(order=order, product="Washers")
        line.quantity = 99
        line.save()
        again = bob.post(url, _resolve(response))
        assert again.status_code == 409
        assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 99}
        assert bob.post(url, _resolve(again)).status_code == 302
        assert _lines(order) == {"Bolts": 20, "Nuts": 5, "Washers": 99}

    def test_replaying_the_first_page_after_saving_it(
        self, alice: Client, bob: Client, url: str, order: Order
    ) -> None:
        page = bob.get(url)
        _save(alice, url, lines={"Bolts": 20})
        response = bob.post(url, _edit(page, lines={"Nuts": 5}))
        posted = _resolve(response)
        assert bob.post(url, posted).status_code == 302
        _save(alice, url, lines={"Nuts": 6, "Bolts": 21})
        # The same resolution posted again: compared with what it showed, it changes nothing now.
        replay = bob.post(url, posted)
        assert replay.status_code == 409
        assert _lines(order) == {"Bolts": 21, "Nuts": 6, "Washers": 10}


# -- hostile and broken posts: a clear answer, never a 500, never a write --------------------


def _conflict(alice: Client, bob: Client, url: str) -> tuple[Data, Any]:
    """Return Bob's stale change-form POST (Nuts 10 → 5) and the page it gets after Alice's save."""
    data = _edit(bob.get(url), lines={"Nuts": 5})
    _save(alice, url, lines={"Bolts": 20})
    page = bob.post(url, data)
    assert page.status_code == 409
    return data, page


def _first_line_of(other: Order) -> str:
    return str(OrderLine.objects.filter(order=other).values_list("pk", flat=True)[0])


STALE_FORMS = {
    "TOTAL_FORMS not a number": lambda data, other: {**data, "lines-TOTAL_FORMS": "abc"},
    "TOTAL_FORMS negative": lambda data, other: {**data, "lines-TOTAL_FORMS": "-1"},
    "TOTAL_FORMS huge": lambda data, other: {**data, "lines-TOTAL_FORMS": "100000000"},
    "INITIAL_FORMS one short": lambda data, other: {**data, "lines-INITIAL_FORMS": "2"},
    "INITIAL_FORMS above TOTAL_FORMS": lambda data, other: {**data, "lines-INITIAL_FORMS": "9"},
    "no management form": lambda data, other: {k: v for k, v in data.items() if "_FORMS" not in k},
    "a line of another order": lambda data, other: {**data, "lines-0-id": _first_line_of(other)},
    "the same line twice": lambda data, other: {**data, "lines-1-id": data["lines-0-id"]},
    "a line without its pk": lambda data, other: {k: v for k, v in data.items() if k != "lines-2-id"},
    "a pk that is not a number": lambda data, other: {**data, "lines-0-id": "x"},
}


@pytest.mark.parametrize("case", STALE_FORMS)
def test_a_broken_inline_formset_in_a_stale_form_is_refused_by_the_version_check(
    alice: Client, bob: Client, url: str, order: Order, case: str
) -> None:
    other = Order.objects.create(customer="Other")
    OrderLine.objects.create(order=other, product="Theirs", quantity=1)
    data = _edit(bob.get(url), lines={"Nuts": 5})
    _save(alice, url, lines={"Bolts": 20})
    response = bob.post(url, STALE_FORMS[case](data, other))
    if case == "TOTAL_FORMS huge":
        # Django caps the count (absolute_max): the rows are read as posted.
        assert response.status_code == 409
    else:
        assert response.status_code == 200, case
        assert "Someone else changed this record" in response.content.decode()
    assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 10}
    assert _lines(other) == {"Theirs": 1}
    assert _version(order) == 2


RESOLUTIONS = {
    "a line value": lambda data, ctx: {**data, "lines-0-quantity": "99"},
    "a management form": lambda data, ctx: {**data, "lines-TOTAL_FORMS": "4", "lines-INITIAL_FORMS": "3"},
    "a choice for a row nobody changed": lambda data, ctx: {**data, CHOICE_PREFIX + ctx["washers"]: "mine"},
    "a choice for a row that does not exist": lambda data, ctx: {**data, CHOICE_PREFIX + "lines.999": "mine"},
    "a choice for a field of a line only one side changed": lambda data, ctx: {
        **data,
        CHOICE_PREFIX + ctx["nuts"] + ".quantity": "theirs",
    },
    "a forged state": lambda data, ctx: {**data, STATE_FIELD: data[STATE_FIELD][:-2] + "xx"},
    "the state of an earlier page": lambda data, ctx: {**data, STATE_FIELD: ctx["earlier"][STATE_FIELD]},
    "the snapshot of an earlier page": lambda data, ctx: {**data, BASE_FIELD: ctx["earlier"][BASE_FIELD]},
    "no state": lambda data, ctx: {k: v for k, v in data.items() if k != STATE_FIELD},
}


@pytest.mark.parametrize("case", RESOLUTIONS)
def test_a_forged_resolution_is_a_400_and_writes_nothing(
    alice: Client, bob: Client, url: str, order: Order, case: str
) -> None:
    _data, first = _conflict(alice, bob, url)
    _save(alice, url, lines={"Bolts": 25})
    page = bob.post(url, _resolve(first))
    assert page.status_code == 409
    ctx = {
        "earlier": _resolve(first),
        "washers": _choice(page, "Washers"),
        "nuts": _choice(page, "Nuts"),
    }
    before = (_lines(order), _version(order))
    response = bob.post(url, RESOLUTIONS[case](_resolve(page), ctx))
    assert response.status_code == 400, case
    assert "The choices sent from the conflict resolution page are incomplete or not valid" in (
        response.content.decode()
    )
    assert (_lines(order), _version(order)) == before
    # The genuine page still saves.
    assert bob.post(url, _resolve(page)).status_code == 302
    assert _lines(order) == {"Bolts": 25, "Nuts": 5, "Washers": 10}


def test_the_page_of_another_order_is_a_400(alice: Client, bob: Client, url: str, order: Order) -> None:
    other = Order.objects.create(customer="Other")
    OrderLine.objects.create(order=other, product="Theirs", quantity=1)
    _data, page = _conflict(alice, bob, url)
    response = bob.post(reverse("admin:demo_order_change", args=[other.pk]), _resolve(page))
    assert response.status_code == 400
    assert _lines(other) == {"Theirs": 1}
    assert Order.objects.get(pk=other.pk).version == 1


# -- a line written by another connection between the page's check and its UPDATE ------------


class _LineWrittenFirst:
    """On the first save of ``order``, let another connection change one of its lines and commit."""

    def __init__(self, order: Order, product: str, quantity: int) -> None:
        self.order, self.product, self.quantity, self.fired = order, product, quantity, False

    def _write(self) -> None:
        line = OrderLine.objects.get(order=self.order, product=self.product)
        line.quantity = self.quantity
        line.save()

    def __call__(self, sender: Any, instance: Order, **kwargs: Any) -> None:
        if not self.fired and instance.pk == self.order.pk:
            self.fired = True
            as_other_user(self._write)

    def __enter__(self) -> _LineWrittenFirst:
        pre_save.connect(self, sender=Order, weak=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        pre_save.disconnect(self, sender=Order)


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(settings.DB == "sqlite", reason="SQLite admits one writer at a time")
def test_a_line_written_after_the_check_brings_the_page_back() -> None:
    order = Order.objects.create(customer="ACME")
    for product in ("Bolts", "Nuts", "Washers"):
        OrderLine.objects.create(order=order, product=product, quantity=10)
    url = reverse("admin:demo_order_change", args=[order.pk])
    alice, bob = _client("alice"), _client("bob")
    page = bob.get(url)
    _save(alice, url, lines={"Bolts": 20})
    response = bob.post(url, _edit(page, lines={"Nuts": 5}))
    assert response.status_code == 409
    with _LineWrittenFirst(order, "Washers", 77) as race:
        again = bob.post(url, _resolve(response))
    assert race.fired
    assert again.status_code == 409
    assert _lines(order) == {"Bolts": 20, "Nuts": 10, "Washers": 77}
    assert _shown(again)["Washers"][3] == [("quantity", "10", "10", "77", "theirs")]
    assert bob.post(url, _resolve(again)).status_code == 302
    assert _lines(order) == {"Bolts": 20, "Nuts": 5, "Washers": 77}


# -- inline rows with a version of their own (Category and Item: not an aggregate) ----------


@pytest.mark.urls("tests.support.resolution_urls")
def test_rows_with_their_own_version_are_merged_and_saved_at_their_current_version() -> None:
    category = Category.objects.create(name="Hardware")
    items = [Item.objects.create(category=category, name=f"Item {n}") for n in (1, 2)]
    url = f"/admin/demo/category/{category.pk}/change/"
    alice, bob = _client("alice"), _client("bob")
    page = bob.get(url)
    data = form_data(alice.get(url).content, "category_form", _save="Save", name="Hardware and tools")
    data["items-1-name"] = "Item 2 (Alice)"
    assert alice.post(url, data).status_code == 302
    mine = form_data(page.content, "category_form", _save="Save")
    mine["items-0-name"] = "Item 1 (Bob)"
    response = bob.post(url, mine)
    assert response.status_code == 409
    assert {row.label: (row.change, row.status) for i in response.context["inlines"] for row in i.shown} == {
        "Item 1": ("changed", "mine"),
        "Item 2 (Alice)": ("changed", "theirs"),
    }
    assert bob.post(url, _resolve(response)).status_code == 302
    names = dict(Item.objects.filter(category=category).values_list("pk", "name"))
    assert names == {items[0].pk: "Item 1 (Bob)", items[1].pk: "Item 2 (Alice)"}
    assert Category.objects.get(pk=category.pk).name == "Hardware and tools"


@pytest.mark.urls("tests.support.resolution_urls")
def test_a_row_with_its_own_version_changed_after_the_page_is_refused_not_overwritten() -> None:
    category = Category.objects.create(name="Hardware")
    first = Item.objects.create(category=category, name="Item 1")
    url = f"/admin/demo/category/{category.pk}/change/"
    alice, bob = _client("alice"), _client("bob")
    page = bob.get(url)
    assert (
        alice.post(url, form_data(alice.get(url).content, "category_form", name="Tools")).status_code == 302
    )
    response = bob.post(url, form_data(page.content, "category_form", **{"items-0-name": "Item 1 (Bob)"}))
    assert response.status_code == 409
    # Saving an item moves its own version, not the category's.
    first.refresh_from_db()
    first.name = "Item 1 (Carol)"
    first.save()
    refused = bob.post(url, _resolve(response))
    assert refused.status_code == 200
    assert "Someone else changed" in refused.content.decode()
    assert Item.objects.get(pk=first.pk).name == "Item 1 (Carol)"
    assert Category.objects.get(pk=category.pk).name == "Tools"
