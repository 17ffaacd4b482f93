"""The compare-and-swap save and delete."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.test import TestCase, TransactionTestCase, override_settings
from django.test.utils import CaptureQueriesContext

from concurrency.compat import DJANGO_60, ObjectNotUpdated
from concurrency.exceptions import RecordDeletedError, RecordModifiedError
from tests.demo.models import (
    Article,
    Category,
    Child,
    CustomSave,
    ExplicitPk,
    FromAbstract,
    Item,
    NoIncrement,
    Parent,
    PlainParent,
    ProxyArticle,
    SelectOnSave,
    SimpleConcurrentModel,
    Unchecked,
    UUIDPk,
    VersionedChild,
)


def _writes(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


class SaveTests(TestCase):
    def test_create_sets_initial_version(self) -> None:
        article = Article.objects.create(title="a")
        assert article.version == 1
        assert Article.objects.get().version == 1

    def test_update_is_one_statement_and_bumps(self) -> None:
        article = Article.objects.create(title="a")
        article = Article.objects.get(pk=article.pk)
        with CaptureQueriesContext(connection) as ctx:
            article.title = "b"
            article.save()
        assert len(ctx.captured_queries) == 1
        sql = ctx.captured_queries[0]["sql"]
        assert sql.startswith("UPDATE") and "version" in sql.split("WHERE")[1]
        assert article.version == 2
        row = Article.objects.get(pk=article.pk)
        assert (row.title, row.version) == ("b", 2)

    def test_stale_save_is_refused_and_row_keeps_first_write(self) -> None:
        Article.objects.create(title="orig")
        first = Article.objects.get()
        second = Article.objects.get()
        first.title = "first"
        first.save()
        second.title = "second"
        with pytest.raises(RecordModifiedError) as info, transaction.atomic():
            second.save()
        error = info.value
        assert type(error) is RecordModifiedError
        assert error.target is second
        assert error.model is Article
        assert error.pk == second.pk
        assert error.version == 1
        assert error.db_version == 2
        assert isinstance(error, DatabaseError)
        assert second.version == 1
        row = Article.objects.get()
        assert (row.title, row.version) == ("first", 2)

    def test_conflict_costs_one_more_query(self) -> None:
        article = Article.objects.create(title="orig")
        Article.objects.filter(pk=article.pk).update(version=7)
        with CaptureQueriesContext(connection) as ctx, pytest.raises(RecordModifiedError):
            article.save()
        assert len(_writes(ctx)) == 2

    def test_refresh_then_save_succeeds_blind_resave_fails_again(self) -> None:
        Article.objects.create(title="orig")
        first, second = Article.objects.get(), Article.objects.get()
        first.save()
        second.title = "mine"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            second.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            second.save()
        second.refresh_from_db()
        second.title = "mine"
        second.save()
        assert Article.objects.get().title == "mine"
        assert second.version == 3

    def test_stale_save_of_deleted_row_raises_and_is_not_reinserted(self) -> None:
        article = Article.objects.create(title="gone")
        Article.objects.filter(pk=article.pk).delete()
        article.title = "zombie"
        with pytest.raises(RecordDeletedError) as info, transaction.atomic():
            article.save()
        assert isinstance(info.value, RecordModifiedError)
        assert isinstance(info.value, ObjectNotUpdated)
        assert info.value.db_version is None
        assert not Article.objects.exists()

    def test_database_error_leaves_version_unchanged(self) -> None:
        SimpleConcurrentModel.objects.create(username="taken")
        obj = SimpleConcurrentModel.objects.create(username="free")
        before = obj.version
        obj.username = "taken"
        with pytest.raises(DatabaseError), transaction.atomic():
            obj.save()
        assert obj.version == before
        obj.username = "other"
        obj.save()
        assert SimpleConcurrentModel.objects.get(pk=obj.pk).username == "other"

    def test_integer_version_strictly_increases_and_is_microseconds(self) -> None:
        obj = SimpleConcurrentModel.objects.create(username="t")
        seen = [obj.version]
        for _ in range(5):
            obj.save()
            seen.append(obj.version)
        assert seen == sorted(set(seen))
        assert 1_700_000_000_000_000 < seen[0] < 2**53

    def test_update_fields_bumps_and_is_checked(self) -> None:
        article = Article.objects.create(title="a", body="x")
        stale = Article.objects.get()
        article.title = "b"
        article.save(update_fields=["title"])
        assert article.version == 2
        assert Article.objects.get().version == 2
        stale.body = "y"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save(update_fields=["body"])
        assert Article.objects.get().body == "x"

    def test_force_update_on_deleted_row_raises_deleted(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.all().delete()
        with pytest.raises(RecordDeletedError), transaction.atomic():
            article.save(force_update=True)

    def test_force_insert_uses_initial_version(self) -> None:
        article = Article(title="a")
        article.save(force_insert=True)
        assert article.version == 1

    def test_explicit_pk_create_inserts_with_version_one(self) -> None:
        obj = ExplicitPk(code="x1", name="n")
        obj.save()
        assert obj.version == 1
        assert ExplicitPk.objects.get(pk="x1").version == 1
        loaded = ExplicitPk.objects.get(pk="x1")
        loaded.name = "m"
        loaded.save()
        assert ExplicitPk.objects.get(pk="x1").version == 2

    def test_explicit_pk_create_over_existing_row_does_not_overwrite(self) -> None:
        ExplicitPk.objects.create(code="x1", name="first")
        with pytest.raises(DatabaseError), transaction.atomic():
            ExplicitPk(code="x1", name="second").save()
        assert ExplicitPk.objects.get(pk="x1").name == "first"

    def test_uuid_pk(self) -> None:
        obj = UUIDPk.objects.create(name="a")
        stale = UUIDPk.objects.get()
        obj.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()

    def test_bulk_create_sets_initial_versions(self) -> None:
        Article.objects.bulk_create([Article(title=str(n)) for n in range(3)])
        assert set(Article.objects.values_list("version", flat=True)) == {1}

    def test_copy_with_pk_none_inserts_new_row(self) -> None:
        article = Article.objects.create(title="a")
        article.save()
        article.pk = None
        article._state.adding = True
        article.save()
        assert Article.objects.count() == 2

    def test_custom_save_calling_super_is_checked(self) -> None:
        obj = CustomSave.objects.create(name="a")
        stale = CustomSave.objects.get()
        obj.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        assert CustomSave.objects.get().saves == 2

    def test_select_on_save(self) -> None:
        obj = SelectOnSave.objects.create(name="a")
        stale = SelectOnSave.objects.get()
        obj.name = "b"
        obj.save()
        assert obj.version == 2
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        assert SelectOnSave.objects.get().name == "b"

    def test_abstract_base(self) -> None:
        obj = FromAbstract.objects.create(name="a")
        stale = FromAbstract.objects.get()
        obj.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()

    def test_proxy_shares_the_check(self) -> None:
        article = Article.objects.create(title="a")
        proxy = ProxyArticle.objects.get()
        article.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            proxy.save()
        proxy.refresh_from_db()
        proxy.save()
        assert Article.objects.get().version == 3

    def test_mti_version_on_parent(self) -> None:
        child = Child.objects.create(name="a", extra="x")
        stale = Child.objects.get()
        child.extra = "y"
        child.save()
        assert Parent.objects.get().version == 2
        stale.extra = "z"
        stale.name = "z"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        row = Child.objects.get()
        assert (row.name, row.extra) == ("a", "y")

    def test_mti_version_on_child_rolls_back_parent(self) -> None:
        child = VersionedChild.objects.create(name="a", extra="x")
        stale = VersionedChild.objects.get()
        child.save()
        stale.name = "parent-change"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        assert PlainParent.objects.get().name == "a"

    def test_increment_false_checks_without_bumping(self) -> None:
        obj = NoIncrement.objects.create(name="a")
        obj.save()
        assert obj.version == 1
        NoIncrement.objects.update(version=5)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            obj.save()

    def test_enabled_false_bumps_without_checking(self) -> None:
        obj = Unchecked.objects.create(name="a")
        stale = Unchecked.objects.get()
        obj.save()
        stale.name = "b"
        stale.save()
        assert Unchecked.objects.get().name == "b"


@pytest.mark.django_db(databases=["default", "other"])
def test_using_other_database() -> None:
    article = Article.objects.using("other").create(title="a")
    stale = Article.objects.using("other").get()
    article.save(using="other")
    assert not Article.objects.exists()
    with pytest.raises(RecordModifiedError), transaction.atomic(using="other"):
        stale.save(using="other")
    assert Article.objects.using("other").get().version == 2


class DeleteTests(TestCase):
    def test_stale_delete_is_refused_and_row_survives(self) -> None:
        article = Article.objects.create(title="a")
        stale = Article.objects.get()
        article.title = "b"
        article.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.delete()
        assert Article.objects.get().title == "b"

    def test_fresh_delete_works(self) -> None:
        article = Article.objects.create(title="a")
        assert article.delete() == (1, {"demo.Article": 1})
        assert not Article.objects.exists()

    def test_stale_delete_with_cascade_deletes_nothing(self) -> None:
        category = Category.objects.create(name="c")
        Item.objects.create(category=category, name="i")
        Category.objects.filter(pk=category.pk).update(version=9)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            category.delete()
        assert Category.objects.count() == 1
        assert Item.objects.count() == 1

    def test_stale_delete_through_a_proxy_is_refused(self) -> None:
        Article.objects.create(title="a")
        proxy = ProxyArticle.objects.get()
        Article.objects.update(version=5)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            proxy.delete()
        assert Article.objects.count() == 1
        proxy.refresh_from_db()
        proxy.delete()
        assert not Article.objects.exists()

    def test_stale_delete_of_mti_child_keeps_both_tables(self) -> None:
        child = Child.objects.create(name="a", extra="x")
        Parent.objects.update(version=4)
        with pytest.raises(RecordModifiedError), transaction.atomic():
            child.delete()
        assert (Parent.objects.count(), Child.objects.count()) == (1, 1)
        child.refresh_from_db()
        child.delete()
        assert (Parent.objects.count(), Child.objects.count()) == (0, 0)

    def test_delete_of_already_deleted_row_is_a_noop(self) -> None:
        article = Article.objects.create(title="a")
        Article.objects.all().delete()
        assert article.delete()[0] == 0

    def test_queryset_delete_is_not_checked(self) -> None:
        Article.objects.create(title="a")
        Article.objects.update(version=99)
        assert Article.objects.all().delete()[0] == 1


class AsyncTests(TransactionTestCase):
    async def test_asave_is_checked(self) -> None:
        article = await Article.objects.acreate(title="a")
        stale = await Article.objects.aget()
        await article.asave()
        with pytest.raises(RecordModifiedError):
            await stale.asave()
        assert (await Article.objects.aget()).version == 2

    async def test_adelete_is_checked(self) -> None:
        article = await Article.objects.acreate(title="a")
        await Article.objects.filter(pk=article.pk).aupdate(version=3)
        with pytest.raises(RecordModifiedError):
            await article.adelete()
        assert await Article.objects.acount() == 1


class TransactionTests(TestCase):
    def test_conflict_inside_atomic_with_savepoint_per_attempt(self) -> None:
        article = Article.objects.create(title="a")
        stale = Article.objects.get()
        article.save()
        with transaction.atomic():
            try:
                with transaction.atomic():
                    stale.title = "stale"
                    stale.save()
            except RecordModifiedError:
                stale.refresh_from_db()
                stale.title = "retried"
                stale.save()
        assert Article.objects.get().title == "retried"


def test_django_60_flag_matches() -> None:
    import django

    assert (django.VERSION >= (6, 0)) == DJANGO_60


calls: list[object] = []


def returning_true(target: object) -> bool:
    calls.append(target)
    return True


def returning_false(target: object) -> bool:
    calls.append(target)
    return False


class OwnError(Exception):
    pass


def raising_own(target: object) -> None:
    raise OwnError(target)


class CallbackTests(TestCase):
    def _stale(self) -> Article:
        Article.objects.create(title="a")
        fresh, stale = Article.objects.get(), Article.objects.get()
        fresh.title = "fresh"
        fresh.save()
        stale.title = "stale"
        return stale

    def test_callback_result_never_turns_a_conflict_into_a_write(self) -> None:
        for path in ("tests.core.test_save.returning_true", "tests.core.test_save.returning_false"):
            calls.clear()
            stale = self._stale()
            with (
                override_settings(CONCURRENCY_CALLBACK=path),
                pytest.raises(RecordModifiedError),
                transaction.atomic(),
            ):
                stale.save()
            assert calls == [stale]
            assert list(Article.objects.values_list("title", flat=True)) == ["fresh"]
            Article.objects.all().delete()

    def test_callback_may_raise_its_own_exception(self) -> None:
        stale = self._stale()
        with (
            override_settings(CONCURRENCY_CALLBACK=raising_own),
            pytest.raises(OwnError),
            transaction.atomic(),
        ):
            stale.save()
        assert Article.objects.get().title == "fresh"


class SignalTests(TestCase):
    def test_conflict_detected_is_sent_with_versions(self) -> None:
        from concurrency.signals import conflict_detected

        received: list[dict] = []

        def receiver(**kwargs: object) -> None:
            received.append(kwargs)

        conflict_detected.connect(receiver)
        try:
            Article.objects.create(title="a")
            fresh, stale = Article.objects.get(), Article.objects.get()
            fresh.save()
            with pytest.raises(RecordModifiedError), transaction.atomic():
                stale.save()
        finally:
            conflict_detected.disconnect(receiver)
        assert len(received) == 1
        event = received[0]
        assert (
            event["sender"],
            event["instance"],
            event["version"],
            event["db_version"],
            event["deleted"],
        ) == (
            Article,
            stale,
            1,
            2,
            False,
        )


class VersionConditionTests(TestCase):
    """The version half of the WHERE clause is NULL-safe."""

    def test_an_instance_without_a_version_is_refused_not_matched(self) -> None:
        Article.objects.create(title="a")
        article = Article.objects.get()
        article.version = None
        article.title = "blind"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            article.save()
        assert Article.objects.get().title == "a"
