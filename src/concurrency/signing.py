"""Signing of what the library hands to clients: versions, entity tags, snapshots.

Every token is bound to the row it was issued for (``row_label``: the concrete
model and the primary key), so one issued for a row cannot be replayed on
another. Versions in forms and list_editable rows use the signer class
``CONCURRENCY_FIELD_SIGNER`` (re-exported as
``concurrency.forms.VersionFieldSigner``); entity tags use ``row_mac`` and the
resolution page's snapshots ``dumps_for_row``/``loads_for_row``, all keyed by
``SECRET_KEY`` through Django's own signing.
"""

from __future__ import annotations

import base64
from typing import Any

from django.core import signing
from django.core.signing import BadSignature, Signer
from django.utils.crypto import salted_hmac
from django.utils.module_loading import import_string

from .conf import conf
from .core.versions import MAX_VERSION

__all__ = ["VersionFieldSigner", "get_signer", "sign_version", "unsign_version"]


def row_label(model: Any, pk: Any) -> str:
    """Return the name of a row that tokens are bound to (proxies share their concrete model's rows)."""
    concrete = model._meta.concrete_model or model
    return f"{concrete._meta.label_lower}:{pk}"


def row_salt(purpose: str, model: Any, pk: Any) -> str:
    """Return the salt of a token for ``purpose`` bound to the row ``model``/``pk``."""
    return f"concurrency.{purpose}:{row_label(model, pk)}"


def row_mac(purpose: str, model: Any, pk: Any, value: Any, length: int) -> str:
    """Return ``length`` base64url characters of an HMAC of ``value`` bound to the row."""
    message = f"{row_label(model, pk)}:{value}"
    digest = salted_hmac(f"concurrency.{purpose}", message, algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest).decode()[:length]


def dumps_for_row(payload: Any, purpose: str, model: Any, pk: Any) -> str:
    """Return ``payload`` signed (and compressed) for the row ``model``/``pk``."""
    return signing.dumps(payload, salt=row_salt(purpose, model, pk), compress=True)


def loads_for_row(token: str, purpose: str, model: Any, pk: Any) -> Any:
    """Return the payload of ``token`` if it was signed for the row; raise ``BadSignature`` if not."""
    return signing.loads(token, salt=row_salt(purpose, model, pk))


class VersionFieldSigner(Signer):
    """The default signer: Django's ``Signer``, salted per model and row by ``get_signer``."""

    def sign(self, value: Any) -> str:
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
    if not 0 <= version <= MAX_VERSION:
        raise ValueError("version out of range")
    return version
