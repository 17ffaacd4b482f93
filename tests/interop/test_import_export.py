"""django-import-export: importing updates of versioned rows, and exporting them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from concurrency.exceptions import RecordModifiedError
from tests.interop.models import Book
from tests.interop.resources import BookResource, CheckedBookResource, UncheckedBookResource

pytestmark = pytest.mark.django_db


@pytest.fixture
def books() -> list[Book]:
    return [
        Book.objects.create(isbn="9780000000001", title="Dune", price=Decimal("9.99")),
        Book.objects.create(isbn="9780000000002", title="Emma", price=Decimal("5.00")),
    ]


def table(
    *rows: tuple[str, ...], headers: tuple[str, ...] = ("isbn", "title", "price", "version")
) -> tablib.Dataset:
    return tablib.Dataset(*rows, headers=list(headers))


def state() -> list[tuple[str, str, Decimal, int]]:
    return list(Book.objects.order_by("isbn").values_list("isbn", "title", "price", "version"))


def test_export_includes_the_version(books: list[Book]) -> None:
    books[0].title = "Dune (2nd ed.)"
    books[0].save()
    exported = BookResource().export(Book.objects.order_by("isbn"))
    assert exported.headers == ["isbn", "title", "price", "version"]
    assert [(r[0], r[3]) for r in exported] == [("9780000000001", "2"), ("9780000000002", "1")]


def test_export_then_import_round_trip_updates_with_new_versions(books: list[Book]) -> None:
    exported = BookResource().export(Book.objects.order_by("isbn"))
    exported[0] = (exported[0][0], "Dune, revised", exported[0][2], exported[0][3])
    result = BookResource().import_data(exported)
    assert not result.has_errors() and not result.has_validation_errors()
    assert state() == [
        ("9780000000001", "Dune, revised", Decimal("9.99"), 2),
        ("9780000000002", "Emma", Decimal("5.00"), 2),
    ]


@pytest.mark.parametrize("resource", [BookResource, CheckedBookResource])
def test_stale_row_is_a_row_error_and_nothing_is_written(books: list[Book], resource: type) -> None:
    exported = BookResource().export(Book.objects.order_by("isbn"))
    books[0].price = Decimal("12.00")  # someone edits Dune after the export
    books[0].save()
    data = table(
        ("9780000000001", "Dune (from file)", "9.99", str(exported[0][3])),
        ("9780000000002", "Emma (from file)", "5.00", str(exported[1][3])),
    )
    result = resource().import_data(data)  # in a transaction: any row error rolls back all
    assert result.has_errors()
    first = result.row_errors()[0]
    assert first[0] == 1  # the row number
    error = first[1][0].error
    assert isinstance(error, RecordModifiedError)
    assert (error.version, error.db_version) == (1, 2)
    assert state() == [
        ("9780000000001", "Dune", Decimal("12.00"), 2),
        ("9780000000002", "Emma", Decimal("5.00"), 1),
    ]


def test_with_a_savepoint_per_row_only_the_stale_row_is_reported(books: list[Book]) -> None:
    books[0].save()
    data = table(("9780000000001", "x", "1.00", "1"), ("9780000000002", "y", "2.00", "1"))
    result = CheckedBookResource().import_data(data)
    assert [number for number, _errors in result.row_errors()] == [1]


def test_without_transactions_the_fresh_rows_are_written_and_the_stale_one_is_not(
    books: list[Book],
) -> None:
    books[0].save()
    data = table(("9780000000001", "x", "1.00", "1"), ("9780000000002", "Emma, abridged", "2.00", "1"))
    result = CheckedBookResource().import_data(data, use_transactions=False)
    assert [number for number, _errors in result.row_errors()] == [1]
    assert state() == [
        ("9780000000001", "Dune", Decimal("9.99"), 2),
        ("9780000000002", "Emma, abridged", Decimal("2.00"), 2),
    ]


def test_without_a_version_column_the_import_overwrites(books: list[Book]) -> None:
    books[0].title = "Dune (edited in the app)"
    books[0].save()
    data = table(("9780000000001", "Dune (from file)", "9.99"), headers=("isbn", "title", "price"))
    result = UncheckedBookResource().import_data(data)
    assert not result.has_errors()
    assert state()[0] == ("9780000000001", "Dune (from file)", Decimal("9.99"), 3)


def test_new_rows_start_at_version_one(books: list[Book]) -> None:
    data = table(("9780000000003", "Ulysses", "7.50", ""))
    result = BookResource().import_data(data)
    assert not result.has_errors()
    assert state()[2] == ("9780000000003", "Ulysses", Decimal("7.50"), 1)


def test_empty_version_cell_for_an_existing_row_is_refused(books: list[Book]) -> None:
    # CONCURRENCY_VERSION_FIELD_REQUIRED (the default): no version is never "any version".
    books[0].save()
    data = table(("9780000000001", "Dune (from file)", "9.99", ""))
    result = BookResource().import_data(data)
    [(number, [error])] = result.row_errors()
    assert number == 1 and isinstance(error.error, RecordModifiedError)
    assert state()[0] == ("9780000000001", "Dune", Decimal("9.99"), 2)


# -- ImportExportModelAdmin beside ConcurrentModelAdmin (tests/interop/admin.py) ----------


@pytest.mark.urls("tests.interop.urls")
def test_admin_import_shows_the_stale_row_as_an_error_and_imports_nothing(
    admin_client: Any, books: list[Book]
) -> None:
    books[0].title = "Dune (edited in the app)"
    books[0].save()
    csv = "isbn,title,price,version\n9780000000001,Dune (file),9.99,1\n9780000000002,Emma (file),5.00,1\n"
    upload = SimpleUploadedFile("books.csv", csv.encode(), content_type="text/csv")
    response = admin_client.post(
        reverse("interop:interop_book_import"), {"resource": "0", "format": "0", "import_file": upload}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Line number: 1" in html
    assert "Record has been modified" in html
    assert 'name="import_file_name"' not in html  # no "Confirm import" form
    assert state() == [
        ("9780000000001", "Dune (edited in the app)", Decimal("9.99"), 2),
        ("9780000000002", "Emma", Decimal("5.00"), 1),
    ]


@pytest.mark.urls("tests.interop.urls")
def test_admin_export_includes_the_version(admin_client: Any, books: list[Book]) -> None:
    response = admin_client.post(
        reverse("interop:interop_book_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"checkedbookresource_{f}": "on" for f in ("isbn", "title", "price", "version")},
        },
    )
    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert lines[0].split(",") == ["isbn", "title", "price", "version"]
    assert sorted(lines[1:]) == ["9780000000001,Dune,9.99,1", "9780000000002,Emma,5.00,1"]
