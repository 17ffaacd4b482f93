"""concurrency.live: the "changed since you opened it" endpoint, the admin hook and the template tag."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.checks import Error
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import F
from django.template import Context, Template
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from concurrency.checks import check_settings
from tests.demo.models import Article, Category, Item

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.support.urls_live")]

SCRIPT_RE = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S)


def scripts(html: str) -> list[tuple[dict[str, str], str]]:
    """Return (attributes, body) of every <script> in ``html``."""
    found = []
    for attrs, body in SCRIPT_RE.findall(html):
        pairs = re.findall(r'([\w-]+)="([^"]*)"', attrs)
        found.append(({name: unescape(value) for name, value in pairs}, body))
    return found


def live_script(response: Any) -> dict[str, str] | None:
    matches = [
        attrs for attrs, _ in scripts(response.content.decode()) if attrs.get("id") == "concurrency-live"
    ]
    assert len(matches) <= 1
    return matches[0] if matches else None


def user_with(username: str, *codenames: str) -> Any:
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def bump(obj: Any) -> None:
    type(obj).objects.filter(pk=obj.pk).update(version=F("version") + 1)


@pytest.fixture
def article() -> Article:
    return Article.objects.create(title="Original", body="text")


def check(client: Any, attrs: dict[str, str], etag: str | None = None) -> Any:
    headers = {"If-None-Match": etag if etag is not None else attrs["data-etag"]}
    return client.get(attrs["data-endpoint"], {"since": attrs["data-since"]}, headers=headers)


# -- the admin change form -------------------------------------------------------------


def test_admin_change_form_carries_the_script_and_no_inline_script(
    admin_client: Any, article: Article
) -> None:
    response = admin_client.get(f"/admin/demo/article/{article.pk}/change/")
    attrs = live_script(response)
    assert attrs is not None
    assert attrs["src"] == "/static/concurrency/live.js"
    assert (
        "defer"
        in response.content.decode().split('id="concurrency-live"')[0].rsplit("<script", 1)[1] + "defer"
    )
    assert attrs["data-endpoint"] == f"/admin/demo/article/{article.pk}/version/"
    assert attrs["data-etag"].startswith('"1-')
    assert attrs["data-interval"] == "30000"
    assert attrs["data-current-url"] == f"/admin/demo/article/{article.pk}/change/"
    # The demo's Article admin resolves conflicts: the notice offers the comparison.
    assert attrs["data-resolve-form"] == "article_form"
    # Strict CSP (script-src 'self'): every script of the page is a file.
    assert all(attrs.get("src") and not body.strip() for attrs, body in scripts(response.content.decode()))


def test_unchanged_row_is_a_304_after_one_query_on_the_table(admin_client: Any, article: Article) -> None:
    attrs = live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None
    with CaptureQueriesContext(connection) as queries:
        response = check(admin_client, attrs)
    assert response.status_code == 304
    assert response.content == b""
    assert response["ETag"] == attrs["data-etag"]
    table = Article._meta.db_table
    on_table = [q["sql"] for q in queries.captured_queries if table in q["sql"]]
    assert len(on_table) == 1
    assert "WHERE" in on_table[0] and "LIMIT 1" in on_table[0].upper()
    # The session and the user, as for any admin request, and nothing else.
    assert len(queries.captured_queries) == 3


def test_a_change_by_someone_else_is_reported_with_who_and_when(
    admin_client: Any, article: Article, django_user_model: Any
) -> None:
    attrs = live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None
    bob = django_user_model.objects.create_superuser("bob", "bob@example.com", "pw")
    other = Client()
    other.force_login(bob)
    page = other.get(f"/admin/demo/article/{article.pk}/change/")
    form = page.context["adminform"].form
    data = {name: form[name].value() for name in ("title", "status", "body", "version")}
    data["title"] = "Bob's title"
    data["_concurrency_base"] = page.context["adminform"].form["_concurrency_base"].value()
    assert other.post(f"/admin/demo/article/{article.pk}/change/", data).status_code == 302
    response = check(admin_client, attrs)
    assert response.status_code == 200
    body = response.json()
    assert body["version"] == 2 and body["deleted"] is False
    assert re.fullmatch(r"Changed by bob at .+ since you opened this page\.", body["message"])
    assert response["ETag"] == body["etag"] != attrs["data-etag"]
    # The new tag is 304 again.
    assert check(admin_client, attrs, body["etag"]).status_code == 304


def test_a_change_outside_the_admin_is_reported_without_a_name(admin_client: Any, article: Article) -> None:
    attrs = live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None
    bump(article)
    body = check(admin_client, attrs).json()
    assert body["message"] == "Someone else changed this record since you opened this page."


def test_a_deleted_row_is_a_404_saying_so(admin_client: Any, article: Article) -> None:
    attrs = live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None
    Article.objects.all().delete()
    response = check(admin_client, attrs)
    assert response.status_code == 404
    assert response.json()["deleted"] is True
    assert response.json()["message"] == "Someone deleted this record since you opened this page."


def test_the_page_holds_the_version_of_the_form_not_of_the_row(admin_client: Any, article: Article) -> None:
    """A form shown again after a refused save still holds the old version: the check says so."""
    page = admin_client.get("/admin/demo/category/add/")
    assert live_script(page) is None  # nothing to watch on an add form
    category = Category.objects.create(name="c")
    page = admin_client.get(f"/admin/demo/category/{category.pk}/change/")
    form = page.context["adminform"].form
    data = {"name": "mine", "version": form["version"].value()}
    data.update({"items-TOTAL_FORMS": "0", "items-INITIAL_FORMS": "0"})
    bump(category)
    refused = admin_client.post(f"/admin/demo/category/{category.pk}/change/", data)
    assert refused.status_code == 200
    attrs = live_script(refused)
    assert attrs is not None and attrs["data-etag"].startswith('"1-')
    assert check(admin_client, attrs).status_code == 200


@pytest.mark.parametrize(
    ("etag", "status"),
    [("", 200), ("*", 200), ('"1-forged0000000000000000"', 200), ("garbage" * 2000, 200), ('W/"1-x"', 200)],
)
def test_hostile_tags_are_answered_not_crashed(
    admin_client: Any, article: Article, etag: str, status: int
) -> None:
    response = admin_client.get(f"/admin/demo/article/{article.pk}/version/", headers={"If-None-Match": etag})
    assert response.status_code == status
    assert response.json()["version"] == 1


@pytest.mark.parametrize("object_id", ["abc", "99999999999999999999999", "-1", "0"])
def test_bad_or_missing_ids_are_404_not_500(admin_client: Any, object_id: str) -> None:
    response = admin_client.get(f"/admin/demo/article/{object_id}/version/")
    assert response.status_code == 404


def test_only_safe_methods(admin_client: Any, article: Article) -> None:
    assert admin_client.post(f"/admin/demo/article/{article.pk}/version/").status_code == 405
    assert admin_client.head(f"/admin/demo/article/{article.pk}/version/").status_code == 200


def test_users_without_view_permission_get_no_script_and_no_answer(client: Any, article: Article) -> None:
    client.force_login(user_with("nobody"))
    assert client.get(f"/admin/demo/article/{article.pk}/change/").status_code == 403
    response = client.get(f"/admin/demo/article/{article.pk}/version/")
    assert response.status_code == 403
    assert "version" not in response.json()
    anonymous = Client()
    assert anonymous.get(f"/admin/demo/article/{article.pk}/version/").status_code == 302  # to the login page


def test_view_only_users_are_told_too(client: Any, article: Article) -> None:
    client.force_login(user_with("viewer", "view_article"))
    attrs = live_script(client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None
    assert "data-resolve-form" not in attrs  # nothing to submit
    assert check(client, attrs).status_code == 304
    bump(article)
    assert check(client, attrs).status_code == 200


@override_settings(CONCURRENCY_LIVE_INTERVAL=0)
def test_interval_zero_switches_the_notice_off(admin_client: Any, article: Article) -> None:
    assert live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/")) is None


@override_settings(CONCURRENCY_LIVE_INTERVAL=2.5)
def test_interval_is_in_seconds(admin_client: Any, article: Article) -> None:
    attrs = live_script(admin_client.get(f"/admin/demo/article/{article.pk}/change/"))
    assert attrs is not None and attrs["data-interval"] == "2500"


def test_inline_rows_alone_are_not_watched(admin_client: Any) -> None:
    """The script watches the object of the page; inline rows have their own checks on save."""
    category = Category.objects.create(name="c")
    Item.objects.create(category=category, name="i")
    response = admin_client.get(f"/admin/demo/category/{category.pk}/change/")
    assert response.content.decode().count('id="concurrency-live"') == 1


@pytest.mark.parametrize("value", [-1, "30", None, True, 86400, float("nan")])
def test_bad_interval_is_a_system_check_error(value: Any) -> None:
    with override_settings(CONCURRENCY_LIVE_INTERVAL=value):
        errors = [e for e in check_settings() if e.id == "concurrency.E016"]
    assert errors == [
        Error(
            f"CONCURRENCY_LIVE_INTERVAL = {value!r} is not a number of seconds.",
            hint="Give the seconds between checks as a number from 0 (off) to 86399; the default is 30.",
            id="concurrency.E016",
        )
    ]


def test_good_intervals_pass_the_check() -> None:
    for value in (0, 30, 0.5):
        with override_settings(CONCURRENCY_LIVE_INTERVAL=value):
            assert not [e for e in check_settings() if e.id == "concurrency.E016"]


# -- {% live_notice form %} on a ConcurrentForm page --------------------------------------


def test_template_tag_renders_the_script_for_users_who_may_view(client: Any, article: Article) -> None:
    client.force_login(user_with("editor", "change_article"))
    response = client.get(f"/articles/{article.pk}/")
    attrs = live_script(response)
    assert attrs is not None
    assert attrs["data-endpoint"] == f"/concurrency/version/demo.article/{article.pk}/"
    assert attrs["data-current-url"] == f"/articles/{article.pk}/"
    assert check(client, attrs).status_code == 304
    bump(article)
    response = check(client, attrs)
    assert response.status_code == 200
    assert response.json()["message"] == "Someone else changed this record since you opened this page."


def test_template_tag_renders_nothing_without_permission(client: Any, article: Article) -> None:
    client.force_login(user_with("stranger"))
    response = client.get(f"/articles/{article.pk}/")
    assert response.status_code == 200
    assert live_script(response) is None
    assert client.get(f"/concurrency/version/demo.article/{article.pk}/").status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/concurrency/version/demo.nothing/1/",
        "/concurrency/version/nolabel/1/",
        "/concurrency/version/demo.plaincounter/1/",
    ],
)
def test_endpoint_404s_for_unknown_or_unversioned_models(admin_client: Any, path: str) -> None:
    assert admin_client.get(path).status_code == 404


def test_template_tag_needs_the_request_and_the_urls(article: Article) -> None:
    template = Template("{% load concurrency_live %}{% live_notice form %}")
    from tests.support.urls_forms import ArticleForm

    form = ArticleForm(instance=article)
    with pytest.raises(ImproperlyConfigured, match=r"context_processors\.request"):
        template.render(Context({"form": form}))
    request = RequestFactory().get("/")
    request.user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    with (
        override_settings(ROOT_URLCONF="tests.urls"),
        pytest.raises(ImproperlyConfigured, match=r"concurrency\.urls"),
    ):
        template.render(Context({"form": form, "request": request}))
    assert template.render(Context({"form": ArticleForm(), "request": request})) == ""


# -- rows the admin hides (issue #22, item 1) ------------------------------------------


def _answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    """What a client sees: status, headers (but the clock's ``Expires``) and body."""
    headers = {name: value for name, value in response.headers.items() if name != "Expires"}
    return response.status_code, headers, response.content


@pytest.mark.urls("tests.support.scoped_admin")
def test_a_hidden_row_answers_as_a_pk_that_never_existed(client: Any, django_user_model: Any) -> None:
    """Bob may view articles; the scoped admin hides "Hidden…" rows. Alice edits and deletes in the admin."""
    from concurrency.http import make_etag

    alice = Client()
    alice.force_login(django_user_model.objects.create_superuser("alice", "alice@example.com", "pw"))
    hidden = Article.objects.create(title="Hidden plan", body="text")
    tags = {"hidden": make_etag(hidden)}
    page = alice.get(f"/admin/demo/article/{hidden.pk}/change/")
    data = {n: page.context["adminform"].form[n].value() for n in ("title", "status", "body", "version")}
    data["_concurrency_base"] = page.context["adminform"].form["_concurrency_base"].value()
    data["title"] = "Hidden plan, revised"
    assert alice.post(f"/admin/demo/article/{hidden.pk}/change/", data).status_code == 302
    never = Article.objects.order_by("-pk").values_list("pk", flat=True)[0] + 100
    client.force_login(user_with("bob", "view_article"))
    since = {"since": "2000-01-01T00:00:00+00:00"}

    def ask(pk: Any, tag: str | None = None) -> Any:
        headers = {"If-None-Match": tag} if tag else {}
        return client.get(f"/scoped/demo/article/{pk}/version/", since, headers=headers)

    reference = ask(never)
    assert reference.status_code == 404
    assert reference.json()["message"] == "Someone deleted this record since you opened this page."
    # With no tag, a forged one, or the genuine tag of the hidden row: the answer of a pk never there.
    for tag in (None, '"1-forged"', tags["hidden"], make_etag(Article.objects.get(pk=hidden.pk))):
        response = ask(hidden.pk, tag)
        assert _answer(response) == _answer(ask(never, tag)) == _answer(reference), tag
        assert "alice" not in response.content.decode()


@pytest.mark.urls("tests.support.scoped_admin")
def test_a_row_deleted_in_the_admin_names_who_to_a_page_that_showed_it(
    client: Any, django_user_model: Any
) -> None:
    from concurrency.http import make_etag

    alice = Client()
    alice.force_login(django_user_model.objects.create_superuser("alice", "alice@example.com", "pw"))
    article = Article.objects.create(title="Visible", body="text")
    tag = make_etag(article)
    client.force_login(user_with("bob", "view_article"))
    attrs = live_script(client.get(f"/scoped/demo/article/{article.pk}/change/"))
    assert attrs is not None and attrs["data-etag"] == tag
    delete = f"/admin/demo/article/{article.pk}/delete/"
    version = re.search(r'name="_concurrency_version" value="([^"]+)"', alice.get(delete).content.decode())
    assert version is not None
    assert alice.post(delete, {"post": "yes", "_concurrency_version": version[1]}).status_code == 302
    assert not Article.objects.exists()
    named = check(client, attrs)
    assert named.status_code == 404
    assert re.fullmatch(r"Deleted by alice at .+ since you opened this page\.", named.json()["message"])
    # Without the page's tag, the same pk is answered as one that never existed.
    untagged = client.get(attrs["data-endpoint"], {"since": attrs["data-since"]})
    assert untagged.json()["message"] == "Someone deleted this record since you opened this page."
