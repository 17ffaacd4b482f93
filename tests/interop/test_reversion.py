"""django-reversion's revert, revision view and recover view on a versioned model.

Reverting is a raw save (like ``loaddata``): it writes the revision's field
values *and its version number* without a version check, so no
``disable_concurrency`` is needed. Saving the reverted form then writes a new
version; with a time-based ``IntegerVersionField`` that version was never
issued before, so editors who opened the record before the revert get a
conflict instead of silently undoing it.
"""

from __future__ import annotations

import re

import reversion
from django.contrib.auth.models import User
from django.test import TestCase, override_settings
from django.urls import reverse
from reversion.models import Version

from tests.demo.models import Note
from tests.support import urls_reversion  # noqa: F401 - registers Note with the admin and reversion


def form_data(html: str, **changes: str) -> dict[str, str]:
    """Return the values a browser would post from an admin change form."""
    version = re.search(r'name="version" value="([^"]*)"', html)
    title = re.search(r'name="title"[^>]*value="([^"]*)"', html)
    body = re.search(r'<textarea name="body"[^>]*>\s*([^<]*)</textarea>', html)
    assert version and title and body, html
    return {
        "title": title.group(1),
        "body": body.group(1).strip(),
        "version": version.group(1),
        "_save": "Save",
        **changes,
    }


@override_settings(ROOT_URLCONF="tests.support.urls_reversion")
class ReversionTests(TestCase):
    def setUp(self) -> None:
        self.client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
        with reversion.create_revision():
            self.note = Note.objects.create(title="first", body="one")
        self.v1 = self.note.version
        with reversion.create_revision():
            self.note.title = "second"
            self.note.body = "two"
            self.note.save()
        self.v2 = self.note.version
        self.old = Version.objects.get_for_object(self.note).order_by("pk").first()
        assert self.old is not None

    def row(self) -> tuple[str, str, int]:
        note = Note.objects.get(pk=self.note.pk)
        return note.title, note.body, note.version

    def test_revert_api_writes_the_old_values_without_a_check(self) -> None:
        self.old.revision.revert()
        assert self.row() == ("first", "one", self.v1)

    def test_revision_view_shows_the_old_values_and_changes_nothing(self) -> None:
        url = reverse("reversion_admin:demo_note_revision", args=[self.note.pk, self.old.pk])
        response = self.client.get(url)
        assert response.status_code == 200
        assert 'value="first"' in response.content.decode()
        assert self.row() == ("second", "two", self.v2)

    def test_revision_view_post_reverts_with_a_new_version(self) -> None:
        url = reverse("reversion_admin:demo_note_revision", args=[self.note.pk, self.old.pk])
        response = self.client.post(url, form_data(self.client.get(url).content.decode()))
        assert response.status_code == 302
        title, body, version = self.row()
        assert (title, body) == ("first", "one")
        assert version > self.v2

    def test_editor_who_opened_the_record_before_the_revert_gets_a_conflict(self) -> None:
        change_url = reverse("reversion_admin:demo_note_change", args=[self.note.pk])
        stale = form_data(self.client.get(change_url).content.decode(), title="stale edit")
        url = reverse("reversion_admin:demo_note_revision", args=[self.note.pk, self.old.pk])
        assert self.client.post(url, form_data(self.client.get(url).content.decode())).status_code == 302

        response = self.client.post(change_url, stale)
        assert response.status_code == 200
        assert "Someone else changed this record after you opened it" in response.content.decode()
        assert self.row()[:2] == ("first", "one")

    def test_recover_view_restores_a_deleted_row(self) -> None:
        with reversion.create_revision():
            Note.objects.get(pk=self.note.pk).delete()
        deleted = Version.objects.get_deleted(Note).get(object_id=str(self.note.pk))
        url = reverse("reversion_admin:demo_note_recover", args=[deleted.pk])
        response = self.client.get(url)
        assert response.status_code == 200
        assert not Note.objects.filter(pk=self.note.pk).exists()

        response = self.client.post(url, form_data(response.content.decode()))
        assert response.status_code == 302
        title, body, version = self.row()
        assert (title, body) == ("second", "two")
        assert version > self.v2
