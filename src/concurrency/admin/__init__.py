"""Admin integration: the change form, actions and ``list_editable`` of versioned models.

Each part is a thin adapter over the compare-and-swap of :mod:`concurrency.core`:

* the change form sends the version through :class:`~concurrency.forms.ConcurrentForm`;
  a save refused by the database (a change that landed after ``clean()``) is
  rolled back and the form shown again with an error and the user's input;
* action checkboxes carry ``pk,version``; one query compares the selection with
  the database before the action runs;
* ``list_editable`` rows carry a signed version next to their hidden primary key;
  the rows the changelist already loads are compared with it, so the check adds
  no query, and a refused UPDATE re-runs the request against the new state.

The package: ``options`` (``ConcurrentModelAdmin``), ``change_form``,
``actions``, ``list_editable`` and ``checks``; the conflict resolution page is
``concurrency.resolution`` and the live notice ``concurrency.live``.
"""

from .actions import ConcurrencyActionMixin
from .common import ROW_VERSION_KEY as ROW_VERSION_KEY
from .list_editable import ConcurrencyListEditableMixin
from .options import ConcurrentModelAdmin

__all__ = [
    "ConcurrencyActionMixin",
    "ConcurrencyListEditableMixin",
    "ConcurrentModelAdmin",
]
