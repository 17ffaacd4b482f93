"""The demo's plain-Django JSON API for articles, guarded by ``concurrency.http``.

The same endpoint three ways: a function view, an async function view and a
class-based view. They are JSON APIs for non-browser clients (curl), hence
``csrf_exempt``; a real API would authenticate its callers.
"""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async
from django import forms
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from django.views.generic import UpdateView
from django.views.generic.detail import SingleObjectMixin

from concurrency.http import PreconditionFailed, PreconditionMixin, apply_preconditions, preconditions

from .models import Article

EDITABLE = ("title", "body", "status")
METHODS = ["GET", "HEAD", "PUT", "PATCH", "DELETE"]


def as_dict(article: Article) -> dict[str, Any]:
    return {
        "id": article.pk,
        "title": article.title,
        "body": article.body,
        "status": article.status,
        "version": article.version,
    }


def _change(request: HttpRequest, article: Article) -> JsonResponse | None:
    """Apply a PUT or PATCH body to ``article``; return a 400 response if it is invalid."""
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(data, dict):
        return JsonResponse({"detail": "The body must be a JSON object."}, status=400)
    if request.method == "PUT":
        missing = [name for name in ("title",) if name not in data]
        if missing:
            return JsonResponse({name: ["This field is required."] for name in missing}, status=400)
    for name in EDITABLE:
        if name in data:
            setattr(article, name, data[name])
    try:
        article.full_clean(exclude=["version"])
    except ValidationError as error:
        return JsonResponse(error.message_dict, status=400)
    return None


def _delete(article: Article) -> HttpResponse:
    with transaction.atomic():
        deleted, _rows = article.delete()
    if not deleted:
        raise PreconditionFailed("The record has been deleted by someone else.", kind="deleted")
    return HttpResponse(status=204)


def _save(article: Article) -> JsonResponse:
    # A savepoint keeps a surrounding transaction usable after a refused save.
    with transaction.atomic():
        article.save()
    return JsonResponse(as_dict(article))


@csrf_exempt
@require_http_methods(METHODS)
@preconditions
def article_detail(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        article = apply_preconditions(request, Article.objects.get(pk=pk))
    except Article.DoesNotExist:
        raise Http404("No such article") from None
    if request.method == "DELETE":
        return _delete(article)
    if request.method in ("PUT", "PATCH"):
        return _change(request, article) or _save(article)
    return JsonResponse(as_dict(article))


@csrf_exempt
@require_http_methods(METHODS)
@preconditions
async def article_detail_async(request: HttpRequest, pk: int) -> HttpResponse:
    try:
        article = apply_preconditions(request, await Article.objects.aget(pk=pk))
    except Article.DoesNotExist:
        raise Http404("No such article") from None
    if request.method == "DELETE":
        return await sync_to_async(_delete)(article)
    if request.method in ("PUT", "PATCH"):
        return _change(request, article) or await sync_to_async(_save)(article)
    return JsonResponse(as_dict(article))


@method_decorator(csrf_exempt, name="dispatch")
class ArticleDetailView(PreconditionMixin, SingleObjectMixin, View):
    model = Article
    http_method_names = ["get", "head", "put", "patch", "delete"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return JsonResponse(as_dict(self.get_object()))

    def put(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        article = self.get_object()
        return _change(request, article) or _save(article)

    patch = put

    def delete(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _delete(self.get_object())


class ArticleEditForm(forms.ModelForm):
    """A plain ModelForm: the signed version is posted back and saved with, nothing is checked early."""

    class Meta:
        model = Article
        fields = ["title", "body", "status", "version"]


class ArticleEditView(UpdateView):
    """An HTML edit page without any conflict handling of its own.

    A stale save raises ``RecordModifiedError`` from ``form.save()``; the
    demo's ``ConcurrencyMiddleware`` answers it with the 409 page.
    """

    model = Article
    form_class = ArticleEditForm
    template_name = "demo/article_edit.html"

    def get_success_url(self) -> str:
        return self.request.path
