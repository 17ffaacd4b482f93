"""The conflict_detected signal and the log_conflict receiver."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from django.test import TestCase

from concurrency.exceptions import BulkUpdateConflictError, RecordDeletedError, RecordModifiedError
from concurrency.signals import conflict_detected, log_conflict
from tests.demo.models import Article, Category, Stock


class Received:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        kwargs.pop("signal")
        self.calls.append(kwargs)


@pytest.fixture
def received() -> Iterator[Received]:
    receiver = Received()
    conflict_detected.connect(receiver, weak=False)
    yield receiver
    conflict_detected.disconnect(receiver)


@pytest.mark.django_db
def test_stale_save_sends_one_signal(received: Received) -> None:
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=5)
    with pytest.raises(RecordModifiedError), transaction.atomic():
        article.save()
    assert received.calls == [
        {"sender": Article, "instance": article, "version": 1, "db_version": 5, "deleted": False}
    ]


@pytest.mark.django_db
def test_save_of_deleted_row_sends_deleted(received: Received) -> None:
    article = Article.objects.create(title="a")
    Article.objects.all().delete()
    with pytest.raises(RecordDeletedError):
        article.save()
    assert received.calls == [
        {"sender": Article, "instance": article, "version": 1, "db_version": None, "deleted": True}
    ]


@pytest.mark.django_db
def test_stale_delete_sends_one_signal(received: Received) -> None:
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=2)
    with pytest.raises(RecordModifiedError):
        article.delete()
    assert received.calls == [
        {"sender": Article, "instance": article, "version": 1, "db_version": 2, "deleted": False}
    ]


@pytest.mark.django_db
def test_successful_writes_send_nothing(received: Received) -> None:
    article = Article.objects.create(title="a")
    article.save()
    Stock.objects.bulk_update([Stock.objects.create(name="s")], ["quantity"])
    article.delete()
    assert received.calls == []


@pytest.mark.django_db
def test_bulk_update_sends_one_signal_per_stale_row(received: Received) -> None:
    Stock.objects.bulk_create([Stock(name=f"s{i}") for i in range(4)])
    stocks = list(Stock.objects.all())
    Stock.objects.filter(pk=stocks[1].pk).update(quantity=3)
    Stock.objects.filter(pk=stocks[3].pk).delete()
    with pytest.raises(BulkUpdateConflictError):
        Stock.objects.bulk_update(stocks, ["quantity"])
    assert received.calls == [
        {"sender": Stock, "instance": stocks[1], "version": 1, "db_version": 2, "deleted": False},
        {"sender": Stock, "instance": stocks[3], "version": 1, "db_version": None, "deleted": True},
    ]
    received.calls.clear()
    assert Stock.objects.bulk_update(stocks, ["quantity"], on_conflict="skip") == [stocks[1], stocks[3]]
    assert [call["instance"] for call in received.calls] == [stocks[1], stocks[3]]


class BulkSignalTransactionTests(TestCase):
    def test_bulk_signal_is_sent_after_the_rollback(self) -> None:
        """A receiver's own writes survive the all-or-nothing rollback of the bulk write."""
        Stock.objects.bulk_create([Stock(name="a"), Stock(name="b")])
        stocks = list(Stock.objects.all())
        Stock.objects.filter(pk=stocks[0].pk).update(name="other")

        def audit(instance: Any, **kwargs: Any) -> None:
            Category.objects.create(name=f"conflict {instance.pk}")

        conflict_detected.connect(audit, sender=Stock, weak=False)
        try:
            with pytest.raises(BulkUpdateConflictError):
                Stock.objects.bulk_update(stocks, ["quantity"])
        finally:
            conflict_detected.disconnect(audit, sender=Stock)
        assert list(Category.objects.values_list("name", flat=True)) == [f"conflict {stocks[0].pk}"]


@pytest.mark.django_db
def test_log_conflict_logs_a_warning_with_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    article = Article.objects.create(title="a")
    Article.objects.filter(pk=article.pk).update(version=4)
    conflict_detected.connect(log_conflict)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="concurrency"),
            pytest.raises(RecordModifiedError),
            transaction.atomic(),
        ):
            article.save()
        Article.objects.all().delete()
        with (
            caplog.at_level(logging.WARNING, logger="concurrency"),
            pytest.raises(RecordDeletedError),
            transaction.atomic(),
        ):
            article.save()
    finally:
        conflict_detected.disconnect(log_conflict)
    first, second = caplog.records
    assert first.name == "concurrency"
    assert first.levelno == logging.WARNING
    assert first.getMessage() == (
        f"Refused a stale write of demo.Article pk={article.pk}: had version 1, database has 4"
    )
    assert (first.model, first.pk, first.version, first.db_version, first.deleted) == (  # type: ignore[attr-defined]
        "demo.Article",
        article.pk,
        1,
        4,
        False,
    )
    assert second.getMessage().endswith("database has none (row deleted)")
    assert second.deleted is True  # type: ignore[attr-defined]
