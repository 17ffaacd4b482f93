"""Sphinx configuration."""

import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django
from sphinx.util.nodes import make_refnode

django.setup()

project = "django-optimistic-concurrency"
author = "The django-optimistic-concurrency developers"
copyright = "2026, " + author

extensions = ["sphinx.ext.autodoc", "sphinx.ext.intersphinx", "sphinx.ext.viewcode"]
intersphinx_mapping = {}  # offline builds: no inventories are fetched
html_theme = "furo"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Every cross-reference must resolve (sphinx-build -W fails otherwise), but for the objects
# of Django, Python and other libraries: their inventories are not fetched (offline builds),
# so references to them are exempt, as are type variables (``F``, ``M``, ``V``: not objects).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(django|asgiref|rest_framework|ninja|collections|contextvars|datetime|json|typing)\..*"),
    # Django's classes named bare by annotations of imports made only for type checking.
    (r"py:class", r"Model|HttpRequest|BaseDatabaseWrapper"),
    (r"py:class", r"concurrency(\.\w+)*\.[A-Z]"),
]


def resolve_bare_project_names(app, env, node, contnode):
    """Resolve a bare name to the one documented ``concurrency`` object of that name.

    Annotations of imports made only for type checking (``TriggerVersionField``) come out bare.
    """
    target = node.get("reftarget", "")
    if node.get("refdomain") != "py" or not target.isidentifier():
        return None
    domain = env.get_domain("py")
    found = [name for name in domain.objects if re.fullmatch(rf"concurrency\.[\w.]*\.{target}", name)]
    if len(found) != 1:
        return None
    entry = domain.objects[found[0]]
    return make_refnode(app.builder, node["refdoc"], entry.docname, entry.node_id, contnode, found[0])


def setup(app):
    app.connect("missing-reference", resolve_bare_project_names)
