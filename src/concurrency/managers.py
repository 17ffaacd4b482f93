"""A queryset and manager whose bulk writes respect the version.

Plain ``QuerySet.update()`` and ``bulk_update()`` neither bump the version
nor check it, so a stale instance elsewhere can later overwrite a bulk change
without noticing. ``VersionedQuerySet`` closes both holes::

    class Article(models.Model):
        version = AutoIncVersionField()
        objects = VersionedManager()

``update()`` bumps the version of every row it touches; ``bulk_update()``
checks every row's version in one statement per batch and reports exactly
which rows were stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from asgiref.sync import sync_to_async
from django.db import NotSupportedError, models

from .core.bulk import bulk_save_update
from .core.options import is_model_incremented, options_of
from .exceptions import BulkUpdateConflictError

if TYPE_CHECKING:
    from django.db.models import Field

__all__ = ["VersionedManager", "VersionedQuerySet"]

OnConflict = Literal["raise", "skip"]


C = TypeVar("C", bound=Callable[..., Any])


def _alters_data(method: C) -> C:
    """Mark ``method`` as one templates must not call, as Django marks the methods it overrides."""
    vars(method)["alters_data"] = True
    return method


class VersionedQuerySet(models.QuerySet):
    """A ``QuerySet`` whose ``update()`` bumps versions and whose ``bulk_update()`` checks them.

    On a model without a version field it behaves exactly like ``QuerySet``.
    """

    @_alters_data
    def update(self, **kwargs: Any) -> int:
        """Update the rows and bump the version of each one, in the same statement.

        The version is not checked (a queryset holds no versions to check);
        bumping it makes every instance loaded before the update stale, so
        their next ``save()`` is refused instead of undoing this update.
        Setting the version explicitly, ``concurrency_disable_increment()``
        for the model, and ``ConcurrencyMeta.increment = False`` leave it alone.
        """
        meta = options_of(self.model)
        if meta is not None and is_model_incremented(self.model):
            field = meta.field
            if field.name not in kwargs and field.attname not in kwargs:
                opts = self.model._meta
                values = [(opts.get_field(name), None, value) for name, value in kwargs.items()]
                expression = field.next_version_expression(values)
                if expression is not None:
                    # First in the SET clause: MySQL assigns left to right, and a
                    # version computed from the row must see its old values.
                    kwargs = {field.attname: expression, **kwargs}
        return super().update(**kwargs)

    def only(self, *fields: Any) -> VersionedQuerySet:
        """Like ``QuerySet.only()``, but the version is always loaded with the row.

        An instance whose version was left behind could only be checked
        against a version loaded at save time, from a row the user never saw.
        """
        meta = options_of(self.model)
        if meta is not None and fields and fields != (None,):
            names = {meta.field.name, meta.field.attname}
            if not names.intersection(fields):
                fields = (*fields, meta.field.name)
        return super().only(*fields)

    def defer(self, *fields: Any) -> VersionedQuerySet:
        """Like ``QuerySet.defer()``, but the version is never deferred (see ``only()``)."""
        meta = options_of(self.model)
        if meta is not None:
            names = {meta.field.name, meta.field.attname}
            fields = tuple(f for f in fields if f not in names)
            if not fields:
                return self._chain()  # type: ignore[attr-defined]
        return super().defer(*fields)

    @overload  # type: ignore[override]
    def bulk_update(
        self,
        objs: Iterable[models.Model],
        fields: Sequence[str],
        batch_size: int | None = ...,
        *,
        on_conflict: Literal["raise"] = ...,
    ) -> int: ...

    @overload
    def bulk_update(
        self,
        objs: Iterable[models.Model],
        fields: Sequence[str],
        batch_size: int | None = ...,
        *,
        on_conflict: Literal["skip"],
    ) -> list[models.Model]: ...

    @_alters_data
    def bulk_update(
        self,
        objs: Iterable[models.Model],
        fields: Sequence[str],
        batch_size: int | None = None,
        *,
        on_conflict: OnConflict = "raise",
    ) -> int | list[models.Model]:
        """Write ``fields`` of ``objs``, refusing every row whose version has moved on.

        One ``UPDATE`` per batch sets the fields and the next version of each
        row, where the row still has the version its instance holds.

        ``on_conflict="raise"`` (the default) is all or nothing: if any row is
        stale, nothing is written and ``BulkUpdateConflictError`` lists every stale
        row; otherwise return the number of rows written, like Django.
        ``on_conflict="skip"`` writes the rows that are current and returns
        the stale instances (an empty list when all were written).

        Written instances hold their new versions; refused ones are left as
        they were. ``conflict_detected`` is sent once per refused row.
        """
        if on_conflict not in ("raise", "skip"):
            raise ValueError("on_conflict must be 'raise' or 'skip'.")
        if self.query.is_sliced:
            raise TypeError("Cannot update a query once a slice has been taken.")
        meta = options_of(self.model)
        if meta is None:
            rows = super().bulk_update(objs, fields, batch_size)  # type: ignore[arg-type]
            return rows if on_conflict == "raise" else []
        objs, targets = self._check_bulk_update(tuple(objs), fields, batch_size, meta.field)
        if not objs:
            return 0 if on_conflict == "raise" else []
        self._for_write = True
        written, conflicts = bulk_save_update(
            self, objs, targets, batch_size, all_or_nothing=on_conflict == "raise"
        )
        if on_conflict == "skip":
            return [conflict.instance for conflict in conflicts]
        if conflicts:
            raise BulkUpdateConflictError(model=self.model, conflicts=conflicts)
        return written

    @_alters_data
    async def abulk_update(  # type: ignore[override]
        self,
        objs: Iterable[models.Model],
        fields: Sequence[str],
        batch_size: int | None = None,
        *,
        on_conflict: OnConflict = "raise",
    ) -> int | list[models.Model]:
        """Run ``bulk_update()`` from async code."""
        return await sync_to_async(self.bulk_update)(
            objs,
            fields,
            batch_size,
            on_conflict=on_conflict,  # type: ignore[arg-type]
        )

    def _check_bulk_update(
        self,
        objs: tuple[models.Model, ...],
        names: Sequence[str],
        batch_size: int | None,
        version: Any,
    ) -> tuple[tuple[models.Model, ...], list[Field]]:
        """Validate the arguments as Django does, plus what a versioned write needs."""
        if batch_size is not None and batch_size <= 0:
            raise ValueError("Batch size must be a positive integer.")
        if not names:
            raise ValueError("Field names must be given to bulk_update().")
        if not all(obj._is_pk_set() for obj in objs):  # type: ignore[attr-defined]
            raise ValueError("All bulk_update() objects must have a primary key set.")
        opts = self.model._meta
        fields = [opts.get_field(name) for name in names]
        if any(not f.concrete or f.many_to_many for f in fields):
            raise ValueError("bulk_update() can only be used with concrete fields.")
        if any(getattr(f, "primary_key", False) for f in fields):
            raise ValueError("bulk_update() cannot be used with primary key fields.")
        if version in fields:
            raise ValueError(
                f"bulk_update() writes {version.name!r} itself; leave it out of the field names."
            )
        if opts.concrete_model is not version.model or any(f.model is not version.model for f in fields):
            raise NotSupportedError(
                "A versioned bulk_update() writes one table: call it on "
                f"{version.model._meta.label} with fields of that model only."
            )
        seen = set()
        pk = opts.pk
        for obj in objs:
            # 1 and "1", a UUID and its string: the same row.
            key = pk.to_python(obj.pk)
            if key in seen:
                raise ValueError(f"bulk_update() got the row with pk {obj.pk!r} twice.")
            seen.add(key)
            obj._prepare_related_fields_for_save(  # type: ignore[attr-defined]
                operation_name="bulk_update", fields=fields
            )
        return objs, cast("list[Any]", fields)


class VersionedManager(models.manager.BaseManager.from_queryset(VersionedQuerySet)):  # type: ignore[misc]
    """The manager of ``VersionedQuerySet``: use it as ``objects`` on a versioned model."""
