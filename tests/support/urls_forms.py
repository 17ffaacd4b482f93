"""Views used by the form, middleware and 409 tests (ROOT_URLCONF override)."""

from __future__ import annotations

from django.db.models import F
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse_lazy
from django.views.generic import CreateView, UpdateView

from concurrency.forms import ConcurrentForm
from tests.demo.models import Article


class ArticleForm(ConcurrentForm):
    class Meta:
        model = Article
        fields = ["title", "body", "version"]


class ArticleUpdate(UpdateView):
    model = Article
    form_class = ArticleForm
    template_name = "forms_tests/article_form.html"
    success_url = reverse_lazy("done")


class ArticleCreate(CreateView):
    model = Article
    form_class = ArticleForm
    template_name = "forms_tests/article_form.html"
    success_url = reverse_lazy("done")


def _change_behind_their_back(pk: int) -> None:
    """Make the row newer than any copy loaded so far, as another user's save would."""
    Article.objects.filter(pk=pk).update(title="theirs", version=F("version") + 1)


def stale_save(request: HttpRequest, pk: int) -> HttpResponse:
    """Load a row, let someone else change it, then save the stale copy."""
    article = Article.objects.get(pk=pk)
    _change_behind_their_back(pk)
    article.title = "mine"
    article.save()
    return HttpResponse("saved")


def save_deleted(request: HttpRequest, pk: int) -> HttpResponse:
    article = Article.objects.get(pk=pk)
    Article.objects.filter(pk=pk).delete()
    article.title = "mine"
    article.save()
    return HttpResponse("saved")


async def async_stale_save(request: HttpRequest, pk: int) -> HttpResponse:
    article = await Article.objects.aget(pk=pk)
    await Article.objects.filter(pk=pk).aupdate(title="theirs", version=F("version") + 1)
    article.title = "mine"
    await article.asave()
    return HttpResponse("saved")


def broken(request: HttpRequest) -> HttpResponse:
    raise ValueError("not a conflict")


def custom_handler(request: HttpRequest, target: object = None) -> HttpResponse:
    return HttpResponse(f"custom handler for {target}", status=409)


def done(request: HttpRequest) -> HttpResponse:
    return HttpResponse("done")


urlpatterns = [
    path("articles/add/", ArticleCreate.as_view(), name="article-add"),
    path("articles/<int:pk>/", ArticleUpdate.as_view(), name="article-edit"),
    path("articles/<int:pk>/stale/", stale_save, name="stale-save"),
    path("articles/<int:pk>/deleted/", save_deleted, name="save-deleted"),
    path("articles/<int:pk>/async-stale/", async_stale_save, name="async-stale-save"),
    path("broken/", broken, name="broken"),
    path("done/", done, name="done"),
]
