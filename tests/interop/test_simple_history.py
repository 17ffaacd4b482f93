"""django-simple-history: HistoricalRecords on versioned models."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models, transaction
from django.urls import reverse

from concurrency.exceptions import RecordModifiedError
from concurrency.fields import VersionField
from tests.interop.models import Document, Memo
from tests.support.form_reader import form_data

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


# -- SimpleHistoryAdmin beside ConcurrentModelAdmin (tests/interop/admin.py) ---------


def revert_url(doc: Document, record: Any) -> str:
    return reverse("interop:interop_document_simple_history", args=[doc.pk, record.history_id])


@pytest.fixture
def edited() -> Document:
    doc = Document.objects.create(title="draft", body="one")
    doc.title, doc.body = "final", "two"
    doc.save()
    return doc


@pytest.mark.urls("tests.interop.urls")
def test_admin_revert_saves_the_old_values_as_a_new_version(admin_client: Any, edited: Document) -> None:
    url = revert_url(edited, edited.history.earliest("history_id"))
    page = admin_client.get(url)
    assert page.status_code == 200
    assert 'class="concurrency-version">2<' in page.content.decode()  # the current version
    response = admin_client.post(url, form_data(page.content, "historicaldocument_form"))
    assert response.status_code == 302
    row = Document.objects.get(pk=edited.pk)
    assert (row.title, row.body, row.version) == ("draft", "one", 3)


@pytest.mark.urls("tests.interop.urls")
def test_admin_revert_after_someone_else_saved_is_refused(admin_client: Any, edited: Document) -> None:
    url = revert_url(edited, edited.history.earliest("history_id"))
    data = form_data(admin_client.get(url).content, "historicaldocument_form")
    other = Document.objects.get(pk=edited.pk)
    other.body = "edited while the revert page was open"
    other.save()
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "Someone else changed this record" in response.content.decode()
    row = Document.objects.get(pk=edited.pk)
    assert (row.title, row.body, row.version) == ("final", "edited while the revert page was open", 3)


@pytest.mark.urls("tests.interop.urls")
def test_without_the_recipe_the_admin_refuses_every_revert_but_the_last(
    admin_client: Any, edited: Document
) -> None:
    url = reverse(
        "interop_plain_history:interop_document_simple_history",
        args=[edited.pk, edited.history.earliest("history_id").history_id],
    )
    response = admin_client.post(url, form_data(admin_client.get(url).content, "historicaldocument_form"))
    assert response.status_code == 200
    assert "Someone else changed this record" in response.content.decode()
    assert Document.objects.get(pk=edited.pk).version == 2
