from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "tests.demo"
    label = "demo"
    verbose_name = "Demo"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.models import Group

        from concurrency.api import apply_concurrency_check
        from concurrency.fields import IntegerVersionField

        apply_concurrency_check(Group, "version", IntegerVersionField)
