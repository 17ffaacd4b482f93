"""django-polymorphic: a versioned polymorphic parent, its children and the polymorphic admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django.db import transaction
from django.db.models import F
from django.urls import reverse

from concurrency.exceptions import RecordModifiedError
from tests.interop.models import ArtProject, Project, ResearchProject
from tests.support.form_reader import form_data

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.interop.urls")]


@pytest.fixture
def art() -> ArtProject:
    return ArtProject.objects.create(name="Mural", artist="Ada")


def row(pk: int) -> tuple[str, str, int]:
    obj = ArtProject.objects.get(pk=pk)
    return obj.name, obj.artist, obj.version


def test_polymorphic_queryset_returns_children_and_saves_them_checked(art: ArtProject) -> None:
    ResearchProject.objects.create(name="Survey", supervisor="Grace")
    projects = {type(p): p for p in Project.objects.all()}
    assert set(projects) == {ArtProject, ResearchProject}
    mine = projects[ArtProject]
    mine.artist = "Linus"
    mine.save()
    assert row(art.pk) == ("Mural", "Linus", 2)


def test_stale_save_through_the_polymorphic_queryset_is_refused(art: ArtProject) -> None:
    stale = Project.objects.get(pk=art.pk)
    assert isinstance(stale, ArtProject)
    art.name = "Mural, west wall"
    art.save()
    stale.artist = "Someone else"
    with pytest.raises(RecordModifiedError) as info, transaction.atomic():
        stale.save()
    assert (info.value.version, info.value.db_version) == (1, 2)
    assert row(art.pk) == ("Mural, west wall", "Ada", 2)


def test_stale_delete_through_the_polymorphic_queryset_is_refused(art: ArtProject) -> None:
    stale = Project.objects.get(pk=art.pk)
    art.save()
    with pytest.raises(RecordModifiedError), transaction.atomic():
        stale.delete()
    assert ArtProject.objects.filter(pk=art.pk).exists()
    assert Project.objects.non_polymorphic().filter(pk=art.pk).exists()


def test_non_polymorphic_parent_instance_shares_the_version(art: ArtProject) -> None:
    parent = Project.objects.non_polymorphic().get(pk=art.pk)
    assert type(parent) is Project
    art.artist = "Ada L."
    art.save()
    parent.name = "renamed"
    with pytest.raises(RecordModifiedError), transaction.atomic():
        parent.save()
    assert row(art.pk) == ("Mural", "Ada L.", 2)


# -- the polymorphic admin ------------------------------------------------------


def change_url(obj: Any, model: str = "project") -> str:
    return reverse(f"interop:interop_{model}_change", args=[obj.pk])


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_parent_admin_change_form_is_the_childs_with_the_version(admin_client: Any, art: ArtProject) -> None:
    page = admin_client.get(change_url(art))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'class="concurrency-version">1<' in html
    assert 'name="artist"' in html
    response = admin_client.post(change_url(art), form_data(page.content, "artproject_form", artist="Bob"))
    assert response.status_code == 302
    assert row(art.pk) == ("Mural", "Bob", 2)


def test_stale_save_in_the_polymorphic_admin_is_refused_and_keeps_the_input(
    admin_client: Any, art: ArtProject
) -> None:
    first = form_data(admin_client.get(change_url(art)).content, "artproject_form", name="First")
    second = form_data(admin_client.get(change_url(art)).content, "artproject_form", artist="Typed by me")
    assert admin_client.post(change_url(art), first).status_code == 302
    response = admin_client.post(change_url(art), second)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Someone else changed this record" in html
    assert 'value="Typed by me"' in html
    assert row(art.pk) == ("First", "Ada", 2)


def test_child_admin_url_refuses_a_stale_save_too(admin_client: Any, art: ArtProject) -> None:
    url = change_url(art, "artproject")
    data = form_data(admin_client.get(url).content, "artproject_form", artist="Mine")
    ArtProject.objects.filter(pk=art.pk).update(version=F("version") + 1, artist="Theirs")
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "Someone else changed this record" in response.content.decode()
    assert row(art.pk) == ("Mural", "Theirs", 2)


def test_stale_selection_in_the_parent_changelist_runs_no_action(admin_client: Any, art: ArtProject) -> None:
    other = ResearchProject.objects.create(name="Survey", supervisor="Grace")
    changelist = reverse("interop:interop_project_changelist")
    page = admin_client.get(changelist).content.decode()
    assert f'value="{art.pk},1"' in page  # the checkbox carries pk,version
    ArtProject.objects.filter(pk=art.pk).update(version=F("version") + 1)
    response = admin_client.post(
        changelist,
        {"action": "rename", helpers.ACTION_CHECKBOX_NAME: [f"{art.pk},1", f"{other.pk},1"]},
        follow=True,
    )
    assert response.status_code == 200
    assert any("Mural" in m for m in texts(response)), texts(response)
    assert Project.objects.get(pk=other.pk).name == "Survey"
    assert Project.objects.get(pk=art.pk).name == "Mural"
