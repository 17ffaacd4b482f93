"""Signing of versions sent to browsers (hidden form fields, list_editable rows).

A signature is bound to the model and the primary key it was issued for, so a
version signed for one row cannot be replayed on another. The signer class is
``CONCURRENCY_FIELD_SIGNER`` (re-exported as ``concurrency.forms.VersionFieldSigner``).
"""

from __future__ import annotations

from typing import Any

from django.core.signing import BadSignature, Signer
from django.utils.module_loading import import_string

from .conf import conf

__all__ = ["VersionFieldSigner", "get_signer", "sign_version", "unsign_version"]


class VersionFieldSigner(Signer):
    """The default signer: Django's ``Signer``, salted per model and row by ``get_signer``."""

    def sign(self, value: Any) -> str:  # type: ignore[override]
        if value is None or value == "":
            return ""
        return super().sign(str(value))


def get_signer(model: Any = None, pk: Any = None) -> Any:
    """Return an instance of ``CONCURRENCY_FIELD_SIGNER`` for a row.

    Any object with ``sign(value)`` and ``unsign(value)`` may be configured;
    subclasses of ``django.core.signing.Signer`` get a salt naming the model and
    the primary key.
    """
    setting = conf.FIELD_SIGNER
    cls = import_string(setting) if isinstance(setting, str) else setting
    signer = cls()
    if isinstance(signer, Signer) and model is not None:
        signer.salt = f"concurrency.version:{model._meta.label_lower}:{pk}"
    return signer


def sign_version(model: Any, pk: Any, version: Any, signer: Any = None) -> str:
    """Return ``version`` signed for the row ``model``/``pk`` (or by ``signer``, used as it is)."""
    return str((signer or get_signer(model, pk)).sign(version))


def unsign_version(model: Any, pk: Any, signed: Any, signer: Any = None) -> int:
    """Return the version in ``signed``; raise ``ValueError`` if it is missing, forged or malformed.

    ``signer``, when given, is used as it is instead of the row's signer.
    Callers turn the ``ValueError`` into a form error or a 400 response.
    """
    if signed is None or str(signed).strip() == "":
        raise ValueError("missing version")
    try:
        raw = (signer or get_signer(model, pk)).unsign(str(signed))
        version = int(str(raw))
    except (BadSignature, TypeError, ValueError, OverflowError) as exc:
        raise ValueError("invalid version") from exc
    if not 0 <= version < 2**63:
        raise ValueError("version out of range")
    return version
