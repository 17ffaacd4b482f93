"""A small project written for django-concurrency 2.8.1, kept as it was (tests/system/test_migrating.py).

Its migration is the one django-concurrency's ``makemigrations`` wrote for
these models; its admin imports ``concurrency.utils`` helpers at import time.
"""
