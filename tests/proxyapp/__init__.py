"""An app whose models.py declares a proxy of ``auth.Group`` (tests/test_proxies.py, in a fresh process)."""
