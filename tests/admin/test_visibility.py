"""The admin reveals nothing about rows its get_queryset() hides, and its delete page is version-checked.

Issue #11, items 1 and 6. Rows titled "Hidden…" are outside ``get_queryset()``
of the admins in tests/support/scoped_admin.py. For each read the admin integration
makes (actions, list_editable, the delete page, the change form's early check,
the resolution page), posting a hidden pk with its right version, with a wrong
one, or a pk that does not exist gives the same answer (no existence or
version oracle), and that answer is the one plain Django gives.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.messages import get_messages
from django.core import checks
from django.db.models import F
from django.urls import reverse

from concurrency.admin import ROW_VERSION_KEY
from concurrency.checks import check_admin_inlines
from concurrency.resolution import BASE_FIELD
from concurrency.signing import sign_version
from tests.demo.models import Article, Category
from tests.support.form_reader import form_data
from tests.support.scoped_admin import (
    ItemInlineWithoutVersion,
    ItemInlineWithVersion,
    inline_admin,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.scoped_admin")]


def url(name: str, *args: Any, site: str = "scoped") -> str:
    return reverse(f"{site}:demo_article_{name}", args=args)


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def post(client: Any, path: str, data: dict[str, Any]) -> Any:
    """POST as a browser does: follow the redirect, so the page shows (and uses up) the messages."""
    return client.post(path, data, follow=True)


def outcome(response: Any) -> tuple[int, list[str], list[str]]:
    """What the user sees: the status, where they were sent, and the messages."""
    return response.status_code, [where for where, _code in response.redirect_chain], texts(response)


def bump(obj: Any, **values: Any) -> None:
    type(obj).objects.filter(pk=obj.pk).update(version=F("version") + 1, **values)


def state() -> list[tuple[Any, ...]]:
    return list(Article.objects.order_by("pk").values_list("pk", "title", "status", "version"))


@pytest.fixture
def rows() -> tuple[Article, Article]:
    visible = Article.objects.create(title="Visible", status="draft")
    hidden = Article.objects.create(title="Hidden secret title", status="draft")
    bump(hidden)  # the hidden row is at version 2
    hidden.refresh_from_db()
    return visible, hidden


def missing_pk() -> int:
    return int(Article.objects.order_by("-pk").values_list("pk", flat=True)[0]) + 100


def assert_nothing_revealed(responses: list[Any], hidden: Article) -> None:
    for response in responses:
        shown = " ".join(texts(response)) + response.content.decode()
        assert "secret" not in shown
        assert f"id={hidden.pk}" not in shown


# -- item 1: actions ---------------------------------------------------------------


def test_action_on_a_hidden_row_answers_the_same_for_any_version_as_django_does(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    _visible, hidden = rows
    before = state()
    answers = {}
    for label, value in {
        "right version": f"{hidden.pk},{hidden.version}",
        "wrong version": f"{hidden.pk},{hidden.version + 7}",
        "no such row": f"{missing_pk()},1",
    }.items():
        data = {"action": "publish", "index": "0", helpers.ACTION_CHECKBOX_NAME: [value]}
        answers[label] = post(admin_client, url("changelist"), data)
    django = post(
        admin_client,
        url("changelist", site="django"),
        {"action": "publish", "index": "0", helpers.ACTION_CHECKBOX_NAME: [str(hidden.pk)]},
    )
    assert_nothing_revealed([*answers.values(), django], hidden)
    seen = {label: outcome(r) for label, r in answers.items()}
    assert seen["right version"] == seen["wrong version"] == seen["no such row"]
    assert seen["right version"] == (200, [url("changelist")], ["0 article(s) published."])
    assert texts(django) == ["0 article(s) published."]
    assert state() == before


def test_action_leaves_a_hidden_row_out_and_runs_on_the_visible_ones(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    visible, hidden = rows
    for version in (hidden.version, hidden.version + 1):
        Article.objects.filter(pk=visible.pk).update(status="draft")
        visible.refresh_from_db()
        selected = [f"{visible.pk},{visible.version}", f"{hidden.pk},{version}"]
        response = post(
            admin_client,
            url("changelist"),
            {"action": "publish", "index": "0", helpers.ACTION_CHECKBOX_NAME: selected},
        )
        assert texts(response) == ["1 article(s) published."]
        assert Article.objects.get(pk=visible.pk).status == "published"
        assert Article.objects.get(pk=hidden.pk).status == "draft"


def test_a_visible_row_changed_since_the_page_is_still_refused_by_name(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    visible, hidden = rows
    bump(visible, title="Visible, edited")
    selected = [f"{visible.pk},{visible.version}", f"{hidden.pk},{hidden.version}"]
    response = post(
        admin_client,
        url("changelist"),
        {"action": "publish", "index": "0", helpers.ACTION_CHECKBOX_NAME: selected},
    )
    [message] = texts(response)
    assert "“Visible, edited”" in message and "not run" in message
    assert_nothing_revealed([response], hidden)
    assert not Article.objects.filter(status="published").exists()


def test_delete_selected_of_a_hidden_row_deletes_nothing_and_names_nothing(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    _visible, hidden = rows
    answers = []
    for version in (hidden.version, hidden.version + 3):
        data = {
            "action": "delete_selected",
            "index": "0",
            "post": "yes",
            helpers.ACTION_CHECKBOX_NAME: [f"{hidden.pk},{version}"],
        }
        answers.append(post(admin_client, url("changelist"), data))
    assert_nothing_revealed(answers, hidden)
    assert outcome(answers[0]) == outcome(answers[1])
    assert Article.objects.filter(pk=hidden.pk).exists()


# -- item 1: list_editable ----------------------------------------------------------


def _list_post(pk: int, signed: str) -> dict[str, Any]:
    return {
        "form-TOTAL_FORMS": "1",
        "form-INITIAL_FORMS": "1",
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "form-0-id": str(pk),
        "form-0-title": "Overwritten",
        "form-0-status": "published",
        f"form-0-{ROW_VERSION_KEY}": signed,
        "_save": "Save",
    }


def test_list_editable_post_for_a_hidden_row_answers_as_django_for_any_version(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    _visible, hidden = rows
    before = state()
    django = post(admin_client, url("changelist", site="django"), _list_post(hidden.pk, ""))
    answers = [
        post(
            admin_client, url("changelist"), _list_post(hidden.pk, sign_version(Article, hidden.pk, version))
        )
        for version in (hidden.version, hidden.version + 5)
    ]
    assert_nothing_revealed([*answers, django], hidden)
    # Django refuses a pk outside the queryset as an attempt to add a row.
    assert outcome(answers[0]) == outcome(answers[1]) == (django.status_code, [], texts(django))
    assert django.status_code == 400
    assert state() == before


def test_list_editable_row_that_left_the_view_is_not_named(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    visible, hidden = rows
    page = admin_client.get(url("changelist"))
    data = form_data(page.content, "changelist-form", **{"form-0-title": "Mine"})
    data["_save"] = "Save"
    # Someone else changes the row and moves it out of this user's view.
    bump(visible, title="Hidden now")
    response = post(admin_client, url("changelist"), data)
    assert response.status_code == 400  # Django's answer for a pk outside the queryset
    assert "Hidden now" not in " ".join(texts(response)) + response.content.decode()
    assert Article.objects.get(pk=visible.pk).title == "Hidden now"
    assert_nothing_revealed([response], hidden)


# -- item 1: change form, delete page, resolution page -------------------------------


def test_change_and_delete_views_of_a_hidden_row_answer_as_django_does(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    _visible, hidden = rows
    before = state()
    django_delete = post(admin_client, url("delete", hidden.pk, site="django"), {"post": "yes"})
    assert any("doesn’t exist" in m for m in texts(django_delete))
    missing = Article.objects.order_by("-pk").first().pk + 100  # a row that was never there

    def change_form(pk: Any, version: int) -> Any:
        signed = sign_version(Article, pk, version)
        data = {"title": "Mine", "status": "draft", "body": "", "version": signed}
        return post(admin_client, url("change", pk), data)

    # A change form posted for a row outside the view gets the answer a deleted
    # row gets (the input kept, "deleted by someone else"): the same for any
    # version, and the same as for a pk that never existed, so it tells nothing.
    gone = change_form(missing, 1)
    assert gone.status_code == 409
    assert "Mine" in gone.content.decode()
    for version in (hidden.version, hidden.version + 9):
        signed = sign_version(Article, hidden.pk, version)
        change = change_form(hidden.pk, version)
        delete = post(admin_client, url("delete", hidden.pk), {"post": "yes", ROW_VERSION_KEY: signed})
        delete_page = admin_client.get(url("delete", hidden.pk), follow=True)
        assert_nothing_revealed([change, delete, delete_page], hidden)
        assert change.status_code == gone.status_code
        assert texts(change) == texts(gone)
        assert "deleted by someone else" in change.content.decode()
        for ours, djangos in ((delete, django_delete), (delete_page, django_delete)):
            assert ours.status_code == djangos.status_code == 200
            assert texts(ours) == texts(djangos)
    assert state() == before


def test_resolution_post_for_a_row_now_hidden_shows_no_resolution_page(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    visible, hidden = rows
    change = url("change", visible.pk)
    data = form_data(admin_client.get(change).content, "article_form", title="Mine")
    assert data[BASE_FIELD]
    # Someone else edits it (and an admin log entry names them), then it leaves this user's view.
    bump(visible, title="Hidden and changed")
    response = post(admin_client, change, data)
    # The answer a deleted row gets: the user's input again, nothing of the row.
    assert response.status_code == 409
    assert "Resolve" not in response.content.decode()
    assert "Hidden and changed" not in " ".join(texts(response)) + response.content.decode()
    assert "deleted by someone else" in response.content.decode()
    assert Article.objects.get(pk=visible.pk).title == "Hidden and changed"
    assert_nothing_revealed([response], hidden)


def test_change_form_early_check_uses_the_row_the_admin_loaded(
    admin_client: Any, rows: tuple[Article, Article]
) -> None:
    visible, _hidden = rows
    change = url("change", visible.pk, site="admin")
    data = form_data(admin_client.get(change).content, "article_form", title="Mine")
    bump(visible, title="Theirs")
    stale = {k: v for k, v in data.items() if k != BASE_FIELD}
    response = admin_client.post(change, stale)
    assert response.status_code == 200
    assert "Someone else changed this record" in response.content.decode()
    assert Article.objects.get(pk=visible.pk).title == "Theirs"


# -- item 6: the admin's own delete page ----------------------------------------------


def _delete_version(html: str) -> str:
    match = re.search(rf'name="{ROW_VERSION_KEY}" value="([^"]+)"', html)
    assert match, "the delete page carries no version"
    return match.group(1)


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="To delete", status="draft")


def test_delete_page_carries_the_signed_version_and_deletes_when_current(
    admin_client: Any, article: Article
) -> None:
    delete = url("delete", article.pk, site="admin")
    page = admin_client.get(delete)
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("Are you sure you want to delete the article", "Summary", "Objects", "No, take me back"):
        assert text in html
    assert "admin/js/cancel.js" in html and "delete-confirmation" in html
    assert _delete_version(html) == sign_version(Article, article.pk, article.version)
    response = post(admin_client, delete, {"post": "yes", ROW_VERSION_KEY: _delete_version(html)})
    assert response.redirect_chain[-1][0] == url("changelist", site="admin")
    assert any("was deleted successfully" in m for m in texts(response))
    assert not Article.objects.filter(pk=article.pk).exists()


def test_stale_delete_confirmation_is_refused_with_a_message_and_nothing_deleted(
    admin_client: Any, article: Article
) -> None:
    delete = url("delete", article.pk, site="admin")
    signed = _delete_version(admin_client.get(delete).content.decode())
    bump(article, title="Edited meanwhile")
    response = post(admin_client, delete, {"post": "yes", ROW_VERSION_KEY: signed})
    assert response.redirect_chain == [(url("change", article.pk, site="admin"), 302)]
    [message] = texts(response)
    assert "“Edited meanwhile” was changed by someone else after the delete page was loaded" in message
    assert "not deleted" in message
    row = Article.objects.get(pk=article.pk)
    assert (row.title, row.version) == ("Edited meanwhile", 2)
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()
    # The page, opened again, carries the new version, and deletes.
    again = _delete_version(admin_client.get(delete).content.decode())
    assert admin_client.post(delete, {"post": "yes", ROW_VERSION_KEY: again}).status_code == 302
    assert not Article.objects.filter(pk=article.pk).exists()


@pytest.mark.parametrize(
    "value", [None, "", "1", "garbage", "forged:abc", "other-row"], ids=lambda v: repr(v)
)
def test_delete_confirmation_without_a_valid_version_is_refused(
    admin_client: Any, article: Article, value: Any
) -> None:
    delete = url("delete", article.pk, site="admin")
    if value == "other-row":
        other = Article.objects.create(title="Other")
        value = sign_version(Article, other.pk, article.version)
    data = {"post": "yes"} if value is None else {"post": "yes", ROW_VERSION_KEY: value}
    response = post(admin_client, delete, data)
    assert response.redirect_chain == [(url("change", article.pk, site="admin"), 302)]
    [message] = texts(response)
    assert "did not carry a valid version" in message and "not deleted" in message
    assert Article.objects.filter(pk=article.pk).exists()


def test_a_change_landing_after_the_delete_check_is_refused_too(
    admin_client: Any, article: Article, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib import admin

    model_admin = admin.site._registry[Article]
    original = type(model_admin).delete_model

    def delete_model(self: Any, request: Any, obj: Any) -> None:
        # Between the page's check and the DELETE, another save lands.
        Article.objects.filter(pk=obj.pk).update(title="Raced", version=F("version") + 1)
        original(self, request, obj)

    monkeypatch.setattr(type(model_admin), "delete_model", delete_model)
    delete = url("delete", article.pk, site="admin")
    signed = _delete_version(admin_client.get(delete).content.decode())
    response = post(admin_client, delete, {"post": "yes", ROW_VERSION_KEY: signed})
    assert response.redirect_chain == [(url("change", article.pk, site="admin"), 302)]
    assert any("was changed by someone else" in m for m in texts(response))
    # Django's transaction is rolled back: nothing is deleted and no deletion is logged.
    assert Article.objects.filter(pk=article.pk).exists()
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_delete_of_a_row_deleted_meanwhile_answers_as_django_does(
    admin_client: Any, article: Article
) -> None:
    delete = url("delete", article.pk, site="admin")
    signed = _delete_version(admin_client.get(delete).content.decode())
    Article.objects.filter(pk=article.pk).delete()
    response = post(admin_client, delete, {"post": "yes", ROW_VERSION_KEY: signed})
    assert response.status_code == 200
    assert any("doesn’t exist" in m for m in texts(response))


# -- item 6: inlines that leave the version out ---------------------------------------


def test_inline_without_the_version_is_a_warning() -> None:
    model_admin = inline_admin(ItemInlineWithoutVersion)
    warnings = [m for m in model_admin.check() if m.id.startswith("concurrency")]
    from concurrency.admin.checks import check_inlines as _check_inlines

    [warning] = _check_inlines(model_admin)
    assert warning == checks.Warning(
        "tests.support.scoped_admin.ItemInlineWithoutVersion, an inline of demo.Item in "
        "tests.support.scoped_admin.CategoryAdmin, leaves the version field 'version' out of its 'fields', "
        "so the rows it saves are not version-checked.",
        hint="Add 'version' to the inline's 'fields' or 'fieldsets' (it renders as a hidden input).",
        obj=ItemInlineWithoutVersion,
        id="concurrency.A003",
    )
    assert warnings == []  # the parent's own checks are A001/A002, none here
    assert _check_inlines(inline_admin(ItemInlineWithVersion)) == []


def test_inline_check_runs_for_every_registered_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib import admin

    assert [m for m in check_admin_inlines() if m.id == "concurrency.A003"] == []
    site = admin.AdminSite(name="with_bad_inline")
    site.register(
        Category, type("PlainCategoryAdmin", (admin.ModelAdmin,), {"inlines": [ItemInlineWithoutVersion]})
    )
    try:
        found = [m for m in checks.run_checks(tags=[checks.Tags.admin]) if m.id == "concurrency.A003"]
    finally:
        from django.contrib.admin import sites

        sites.all_sites.discard(site)
    assert [m.obj for m in found] == [ItemInlineWithoutVersion]
    assert found[0].level == checks.WARNING
