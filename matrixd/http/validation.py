"""Checking the shape of JSON request bodies against typed models.

A model is a frozen ``attrs`` class whose field types say what the JSON must
hold. ``validate_json_object(body, Model)`` builds an instance or raises a 400
naming the offending field by its JSON path (``content.body``, ``users[2]``):

* a required field is absent: ``M_MISSING_PARAM``;
* a field has the wrong JSON type: ``M_BAD_JSON``;
* a value is outside what the model allows (a ``Literal`` choice, an attrs
  validator): ``M_INVALID_PARAM``.

Supported field types: ``str``, ``int`` (not bool), ``float`` (int or float),
``bool``, ``None``, ``Any``/``object`` (anything), ``list[T]``, ``dict[str, T]``,
``Optional[T]`` / unions, ``Literal[...]`` and nested attrs models. Keys the model
does not name are ignored (clients may send extensions). A JSON key that is not a
Python identifier is mapped with ``json_field("m.relates_to")``.

Example::

    @attrs.frozen
    class PasswordBody:
        new_password: str
        logout_devices: bool = True
        auth: Optional[dict[str, Any]] = None

    body = parse_and_validate_json_object_from_request(request, PasswordBody)
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Optional, TypeVar, Union, overload

import attrs

from matrixd.api.errors import BadJsonError, InvalidParamError, MissingParamError

T = TypeVar("T")

_JSON_KEY = "matrixd_json_key"
_MISSING = object()


def json_field(json_key: str, **kwargs: Any) -> Any:
    """An ``attrs.field`` read from the JSON key ``json_key`` (e.g. ``"m.relates_to"``)."""
    metadata = dict(kwargs.pop("metadata", None) or {})
    metadata[_JSON_KEY] = json_key
    return attrs.field(metadata=metadata, **kwargs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _describe(tp: Any) -> str:
    """How a type reads in an error message."""
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is bool:
        return "a boolean"
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is list:
        return "an array"
    if origin is dict or tp is dict or attrs.has(tp):
        return "an object"
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return str(tp)


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against ``tp`` and return it (models become instances)."""
    if tp is Any or tp is object:
        return value
    if tp is type(None) or tp is None:
        if value is not None:
            raise BadJsonError(f"'{path}' must be null, not {_json_type_name(value)}")
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise BadJsonError(f"'{path}' must be a boolean, not {_json_type_name(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadJsonError(f"'{path}' must be an integer, not {_json_type_name(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BadJsonError(f"'{path}' must be a number, not {_json_type_name(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise BadJsonError(f"'{path}' must be a string, not {_json_type_name(value)}")
        return value
    if tp is dict:
        tp = dict[str, Any]
    if tp is list:
        tp = list[Any]

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise InvalidParamError(f"'{path}' must be {_describe(tp)}, not {value!r}")
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [a for a in args if a is not type(None)]
        last_error: Optional[Exception] = None
        for candidate in candidates:
            try:
                return _convert(value, candidate, path)
            except (BadJsonError, InvalidParamError, MissingParamError) as e:
                last_error = e
        if len(candidates) == 1 and last_error is not None:
            raise last_error
        raise BadJsonError(f"'{path}' must be {_describe(tp)}, not {_json_type_name(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise BadJsonError(f"'{path}' must be an array, not {_json_type_name(value)}")
        (item_tp,) = args or (Any,)
        return [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise BadJsonError(f"'{path}' must be an object, not {_json_type_name(value)}")
        value_tp = args[1] if len(args) == 2 else Any
        if value_tp is Any:
            return value
        return {k: _convert(v, value_tp, _join(path, k)) for k, v in value.items()}
    if isinstance(tp, type) and attrs.has(tp):
        if not isinstance(value, dict):
            raise BadJsonError(f"'{path}' must be an object, not {_json_type_name(value)}")
        return _build_model(value, tp, path)
    raise TypeError(f"validate_json_object cannot check fields of type {tp!r} ({path})")


def _build_model(obj: Mapping[str, Any], model: type[T], path: str) -> T:
    hints = typing.get_type_hints(model)
    kwargs: dict[str, Any] = {}
    for field in attrs.fields(model):  # type: ignore[arg-type]
        if not field.init:
            continue
        key = field.metadata.get(_JSON_KEY, field.name)
        field_path = _join(path, key)
        if key not in obj:
            if field.default is attrs.NOTHING:
                raise MissingParamError(f"Missing required field '{field_path}'")
            continue
        kwargs[field.alias or field.name] = _convert(obj[key], hints[field.name], field_path)
    try:
        return model(**kwargs)
    except (ValueError, TypeError) as e:
        where = f" in '{path}'" if path else ""
        raise InvalidParamError(f"Invalid value{where}: {e}") from None


def validate_json_object(value: Any, model: type[T], path: str = "") -> T:
    """Build ``model`` from the JSON object ``value``, or raise a 400 naming the field."""
    if not isinstance(value, dict):
        raise BadJsonError(
            f"'{path}' must be an object" if path else "Content must be a JSON object."
        )
    return _build_model(value, model, path)


@overload
def get_field(obj: Mapping[str, Any], key: str, tp: type[T], *, required: Literal[True], path: str = "") -> T: ...
@overload
def get_field(obj: Mapping[str, Any], key: str, tp: type[T], *, default: T, path: str = "") -> T: ...
@overload
def get_field(
    obj: Mapping[str, Any], key: str, tp: type[T], *, required: bool = False, default: Optional[T] = None,
    path: str = "",
) -> Optional[T]: ...
def get_field(
    obj: Mapping[str, Any],
    key: str,
    tp: Any,
    *,
    required: bool = False,
    default: Any = None,
    path: str = "",
) -> Any:
    """One field of a JSON object, checked like a model field.

    ``get_field(body, "limit", int, default=10)``; ``get_field(body, "users",
    list[str], required=True)``. An explicit JSON ``null`` is returned as ``None``
    only when ``tp`` allows it (``Optional[...]``).
    """
    field_path = _join(path, key)
    if key not in obj:
        if required:
            raise MissingParamError(f"Missing required field '{field_path}'")
        return default
    return _convert(obj[key], tp, field_path)
