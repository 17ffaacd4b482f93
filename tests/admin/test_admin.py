"""ConcurrentModelAdmin through Django's test client: change form, inlines, actions, list_editable."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.db import connection
from django.db.models import F
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from concurrency.admin.list_editable import ChangelistFormSet as _ChangelistFormSet
from concurrency.compat import DJANGO_61
from concurrency.conf import LIST_EDITABLE_POLICY_ABORT_ALL, LIST_EDITABLE_POLICY_SILENT
from concurrency.forms import ConcurrentForm
from concurrency.signing import sign_version
from tests.demo.models import Article, Category, Item
from tests.support.form_reader import form_data

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.plain_admin")]

SUCCESS = "changed successfully"


def change_url(obj: Any, site: str = "admin") -> str:
    return reverse(f"{site}:demo_{obj._meta.model_name}_change", args=[obj.pk])


def changelist_url(model: Any, site: str = "admin") -> str:
    return reverse(f"{site}:demo_{model._meta.model_name}_changelist")


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def bump(obj: Any, **values: Any) -> None:
    """Change a row behind the admin's back, as another user's save would."""
    type(obj).objects.filter(pk=obj.pk).update(version=F("version") + 1, **values)


def row_errors(response: Any, inline: int = 0) -> dict[int, list[str]]:
    """Return the errors shown on each row of an inline, by row index (rows without errors left out)."""
    formset = response.context["inline_admin_formsets"][inline].formset
    return {
        index: [str(error) for error in form.non_field_errors()]
        for index, form in enumerate(formset.forms)
        if form.non_field_errors()
    }


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Original", body="text", status="draft")


@pytest.fixture
def articles() -> list[Article]:
    return [Article.objects.create(title=f"Row {n:03d}", status="draft") for n in range(5)]


# -- change form ---------------------------------------------------------------


def test_change_form_shows_the_version_and_saves(admin_client: Any, article: Article) -> None:
    page = admin_client.get(change_url(article))
    assert page.status_code == 200
    assert 'class="concurrency-version">1<' in page.content.decode()
    response = admin_client.post(change_url(article), form_data(page.content, "article_form", title="Edited"))
    assert response.status_code == 302
    article.refresh_from_db()
    assert (article.title, article.version) == ("Edited", 2)
    assert any(SUCCESS in m for m in texts(response))


# Without ConflictResolutionMixin (the demo has it: tests/admin/test_resolution_admin.py).


def test_second_save_is_refused_and_keeps_the_input(admin_client: Any, article: Article) -> None:
    url = change_url(article, "bare")
    first = form_data(admin_client.get(url).content, "article_form", title="First")
    second = form_data(admin_client.get(url).content, "article_form", title="Second typed")
    assert admin_client.post(url, first, follow=True).status_code == 200
    response = admin_client.post(url, second)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Someone else changed this record" in html
    assert 'value="Second typed"' in html
    assert not any(SUCCESS in m for m in texts(response))
    article.refresh_from_db()
    assert (article.title, article.version) == ("First", 2)


def test_conflict_after_validation_is_a_form_error_not_a_success(
    admin_client: Any, article: Article, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = form_data(admin_client.get(change_url(article, "bare")).content, "article_form", title="Mine")
    bump(article, body="theirs")
    # The other write lands after clean() (the form's early check) and before the UPDATE.
    monkeypatch.setattr(ConcurrentForm, "_check_current", lambda self, version: None)
    response = admin_client.post(change_url(article, "bare"), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "errornote" in html
    assert 'value="Mine"' in html
    assert not any(SUCCESS in m for m in texts(response))
    article.refresh_from_db()
    assert (article.title, article.body, article.version) == ("Original", "theirs", 2)


def test_tampered_version_is_a_form_error(admin_client: Any, article: Article) -> None:
    data = form_data(admin_client.get(change_url(article)).content, "article_form", title="Forged")
    data["version"] = sign_version(Article, article.pk + 1, 1)
    response = admin_client.post(change_url(article), data)
    assert response.status_code == 200
    assert "not valid" in response.content.decode()
    article.refresh_from_db()
    assert article.title == "Original"


def test_add_view_creates(admin_client: Any) -> None:
    url = reverse("admin:demo_article_add")
    data = form_data(admin_client.get(url).content, "article_form", title="New", status="draft")
    assert admin_client.post(url, data).status_code == 302
    assert Article.objects.get(title="New").version == 1


def test_delete_view_deletes_with_the_version_it_showed(admin_client: Any, article: Article) -> None:
    url = reverse("admin:demo_article_delete", args=[article.pk])
    page = admin_client.get(url)
    assert page.status_code == 200
    data = {n: v for n, v in _all_inputs(page.content.decode()) if n in ("post", "_concurrency_version")}
    assert admin_client.post(url, data).status_code == 302
    assert not Article.objects.filter(pk=article.pk).exists()


# -- inlines -------------------------------------------------------------------


def test_inline_conflict_refuses_the_whole_save(admin_client: Any) -> None:
    category = Category.objects.create(name="Tools")
    items = [Item.objects.create(category=category, name=f"item {n}") for n in range(2)]
    page = admin_client.get(change_url(category))
    html = page.content.decode()
    assert 'class="concurrency-version">1<' in html
    data = form_data(html, "category_form", name="Tools renamed")
    data["items-0-name"] = "mine"
    bump(items[0], name="theirs")
    response = admin_client.post(change_url(category), data)
    assert response.status_code == 200
    html = response.content.decode()
    # The row is named as stored, not by what the user typed into it, and marked.
    assert row_errors(response) == {
        0: [
            "Someone else changed item “theirs” after you opened this page, so your changes were not "
            "saved. Reload the page to see its current values."
        ]
    }
    assert "“mine”" not in html
    assert "while you were saving" not in html
    assert 'value="mine"' in html
    assert 'value="Tools renamed"' in html
    assert not any(SUCCESS in m for m in texts(response))
    category.refresh_from_db()
    items[0].refresh_from_db()
    assert (category.name, category.version, items[0].name) == ("Tools", 1, "theirs")


def test_inline_refusal_marks_and_names_the_row_someone_else_changed(admin_client: Any) -> None:
    """B changed item 2, A changed item 3 (and saved the category): B's refusal names item 3 as stored."""
    category = Category.objects.create(name="Hardware")
    items = [Item.objects.create(category=category, name=f"Hardware item {n}") for n in (1, 2, 3)]
    url = change_url(category)
    data_b = form_data(admin_client.get(url).content, "category_form")
    data_a = form_data(admin_client.get(url).content, "category_form")
    data_b["items-1-name"] = "Hardware item 2 (B inline)"
    data_b["name"] = "Hardware (B)"
    data_a["items-2-name"] = "Hardware item 3 (A)"
    assert admin_client.post(url, data_a).status_code == 302

    response = admin_client.post(url, data_b)
    assert response.status_code == 200
    html = response.content.decode()
    assert row_errors(response) == {
        2: [
            "Someone else changed item “Hardware item 3 (A)” after you opened this page, so your changes "
            "were not saved. Reload the page to see its current values."
        ]
    }
    # The row is marked where it is shown: the error row right above item 3's inputs.
    marked = html.index('class="row-form-errors"')
    assert html.index('name="items-1-name"') < marked < html.index('name="items-2-name"')
    # The row labels and the heading name what is stored; what B sent stays in the inputs.
    labels = re.findall(r'<td class="original">\s*<p>\s*([^<]*?)\s*<', html)
    assert labels == ["Hardware item 1", "Hardware item 2", "Hardware item 3 (A)"]
    assert "<h2>Hardware</h2>" in html and 'value="Hardware (B)"' in html
    assert 'value="Hardware item 2 (B inline)"' in html and 'value="Hardware item 3"' in html
    assert [i.name for i in Item.objects.order_by("pk")] == [
        "Hardware item 1",
        "Hardware item 2",
        "Hardware item 3 (A)",
    ]
    assert items[1].version == Item.objects.get(pk=items[1].pk).version


def test_inline_row_changed_by_someone_else_and_untouched_by_the_user_is_not_refused(
    admin_client: Any,
) -> None:
    """A row the user left alone and only the version moved on is not saved, so not a conflict."""
    category = Category.objects.create(name="Tools")
    items = [Item.objects.create(category=category, name=f"item {n}") for n in range(2)]
    data = form_data(admin_client.get(change_url(category)).content, "category_form")
    data["items-0-name"] = "mine"
    bump(items[1])
    assert admin_client.post(change_url(category), data).status_code == 302
    assert [(i.name, i.version) for i in Item.objects.order_by("pk")] == [("mine", 2), ("item 1", 2)]


def test_the_blank_extra_inline_row_shows_no_version(admin_client: Any) -> None:
    category = Category.objects.create(name="Tools")
    Item.objects.create(category=category, name="hammer")
    html = admin_client.get(change_url(category)).content.decode()
    versions = re.findall(r'<div class="concurrency-version">([^<]*)</div>', html)
    # The category, its row, the blank extra row, and the template row "Add another" copies.
    assert versions == ["1", "1", "", ""]
    add = admin_client.get(reverse("admin:demo_category_add")).content.decode()
    assert re.findall(r'<div class="concurrency-version">([^<]*)</div>', add) == ["", "", ""]


def test_inline_rows_save_with_their_versions(admin_client: Any) -> None:
    category = Category.objects.create(name="Tools")
    item = Item.objects.create(category=category, name="hammer")
    data = form_data(admin_client.get(change_url(category)).content, "category_form")
    data["items-0-name"] = "saw"
    assert admin_client.post(change_url(category), data).status_code == 302
    item.refresh_from_db()
    assert (item.name, item.version) == ("saw", 2)


# -- actions -------------------------------------------------------------------


def action_data(page: Any, selected: list[str], action: str = "publish") -> dict[str, Any]:
    return {"action": action, "index": "0", helpers.ACTION_CHECKBOX_NAME: selected}


def checkbox_values(html: str) -> list[str]:
    return [v for n, v in _all_inputs(html) if n == helpers.ACTION_CHECKBOX_NAME]


def _all_inputs(html: str) -> list[tuple[str, str]]:
    import re

    return re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', html)


def test_checkboxes_carry_pk_and_version(admin_client: Any, articles: list[Article]) -> None:
    html = admin_client.get(changelist_url(Article)).content.decode()
    assert sorted(checkbox_values(html)) == sorted(f"{a.pk},{a.version}" for a in articles)


def test_action_runs_on_current_selection(admin_client: Any, articles: list[Article]) -> None:
    selected = [f"{a.pk},{a.version}" for a in articles[:2]]
    response = admin_client.post(changelist_url(Article), action_data(None, selected))
    assert response.status_code == 302
    assert list(Article.objects.filter(status="published").values_list("pk", flat=True)) == [
        a.pk for a in articles[:2]
    ]


def test_stale_selection_aborts_and_names_the_rows(admin_client: Any, articles: list[Article]) -> None:
    selected = [f"{a.pk},{a.version}" for a in articles[:3]]
    bump(articles[1], title="Changed elsewhere")
    response = admin_client.post(changelist_url(Article), action_data(None, selected))
    assert response.status_code == 302
    [message] = texts(response)
    assert message == (
        "“Changed elsewhere” was changed by someone else after this page was loaded. The action was not "
        "run; no items have been changed. The list now shows the current values: select the items again "
        "to run it."
    )
    # The refusal reloads the list, so the message does not ask for a reload.
    assert response["Location"] == changelist_url(Article)
    assert "Reload" not in message
    assert not Article.objects.filter(status="published").exists()


def test_deleted_row_in_selection_is_left_out_as_django_does(
    admin_client: Any, articles: list[Article]
) -> None:
    selected = [f"{a.pk},{a.version}" for a in articles[:2]]
    gone = articles[0].pk
    Article.objects.filter(pk=gone).delete()
    response = admin_client.post(changelist_url(Article), action_data(None, selected))
    assert texts(response) == ["1 article(s) published."]
    assert list(Article.objects.filter(status="published").values_list("pk", flat=True)) == [articles[1].pk]


@pytest.mark.parametrize("value", ["garbage", "1,x", ",3", "abc,1", "", "1,2,"])
def test_malformed_selection_is_a_message(admin_client: Any, articles: list[Article], value: str) -> None:
    response = admin_client.post(changelist_url(Article), action_data(None, [value]))
    assert response.status_code == 302
    assert any("could not be read" in m or "must be selected" in m for m in texts(response))
    assert not Article.objects.filter(status="published").exists()


def test_check_can_be_switched_off_but_selection_is_honoured(
    admin_client: Any, articles: list[Article], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin.site._registry[Article], "check_concurrent_action", False)
    html = admin_client.get(changelist_url(Article)).content.decode()
    assert str(articles[0].pk) in checkbox_values(html)
    bump(articles[0])
    response = admin_client.post(changelist_url(Article), action_data(None, [str(articles[0].pk)]))
    assert response.status_code == 302
    assert list(Article.objects.filter(status="published").values_list("pk", flat=True)) == [articles[0].pk]


def test_select_across_checks_the_page_and_runs_on_all(admin_client: Any, articles: list[Article]) -> None:
    selected = [f"{a.pk},{a.version}" for a in articles]
    data = {**action_data(None, selected), "select_across": "1"}
    bump(articles[4])
    response = admin_client.post(changelist_url(Article), data)
    assert "not run" in texts(response)[0]
    assert not Article.objects.filter(status="published").exists()
    selected[4] = f"{articles[4].pk},{articles[4].version + 1}"
    extra = Article.objects.create(title="Not on the page")
    data = {**action_data(None, selected), "select_across": "1"}
    assert admin_client.post(changelist_url(Article), data).status_code == 302
    extra.refresh_from_db()
    assert extra.status == "published"
    assert Article.objects.exclude(status="published").count() == 0


def test_delete_selected_confirmation_matches_django_and_posts_versions(
    admin_client: Any, articles: list[Article]
) -> None:
    selected = [f"{a.pk},{a.version}" for a in articles[:2]]
    page = admin_client.post(changelist_url(Article), action_data(None, selected, "delete_selected"))
    assert page.status_code == 200
    html = page.content.decode()
    for text in (
        "Are you sure you want to delete the selected articles?",
        "No, take me back",
        "Summary",
        "Objects",
    ):
        assert text in html
    assert "admin/js/cancel.js" in html and "delete-selected-confirmation" in html
    data = form_data(html, None)
    data = {k: v for k, v in form_data(html).items() if k != "q"}
    confirm = {n: v for n, v in _all_inputs(html) if n in ("action", "post", "select_across", "index")}
    assert confirm == {"action": "delete_selected", "post": "yes", "select_across": "0", "index": "0"}
    assert sorted(checkbox_values(html)) == sorted(selected)
    final = {**confirm, helpers.ACTION_CHECKBOX_NAME: checkbox_values(html)}

    bump(articles[0], title="Edited meanwhile")
    response = admin_client.post(changelist_url(Article), final)
    assert "“Edited meanwhile”" in texts(response)[0]
    assert Article.objects.count() == 5

    final[helpers.ACTION_CHECKBOX_NAME] = [f"{articles[0].pk},{articles[0].version + 1}", selected[1]]
    response = admin_client.post(changelist_url(Article), final)
    assert response.status_code == 302
    assert any("Successfully deleted 2" in m for m in texts(response))
    assert Article.objects.count() == 3
    del data


def test_action_costs_one_query_more_than_django(admin_client: Any, articles: list[Article]) -> None:
    for n in range(95):
        Article.objects.create(title=f"More {n}")
    counts = {}
    for site in ("plain", "admin"):
        Article.objects.update(status="draft")
        rows = list(Article.objects.all())
        selected = [f"{a.pk},{a.version}" if site == "admin" else str(a.pk) for a in rows]
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.post(changelist_url(Article, site), action_data(None, selected))
        assert response.status_code == 302
        assert Article.objects.filter(status="published").count() == 100, (site, texts(response))
        counts[site] = len(ctx.captured_queries)
    assert counts["admin"] <= counts["plain"] + 1


# -- list_editable -------------------------------------------------------------


def changelist_data(admin_client: Any, **rows: dict[str, str]) -> dict[str, Any]:
    html = admin_client.get(changelist_url(Article)).content.decode()
    data = form_data(html, "changelist-form", _save="Save")
    data.pop("action", None)
    data.pop("select_across", None)
    data.pop(helpers.ACTION_CHECKBOX_NAME, None)
    for prefix, values in rows.items():
        for name, value in values.items():
            data[f"{prefix}-{name}"] = value
    return data


def test_a_conflict_lists_only_the_fields_the_user_changed_even_when_both_changed_the_row(
    admin_client: Any, articles: list[Article]
) -> None:
    data = changelist_data(admin_client, **{"form-0": {"title": "Mine", "status": "review"}})
    bump(articles[0], status="published")
    response = admin_client.post(changelist_url(Article), data)
    [warning] = texts(response)
    assert "(Title: Mine; Status: In review)" in warning
    # A page without the shown values (an old tab) lists what differs from the row now, as before.
    del data["form-0-_concurrency_shown"]
    bump(articles[0], title="Theirs")
    data["form-0-_concurrency_version"] = sign_version(Article, articles[0].pk, 2)
    warning = texts(admin_client.post(changelist_url(Article), data))[-1]
    assert "(Title: Mine; Status: In review)" in warning


def test_rows_carry_signed_versions(admin_client: Any, articles: list[Article]) -> None:
    data = changelist_data(admin_client)
    for index, article in enumerate(articles):
        assert data[f"form-{index}-id"] == str(article.pk)
        assert data[f"form-{index}-_concurrency_version"] == sign_version(
            Article, article.pk, article.version
        )


def test_list_editable_saves_with_versions(admin_client: Any, articles: list[Article]) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "review"}, "form-1": {"title": "T1"}})
    response = admin_client.post(changelist_url(Article), data)
    assert response.status_code == 302
    assert texts(response) == ["2 articles were changed successfully."]
    articles[0].refresh_from_db()
    articles[1].refresh_from_db()
    assert (articles[0].status, articles[0].version, articles[1].title, articles[1].version) == (
        "review",
        2,
        "T1",
        2,
    )


def test_silent_policy_saves_the_others_and_names_the_conflicts(
    admin_client: Any, articles: list[Article]
) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "published"}, "form-1": {"title": "Mine"}})
    bump(articles[0], title="Theirs")
    response = admin_client.post(changelist_url(Article), data)
    assert response.status_code == 302
    success, warning = texts(response)
    assert success == "1 article was changed successfully."
    # Only what the user changed is listed: the title was the other person's change, not theirs.
    assert warning == (
        "Article “Theirs” was changed by someone else after this page was loaded, so the values you sent "
        "for it were not saved (Status: Published). It is shown with its current values."
    )
    articles[0].refresh_from_db()
    articles[1].refresh_from_db()
    assert (articles[0].title, articles[0].status, articles[0].version) == ("Theirs", "draft", 2)
    assert (articles[1].title, articles[1].version) == ("Mine", 2)
    html = admin_client.get(response.url).content.decode()
    assert 'value="Theirs"' in html


def test_rows_changed_by_others_are_never_overwritten_with_stale_values(
    admin_client: Any, articles: list[Article]
) -> None:
    # Plain Django sees the stale title posted for row 0 as an edit and writes it back.
    # The user changed nothing in row 0: it is left as the other person saved it, without a warning.
    data = changelist_data(admin_client, **{"form-1": {"title": "Mine"}})
    bump(articles[0], title="Theirs")
    response = admin_client.post(changelist_url(Article), data)
    assert texts(response) == ["1 article was changed successfully."]
    assert Article.objects.get(pk=articles[0].pk).title == "Theirs"
    assert Article.objects.get(pk=articles[1].pk).title == "Mine"


@override_settings(CONCURRENCY_POLICY=LIST_EDITABLE_POLICY_ABORT_ALL)
def test_abort_all_policy_saves_nothing_and_keeps_the_input(
    admin_client: Any, articles: list[Article]
) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "published"}, "form-1": {"title": "Mine"}})
    bump(articles[0], title="Theirs")
    response = admin_client.post(changelist_url(Article), data)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Nothing was saved" in html
    assert 'value="Mine"' in html
    assert any("“Theirs”" in m and "nothing was saved" in m for m in texts(response))
    assert list(Article.objects.values_list("version", flat=True)) == [2, 1, 1, 1, 1]
    assert Article.objects.get(pk=articles[1].pk).title == "Row 001"


def test_policy_is_read_per_request(admin_client: Any, articles: list[Article]) -> None:
    for policy, saved in ((LIST_EDITABLE_POLICY_ABORT_ALL, False), (LIST_EDITABLE_POLICY_SILENT, True)):
        Article.objects.filter(pk=articles[1].pk).update(title="Row 001")
        data = changelist_data(
            admin_client, **{"form-0": {"status": "published"}, "form-1": {"title": "Mine"}}
        )
        bump(articles[0])
        with override_settings(CONCURRENCY_POLICY=policy):
            admin_client.post(changelist_url(Article), data)
        assert (Article.objects.get(pk=articles[1].pk).title == "Mine") is saved


def test_conflict_after_validation_is_rerun_under_the_policy(
    admin_client: Any, articles: list[Article], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "published"}, "form-1": {"title": "Mine"}})
    bump(articles[0], title="Theirs")
    # The other write lands between the comparison and the UPDATE: the first
    # pass compares against the row as it was when the page was loaded.
    passes = []
    real_clean = _ChangelistFormSet.clean

    def clean_before_the_write(self: Any) -> None:
        passes.append(1)
        if len(passes) == 1:
            for form in self.initial_forms:
                if form.instance.pk == articles[0].pk:
                    form.instance.version = articles[0].version
        real_clean(self)

    monkeypatch.setattr(_ChangelistFormSet, "clean", clean_before_the_write)
    response = admin_client.post(changelist_url(Article), data)
    assert len(passes) == 2
    assert response.status_code == 302
    success, warning = texts(response)
    assert success == "1 article was changed successfully."
    assert "“Theirs”" in warning
    first, second = Article.objects.filter(pk__in=[articles[0].pk, articles[1].pk])
    assert (first.title, first.status, first.version) == ("Theirs", "draft", 2)
    assert (second.title, second.version) == ("Mine", 2)


@pytest.mark.parametrize("version", ["", "7", "garbage", "other-row"])
def test_bad_row_version_is_a_row_error(admin_client: Any, articles: list[Article], version: str) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "published"}})
    if version == "other-row":
        version = sign_version(Article, articles[1].pk, articles[0].version)
    data["form-0-_concurrency_version"] = version
    response = admin_client.post(changelist_url(Article), data)
    assert response.status_code == 200
    assert "The version of this row is missing or not valid" in response.content.decode()
    assert Article.objects.get(pk=articles[0].pk).status == "draft"


@pytest.mark.parametrize(
    "tamper",
    [
        {"form-TOTAL_FORMS": "garbage"},
        {"form-TOTAL_FORMS": None, "form-INITIAL_FORMS": None},
        {"form-0-id": "not-a-pk"},
        {"form-0-id": "999999"},
        {"form-INITIAL_FORMS": "0"},
    ],
)
def test_bad_management_data_never_500(admin_client: Any, articles: list[Article], tamper: dict) -> None:
    data = changelist_data(admin_client, **{"form-0": {"status": "published"}})
    for key, value in tamper.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    response = admin_client.post(changelist_url(Article), data)
    assert response.status_code in (200, 302, 400)
    assert Article.objects.get(pk=articles[0].pk).status == "draft"


def test_list_editable_adds_at_most_two_queries_for_100_rows(admin_client: Any) -> None:
    for n in range(100):
        Article.objects.create(title=f"Row {n:03d}")
    counts = {}
    for site in ("plain", "admin"):
        html = admin_client.get(changelist_url(Article, site)).content.decode()
        data = form_data(html, "changelist-form", _save="Save")
        data.pop("action", None)
        for index in range(100):
            data[f"form-{index}-title"] = f"{site} {index}"
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.post(changelist_url(Article, site), data)
        assert response.status_code == 302
        assert Article.objects.filter(title__startswith=site).count() == 100
        counts[site] = len(ctx.captured_queries)
    assert counts["admin"] <= counts["plain"] + 2


# -- models without a version field, system checks ------------------------------


def test_non_versioned_models_work_as_usual(admin_client: Any) -> None:
    from concurrency.admin import ConcurrentModelAdmin
    from tests.demo.models import PlainCounter

    site = admin.AdminSite(name="plain_model")
    model_admin = ConcurrentModelAdmin(PlainCounter, site)
    counter = PlainCounter.objects.create(name="c")
    assert f'value="{counter.pk}"' in model_admin.action_checkbox(counter)


def test_view_only_user_gets_the_read_only_page(client: Any, article: Article) -> None:
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_article"))
    client.force_login(user)
    response = client.get(change_url(article))
    assert response.status_code == 200
    assert "Original" in response.content.decode()
    assert client.post(change_url(article), {"title": "Nope"}).status_code == 403


@pytest.mark.skipif(not DJANGO_61, reason="change-form actions are new in Django 6.1")
def test_change_form_actions_of_django_61_run(admin_client: Any, article: Article) -> None:
    from django.contrib.admin.options import ActionLocation

    model_admin = admin.site._registry[Article]

    @admin.action(description="Archive", location=[ActionLocation.CHANGE_FORM])
    def archive(modeladmin: Any, request: Any, queryset: Any) -> None:
        for obj in queryset:
            obj.status = "review"
            obj.save()

    original = model_admin.actions
    model_admin.actions = [*original, archive]
    try:
        page = admin_client.get(change_url(article))
        assert "Archive" in page.content.decode()
        data = {"CHANGE_FORM-action": "archive", helpers.ACTION_CHECKBOX_NAME: str(article.pk)}
        response = admin_client.post(change_url(article), data)
    finally:
        model_admin.actions = original
    assert response.status_code == 302
    article.refresh_from_db()
    assert (article.status, article.version) == ("review", 2)


def test_string_pks_with_commas_are_read_from_the_right() -> None:
    from django.test import RequestFactory

    from concurrency.admin import ConcurrentModelAdmin
    from tests.demo.models import ExplicitPk

    model_admin = ConcurrentModelAdmin(ExplicitPk, admin.AdminSite(name="explicit"))
    request = RequestFactory().post("/")
    assert model_admin._parse_selection(request, ExplicitPk, ["a,b,3", "plain,12"]) == [
        ("a,b", 3),
        ("plain", 12),
    ]
