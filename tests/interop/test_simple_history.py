"""django-simple-history: HistoricalRecords on versioned models."""

from __future__ import annotations

import pytest
from django.db import models, transaction

from concurrency.exceptions import RecordModifiedError
from concurrency.fields import VersionField
from tests.interop.models import Document, Memo

pytestmark = pytest.mark.django_db


def history_versions(doc: Document) -> list[tuple[str, str, int]]:
    rows = Document.history.filter(id=doc.id).order_by("history_id")
    return [(h.history_type, h.title, h.version) for h in rows]


def test_historical_copy_of_the_version_is_a_plain_integer() -> None:
    for model in (Document, Memo):
        historical = model.history.model
        field = historical._meta.get_field("version")
        assert type(field) is models.BigIntegerField
        assert not isinstance(field, VersionField)
        assert not hasattr(historical, "_concurrencymeta")
        # The tracked model itself is still versioned.
        assert isinstance(model._meta.get_field("version"), VersionField)


def test_each_history_row_records_the_version_that_was_saved() -> None:
    doc = Document.objects.create(title="draft")
    doc.title = "final"
    doc.save()
    pk = doc.pk
    doc.delete()
    doc.id = pk
    assert history_versions(doc) == [("+", "draft", 1), ("~", "final", 2), ("-", "final", 2)]


def test_time_based_version_is_recorded_as_saved() -> None:
    memo = Memo.objects.create(text="one")
    first = memo.version
    memo.text = "two"
    memo.save()
    assert [h.version for h in memo.history.order_by("history_id")] == [first, memo.version]
    assert memo.version != first


def test_refused_save_writes_no_history_row() -> None:
    doc = Document.objects.create(title="draft")
    stale = Document.objects.get(pk=doc.pk)
    doc.title = "by Alice"
    doc.save()
    stale.title = "by Bob"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.save()
    assert history_versions(doc) == [("+", "draft", 1), ("~", "by Alice", 2)]


def test_history_rows_are_never_version_checked() -> None:
    doc = Document.objects.create(title="draft")
    doc.title = "final"
    doc.save()
    first = doc.history.earliest("history_id")
    copy = type(first).objects.get(pk=first.pk)
    first.history_change_reason = "imported"
    first.save()
    copy.history_change_reason = "edited elsewhere"
    copy.save()  # a second, "stale" copy of a history row saves: it is data, not a versioned row
    copy.delete()
    assert history_versions(doc) == [("~", "final", 2)]


def test_revert_is_a_checked_save_against_the_version_the_user_saw() -> None:
    doc = Document.objects.create(title="draft", body="one")
    doc.title, doc.body = "final", "two"
    doc.save()
    seen = Document.objects.get(pk=doc.pk).version  # the page offering "revert" showed version 2
    reverted = doc.history.earliest("history_id").instance
    assert reverted.version == 1  # what that history row recorded
    reverted.version = seen
    reverted.save()
    current = Document.objects.get(pk=doc.pk)
    assert (current.title, current.body, current.version) == ("draft", "one", 3)
    assert history_versions(doc)[-1] == ("~", "draft", 3)


def test_revert_after_someone_else_saved_is_refused() -> None:
    doc = Document.objects.create(title="draft")
    doc.title = "final"
    doc.save()
    seen = doc.version
    doc.title = "final, edited meanwhile"
    doc.save()
    reverted = doc.history.earliest("history_id").instance
    reverted.version = seen
    with pytest.raises(RecordModifiedError) as info, transaction.atomic():
        reverted.save()
    assert (info.value.version, info.value.db_version) == (2, 3)
    assert Document.objects.get(pk=doc.pk).title == "final, edited meanwhile"


def test_revert_with_the_history_rows_own_version_is_refused() -> None:
    doc = Document.objects.create(title="draft")
    doc.title = "final"
    doc.save()
    with pytest.raises(RecordModifiedError), transaction.atomic():
        doc.history.earliest("history_id").instance.save()
    assert Document.objects.get(pk=doc.pk).title == "final"
