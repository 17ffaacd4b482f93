"""ConditionalVersionField: bumped only when a checked field changes, still always checked."""

from __future__ import annotations

import copy
import pickle
import threading
from typing import Any

import pytest
from django import forms
from django.db import connection, models, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.test import TestCase, TransactionTestCase
from django.test.utils import CaptureQueriesContext, isolate_apps

from concurrency.api import concurrency_disable_increment, disable_concurrency
from concurrency.compat import DJANGO_61
from concurrency.exceptions import RecordModifiedError
from concurrency.fields import ConditionalVersionField
from concurrency.managers import VersionedManager
from concurrency.signing import sign_version
from tests.demo.models import (
    Category,
    CheckFieldsArticle,
    ConditionalArticle,
    IgnoreFieldsArticle,
    Person,
    PlainConditionalArticle,
    Tag,
)
from tests.support.races import run_together


def _stored(obj: models.Model) -> int:
    return type(obj)._base_manager.values_list("version", flat=True).get(pk=obj.pk)


def _writes(ctx: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in ctx.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))]


class ConditionalSaveTests(TestCase):
    def setUp(self) -> None:
        self.article = ConditionalArticle.objects.create(title="t", body="b")
        self.article = ConditionalArticle.objects.get(pk=self.article.pk)

    def test_create_starts_at_one(self) -> None:
        assert self.article.version == 1 == _stored(self.article)

    def test_unchanged_save_keeps_the_version_in_one_statement(self) -> None:
        with CaptureQueriesContext(connection) as ctx:
            self.article.save()
        assert self.article.version == 1 == _stored(self.article)
        writes = _writes(ctx)
        assert len(writes) == 1 and writes[0].startswith("UPDATE")

    def test_changed_field_bumps(self) -> None:
        self.article.title = "new"
        self.article.save()
        assert self.article.version == 2 == _stored(self.article)
        self.article.title = "new"  # the same value again
        self.article.save()
        assert self.article.version == 2 == _stored(self.article)

    def test_unchanged_save_is_still_checked(self) -> None:
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        other.body = "theirs"
        other.save()
        assert other.version == 2
        with pytest.raises(RecordModifiedError), transaction.atomic():
            self.article.save()
        assert ConditionalArticle.objects.get(pk=self.article.pk).body == "theirs"

    def test_a_change_of_case_is_a_change(self) -> None:
        # MariaDB's default collations compare "t" and "T" as equal.
        self.article.title = "T"
        self.article.save()
        assert self.article.version == 2 == _stored(self.article)

    def test_json_compares_as_json(self) -> None:
        self.article.data = {"a": [1, 2], "b": None}
        self.article.save()
        assert self.article.version == 2
        fresh = ConditionalArticle.objects.get(pk=self.article.pk)
        fresh.save()
        assert fresh.version == 2 == _stored(fresh)
        fresh.data = {"a": [1, 2], "b": 0}
        fresh.save()
        assert fresh.version == 3 == _stored(fresh)

    def test_null_values_compare_safely(self) -> None:
        self.article.save()
        assert self.article.version == 1
        self.article.notes = "x"
        self.article.save()
        assert self.article.version == 2
        self.article.notes = None
        self.article.save()
        assert self.article.version == 3
        self.article.save()
        assert self.article.version == 3 == _stored(self.article)

    def test_expression_values_are_compared_in_the_database(self) -> None:
        self.article.title = Concat(F("title"), Value(""))
        self.article.save()
        assert self.article.version == 1 == _stored(self.article)
        self.article.title = Concat(F("title"), Value("!"))
        self.article.save()
        assert self.article.version == 2 == _stored(self.article)
        assert ConditionalArticle.objects.get(pk=self.article.pk).title == "t!"

    def test_foreign_keys_compare_by_id(self) -> None:
        first, second = Category.objects.create(name="1"), Category.objects.create(name="2")
        self.article.category = first
        self.article.save()
        assert self.article.version == 2
        self.article.category_id = first.pk
        self.article.save()
        assert self.article.version == 2
        self.article.category = second
        self.article.save()
        assert self.article.version == 3 == _stored(self.article)

    def test_update_fields_compare_only_what_is_written(self) -> None:
        self.article.title = "not written"
        self.article.body = "b"
        self.article.save(update_fields=["body"])
        assert self.article.version == 1 == _stored(self.article)
        self.article.save(update_fields=["title"])
        assert self.article.version == 2 == _stored(self.article)

    def test_disable_increment_never_bumps(self) -> None:
        with concurrency_disable_increment(self.article):
            self.article.title = "quiet"
            self.article.save()
        assert self.article.version == 1 == _stored(self.article)
        assert ConditionalArticle.objects.get(pk=self.article.pk).title == "quiet"

    def test_instances_share_no_state(self) -> None:
        # Reference bug #254: a hash kept on the class made one instance's
        # save bump (or refuse) another's.
        twin = ConditionalArticle.objects.get(pk=self.article.pk)
        stranger = ConditionalArticle.objects.create(title="s")
        self.article.title = "changed"
        self.article.save()
        stranger.save()
        assert stranger.version == 1
        assert twin.version == 1
        with pytest.raises(RecordModifiedError), transaction.atomic():
            twin.save()

    def test_loading_keeps_nothing_per_instance_and_runs_one_query(self) -> None:
        for tag in Tag.objects.bulk_create(Tag(name=str(i)) for i in range(3)):
            self.article.tags.add(tag)
        plain = PlainConditionalArticle.objects.create(title="t")
        with CaptureQueriesContext(connection) as ctx:
            loaded = list(ConditionalArticle.objects.all())
        assert len(ctx.captured_queries) == 1
        plain_keys = set(PlainConditionalArticle.objects.get(pk=plain.pk).__dict__)
        assert set(loaded[0].__dict__) == plain_keys | {"version"}


def _compared_in_sql(sql: str) -> bool:
    # The SQL comparison: CASE in the SET clause, the stored version read back.
    return "CASE" in sql or "RETURNING" in sql or "LAST_INSERT_ID" in sql


def _one_update(ctx: CaptureQueriesContext) -> str:
    # Transaction control is not a statement of the save (plain Django's atomic() has it too).
    writes = [sql for sql in _writes(ctx) if not sql.startswith(("BEGIN", "COMMIT"))]
    assert len(writes) == 1 and writes[0].startswith("UPDATE"), writes
    return writes[0]


class LoadedRowTests(TestCase):
    """A loaded instance decides the bump from the row it was loaded with: a plain UPDATE."""

    def setUp(self) -> None:
        created = ConditionalArticle.objects.create(title="t", body="b", notes=None, data=None)
        self.article = ConditionalArticle.objects.get(pk=created.pk)

    def _save(self, obj: Any) -> str:
        with CaptureQueriesContext(connection) as ctx:
            obj.save()
        return _one_update(ctx)

    @pytest.mark.skipif(not DJANGO_61, reason="fetch modes are new in Django 6.1")
    def test_loading_keeps_django_s_fetch_mode(self) -> None:
        import warnings

        from django.db.models import FETCH_PEERS

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "from_db() must accept a fetch_mode keyword"
            loaded = list(ConditionalArticle.objects.fetch_mode(FETCH_PEERS).filter(pk=self.article.pk))
        assert loaded[0]._state.fetch_mode is FETCH_PEERS
        loaded[0].title = "new"
        assert not _compared_in_sql(self._save(loaded[0]))

    def test_changed_saves_are_plain_updates_unchanged_ones_compare_in_sql(self) -> None:
        self.article.title = "new"
        assert not _compared_in_sql(self._save(self.article))
        assert self.article.version == 2 == _stored(self.article)
        # The row it wrote is the row it holds now: the next changed save is plain too.
        self.article.notes = "x"
        self.article.category = Category.objects.create(name="c")
        assert not _compared_in_sql(self._save(self.article))
        assert self.article.version == 3 == _stored(self.article)
        self.article.notes = None
        assert not _compared_in_sql(self._save(self.article))
        assert self.article.version == 4 == _stored(self.article)
        # Nothing changed since: the database compares with the row as it is (a write under
        # concurrency_disable_increment() elsewhere may have changed it without moving the version).
        assert _compared_in_sql(self._save(self.article))
        assert self.article.version == 4 == _stored(self.article)

    def test_an_unchanged_save_after_a_write_that_kept_the_version_moves_it(self) -> None:
        # Found by the state machine: another instance wrote under concurrency_disable_increment();
        # writing back what this one loaded changes the row, so the version must move.
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        other.title = "theirs"
        with concurrency_disable_increment(ConditionalArticle):
            other.save()
        assert _stored(self.article) == 1
        self._save(self.article)
        assert self.article.version == 2 == _stored(self.article)
        assert ConditionalArticle.objects.get(pk=self.article.pk).title == "t"

    def test_a_stale_loaded_instance_is_refused(self) -> None:
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        other.title = "theirs"
        other.save()
        self.article.title = "t"  # the value it was loaded with
        with pytest.raises(RecordModifiedError), transaction.atomic():
            self.article.save()
        assert ConditionalArticle.objects.values_list("title", "version").get(pk=other.pk) == ("theirs", 2)

    def test_an_instance_that_was_not_loaded_compares_in_sql(self) -> None:
        built = ConditionalArticle(pk=self.article.pk, title="t", body="b", version=1)
        assert _compared_in_sql(self._save(built))
        assert built.version == 1 == _stored(built)
        built = ConditionalArticle(pk=self.article.pk, title="T", body="b", version=1)
        assert _compared_in_sql(self._save(built))
        assert built.version == 2 == _stored(built)

    def test_deferred_fields_compare_in_sql(self) -> None:
        partial = ConditionalArticle.objects.only("title", "version").get(pk=self.article.pk)
        partial.title = "t"
        with CaptureQueriesContext(connection) as ctx:
            partial.save(update_fields=["title"])
        assert _compared_in_sql(_one_update(ctx))
        assert partial.version == 1 == _stored(partial)

    def test_json_changed_in_place_compares_in_sql(self) -> None:
        self.article.data = {"a": [1]}
        self.article.save()
        fresh = ConditionalArticle.objects.get(pk=self.article.pk)
        fresh.data["a"].append(2)  # the loaded value itself: no copy to compare with
        assert _compared_in_sql(self._save(fresh))
        assert fresh.version == 3 == _stored(fresh)

    def test_a_value_of_another_type_compares_in_sql(self) -> None:
        self.article.category = Category.objects.create(name="c")
        self.article.save()
        fresh = ConditionalArticle.objects.get(pk=self.article.pk)
        fresh.category_id = str(fresh.category_id)  # the same row, as a string
        assert _compared_in_sql(self._save(fresh))
        assert fresh.version == 2 == _stored(fresh)

    def test_a_write_that_did_not_move_the_version_forgets_the_row(self) -> None:
        with concurrency_disable_increment(self.article):
            self.article.title = "quiet"
            self.article.save()
        assert self.article.version == 1 == _stored(self.article)
        # Back to the value it was loaded with: a change of the row, which holds "quiet".
        self.article.title = "t"
        assert _compared_in_sql(self._save(self.article))
        assert self.article.version == 2 == _stored(self.article)

    def test_an_unchecked_write_compares_with_the_row_in_sql(self) -> None:
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        other.title = "theirs"
        other.save()
        with disable_concurrency(self.article):
            sql = self._save(self.article)  # "t", as loaded, over "theirs"
        assert _compared_in_sql(sql)
        assert ConditionalArticle.objects.values_list("title", "version").get(pk=other.pk) == ("t", 3)

    def test_assigning_another_version_forgets_the_row(self) -> None:
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        other.title = "theirs"
        other.save()
        self.article.version = 2  # as a form of the newer row would
        self.article.title = "t"
        assert _compared_in_sql(self._save(self.article))
        assert ConditionalArticle.objects.values_list("title", "version").get(pk=other.pk) == ("t", 3)

    def test_the_version_posted_back_keeps_the_row(self) -> None:
        self.article.version = 1  # a form posting the version the instance was loaded at
        self.article.title = "new"
        assert not _compared_in_sql(self._save(self.article))
        assert self.article.version == 2 == _stored(self.article)

    def test_a_rolled_back_write_forgets_the_row_it_wrote(self) -> None:
        other = ConditionalArticle.objects.get(pk=self.article.pk)
        with pytest.raises(RuntimeError), transaction.atomic():
            self.article.title = "mine"
            self.article.save()  # 1 -> 2, rolled back
            raise RuntimeError
        other.title = "theirs"
        other.save()  # 1 -> 2, kept
        self.article.refresh_from_db()
        assert (self.article.title, self.article.version) == ("theirs", 2)
        self.article.title = "mine"  # what the rolled-back write held at version 2
        assert _compared_in_sql(self._save(self.article))
        assert ConditionalArticle.objects.values_list("title", "version").get(pk=other.pk) == ("mine", 3)

    def test_a_model_form_save_is_a_plain_update(self) -> None:
        form_class = forms.modelform_factory(ConditionalArticle, fields=["title", "body", "version"])
        data = {"title": "new", "body": "b", "version": sign_version(ConditionalArticle, self.article.pk, 1)}
        form = form_class(data, instance=self.article)
        assert form.is_valid(), form.errors
        with CaptureQueriesContext(connection) as ctx:
            form.save()
        assert not _compared_in_sql(_one_update(ctx))
        assert self.article.version == 2 == _stored(self.article)

    def test_copies_and_pickles(self) -> None:
        twin = copy.copy(self.article)
        twin.title = "twin"
        assert not _compared_in_sql(self._save(twin))
        assert twin.version == 2
        with pytest.raises(RecordModifiedError), transaction.atomic():
            self.article.save()
        thawed = pickle.loads(pickle.dumps(ConditionalArticle.objects.get(pk=self.article.pk)))
        assert _compared_in_sql(self._save(thawed))
        assert thawed.version == 2 == _stored(thawed)


class LoadedRowAutocommitTests(TransactionTestCase):
    """One plain UPDATE per save, outside and inside atomic()."""

    def test_one_plain_update_outside_and_inside_atomic(self) -> None:
        created = ConditionalArticle.objects.create(title="t")
        for inside in (False, True):
            for change in (False, True):
                obj = ConditionalArticle.objects.get(pk=created.pk)
                version = obj.version
                if change:
                    obj.body = f"{inside}"
                with CaptureQueriesContext(connection) as ctx:
                    if inside:
                        with transaction.atomic():
                            obj.save()
                    else:
                        obj.save()
                assert _compared_in_sql(_one_update(ctx)) is not change
                assert obj.version == version + change == _stored(obj)


class CheckedFieldsTests(TestCase):
    def test_check_fields(self) -> None:
        article = CheckFieldsArticle.objects.create(title="t")
        article.notes = "unchecked"
        article.save()
        assert article.version == 1 == _stored(article)
        article.tags.add(Tag.objects.create(name="x"))
        assert article.version == 1 == _stored(article)
        article.category = Category.objects.create(name="c")
        article.save()
        assert article.version == 2
        article.title = "checked"
        article.save()
        assert article.version == 3 == _stored(article)

    def test_ignore_fields(self) -> None:
        article = IgnoreFieldsArticle.objects.create(title="t")
        article.notes = "ignored"
        article.save()
        article.tags.add(Tag.objects.create(name="x"))
        assert article.version == 1 == _stored(article)
        article.title = "checked"
        article.save()
        assert article.version == 2 == _stored(article)

    def test_checked_field_names(self) -> None:
        field = ConditionalArticle._meta.get_field("version")
        names = {"title", "body", "notes", "data", "category", "tags"}
        assert field.checked_fields(ConditionalArticle) == names
        assert CheckFieldsArticle._meta.get_field("version").checked_fields(CheckFieldsArticle) == {
            "title",
            "category",
        }


class ManyToManyTests(TestCase):
    def setUp(self) -> None:
        self.article = ConditionalArticle.objects.create(title="t")
        self.tags = Tag.objects.bulk_create(Tag(name=str(i)) for i in range(30))

    def test_add_and_remove_bump_the_instance_in_hand(self) -> None:
        self.article.tags.add(self.tags[0])
        assert self.article.version == 2 == _stored(self.article)
        self.article.tags.add(self.tags[0])  # already a member
        assert self.article.version == 2
        self.article.tags.remove(self.tags[1])  # not a member
        assert self.article.version == 2
        self.article.tags.remove(self.tags[0])
        assert self.article.version == 3 == _stored(self.article)
        self.article.tags.clear()  # already empty
        assert self.article.version == 3 == _stored(self.article)
        self.article.title = "then a save"
        self.article.save()
        assert self.article.version == 4 == _stored(self.article)

    def test_set_with_the_same_members_does_not_bump(self) -> None:
        self.article.tags.set(self.tags[:3])
        version = self.article.version
        self.article.tags.set(self.tags[:3])
        assert self.article.version == version == _stored(self.article)

    def test_no_truncation_past_twenty_members(self) -> None:
        self.article.tags.set(self.tags[:25])
        version = self.article.version
        self.article.tags.remove(self.tags[24])
        assert self.article.version == version + 1 == _stored(self.article)

    def test_clear_bumps(self) -> None:
        self.article.tags.add(*self.tags[:2])
        self.article.tags.clear()
        assert self.article.version == 3 == _stored(self.article)

    def test_stale_instance_cannot_change_membership(self) -> None:
        stale = ConditionalArticle.objects.get(pk=self.article.pk)
        self.article.title = "first"
        self.article.save()
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.tags.add(self.tags[0])
        assert not self.article.tags.exists()
        assert _stored(self.article) == 2

    def test_reverse_side_bumps_the_rows(self) -> None:
        other = ConditionalArticle.objects.create(title="o")
        self.tags[0].articles.add(self.article, other)
        assert (_stored(self.article), _stored(other)) == (2, 2)
        self.tags[0].articles.remove(other)
        assert (_stored(self.article), _stored(other)) == (2, 3)
        self.tags[0].articles.clear()
        assert (_stored(self.article), _stored(other)) == (3, 3)

    def test_symmetrical_relation_bumps_both_people(self) -> None:
        ann, bob = Person.objects.create(name="ann"), Person.objects.create(name="bob")
        ann.friends.add(bob)
        assert (ann.version, _stored(ann), _stored(bob)) == (2, 2, 2)
        assert list(bob.friends.all()) == [ann]


@pytest.mark.race
class ConditionalRaceTests(TransactionTestCase):
    def test_two_threads_changing_the_same_row_one_wins(self) -> None:
        article = ConditionalArticle.objects.create(title="t")
        barrier = threading.Barrier(2)
        outcomes: list[str] = []

        def edit(title: str) -> None:
            try:
                mine = ConditionalArticle.objects.get(pk=article.pk)
                barrier.wait()
                mine.title = title
                with transaction.atomic():
                    mine.save()
                outcomes.append("saved")
            except RecordModifiedError:
                outcomes.append("refused")

        run_together(lambda: edit("a"), lambda: edit("b"))
        assert sorted(outcomes) == ["refused", "saved"]
        assert _stored(article) == 2


@isolate_apps("tests.demo")
def test_field_lists_are_checked() -> None:
    class Both(models.Model):
        title = models.CharField(max_length=10)
        version = ConditionalVersionField()

        class ConcurrencyMeta:
            check_fields = ("title",)
            ignore_fields = ("title",)

        class Meta:
            app_label = "demo"

    class Unknown(models.Model):
        title = models.CharField(max_length=10)
        version = ConditionalVersionField()

        class ConcurrencyMeta:
            ignore_fields = ("titel",)

        class Meta:
            app_label = "demo"

    errors = [*Both.check(), *Unknown.check()]
    assert [(e.id, e.obj) for e in errors] == [("concurrency.E103", Both), ("concurrency.E104", Unknown)]
    assert errors[1].msg == "demo.Unknown.ConcurrencyMeta.ignore_fields names 'titel', which is not a field."


# --- Collations that call different strings equal must not hide a change --------

# vendor: (a case-insensitive collation, one that ignores trailing spaces)
COLLATIONS = {
    "sqlite": ("NOCASE", "RTRIM"),
    "postgresql": ("concurrency_test_ci", "concurrency_test_ci"),
    "mysql": ("utf8mb4_general_ci", "utf8mb4_general_ci"),
}
# (field, value in the row, value saved, vendors whose collation calls the two equal)
CHANGES = [
    ("title", "report", "REPORT", {"sqlite", "postgresql", "mysql"}),
    ("body", "report", "REPORT", {"sqlite", "postgresql", "mysql"}),
    ("title", "resume", "résumé", {"postgresql", "mysql"}),
    ("padded", "a", "a  ", {"sqlite", "mysql"}),
    ("attachment", "docs/Report.txt", "docs/report.txt", {"mysql"}),
]


@isolate_apps("tests.demo")
class CollationTests(TransactionTestCase):
    """ConditionalVersionField compares text byte for byte, whatever the column's collation."""

    def setUp(self) -> None:
        vendor = connection.vendor
        if vendor == "postgresql":
            with connection.cursor() as cursor:
                # Level 1: case and accents are ignored.
                cursor.execute(
                    "CREATE COLLATION IF NOT EXISTS concurrency_test_ci "
                    "(provider = icu, locale = 'und-u-ks-level1', deterministic = false)"
                )
        folding, padding = COLLATIONS[vendor]

        class Folded(models.Model):
            title = models.CharField(max_length=50, db_collation=folding)
            body = models.TextField(db_collation=folding)
            padded = models.CharField(max_length=50, db_collation=padding)
            # No db_collation for files: on MariaDB the table's default, a _ci one.
            attachment = models.FileField(max_length=100)
            version = ConditionalVersionField()
            objects = VersionedManager()

            class Meta:
                app_label = "demo"

        self.model = Folded
        with connection.schema_editor() as editor:
            editor.create_model(Folded)

    def tearDown(self) -> None:
        with connection.schema_editor() as editor:
            editor.delete_model(self.model)

    def _row(self, field: str, value: str) -> Any:
        values = {"title": "t", "body": "b", "padded": "p", "attachment": "f.txt", field: value}
        created = self.model.objects.create(**values)
        obj = self.model.objects.get(pk=created.pk)
        assert obj.version == 1
        return obj

    def _assert_equal_to_the_database(self, obj: Any, field: str, value: str, vendors: set[str]) -> None:
        # The premise: the column's collation calls the new value equal to the stored one.
        equal = self.model.objects.filter(pk=obj.pk, **{field: value}).exists()
        assert equal is (connection.vendor in vendors), (field, value)

    def test_a_change_the_collation_calls_equal_bumps_the_version(self) -> None:
        for field, before, after, vendors in CHANGES:
            with self.subTest(field=field, after=after):
                obj = self._row(field, before)
                self._assert_equal_to_the_database(obj, field, after, vendors)
                setattr(obj, field, after)
                obj.save()
                stored = self.model.objects.values_list("version", field).get(pk=obj.pk)
                assert obj.version == 2
                assert stored == (2, after)
                obj.save()  # the same bytes again: no change
                assert obj.version == 2 == self.model.objects.values_list("version", flat=True).get(pk=obj.pk)

    def test_the_stale_instance_of_such_a_change_is_refused(self) -> None:
        obj = self._row("title", "report")
        stale = self.model.objects.get(pk=obj.pk)
        obj.title = "REPORT"
        obj.save()
        stale.body = "mine"
        with pytest.raises(RecordModifiedError), transaction.atomic():
            stale.save()
        assert self.model.objects.values_list("title", "body").get(pk=obj.pk) == ("REPORT", "b")

    def test_queryset_update_and_bulk_update_bump_too(self) -> None:
        first, second = self._row("title", "report"), self._row("padded", "a")
        assert self.model.objects.filter(pk=first.pk).update(title="Report") == 1
        assert self.model.objects.values_list("version", flat=True).get(pk=first.pk) == 2
        second.padded = "a "
        self.model.objects.bulk_update([second], ["padded"])
        assert second.version == 2 == self.model.objects.values_list("version", flat=True).get(pk=second.pk)
