"""PUT through the concurrency DRF mixins against a plain DRF UpdateAPIView.

    python3 dev.py manage ... (or) .venv/bin/python bench/http.py [--rounds 7] [--n 200]
    CONCURRENCY_DB=postgresql|mariadb selects the server, as for the tests.

Variants, interleaved round by round in one process against one test database:
  plain       generics.UpdateAPIView + ModelSerializer (the model is versioned, so
              the save is still the conditional UPDATE with the version loaded)
  if-match    VersionedViewMixin + VersionedSerializerMixin, version from If-Match
  body        the same with require_if_match = False, version in the JSON body
Prints the median time per request, the ratio to plain, and queries per request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# This file shares its name with the standard library's http package: put the
# project root, not bench/, first on the path.
sys.path[0] = str(Path(__file__).resolve().parent.parent)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402
from rest_framework import generics, permissions, serializers  # noqa: E402
from rest_framework.test import APIRequestFactory  # noqa: E402

from concurrency.http import make_etag  # noqa: E402
from concurrency.rest_framework import VersionedSerializerMixin, VersionedViewMixin  # noqa: E402
from tests.demo.models import Article  # noqa: E402


class PlainSerializer(serializers.ModelSerializer):
    class Meta:
        model = Article
        fields = ["id", "title", "body", "status", "version"]
        read_only_fields = ["version"]


class VersionedSerializer(VersionedSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Article
        fields = ["id", "title", "body", "status", "version"]


OPEN: dict[str, Any] = {"authentication_classes": [], "permission_classes": [permissions.AllowAny]}


class PlainView(generics.UpdateAPIView):
    queryset = Article.objects.all()
    serializer_class = PlainSerializer


class IfMatchView(VersionedViewMixin, generics.UpdateAPIView):
    queryset = Article.objects.all()
    serializer_class = VersionedSerializer


class BodyView(IfMatchView):
    require_if_match = False


VIEWS = {
    "plain": PlainView.as_view(**OPEN),
    "if-match": IfMatchView.as_view(**OPEN),
    "body": BodyView.as_view(**OPEN),
}
factory = APIRequestFactory()


def put(variant: str, article: Article, n: int, atomic_requests: bool = False) -> None:
    """PUT ``n`` times to ``article``, each time with the version the last answer gave."""
    view = VIEWS[variant]
    if atomic_requests:
        view = transaction.atomic(view)
    version = Article.objects.get(pk=article.pk).version
    for i in range(n):
        data: dict[str, Any] = {"title": f"{variant} {i}"}
        headers: dict[str, str] = {}
        if variant == "if-match":
            article.version = version
            headers["HTTP_IF_MATCH"] = make_etag(article)
        elif variant == "body":
            data["version"] = version
        response = view(factory.put("/", data, format="json", **headers), pk=article.pk)
        if response.status_code != 200:
            raise SystemExit(f"{variant}: {response.status_code} {getattr(response, 'data', response)}")
        version = response.data["version"]


def queries_per_request(variant: str, article: Article, atomic_requests: bool) -> list[str]:
    with CaptureQueriesContext(connection) as ctx:
        put(variant, article, 1, atomic_requests)
    # The GET of the starting version in put() is bench bookkeeping, not the request.
    return [q["sql"] for q in ctx.captured_queries][1:]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=200, help="PUTs per variant per round")
    args = parser.parse_args()

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    modes = {"autocommit": False, "ATOMIC_REQUESTS": True}
    try:
        articles = {name: Article.objects.create(title=name) for name in VIEWS}
        for name in VIEWS:  # warm up
            put(name, articles[name], 20)
        samples: dict[tuple[str, str], list[float]] = {(m, v): [] for m in modes for v in VIEWS}
        for round_no in range(args.rounds):
            shift = round_no % len(VIEWS)
            order = list(VIEWS)[shift:] + list(VIEWS)[:shift]
            for mode, atomic_requests in modes.items():
                for name in order:
                    start = time.perf_counter()
                    put(name, articles[name], args.n, atomic_requests)
                    samples[mode, name].append((time.perf_counter() - start) / args.n * 1e6)
        queries = {
            (mode, name): queries_per_request(name, articles[name], atomic_requests)
            for mode, atomic_requests in modes.items()
            for name in VIEWS
        }
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)

    print(
        f"PUT /articles/<pk>/  db={connection.vendor}  django={django.get_version()}  "
        f"{args.rounds} rounds x {args.n} requests per variant, interleaved; medians"
    )
    for mode in modes:
        base = statistics.median(samples[mode, "plain"])
        print(f"\n{mode}")
        print(f"{'variant':<10} {'us/request':>11} {'ratio':>7} {'queries':>8}  statements")
        for name in VIEWS:
            median = statistics.median(samples[mode, name])
            sql = queries[mode, name]
            statements = ", ".join(q.split()[0] for q in sql)
            print(f"{name:<10} {median:>11.1f} {median / base:>7.2f} {len(sql):>8}  {statements}")


if __name__ == "__main__":
    main()
