"""The pieces every part of the OpenAPI document (``api._openapi`` and the ``_openapi_*``
modules it merges) builds its entries from: a schema reference, a JSON answer, the error
answers of an operation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REF = "#/components/schemas/{name}"
"""Where a component schema is referred to (``msgspec.json.schema_components``' template)."""


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": REF.format(name=name)}


def json_answer(name: str, description: str) -> dict[str, Any]:
    """An answer whose body is JSON of the component schema ``name``."""
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def error_answers(texts: Mapping[int, str], *statuses: int) -> dict[str, Any]:
    """The ``ErrorBody`` answers of ``statuses``, each described by ``texts``."""
    return {str(s): json_answer("ErrorBody", texts[s]) for s in statuses}
