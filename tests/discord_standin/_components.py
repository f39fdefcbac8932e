"""Message components as the stand-in accepts and stores them: action rows of buttons.

Rules from https://discord.com/developers/docs/components/reference:

- "Anatomy of a Component": every component may carry an integer ``id``, unique in the
  message, generated sequentially when absent (or 0) without reusing an id the message has.
- "Anatomy of a Component" / "Custom ID": 1 to 100 characters, unique in the message.
- "Action Row": up to 5 buttons (select menus are not modelled here).
- "Button": ``style`` from "Button Styles" (1-4 need ``custom_id`` and no ``url``; Link 5
  needs ``url``, max 512 characters, and no ``custom_id``); ``label`` max 80 characters.
  Premium buttons (style 6, ``sku_id``) are not modelled and refused.
- "Legacy Message Component Behavior": up to 5 action rows at the top level (components V2,
  ``IS_COMPONENTS_V2``, is not modelled: any other top-level type is refused).

A refused body answers 400 with code 50035 in the shape of
https://discord.com/developers/docs/reference#error-messages (``errors`` nested by the field's
path, each leaf an ``_errors`` list). ``BASE_TYPE_*`` codes are Discord's; tests should assert
the 50035 code and the path, not the inner code or wording.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ._payloads import Payload

ACTION_ROW, BUTTON = 1, 2
"""Component types ("Component Types")."""
LINK = 5
BUTTON_STYLES = (1, 2, 3, 4, LINK)
"""Primary, Secondary, Success, Danger, Link ("Button Styles")."""
MAX_ROWS = 5
MAX_BUTTONS_PER_ROW = 5
CUSTOM_ID_MAX = 100
LABEL_MAX = 80
URL_MAX = 512

Path = tuple[str | int, ...]


class FormError(ValueError):
    """A field of a request body Discord would refuse ("Invalid Form Body", code 50035)."""

    def __init__(self, path: Path, code: str, message: str) -> None:
        super().__init__(f"{'.'.join(map(str, path))}: {message}")
        self.path, self.code, self.message = path, code, message

    @property
    def body(self) -> Payload:
        """The JSON error body (https://discord.com/developers/docs/reference#error-messages)."""
        errors: Payload = {"_errors": [{"code": self.code, "message": self.message}]}
        for key in reversed(self.path):
            errors = {str(key): errors}
        return {"code": 50035, "errors": errors, "message": "Invalid Form Body"}


def checked(components: Any, path: Path = ("components",)) -> list[Payload]:
    """Validate a message's ``components`` (None is no components) and return a copy as
    Discord stores it: each component with its ``id``. ``path`` names the field in errors.

    Raises:
        FormError: a rule of the module docstring is broken.
    """
    if components is None:
        return []
    if not isinstance(components, list):
        raise FormError(path, "BASE_TYPE_ARRAY", "Must be an array.")
    if len(components) > MAX_ROWS:
        raise FormError(path, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_ROWS} or fewer in length.")
    rows = [_row(row, (*path, i)) for i, row in enumerate(components)]
    seen: dict[str, Path] = {}
    for r, row in enumerate(rows):
        for b, button in enumerate(row["components"]):
            custom_id = button.get("custom_id")
            if custom_id is None:
                continue
            if custom_id in seen:
                raise FormError((*path, r, "components", b, "custom_id"),
                                "COMPONENT_CUSTOM_ID_DUPLICATED",
                                "Component custom id cannot be duplicated")
            seen[custom_id] = (*path, r, "components", b)
    _assign_ids(rows, path)
    return rows


def _row(row: Any, path: Path) -> Payload:
    """One action row ("Action Row Structure")."""
    if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
        raise FormError((*path, "type"), "BASE_TYPE_CHOICES",
                        f"Value must be one of ({ACTION_ROW},).")
    children = row.get("components")
    if not isinstance(children, list) or not 1 <= len(children) <= MAX_BUTTONS_PER_ROW:
        raise FormError((*path, "components"), "BASE_TYPE_BAD_LENGTH",
                        f"Must be between 1 and {MAX_BUTTONS_PER_ROW} in length.")
    buttons = [_button(c, (*path, "components", i)) for i, c in enumerate(children)]
    return {**row, "components": buttons}


def _button(button: Any, path: Path) -> Payload:
    """One button ("Button Structure", "Button Styles")."""
    if not isinstance(button, dict) or button.get("type") != BUTTON:
        raise FormError((*path, "type"), "BASE_TYPE_CHOICES", f"Value must be one of ({BUTTON},).")
    style = button.get("style")
    if style not in BUTTON_STYLES:
        raise FormError((*path, "style"), "BASE_TYPE_CHOICES",
                        f"Value must be one of {BUTTON_STYLES}.")
    label = button.get("label")
    if label is not None and (not isinstance(label, str) or len(label) > LABEL_MAX):
        raise FormError((*path, "label"), "BASE_TYPE_MAX_LENGTH",
                        f"Must be {LABEL_MAX} or fewer in length.")
    custom_id, url = button.get("custom_id"), button.get("url")
    if style == LINK:
        if not isinstance(url, str) or not 1 <= len(url) <= URL_MAX:
            raise FormError((*path, "url"), "BASE_TYPE_REQUIRED",
                            f"A link button needs a url of 1 to {URL_MAX} characters.")
        if custom_id is not None:
            raise FormError((*path, "custom_id"), "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                            "A link button cannot have a custom_id.")
    else:
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
            raise FormError((*path, "custom_id"), "BASE_TYPE_BAD_LENGTH",
                            f"Must be between 1 and {CUSTOM_ID_MAX} in length.")
        if url is not None:
            raise FormError((*path, "url"), "BUTTON_COMPONENT_URL_NOT_ALLOWED",
                            "Only a link button can have a url.")
    return dict(button)


def _assign_ids(rows: list[Payload], path: Path) -> None:
    """Give every component without an ``id`` (or with 0) the next free one, rows before
    their buttons ("Anatomy of a Component"); two components with one id are refused."""
    flat = list(_walk(rows, path))
    taken: set[int] = set()
    for component, where in flat:
        given = component.get("id") or 0
        if given in taken:
            raise FormError((*where, "id"), "COMPONENT_ID_DUPLICATED",
                            "Component id cannot be duplicated")
        if given:
            taken.add(given)
    next_id = 1
    for component, _ in flat:
        if not component.get("id"):
            while next_id in taken:
                next_id += 1
            component["id"] = next_id
            taken.add(next_id)


def _walk(rows: list[Payload], path: Path) -> Iterator[tuple[Payload, Path]]:
    for r, row in enumerate(rows):
        yield row, (*path, r)
        for b, button in enumerate(row["components"]):
            yield button, (*path, r, "components", b)


def find_button(components: list[Payload], custom_id: str) -> Payload | None:
    """The button of ``components`` whose ``custom_id`` it is, if any."""
    for row in components:
        for child in row.get("components", []):
            if child.get("type") == BUTTON and child.get("custom_id") == custom_id:
                return child
    return None
