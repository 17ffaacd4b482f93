"""A strawberry-graphql-django schema over Recipe and Memo (docs/guide/interop.rst)."""

from __future__ import annotations

from typing import Any, NewType

import strawberry
import strawberry_django
from django.db import transaction
from graphql import GraphQLError
from strawberry.extensions import FieldExtension
from strawberry.schema.config import StrawberryConfig
from strawberry_django import mutations
from strawberry_django.fields.types import field_type_map

from concurrency.exceptions import RecordDeletedError, RecordModifiedError
from concurrency.fields import (
    AutoIncVersionField,
    ConditionalVersionField,
    IntegerVersionField,
    TriggerVersionField,
)

from .models import Memo, Recipe

_VERSION_FIELDS = (AutoIncVersionField, ConditionalVersionField, IntegerVersionField, TriggerVersionField)

# GraphQL's Int is 32 bits; versions are 64-bit (IntegerVersionField's are
# microsecond timestamps), so they travel as a scalar of their own.
Version = NewType("Version", int)
VERSION_SCALAR = strawberry.scalar(
    name="Version",
    description="The version of a record, a 64-bit integer.",
    serialize=int,
    parse_value=int,
)

# strawberry.auto looks model fields up by their exact class: map each
# version field class (BigIntegerField subclasses) to that scalar.
field_type_map.update(dict.fromkeys(_VERSION_FIELDS, Version))


def conflict_error(error: RecordModifiedError) -> GraphQLError:
    """Return the GraphQL error for a refused write, carrying the current version."""
    if isinstance(error, RecordDeletedError):
        return GraphQLError("The record has been deleted by someone else.", extensions={"code": "DELETED"})
    return GraphQLError(
        f"The record has been changed by someone else: you sent version {error.version}, "
        f"it is now at version {error.db_version}. Fetch it again and reapply your change.",
        extensions={"code": "CONFLICT", "version": error.db_version},
    )


class VersionConflictExtension(FieldExtension):
    """Turn a refused write in a generated mutation into ``conflict_error``."""

    def resolve(self, next_: Any, source: Any, info: Any, **kwargs: Any) -> Any:
        try:
            with transaction.atomic():
                return next_(source, info, **kwargs)
        except RecordModifiedError as error:
            raise conflict_error(error) from error


@strawberry_django.type(Recipe)
class RecipeType:
    id: strawberry.auto
    name: strawberry.auto
    servings: strawberry.auto
    version: strawberry.auto


@strawberry_django.partial(Recipe)
class RecipePartial:
    id: strawberry.auto
    name: strawberry.auto
    servings: strawberry.auto
    version: strawberry.auto


@strawberry_django.type(Memo)
class MemoType:
    id: strawberry.auto
    text: strawberry.auto
    version: strawberry.auto


@strawberry_django.type(Memo, name="PlainMemo")
class PlainMemoType:
    """Memo with the version declared as a GraphQL Int (32 bits)."""

    id: strawberry.auto
    text: strawberry.auto
    version: int


@strawberry.type
class Query:
    recipe: RecipeType = strawberry_django.field()
    memo: MemoType = strawberry_django.field()
    plain_memo: PlainMemoType = strawberry_django.field()


@strawberry.type
class Mutation:
    @strawberry.mutation
    def update_recipe(
        self,
        id: strawberry.ID,
        version: Version,
        name: str | None = None,
        servings: int | None = None,
    ) -> RecipeType:
        recipe = Recipe.objects.get(pk=id)
        recipe.version = version  # the version the client read is the one saved with
        if name is not None:
            recipe.name = name
        if servings is not None:
            recipe.servings = servings
        try:
            with transaction.atomic():
                recipe.save()
        except RecordModifiedError as error:
            raise conflict_error(error) from error
        return recipe  # type: ignore[return-value]

    @strawberry.mutation
    def delete_recipe(self, id: strawberry.ID, version: Version) -> bool:
        recipe = Recipe.objects.get(pk=id)
        recipe.version = version
        try:
            with transaction.atomic():
                recipe.delete()
        except RecordModifiedError as error:
            raise conflict_error(error) from error
        return True

    # strawberry-django's generated update mutation, the version in its input.
    patch_recipe: RecipeType = mutations.update(RecipePartial, extensions=[VersionConflictExtension()])
    patch_recipe_unguarded: RecipeType = mutations.update(RecipePartial, handle_django_errors=False)


schema = strawberry.Schema(
    query=Query, mutation=Mutation, config=StrawberryConfig(scalar_map={Version: VERSION_SCALAR})
)
