"""Two people, two browsers, one record: the admin flows in a real Chromium against a live server.

Uses Debian's Chromium through Playwright (no browser download). Skipped only
when /usr/bin/chromium is missing; ``.ci/run`` installs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.demo.models import Article
from tests.support.browser import Person, browser, needs_chromium  # noqa: F401 - the module's fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    needs_chromium,
]


@pytest.fixture
def people(browser: Any, live_server: Any, settings: Any) -> Iterator[tuple[Person, Person]]:  # noqa: F811
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = Person(browser, live_server.url, "alice")
    bob = Person(browser, live_server.url, "bob")
    yield alice, bob
    alice.close()
    bob.close()


@pytest.fixture
def articles() -> list[Article]:
    return [Article.objects.create(title=f"Row {n}", status="draft") for n in range(3)]


def test_second_editor_resolves_the_conflict_field_by_field(
    people: tuple[Person, Person], articles: list[Article]
) -> None:
    """The demo's Article admin has ConflictResolutionMixin: a stale save shows the three-way page."""
    alice, bob = people
    url = f"/admin/demo/article/{articles[0].pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    assert alice.page.inner_text(".concurrency-version") == "1"
    alice.page.fill("#id_title", "Alice's title")
    alice.page.select_option("#id_status", "review")
    bob.page.fill("#id_title", "Bob's title")
    bob.page.select_option("#id_status", "published")
    bob.page.fill("#id_body", "Bob typed a long paragraph here.")

    alice.submit("input[name=_save]")
    assert any("was changed successfully" in m for m in alice.messages())

    bob.submit("input[name=_save]")
    page = bob.page
    page.wait_for_selector("table.concurrency-merge")
    headers = [h.strip() for h in page.locator("table.concurrency-merge thead th").all_text_contents()]
    assert headers == ["Field", "You started from", "You entered", "Now in the database", "Result"]
    cells = {
        name: page.locator(f"tr[data-field={name}] td").all_inner_texts()[:3]
        for name in ("title", "status", "body")
    }
    assert cells == {
        "title": ["Row 0", "Bob's title", "Alice's title"],
        "status": ["Draft", "Published", "In review"],
        "body": ["—", "Bob typed a long paragraph here.", "—"],
    }
    assert "Changed by alice at" in page.inner_text(".concurrency-who")
    assert page.locator("tr.concurrency-conflict").count() == 2
    mine = page.get_attribute("tr[data-field=body] td.concurrency-mine", "class") or ""
    assert "concurrency-taken" in mine
    assert not any("successfully" in m for m in bob.messages())
    articles[0].refresh_from_db()
    assert (articles[0].title, articles[0].status, articles[0].version) == ("Alice's title", "review", 2)

    page.check("input[name='_concurrency_choice-title'][value=mine]")
    page.check("input[name='_concurrency_choice-status'][value=theirs]")
    bob.submit("input[name=_save]")
    assert page.url.endswith("/admin/demo/article/")
    assert any("was changed successfully" in m for m in bob.messages())
    articles[0].refresh_from_db()
    assert (articles[0].title, articles[0].body, articles[0].status, articles[0].version) == (
        "Bob's title",
        "Bob typed a long paragraph here.",
        "review",
        3,
    )


def test_without_the_mixin_the_second_editor_keeps_their_input(
    people: tuple[Person, Person], articles: list[Article], settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.support.plain_admin"
    alice, bob = people
    url = f"/bare-admin/demo/article/{articles[0].pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    alice.page.fill("#id_title", "Alice's title")
    bob.page.fill("#id_title", "Bob's title")
    bob.page.fill("#id_body", "Bob typed a long paragraph here.")

    alice.submit("input[name=_save]")
    assert any("was changed successfully" in m for m in alice.messages())

    bob.submit("input[name=_save]")
    bob.page.wait_for_selector(".errornote")
    assert "Someone else changed this record" in bob.page.inner_text(".errorlist.nonfield")
    assert bob.page.input_value("#id_title") == "Bob's title"
    assert bob.page.input_value("#id_body") == "Bob typed a long paragraph here."
    assert not any("successfully" in m for m in bob.messages())
    articles[0].refresh_from_db()
    assert (articles[0].title, articles[0].version) == ("Alice's title", 2)


def test_list_editable_saves_the_others_and_names_the_conflict(
    people: tuple[Person, Person], articles: list[Article]
) -> None:
    alice, bob = people
    alice.page.goto("/admin/demo/article/")
    bob.page.goto("/admin/demo/article/")
    alice.page.fill("#id_form-0-title", "Alice row 0")
    alice.submit("input[name=_save]")
    assert "1 article was changed successfully." in alice.messages()

    bob.page.select_option("#id_form-0-status", "published")
    bob.page.fill("#id_form-1-title", "Bob row 1")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector("ul.messagelist")
    messages = bob.messages()
    assert "1 article was changed successfully." in messages
    assert any("“Alice row 0”" in m and "Status: Published" in m for m in messages)
    # The conflicting row is shown again with its current values.
    assert bob.page.input_value("#id_form-0-title") == "Alice row 0"
    assert bob.page.input_value("#id_form-0-status") == "draft"
    assert bob.page.input_value("#id_form-1-title") == "Bob row 1"
    first, second = Article.objects.filter(pk__in=[articles[0].pk, articles[1].pk])
    assert (first.title, first.status, second.title) == ("Alice row 0", "draft", "Bob row 1")


def test_list_editable_abort_all_keeps_the_input(
    people: tuple[Person, Person], articles: list[Article], settings: Any
) -> None:
    from concurrency.conf import LIST_EDITABLE_POLICY_ABORT_ALL

    settings.CONCURRENCY_POLICY = LIST_EDITABLE_POLICY_ABORT_ALL
    alice, bob = people
    alice.page.goto("/admin/demo/article/")
    bob.page.goto("/admin/demo/article/")
    alice.page.fill("#id_form-0-title", "Alice row 0")
    alice.submit("input[name=_save]")
    bob.page.fill("#id_form-0-title", "Bob row 0")
    bob.page.fill("#id_form-1-title", "Bob row 1")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector(".errornote")
    assert any("nothing was saved" in m for m in bob.messages())
    assert bob.page.input_value("#id_form-0-title") == "Bob row 0"
    assert bob.page.input_value("#id_form-1-title") == "Bob row 1"
    assert list(Article.objects.values_list("title", flat=True)) == ["Alice row 0", "Row 1", "Row 2"]


def test_stale_action_is_not_run(people: tuple[Person, Person], articles: list[Article]) -> None:
    alice, bob = people
    alice.page.goto("/admin/demo/article/")
    bob.page.goto(f"/admin/demo/article/{articles[1].pk}/change/")
    bob.page.fill("#id_title", "Bob renamed it")
    bob.submit("input[name=_save]")

    alice.page.check(f"input.action-select[value='{articles[0].pk},1']")
    alice.page.check(f"input.action-select[value='{articles[1].pk},1']")
    alice.page.select_option("select[name=action]", "publish")
    alice.submit("button[name=index]")
    alice.page.wait_for_selector("ul.messagelist")
    [message] = alice.messages()
    assert "“Bob renamed it”" in message and "not run" in message
    assert not Article.objects.filter(status="published").exists()

    alice.page.check(f"input.action-select[value='{articles[2].pk},1']")
    alice.page.select_option("select[name=action]", "publish")
    alice.submit("button[name=index]")
    assert "1 article(s) published." in alice.messages()
    assert list(Article.objects.filter(status="published").values_list("pk", flat=True)) == [articles[2].pk]


def test_delete_selected_is_checked_at_confirmation(
    people: tuple[Person, Person], articles: list[Article]
) -> None:
    alice, bob = people
    alice.page.goto("/admin/demo/article/")
    alice.page.check(f"input.action-select[value='{articles[0].pk},1']")
    alice.page.check(f"input.action-select[value='{articles[1].pk},1']")
    alice.page.select_option("select[name=action]", "delete_selected")
    alice.submit("button[name=index]")
    alice.page.wait_for_selector("text=Are you sure you want to delete the selected articles?")
    assert alice.page.is_visible("text=No, take me back")

    bob.page.goto(f"/admin/demo/article/{articles[0].pk}/change/")
    bob.page.fill("#id_title", "Bob still needs this")
    bob.submit("input[name=_save]")

    alice.submit("input[type=submit][value*='sure']")
    alice.page.wait_for_selector("ul.messagelist")
    assert any("“Bob still needs this”" in m for m in alice.messages())
    assert Article.objects.count() == 3

    # Starting again from the current list deletes exactly the selection.
    alice.page.check(f"input.action-select[value='{articles[0].pk},2']")
    alice.page.check(f"input.action-select[value='{articles[1].pk},1']")
    alice.page.select_option("select[name=action]", "delete_selected")
    alice.submit("button[name=index]")
    alice.submit("input[type=submit][value*='sure']")
    assert any("Successfully deleted 2 articles" in m for m in alice.messages())
    assert list(Article.objects.values_list("pk", flat=True)) == [articles[2].pk]


def test_inline_conflict_keeps_the_input(people: tuple[Person, Person]) -> None:
    from tests.demo.models import Category, Item

    category = Category.objects.create(name="Tools")
    Item.objects.create(category=category, name="hammer")
    alice, bob = people
    url = f"/admin/demo/category/{category.pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    alice.page.fill("#id_items-0-name", "Alice's hammer")
    alice.submit("input[name=_save]")
    bob.page.fill("#id_name", "Bob's tools")
    bob.page.fill("#id_items-0-name", "Bob's hammer")
    bob.submit("input[name=_save]")
    bob.page.wait_for_selector(".errornote")
    # Saving the inline saved the category too, so Bob's whole form is stale.
    assert "Someone else changed this record" in bob.page.inner_text(".errorlist.nonfield")
    assert bob.page.input_value("#id_name") == "Bob's tools"
    assert bob.page.input_value("#id_items-0-name") == "Bob's hammer"
    category.refresh_from_db()
    assert (category.name, category.items.get().name) == ("Tools", "Alice's hammer")


def test_inline_refusal_marks_and_names_the_row_someone_else_changed(people: tuple[Person, Person]) -> None:
    """Bob changes item 2, Alice item 3 of the same category: Bob's refusal marks item 3, as stored."""
    from tests.demo.models import Category, Item

    category = Category.objects.create(name="Hardware")
    for n in (1, 2, 3):
        Item.objects.create(category=category, name=f"Hardware item {n}")
    alice, bob = people
    url = f"/admin/demo/category/{category.pk}/change/"
    alice.page.goto(url)
    bob.page.goto(url)
    # The blank extra row shows no version.
    assert bob.page.locator("#items-3 .concurrency-version").inner_text() == ""
    bob.page.fill("#id_items-1-name", "Hardware item 2 (B inline)")
    alice.page.fill("#id_items-2-name", "Hardware item 3 (A)")
    alice.submit("input[name=_save]")
    bob.submit("input[name=_save]")
    page = bob.page
    page.wait_for_selector("tr.row-form-errors")
    # One row is marked: the one right above item 3's inputs, naming it as Alice saved it.
    marks = page.locator("tr.row-form-errors")
    assert marks.count() == 1
    assert marks.inner_text().strip() == (
        "Someone else changed item “Hardware item 3 (A)” after you opened this page, so your changes were "
        "not saved. Reload the page to see its current values."
    )
    assert page.evaluate("document.querySelector('tr.row-form-errors').nextElementSibling.id") == "items-2"
    labels = [label.strip() for label in page.locator("td.original p").all_inner_texts()]
    assert labels == ["Hardware item 1", "Hardware item 2", "Hardware item 3 (A)"]
    # Bob's own typing is kept, and names nothing.
    assert page.input_value("#id_items-1-name") == "Hardware item 2 (B inline)"
    assert "B inline" not in page.inner_text(".errorlist.nonfield") + marks.inner_text()
    assert [i.name for i in Item.objects.order_by("pk")] == [
        "Hardware item 1",
        "Hardware item 2",
        "Hardware item 3 (A)",
    ]
