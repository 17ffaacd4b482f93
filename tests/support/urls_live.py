"""The admin plus a ConcurrentForm page using ``{% live_notice %}`` (tests/admin/test_live*.py)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth.mixins import LoginRequiredMixin
from django.urls import include, path
from django.views.generic import UpdateView

from tests.demo.models import Article
from tests.support.urls_forms import ArticleForm


class ArticleEdit(LoginRequiredMixin, UpdateView):
    model = Article
    form_class = ArticleForm
    template_name = "demo/article_live_form.html"
    success_url = "/done/"


urlpatterns = [
    path("admin/", admin.site.urls),
    path("concurrency/", include("concurrency.urls")),
    path("articles/<int:pk>/", ArticleEdit.as_view(), name="article-edit"),
]
