"""Model fields that hold a row's version."""

from .base import AutoIncVersionField, IntegerVersionField, VersionField
from .conditional import ConditionalVersionField
from .trigger import TriggerVersionField

__all__ = [
    "AutoIncVersionField",
    "ConditionalVersionField",
    "IntegerVersionField",
    "TriggerVersionField",
    "VersionField",
]
