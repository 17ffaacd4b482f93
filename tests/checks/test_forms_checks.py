"""concurrency.E004 for the settings the web layer reads."""

from __future__ import annotations

from django.core import checks
from django.test import SimpleTestCase, override_settings

from concurrency.checks import check_settings


def e004(setting: str) -> list[checks.CheckMessage]:
    return [e for e in check_settings() if e.id == "concurrency.E004" and setting in e.msg]


class SettingsImportTests(SimpleTestCase):
    def test_defaults_import(self) -> None:
        assert check_settings() == []

    @override_settings(CONCURRENCY_HANDLER409="nowhere.handler")
    def test_bad_handler409(self) -> None:
        [error] = e004("CONCURRENCY_HANDLER409")
        assert error.msg.startswith("CONCURRENCY_HANDLER409 = 'nowhere.handler' cannot be imported")
        assert error.level == checks.ERROR

    @override_settings(CONCURRENCY_FIELD_SIGNER="concurrency.forms.NoSuchSigner")
    def test_bad_field_signer(self) -> None:
        [error] = e004("CONCURRENCY_FIELD_SIGNER")
        assert "NoSuchSigner" in error.msg

    @override_settings(CONCURRENCY_FIELD_SIGNER="tests.forms.test_forms.DummySigner")
    def test_documented_dummy_signer_passes(self) -> None:
        assert e004("CONCURRENCY_FIELD_SIGNER") == []
