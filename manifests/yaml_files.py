"""Reading the toolkit's YAML files one way: dataset specs, build, training and evaluation configs.

Each reader raises its own error class (callers catch the one they know), but every message has the
same shape, the file first and then the dotted field, so a user learns one way of reading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


def read_mapping(path: Path, what: str, error: type[Exception]) -> dict[str, Any]:
    """The YAML mapping in `path`; anything else (unreadable, not YAML, a list) is an `error`."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise error(f"{path}: a {what} must be a YAML mapping, got {type(raw).__name__}")
    return raw


def apply_override(data: dict[str, Any], override: str, error: type[Exception]) -> None:
    """Sets `a.b.c=value` in place; the value is parsed as YAML, missing mappings are created.

    A list element is reached by index or by its `name` field (`stages.stage1.steps=10`), so command
    lines stay readable for configs that hold named lists.
    """
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise error(f"override {override!r} is not key=value")
    target: Any = data
    *parents, leaf = key.split(".")
    for part in parents:
        if isinstance(target, list):
            target = target[_list_index(target, part, override, error)]
        elif isinstance(target, dict):
            target = target.setdefault(part, {})
        else:
            raise error(f"override {override!r}: {part!r} is below a value, not a mapping")
    value = yaml.safe_load(text)
    if isinstance(target, list):
        target[_list_index(target, leaf, override, error)] = value
    elif isinstance(target, dict):
        target[leaf] = value
    else:
        raise error(f"override {override!r}: {'.'.join(parents)} holds a value, not fields")


def _list_index(items: list[Any], part: str, override: str, error: type[Exception]) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    names = [item.get("name") if isinstance(item, dict) else None for item in items]
    if part in names:
        return names.index(part)
    raise error(f"override {override!r}: no list element {part!r} (indices 0..{len(items) - 1}, names {names})")


def validate(model: type[Model], data: dict[str, Any], source: str, what: str, error: type[Exception]) -> Model:
    """`model` validated from `data`; a failure lists every bad field, each by its dotted path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"{source}: invalid {what} ({exc.error_count()} problem(s))"]
        for item in exc.errors():
            field = ".".join(str(part) for part in item["loc"]) or "<top level>"
            lines.append(f"  field '{field}': {item['msg']}")
        raise error("\n".join(lines)) from exc
