"""A django-ninja API over Ticket, with the preconditions of concurrency.ninja."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import NinjaAPI, Schema

from concurrency.ninja import apply_preconditions, preconditions

from .models import Ticket

api = NinjaAPI(urls_namespace="interop-ninja")

# Run between loading the ticket and saving it: a test's stand-in for another
# request that writes in that window.
BEFORE_SAVE: list[Callable[[Ticket], None]] = []


class TicketOut(Schema):
    id: int
    title: str
    status: str
    version: int


class TicketIn(Schema):
    title: str
    status: str = "open"


class TicketPatch(Schema):
    title: str | None = None
    status: str | None = None


class VersionedTicketIn(TicketIn):
    version: int


def _save(ticket: Ticket, changes: dict[str, object]) -> Ticket:
    for name, value in changes.items():
        setattr(ticket, name, value)
    for hook in BEFORE_SAVE:
        hook(ticket)
    # A savepoint keeps a surrounding transaction (ATOMIC_REQUESTS) usable
    # after a refused save, as in any Django view.
    with transaction.atomic():
        ticket.save()
    return ticket


@api.get("/tickets/{pk}", response=TicketOut)
@preconditions
def get_ticket(request: HttpRequest, pk: int) -> Ticket:
    return apply_preconditions(request, get_object_or_404(Ticket, pk=pk))


@api.put("/tickets/{pk}", response=TicketOut)
@preconditions
def put_ticket(request: HttpRequest, pk: int, payload: TicketIn) -> Ticket:
    ticket = apply_preconditions(request, get_object_or_404(Ticket, pk=pk))
    return _save(ticket, payload.dict())


@api.patch("/tickets/{pk}", response=TicketOut)
@preconditions
def patch_ticket(request: HttpRequest, pk: int, payload: TicketPatch) -> Ticket:
    ticket = apply_preconditions(request, get_object_or_404(Ticket, pk=pk))
    return _save(ticket, payload.dict(exclude_unset=True))


@api.delete("/tickets/{pk}")
@preconditions
def delete_ticket(request: HttpRequest, pk: int) -> HttpResponse:
    ticket = apply_preconditions(request, get_object_or_404(Ticket, pk=pk))
    for hook in BEFORE_SAVE:
        hook(ticket)
    with transaction.atomic():
        ticket.delete()
    return HttpResponse(status=204)


@api.put("/lenient/tickets/{pk}", response=TicketOut)
@preconditions(require_if_match=False)
def put_ticket_with_body_version(request: HttpRequest, pk: int, payload: VersionedTicketIn) -> Ticket:
    """Without If-Match the body's version is the one saved with (409 when stale)."""
    ticket = apply_preconditions(request, get_object_or_404(Ticket, pk=pk))
    return _save(ticket, payload.dict())


@api.get("/async/tickets/{pk}", response=TicketOut)
@preconditions
async def aget_ticket(request: HttpRequest, pk: int) -> Ticket:
    return apply_preconditions(request, await Ticket.objects.aget(pk=pk))


@api.put("/async/tickets/{pk}", response=TicketOut)
@preconditions
async def aput_ticket(request: HttpRequest, pk: int, payload: TicketIn) -> Ticket:
    ticket = apply_preconditions(request, await Ticket.objects.aget(pk=pk))
    for name, value in payload.dict().items():
        setattr(ticket, name, value)
    await ticket.asave()
    return ticket


@api.get("/plain/tickets/{pk}", response=TicketOut)
def plain_get_ticket(request: HttpRequest, pk: int) -> Ticket:
    """An operation without preconditions: no ETag."""
    return get_object_or_404(Ticket, pk=pk)


@preconditions
@api.put("/above/tickets/{pk}", response=TicketOut)
def put_ticket_decorated_above(request: HttpRequest, pk: int, payload: TicketIn) -> Ticket:
    """The decorator above the route decorator works too."""
    ticket = apply_preconditions(request, get_object_or_404(Ticket, pk=pk))
    return _save(ticket, payload.dict())
