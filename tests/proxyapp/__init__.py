"""An app whose models.py declares a proxy of ``auth.Group`` (for tests/interop/test_proxies.py)."""
