"""Registration of the diabetic-retinopathy task (entry point ``dr``)."""

from __future__ import annotations
