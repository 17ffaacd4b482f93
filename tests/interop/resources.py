"""django-import-export resources for the versioned Book (docs/guide/interop.rst)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from import_export import resources


class BookResource(resources.ModelResource):
    """The plain resource: every model field, the version included."""

    class Meta:
        from .models import Book

        model = Book
        import_id_fields = ("isbn",)
        fields = ("isbn", "title", "price", "version")


class CheckedBookResource(BookResource):
    """The recipe: a savepoint per row, so a stale row fails alone and is reported as itself."""

    def save_instance(self, instance: Any, is_create: bool, row: Any, **kwargs: Any) -> None:
        with transaction.atomic(using=self.get_db_connection_name()):
            super().save_instance(instance, is_create, row, **kwargs)


class UncheckedBookResource(BookResource):
    """A file without versions: the rows it names are overwritten (an unchecked write)."""

    class Meta(BookResource.Meta):
        fields = ("isbn", "title", "price")
