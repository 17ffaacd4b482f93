import pkgutil

import django.contrib.auth.migrations
from django.db import migrations

import concurrency.fields

_LATEST = max(
    name
    for _, name, is_pkg in pkgutil.iter_modules(django.contrib.auth.migrations.__path__)
    if not is_pkg and name[0].isdigit()
)


class Migration(migrations.Migration):
    dependencies = [("auth", _LATEST)]

    operations = [
        migrations.AddField(
            model_name="group",
            name="version",
            field=concurrency.fields.IntegerVersionField(),
        ),
    ]
