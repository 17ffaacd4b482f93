"""A refused save or delete that wrote nothing leaves the caller's transaction usable.

The everyday view catches ``RecordModifiedError`` inside ``atomic()`` (the
admin, ``ATOMIC_REQUESTS``, its own block) and goes on to query and render;
Django's own ``mark_for_rollback_on_error()`` around ``save()`` would make that
next query fail. Where something was written before the refusal, the
transaction stays marked and nothing of the partial save commits.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.db.transaction import TransactionManagementError
from django.test import TransactionTestCase

from concurrency.exceptions import RecordDeletedError, RecordModifiedError, VersionNotLoadedError
from tests.demo.models import Article, Child, Order, OrderLine, Task, VersionedChild


class UsableTests(TransactionTestCase):
    def setUp(self) -> None:
        self.article = Article.objects.create(title="start")

    def stale(self) -> Article:
        stale = Article.objects.get(pk=self.article.pk)
        Article.objects.get(pk=self.article.pk).save()  # someone else
        return stale

    def test_a_refused_save_then_more_work_commits_the_rest(self) -> None:
        stale = self.stale()
        with transaction.atomic():
            Article.objects.create(title="before")
            stale.title = "mine"
            with pytest.raises(RecordModifiedError):
                stale.save()
            assert not connection.needs_rollback
            assert Article.objects.count() == 2  # the next query works
            Article.objects.create(title="after")
        assert sorted(Article.objects.values_list("title", flat=True)) == ["after", "before", "start"]

    def test_a_refused_save_of_a_deleted_row(self) -> None:
        gone = Article.objects.get(pk=self.article.pk)
        Article.objects.filter(pk=self.article.pk).delete()
        with transaction.atomic():
            with pytest.raises(RecordDeletedError):
                gone.save()
            Article.objects.create(title="after")
        assert list(Article.objects.values_list("title", flat=True)) == ["after"]

    def test_a_version_not_loaded(self) -> None:
        partial = Article.objects.only("title").get(pk=self.article.pk)
        with transaction.atomic():
            with pytest.raises(VersionNotLoadedError):
                partial.save()
            Article.objects.create(title="after")
        assert Article.objects.count() == 2

    def test_a_refused_delete(self) -> None:
        stale = self.stale()
        with transaction.atomic():
            with pytest.raises(RecordModifiedError):
                stale.delete()
            Article.objects.create(title="after")
        assert Article.objects.count() == 2

    def test_a_refusal_inside_a_savepoint_of_its_own_is_unchanged(self) -> None:
        stale = self.stale()
        with transaction.atomic():
            with pytest.raises(RecordModifiedError), transaction.atomic():
                stale.save()
            Article.objects.create(title="after")
        assert Article.objects.count() == 2

    def test_multi_table_with_the_version_on_the_parent_table_wrote_nothing(self) -> None:
        child = Child.objects.create(name="c")
        stale = Child.objects.get(pk=child.pk)
        Child.objects.get(pk=child.pk).save()
        with transaction.atomic():
            stale.extra = "mine"
            with pytest.raises(RecordModifiedError):
                stale.save()
            Article.objects.create(title="after")
        assert Article.objects.count() == 2
        assert Child.objects.get().extra == ""

    def test_multi_table_with_the_version_on_the_child_table_stays_marked(self) -> None:
        child = VersionedChild.objects.create(name="c")
        stale = VersionedChild.objects.get(pk=child.pk)
        VersionedChild.objects.get(pk=child.pk).save()
        with pytest.raises(TransactionManagementError), transaction.atomic():
            stale.name = "mine"  # written to the parent table before the check
            with pytest.raises(RecordModifiedError):
                stale.save()
            assert connection.needs_rollback
            Article.objects.count()
        assert VersionedChild.objects.get().name == "c"

    def test_a_child_refused_for_its_stale_root_wrote_nothing(self) -> None:
        order = Order.objects.create(customer="A")
        stale = Order.objects.get(pk=order.pk)
        Order.objects.get(pk=order.pk).save()
        with transaction.atomic():
            with pytest.raises(RecordModifiedError):
                OrderLine.objects.create(order=stale, product="x")
            OrderLine.objects.create(order_id=order.pk, product="y")
        assert list(OrderLine.objects.values_list("product", flat=True)) == ["y"]

    def test_a_child_refused_after_its_root_was_moved_stays_marked(self) -> None:
        order = Order.objects.create(customer="A")
        task = Task.objects.create(order_id=order.pk, title="t")
        stale = Task.objects.get(pk=task.pk)
        Task.objects.get(pk=task.pk).save()  # the task's own version moves on
        with pytest.raises(TransactionManagementError), transaction.atomic():
            stale.title = "mine"
            with pytest.raises(RecordModifiedError):
                stale.save()  # the order is moved first, then the task's UPDATE matches nothing
            Order.objects.count()
        assert Order.objects.get().version == 3  # the bump of the refused save did not commit
        assert Task.objects.get().title == "t"
