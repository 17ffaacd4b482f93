"""Saving an instance that was built, not loaded, with a primary key and a version."""

from __future__ import annotations

import pytest
from django.db import transaction

from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Article

pytestmark = pytest.mark.django_db


def test_built_instance_at_an_old_version_of_an_existing_row_is_a_conflict_not_an_insert() -> None:
    article = Article.objects.create(title="one")
    article.save()  # version 2
    built = Article(pk=article.pk, title="from an old copy", version=1)
    with pytest.raises(RecordModifiedError) as info, transaction.atomic():
        built.save()
    assert (info.value.version, info.value.db_version) == (1, 2)
    assert Article.objects.get(pk=article.pk).title == "one"


def test_built_instance_at_the_current_version_updates_the_row() -> None:
    article = Article.objects.create(title="one")
    Article(pk=article.pk, title="two", version=1).save()
    row = Article.objects.get(pk=article.pk)
    assert (row.title, row.version) == ("two", 2)


def test_built_instance_of_a_missing_row_is_inserted() -> None:
    Article(pk=4242, title="restored", version=7).save()
    row = Article.objects.get(pk=4242)
    assert (row.title, row.version) == ("restored", 7)
