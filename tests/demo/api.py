"""The demo's REST API (Django REST framework) for articles."""

from __future__ import annotations

from rest_framework import permissions, routers, serializers, viewsets

from concurrency.rest_framework import VersionedSerializerMixin, VersionedViewMixin

from .models import Article


class ArticleSerializer(VersionedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Article
        fields = ["id", "title", "body", "status", "version"]


class ArticleViewSet(VersionedViewMixin, viewsets.ModelViewSet):
    """Articles; the demo lets anyone edit them (no authentication)."""

    queryset = Article.objects.all()
    serializer_class = ArticleSerializer
    authentication_classes: list[type] = []
    permission_classes = [permissions.AllowAny]


router = routers.DefaultRouter()
router.register("articles", ArticleViewSet)
