"""concurrency.api: helpers and the task-local switches."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.test import TestCase, TransactionTestCase, override_settings

from concurrency.api import (
    apply_concurrency_check,
    concurrency_disable_increment,
    disable_concurrency,
    get_revision_of_object,
    get_version,
    get_version_fieldname,
    is_changed,
)
from concurrency.core import options as switches
from concurrency.exceptions import RecordModifiedError
from concurrency.fields import IntegerVersionField
from tests.demo.models import Article, CustomVersionField, PlainCounter, ProxyArticle


def _stale_pair() -> tuple[Article, Article]:
    """Return a fresh and a stale copy of one row."""
    Article.objects.create(title="a")
    fresh, stale = Article.objects.get(), Article.objects.get()
    fresh.save()
    return fresh, stale


class HelperTests(TestCase):
    def test_get_version_fieldname_and_revision(self) -> None:
        obj = CustomVersionField.objects.create(name="x")
        assert get_version_fieldname(obj) == "revision"
        assert get_version_fieldname(CustomVersionField) == "revision"
        assert get_revision_of_object(obj) == obj.revision == 5
        assert obj.get_concurrency_version() == 5

    def test_unversioned_model_gives_a_clear_error(self) -> None:
        with pytest.raises(TypeError, match="not under concurrency control"):
            get_version_fieldname(PlainCounter)

    def test_is_changed(self) -> None:
        fresh, stale = _stale_pair()
        assert not is_changed(fresh)
        assert is_changed(stale)
        Article.objects.all().delete()
        assert is_changed(fresh)

    def test_get_version(self) -> None:
        fresh, stale = _stale_pair()
        assert get_version(fresh, 2).pk == fresh.pk
        with pytest.raises(Article.DoesNotExist):
            get_version(stale, 1)

    def test_apply_concurrency_check_on_auth_group(self) -> None:
        group = Group.objects.create(name="editors")
        assert group.version > 0
        stale = Group.objects.get()
        group.name = "Editors"
        group.save()
        stale.name = "writers"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        assert Group.objects.get().name == "Editors"
        # A second call is a no-op.
        apply_concurrency_check(Group, "version", IntegerVersionField)
        assert [f.name for f in Group._meta.concrete_fields].count("version") == 1


class DisableTests(TestCase):
    def test_disable_everything(self) -> None:
        _fresh, stale = _stale_pair()
        with disable_concurrency():
            stale.title = "forced"
            stale.save()
        assert Article.objects.get().title == "forced"
        assert stale.version == 3  # still bumped

    def test_disable_model_covers_proxies(self) -> None:
        Article.objects.create(title="a")
        proxy = ProxyArticle.objects.get()
        Article.objects.update(version=9)
        with disable_concurrency(Article):
            proxy.save()
        # Unchecked writes still move the version past what the row held.
        assert Article.objects.get().version == proxy.version == 10

    def test_disable_instance_only(self) -> None:
        _fresh, stale = _stale_pair()
        other = Article.objects.create(title="b")
        Article.objects.filter(pk=other.pk).update(version=7)
        with disable_concurrency(stale):
            stale.save()
            with pytest.raises(RecordModifiedError), transaction.atomic():
                other.save()

    def test_disable_unversioned_is_a_noop(self) -> None:
        with disable_concurrency(PlainCounter):
            PlainCounter.objects.create(name="x").save()

    def test_state_restored_after_exception_and_nesting(self) -> None:
        decorated = disable_concurrency()

        @decorated
        def outer() -> None:
            inner()
            raise ValueError

        @decorated
        def inner() -> None:
            assert [entry.target for entry in switches.checks_off.get()] == [None, None]

        with pytest.raises(ValueError):
            outer()
        assert switches.checks_off.get() == ()
        _fresh, stale = _stale_pair()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()

    def test_start_finish(self) -> None:
        toggle = disable_concurrency()
        toggle.start()
        try:
            _fresh, stale = _stale_pair()
            stale.save()
        finally:
            toggle.finish()
        assert switches.checks_off.get() == ()

    def test_decorator_keeps_name(self) -> None:
        @disable_concurrency()
        def recover_view() -> None:
            """Doc."""

        assert recover_view.__name__ == "recover_view"
        assert recover_view.__doc__ == "Doc."

    @override_settings(CONCURRENCY_ENABLED=False)
    def test_global_setting(self) -> None:
        _fresh, stale = _stale_pair()
        stale.save()

    @override_settings(CONCURRENCY_VERSION_FIELD_REQUIRED=False)
    def test_version_not_required_skips_check_for_zero(self) -> None:
        Article.objects.create(title="a")
        obj = Article.objects.get()
        obj.version = 0
        obj.title = "no version"
        obj.save()
        assert Article.objects.get().title == "no version"

    def test_version_required_refuses_zero(self) -> None:
        Article.objects.create(title="a")
        obj = Article.objects.get()
        obj.version = 0
        with pytest.raises(RecordModifiedError), transaction.atomic():
            obj.save()


class IncrementTests(TestCase):
    def test_disable_increment_keeps_version_and_still_checks(self) -> None:
        fresh, stale = _stale_pair()
        with concurrency_disable_increment(fresh):
            fresh.title = "shadow"
            fresh.save()
            assert fresh.version == 2
            with pytest.raises(RecordModifiedError), transaction.atomic():
                stale.save()
        assert Article.objects.get().version == 2
        fresh.save()
        assert fresh.version == 3

    def test_disable_increment_for_model(self) -> None:
        obj = Article.objects.create(title="a")
        with concurrency_disable_increment(Article):
            obj.save()
        assert Article.objects.get().version == 1


class IsolationTests(TransactionTestCase):
    def test_threads_do_not_see_each_others_switches(self) -> None:
        inside = threading.Event()
        release = threading.Event()
        seen: list[bool] = []

        def holder() -> None:
            with disable_concurrency():
                inside.set()
                release.wait(5)

        thread = threading.Thread(target=holder)
        thread.start()
        inside.wait(5)
        obj = Article.objects.create(title="a")
        seen.append(switches.is_checked(obj))
        release.set()
        thread.join()
        assert seen == [True]

    def test_asyncio_tasks_are_isolated(self) -> None:
        async def scenario() -> list[bool]:
            obj = Article(title="x")
            obj._state.adding = False
            results: list[bool] = []
            entered = asyncio.Event()
            leave = asyncio.Event()

            async def disabled_task() -> None:
                with disable_concurrency():
                    entered.set()
                    await leave.wait()

            async def other_task() -> None:
                await entered.wait()
                results.append(switches.is_checked(obj))
                leave.set()

            await asyncio.gather(disabled_task(), other_task())
            results.append(switches.is_checked(obj))
            return results

        assert asyncio.run(scenario()) == [True, True]

    def test_async_decorator(self) -> None:
        @disable_concurrency()
        async def job() -> bool:
            return switches.is_checked(Article(title="x"))

        assert asyncio.run(job()) is False
        assert switches.checks_off.get() == ()
