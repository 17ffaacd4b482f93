"""Two users submit ConcurrentForms for one row at the same moment (real connections)."""

from __future__ import annotations

import threading

import pytest
from django.db import transaction
from django.test import TransactionTestCase

from concurrency.exceptions import RecordModifiedError
from tests.demo.models import Article
from tests.forms.test_forms import ArticleForm, posted
from tests.support.races import raised, run_together

pytestmark = pytest.mark.race


class SimultaneousSubmitTests(TransactionTestCase):
    def test_both_pass_clean_and_exactly_one_save_wins(self) -> None:
        article = Article.objects.create(title="orig")
        opened = posted(ArticleForm(instance=article))
        validated = threading.Barrier(2)
        outcomes: dict[str, str] = {}

        def submit(title: str) -> None:
            form = ArticleForm({**opened, "title": title}, instance=Article.objects.get(pk=article.pk))
            valid = form.is_valid()
            # Both users pass the early check before either saves.
            validated.wait(timeout=10)
            assert valid, form.errors
            try:
                with transaction.atomic():
                    form.save()
                outcomes[title] = "saved"
            except RecordModifiedError:
                outcomes[title] = "refused"

        errors = raised(run_together(lambda: submit("alice"), lambda: submit("bob")))
        assert not errors, errors
        assert sorted(outcomes.values()) == ["refused", "saved"]
        [winner] = [title for title, outcome in outcomes.items() if outcome == "saved"]
        row = Article.objects.get(pk=article.pk)
        assert (row.title, row.version) == (winner, 2)
