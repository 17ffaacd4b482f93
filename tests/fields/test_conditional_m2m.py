"""ConditionalVersionField: the many-to-many touch.

From the reliability issue (#10): each sequence ends by asserting the outcome (the exception,
the version the instance holds, the row as stored); "another user" is a thread with a connection
of its own that commits its write.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from django.db.models.signals import m2m_changed

from concurrency.exceptions import RecordModifiedError
from tests.demo.models import ConditionalArticle, Counter, Tag
from tests.support.races import other_user_writes, stored

pytestmark = pytest.mark.django_db(transaction=True)


class _RollbackError(Exception):
    """Raised inside atomic() to roll back a transaction that did write."""


# --- 1. ConditionalVersionField: the many-to-many touch --------------------------


class TestManyToManyTouch:
    def _rows(self) -> tuple[ConditionalArticle, Tag]:
        pk = ConditionalArticle.objects.create(title="start").pk
        return ConditionalArticle.objects.get(pk=pk), Tag.objects.create(name="t")

    def test_rolled_back_add_leaves_the_committed_version_and_a_stale_save_is_refused(self) -> None:
        article, tag = self._rows()
        before = article.version
        with pytest.raises(_RollbackError), transaction.atomic():
            article.tags.add(tag)
            assert article.version != before  # the touch bumped it inside the transaction
            raise _RollbackError
        assert article.version == before
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        assert committed == before + 1  # the number the rolled-back touch had used
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)
        assert not article.tags.exists()

    def test_rolled_back_remove_leaves_the_committed_version_and_a_stale_save_is_refused(self) -> None:
        article, tag = self._rows()
        article.tags.add(tag)
        before = article.version
        with pytest.raises(_RollbackError), transaction.atomic():
            article.tags.remove(tag)
            raise _RollbackError
        assert article.version == before
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)
        assert list(article.tags.all()) == [tag]

    def test_add_failing_with_integrity_error_leaves_the_committed_version(self) -> None:
        article, tag = self._rows()
        before = article.version
        Counter.objects.create(name="taken")

        def on_add(action: str, **kwargs: Any) -> None:
            if action == "post_add":  # a receiver's write fails inside add()'s transaction
                Counter.objects.create(name="taken")

        m2m_changed.connect(on_add, sender=ConditionalArticle.tags.through, dispatch_uid="reliability")
        try:
            with pytest.raises(IntegrityError):
                article.tags.add(tag)
        finally:
            m2m_changed.disconnect(dispatch_uid="reliability", sender=ConditionalArticle.tags.through)
        assert article.version == before
        assert stored(ConditionalArticle, article.pk, "title") == ("start", before)
        assert not article.tags.exists()
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)

    def test_add_of_a_missing_tag_leaves_the_instance_at_the_stored_version(self) -> None:
        # PostgreSQL and SQLite raise IntegrityError at commit; MariaDB's INSERT IGNORE
        # (Django's fast add) drops the link silently. Either way the instance must
        # hold what the row holds.
        article, _ = self._rows()
        missing = Tag.objects.order_by("-pk").values_list("pk", flat=True).first() + 1000
        with contextlib.suppress(IntegrityError):
            article.tags.add(missing)
        assert not article.tags.exists()
        assert stored(ConditionalArticle, article.pk, "title") == ("start", article.version)
        committed = other_user_writes(ConditionalArticle, article.pk, title="other")
        article.title = "mine"
        with pytest.raises(RecordModifiedError):
            article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("other", committed)

    def test_add_in_a_rolled_back_savepoint_is_given_back_and_the_outer_write_stays(self) -> None:
        article, tag = self._rows()
        before = article.version
        with transaction.atomic():
            article.title = "outer"
            article.save()
            outer = article.version
            with pytest.raises(_RollbackError), transaction.atomic():
                article.tags.add(tag)
                raise _RollbackError
            assert article.version == outer
        assert article.version == outer == before + 1
        assert stored(ConditionalArticle, article.pk, "title") == ("outer", outer)
        article.title = "again"
        article.save()
        assert stored(ConditionalArticle, article.pk, "title") == ("again", outer + 1)
