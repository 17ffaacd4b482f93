"""strawberry-graphql-django: update mutations that take the version the client read."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import F

from tests.interop.models import Memo, Recipe
from tests.interop.schema import schema

pytestmark = pytest.mark.django_db

UPDATE = """
mutation ($id: ID!, $version: Version!, $name: String) {
  updateRecipe(id: $id, version: $version, name: $name) { id name version }
}
"""
PATCH = """
mutation ($id: ID!, $version: Version!, $name: String) {
  %s(data: {id: $id, version: $version, name: $name}) { id name version }
}
"""
DELETE = "mutation ($id: ID!, $version: Version!) { deleteRecipe(id: $id, version: $version) }"


@pytest.fixture
def recipe() -> Recipe:
    return Recipe.objects.create(name="Pancakes")


def run(query: str, **variables: Any) -> Any:
    return schema.execute_sync(query, variable_values=variables)


def row(pk: int) -> tuple[str, int]:
    obj = Recipe.objects.get(pk=pk)
    return obj.name, obj.version


def test_query_returns_the_version(recipe: Recipe) -> None:
    result = run("query ($pk: ID!) { recipe(pk: $pk) { name version } }", pk=recipe.pk)
    assert result.errors is None
    assert result.data == {"recipe": {"name": "Pancakes", "version": 1}}


def test_update_with_the_current_version_saves(recipe: Recipe) -> None:
    result = run(UPDATE, id=recipe.pk, version=1, name="Crêpes")
    assert result.errors is None
    assert result.data["updateRecipe"] == {"id": str(recipe.pk), "name": "Crêpes", "version": 2}
    assert row(recipe.pk) == ("Crêpes", 2)


def test_stale_update_is_a_graphql_error_with_the_current_version(recipe: Recipe) -> None:
    assert run(UPDATE, id=recipe.pk, version=1, name="Crêpes").errors is None
    result = run(UPDATE, id=recipe.pk, version=1, name="Waffles")
    assert result.data is None
    [error] = result.errors
    assert error.extensions == {"code": "CONFLICT", "version": 2}
    assert "you sent version 1, it is now at version 2" in error.message
    assert row(recipe.pk) == ("Crêpes", 2)


def test_update_of_a_deleted_recipe_says_so(recipe: Recipe) -> None:
    Recipe.objects.filter(pk=recipe.pk).delete()
    result = run(UPDATE, id=recipe.pk, version=1, name="x")
    [error] = result.errors
    assert "does not exist" in error.message
    assert not Recipe.objects.exists()


def test_stale_delete_is_refused_and_the_row_survives(recipe: Recipe) -> None:
    Recipe.objects.filter(pk=recipe.pk).update(version=F("version") + 1)
    result = run(DELETE, id=recipe.pk, version=1)
    [error] = result.errors
    assert error.extensions == {"code": "CONFLICT", "version": 2}
    assert Recipe.objects.filter(pk=recipe.pk).exists()
    assert run(DELETE, id=recipe.pk, version=2).data == {"deleteRecipe": True}
    assert not Recipe.objects.exists()


def test_generated_update_mutation_is_checked_and_reports_the_version(recipe: Recipe) -> None:
    fresh = run(PATCH % "patchRecipe", id=recipe.pk, version=1, name="Crêpes")
    assert fresh.errors is None
    assert fresh.data["patchRecipe"]["version"] == 2
    stale = run(PATCH % "patchRecipe", id=recipe.pk, version=1, name="Waffles")
    [error] = stale.errors
    assert error.extensions == {"code": "CONFLICT", "version": 2}
    assert row(recipe.pk) == ("Crêpes", 2)


def test_generated_update_mutation_without_the_extension_still_refuses(recipe: Recipe) -> None:
    Recipe.objects.filter(pk=recipe.pk).update(version=F("version") + 1)
    result = run(PATCH % "patchRecipeUnguarded", id=recipe.pk, version=1, name="Waffles")
    [error] = result.errors
    assert error.message == "Record has been modified"
    assert not error.extensions
    assert row(recipe.pk) == ("Pancakes", 2)


def test_time_based_versions_need_the_64_bit_scalar() -> None:
    memo = Memo.objects.create(text="buy flour")
    assert memo.version > 2**31
    result = run("query ($pk: ID!) { memo(pk: $pk) { version } }", pk=memo.pk)
    assert result.errors is None
    assert result.data == {"memo": {"version": memo.version}}
    plain = run("query ($pk: ID!) { plainMemo(pk: $pk) { version } }", pk=memo.pk)
    [error] = plain.errors
    assert "32-bit" in error.message
