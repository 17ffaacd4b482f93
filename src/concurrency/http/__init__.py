"""HTTP preconditions (ETag, If-Match, 412, 428) for plain Django views.

The entity tag of a versioned row names its version, so ``If-Match`` can carry
the version a client read. Here that version is not compared in the view and
then forgotten (check-then-act, as Django's ``@condition`` does): it is the
version the instance is saved or deleted with, so the conditional
``UPDATE … WHERE pk = … AND version = …`` of ``concurrency.core`` refuses a
stale write in the statement that would have made it.

An ETag looks like ``"5-Qm9…"``: the version in clear, a dash, and 22 characters
of an HMAC (``SECRET_KEY``) over the concrete model, the primary key and the
version. It is strong, it round-trips to the version on the server, and a tag
issued for one row never matches another row at the same version.

Usage with a function view::

    @preconditions
    def article(request, pk):
        obj = apply_preconditions(request, get_object_or_404(Article, pk=pk))
        if request.method == "PUT":
            ...  # change obj from the request body
            obj.save()  # refused (412) if the row moved past the If-Match version
        return JsonResponse(as_dict(obj))  # answered with the new ETag

``PreconditionMixin`` does the same for class-based views, applying the
preconditions to whatever ``get_object()`` returns.

The package: ``etags`` makes and reads entity tags, ``problems`` is the one
answer to a refused or stopped request (RFC 9457 problem details, shared by
the REST framework and django-ninja adapters), ``preconditions`` evaluates
If-Match and If-None-Match for a request.
"""

from .etags import make_etag, version_from_etag
from .preconditions import (
    WRITE_METHODS,
    PreconditionMixin,
    apply_preconditions,
    preconditions,
)
from .problems import (
    PROBLEM_TYPES,
    InvalidPrecondition,
    NotModified,
    PreconditionError,
    PreconditionFailed,
    PreconditionRequired,
    not_modified,
    problem_response,
)

__all__ = [
    "PROBLEM_TYPES",
    "WRITE_METHODS",
    "InvalidPrecondition",
    "NotModified",
    "PreconditionError",
    "PreconditionFailed",
    "PreconditionMixin",
    "PreconditionRequired",
    "apply_preconditions",
    "make_etag",
    "not_modified",
    "preconditions",
    "problem_response",
    "version_from_etag",
]
