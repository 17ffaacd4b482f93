"""ConcurrencyMiddleware and the 409 conflict page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.test import RequestFactory, TestCase, TransactionTestCase, override_settings

from concurrency.exceptions import RecordModifiedError
from concurrency.middleware import ConcurrencyMiddleware
from concurrency.views import ConflictResponse, conflict
from tests.demo.models import Article, PlainCounter
from tests.settings import MIDDLEWARE

TEMPLATES_DIR = Path(__file__).parents[1] / "templates"


def templates(*dirs: Path) -> list[dict]:
    return [
        {
            "BACKEND": "django.template.backends.django.DjangoTemplates",
            "DIRS": list(dirs),
            "APP_DIRS": True,
            "OPTIONS": {
                "context_processors": [
                    "django.template.context_processors.request",
                    "django.contrib.auth.context_processors.auth",
                    "django.contrib.messages.context_processors.messages",
                ]
            },
        }
    ]


WITH_MIDDLEWARE = [*MIDDLEWARE, "concurrency.middleware.ConcurrencyMiddleware"]
BUILTIN = templates(TEMPLATES_DIR)
CUSTOM = templates(TEMPLATES_DIR, TEMPLATES_DIR / "custom409")


@override_settings(ROOT_URLCONF="tests.support.urls_forms", MIDDLEWARE=WITH_MIDDLEWARE, TEMPLATES=BUILTIN)
class MiddlewareTests(TransactionTestCase):
    """Requests run outside a test transaction, as in production (autocommit)."""

    def setUp(self) -> None:
        self.article = Article.objects.create(title="orig", body="text")

    def test_conflict_becomes_409_with_the_builtin_page(self) -> None:
        response = self.client.get(f"/articles/{self.article.pk}/stale/")
        assert response.status_code == 409
        assert isinstance(response, ConflictResponse)
        html = response.content.decode()
        assert "Conflict: your changes were not saved" in html
        assert "Someone else changed “mine” while you were editing it" in html
        # A GET submitted no field: the page compares none (tests/http/test_conflict_page.py).
        assert "Fields that differ" not in html
        assert f'href="/articles/{self.article.pk}/stale/"' in html
        row = Article.objects.get(pk=self.article.pk)
        assert (row.title, row.version) == ("theirs", 2)

    def test_deleted_row_says_so(self) -> None:
        response = self.client.get(f"/articles/{self.article.pk}/deleted/")
        assert response.status_code == 409
        # The request sent no field: the view's copy names it (tests/http/test_conflict_page.py).
        assert "Someone else deleted “mine” while you were editing it." in response.content.decode()
        assert not Article.objects.exists()

    def test_object_text_is_escaped_on_the_page(self) -> None:
        Article.objects.filter(pk=self.article.pk).update(title="<b>x</b>")
        response = self.client.get(f"/articles/{self.article.pk}/stale/")
        assert "<b>x</b>" not in response.content.decode()

    @override_settings(TEMPLATES=CUSTOM)
    def test_project_409_template_gets_request_context_and_csrf(self) -> None:
        user = User.objects.create_user("alice", password="pw")
        self.client.force_login(user)
        response = self.client.get(f"/articles/{self.article.pk}/stale/")
        assert response.status_code == 409
        html = response.content.decode()
        assert '<p id="who">alice</p>' in html
        assert '<p id="saved">theirs at version 2</p>' in html
        assert '<p id="attempted">mine at version 1</p>' in html
        assert re.search(r'name="csrfmiddlewaretoken" value="[^"]+"', html)

    @override_settings(TEMPLATES=CUSTOM)
    def test_project_409_template_with_deleted_row(self) -> None:
        response = self.client.get(f"/articles/{self.article.pk}/deleted/")
        assert '<p id="saved">(deleted) at version </p>' in response.content.decode()

    @override_settings(CONCURRENCY_HANDLER409="tests.support.urls_forms.custom_handler")
    def test_handler_setting_is_used(self) -> None:
        response = self.client.get(f"/articles/{self.article.pk}/stale/")
        assert response.status_code == 409
        assert response.content.decode() == "custom handler for mine"

    def test_other_exceptions_pass_through(self) -> None:
        with pytest.raises(ValueError, match="not a conflict"):
            self.client.get("/broken/")

    async def test_async_stack(self) -> None:
        response = await self.async_client.get(f"/articles/{self.article.pk}/async-stale/")
        assert response.status_code == 409
        assert "Someone else changed “mine”" in response.content.decode()
        row = await Article.objects.aget(pk=self.article.pk)
        assert (row.title, row.version) == ("theirs", 2)


@override_settings(ROOT_URLCONF="tests.support.urls_forms", TEMPLATES=BUILTIN)
class WithoutMiddlewareTests(TestCase):
    def test_conflict_propagates(self) -> None:
        article = Article.objects.create(title="orig")
        with pytest.raises(RecordModifiedError):
            self.client.get(f"/articles/{article.pk}/stale/")


class MiddlewareUnitTests(TestCase):
    def test_sync_and_async_capable(self) -> None:
        async def get_response(request: object) -> None:
            return None

        assert ConcurrencyMiddleware.sync_capable and ConcurrencyMiddleware.async_capable
        from asgiref.sync import iscoroutinefunction

        assert iscoroutinefunction(ConcurrencyMiddleware(get_response))
        assert not iscoroutinefunction(ConcurrencyMiddleware(lambda request: None))

    @override_settings(TEMPLATES=BUILTIN)
    def test_process_exception_ignores_other_errors(self) -> None:
        middleware = ConcurrencyMiddleware(lambda request: None)
        request = RequestFactory().get("/")
        assert middleware.process_exception(request, ValueError()) is None
        article = Article.objects.create(title="a")
        response = middleware.process_exception(request, RecordModifiedError(target=article))
        assert response is not None and response.status_code == 409


@override_settings(TEMPLATES=BUILTIN)
class ConflictViewTests(TestCase):
    def test_without_target(self) -> None:
        response = conflict(RequestFactory().get("/x/"))
        assert response.status_code == 409
        assert "Someone else changed this record while you were editing it" in response.content.decode()

    def test_unversioned_target(self) -> None:
        counter = PlainCounter.objects.create(name="c")
        response = conflict(RequestFactory().get("/x/"), target=counter)
        assert response.status_code == 409
        assert "Someone else changed “PlainCounter object" in response.content.decode()

    def test_explicit_template_name_falls_back_when_missing(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.filter(pk=article.pk).update(title="b", version=F("version") + 1)
        request = RequestFactory().post("/x/", {"title": "a"})
        response = conflict(request, target=article, template_name="nope/409.html")
        assert response.status_code == 409
        assert "<td>b</td><td>a</td>" in response.content.decode()

    def test_inside_a_broken_transaction_the_page_still_renders(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.filter(pk=article.pk).update(title="b", version=F("version") + 1)
        with transaction.atomic():
            with pytest.raises(RecordModifiedError) as info:
                article.save()
            response = conflict(RequestFactory().get("/x/"), target=info.value.target)
        assert response.status_code == 409
        assert "Someone else changed “a”" in response.content.decode()
