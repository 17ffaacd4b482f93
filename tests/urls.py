from django.contrib import admin
from django.urls import include, path

from tests.demo import views
from tests.demo.api import router

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include(router.urls)),
    path("plain/articles/<int:pk>/", views.article_detail, name="plain-article"),
    path("plain/async/articles/<int:pk>/", views.article_detail_async, name="plain-article-async"),
    path("plain/cbv/articles/<int:pk>/", views.ArticleDetailView.as_view(), name="plain-article-cbv"),
    path("plain/articles/<int:pk>/edit/", views.ArticleEditView.as_view(), name="plain-article-edit"),
]
