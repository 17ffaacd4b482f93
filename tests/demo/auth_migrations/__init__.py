"""django.contrib.auth's migrations plus one that adds Group.version.

MIGRATION_MODULES points "auth" here. Django's own migration files are found
through __path__, so nothing of them is copied.
"""

import django.contrib.auth.migrations as _auth_migrations

__path__ = [*_auth_migrations.__path__, *__path__]
