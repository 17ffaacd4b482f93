"""A plain ModelForm whose fields include the version, as the project wrote it."""

from __future__ import annotations

from django import forms

from .models import Job


class JobForm(forms.ModelForm):
    class Meta:
        model = Job
        fields = ["name", "version"]
