"""Create the demo's admin user and sample data (idempotent)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand

from tests.demo.models import Article, Category, Item, Order, OrderLine

ARTICLES = [
    ("Release notes 1.0", "What changed in the first release.", "published"),
    ("Roadmap", "Where we are going next.", "review"),
    ("Style guide", "How we write.", "draft"),
    ("Onboarding", "First week checklist.", "draft"),
    ("Incident report", "What happened on Tuesday.", "review"),
]


class Command(BaseCommand):
    help = "Create the demo admin user (printing its password) and sample data."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--password", required=True)

    def handle(self, *args: Any, password: str, **options: Any) -> None:
        user_model = get_user_model()
        user, _ = user_model.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True, "email": "admin@example.com"}
        )
        user.set_password(password)
        user.save()
        if not Article.objects.exists():
            for title, body, status in ARTICLES:
                Article.objects.create(title=title, body=body, status=status)
            for n in range(1, 26):
                Article.objects.create(title=f"Note {n:02d}", body="Sample", status="draft")
        if not Category.objects.exists():
            for name in ("Hardware", "Software"):
                category = Category.objects.create(name=name)
                for n in range(3):
                    Item.objects.create(category=category, name=f"{name} item {n + 1}")
        if not Order.objects.exists():
            for customer in ("ACME", "Globex"):
                order = Order.objects.create(customer=customer)
                for product in ("Bolts", "Nuts", "Washers"):
                    OrderLine.objects.create(order_id=order.pk, product=product, quantity=10)
        for name in ("Editors", "Reviewers"):
            Group.objects.get_or_create(name=name)
        self.stdout.write(f"Demo data ready: {Article.objects.count()} articles.")
