"""Entity tags of versioned rows: the version in clear and an HMAC binding it to the row."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from django.utils.crypto import constant_time_compare

from ..core.options import version_of
from ..signing import row_mac

if TYPE_CHECKING:
    from django.db.models import Model

_PURPOSE = "http.etag"
MAC_LENGTH = 22  # base64url characters: 132 bits of the HMAC
_OPAQUE_RE = re.compile(rf"(-?[0-9]{{1,19}})-([A-Za-z0-9_-]{{{MAC_LENGTH}}})")


def mac(model: type[Model], pk: Any, version: int) -> str:
    """Return the MAC part of the ETag of the row ``model``/``pk`` at ``version``."""
    return row_mac(_PURPOSE, model, pk, version, MAC_LENGTH)


def make_etag(instance: Model) -> str:
    """Return the strong ETag (quoted) of ``instance`` at the version it holds."""
    version = int(version_of(instance) or 0)
    model = type(instance)
    return f'"{version}-{mac(model, instance.pk, version)}"'


def version_from_etag(model: type[Model], pk: Any, etag: str) -> int | None:
    """Return the version named by ``etag`` for the row ``model``/``pk``, or ``None``.

    ``None`` means the tag was not issued for this row by this site: it is
    malformed, forged, weak, or belongs to another row. Quotes are optional.
    """
    if etag.startswith("W/"):
        return None
    opaque = etag[1:-1] if len(etag) >= 2 and etag[0] == etag[-1] == '"' else etag
    match = _OPAQUE_RE.fullmatch(opaque)
    if match is None:
        return None
    version = int(match[1])
    if not constant_time_compare(match[2], mac(model, pk, version)):
        return None
    return version
