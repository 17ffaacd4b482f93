"""``concurrency.utils.ConcurrencyTestMixin``, used as its documentation shows."""

from __future__ import annotations

import subprocess
import sys
import unittest
from pathlib import Path

from django.test import TestCase

from concurrency.utils import ConcurrencyTestMixin
from tests.demo.models import Article, CustomSave, PlainCounter, SimpleConcurrentModel


class SimpleConcurrentModelTest(ConcurrencyTestMixin, TestCase):
    concurrency_model = SimpleConcurrentModel
    concurrency_kwargs = {"username": "test"}


class ArticleTest(ConcurrencyTestMixin, TestCase):
    concurrency_model = Article
    concurrency_kwargs = {"title": "a"}


class CustomSaveTest(ConcurrencyTestMixin, TestCase):
    concurrency_model = CustomSave
    concurrency_kwargs = {"name": "a"}


class MixinCatchesUnversionedModels(TestCase):
    def test_mixin_fails_on_a_model_without_a_version(self) -> None:
        class Plain(ConcurrencyTestMixin, TestCase):
            concurrency_model = PlainCounter
            concurrency_kwargs = {"name": "p"}

        suite = unittest.defaultTestLoader.loadTestsFromTestCase(Plain)
        result = unittest.TestResult()
        suite.run(result)
        assert result.testsRun == 3
        failed = {test.id().rsplit(".", 1)[1] for test, _ in result.failures + result.errors}
        assert {"test_concurrency_conflict", "test_concurrency_management"} <= failed


def test_utils_imports_without_pytest() -> None:
    code = (
        "import sys; sys.modules['pytest'] = None; import django, os;"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; django.setup();"
        "import concurrency.utils; print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parents[2],
    )
    assert result.stdout.strip() == "ok", result.stderr
