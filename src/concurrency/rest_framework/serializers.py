"""A serializer mixin that carries the version into the conditional save."""

from __future__ import annotations

from typing import Any

from django.db.models import Model
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers, status
from rest_framework.exceptions import APIException

from .._bases import SerializerBase
from ..core.options import options
from ..core.versions import MAX_VERSION, MIN_VERSION
from ..exceptions import RecordDeletedError, RecordModifiedError
from ..http.problems import deleted_error, stale_detail

__all__ = ["VERSION_CONTEXT_KEY", "VersionConflict", "VersionField", "VersionedSerializerMixin"]

# Serializer context entry through which a view hands over the version that
# If-Match named; it takes the place of a version in the body.
VERSION_CONTEXT_KEY = "concurrency_version"


class VersionConflict(APIException):
    """A save refused because the row changed (409) or was deleted since the version sent.

    ``error`` is the ``RecordModifiedError`` (or ``RecordDeletedError``) of the save.
    """

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"

    def __init__(self, error: RecordModifiedError) -> None:
        self.error = error
        if isinstance(error, RecordDeletedError):
            message: Any = deleted_error().detail
        else:
            message = stale_detail(error.version, error.db_version)
        super().__init__(message)
        # The version stays a number in the body, beside the message.
        self.detail: Any = {"detail": self.detail, "version": error.db_version}


class VersionField(serializers.IntegerField):
    """The row's version: always shown; on update, the version the client read.

    Not required by the field itself (a create never needs one): the serializer
    mixin requires it on update, including partial updates.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        # The column's range; a version whose successor it cannot hold is refused by the save (409).
        kwargs.setdefault("min_value", MIN_VERSION)
        kwargs.setdefault("max_value", MAX_VERSION + 1)
        kwargs.setdefault(
            "help_text", _("The version you read; an update is refused if the record moved on.")
        )
        super().__init__(**kwargs)


class VersionedSerializerMixin(SerializerBase):
    """Mix into a ``ModelSerializer`` of a versioned model.

    The version is exposed as a ``VersionField``. An update needs it, in the
    body or from a view's If-Match header: without it the update is a 400,
    never a silent overwrite. The version sent is the one the instance is saved
    with, so the conditional UPDATE refuses it if the row has moved on, and the
    serializer raises ``VersionConflict`` (409).
    """

    version_required_message = _(
        "This field is required to update: send the version you read (or an If-Match header "
        "with its ETag), so that a change made since then is not overwritten."
    )
    version_mismatch_message = _("The version in the body and the If-Match header disagree.")

    instance: Any
    context: dict[str, Any]
    Meta: Any

    def _version_field_name(self) -> str:
        model: type[Model] = self.Meta.model
        try:
            return options(model).field.name
        except AttributeError:
            raise TypeError(f"{model.__name__} has no version field") from None

    def build_field(self, field_name: str, *args: Any) -> tuple[type[serializers.Field], dict[str, Any]]:
        if field_name == self._version_field_name():
            return VersionField, {}
        return super().build_field(field_name, *args)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields: dict[str, serializers.Field] = super().get_fields()
        name = self._version_field_name()
        if not isinstance(fields.get(name), VersionField):
            fields[name] = VersionField()
        return fields

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        name = self._version_field_name()
        source = self.fields[name].source
        if self.instance is None:
            # The version of a new row is the field's to choose.
            attrs.pop(source, None)
            return attrs
        sent = attrs.get(source)
        from_header = self.context.get(VERSION_CONTEXT_KEY)
        if from_header is not None:
            if sent is not None and sent != from_header:
                raise serializers.ValidationError({name: [self.version_mismatch_message]})
            attrs[source] = from_header
        elif sent is None:
            raise serializers.ValidationError({name: [self.version_required_message]}, code="required")
        return attrs

    def update(self, instance: Model, validated_data: dict[str, Any]) -> Model:
        source = self.fields[self._version_field_name()].source
        attname = options(instance).field.attname
        setattr(instance, attname, validated_data.pop(source))
        try:
            return super().update(instance, validated_data)
        except RecordModifiedError as error:
            raise VersionConflict(error) from error

    def create(self, validated_data: dict[str, Any]) -> Model:
        validated_data.pop(self.fields[self._version_field_name()].source, None)
        return super().create(validated_data)
