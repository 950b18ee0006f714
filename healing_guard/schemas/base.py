"""Record base: strict decoding from JSON bytes, encoding with orjson, JSON Schema export.

Records are plain dataclasses rather than ``faust.Record`` so that the pure logic never imports
Faust, and so that agents receive the *raw bytes* of every message: a message that fails to decode
must reach ``guard.deadletter`` with its original bytes and a reason naming the field, which is not
possible once Faust's own deserializer has thrown the bytes away.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin, get_type_hints

import orjson

R = TypeVar("R", bound="Record")


class SchemaError(ValueError):
    """A message that does not fit its record; ``field`` names the offending field (dotted path)."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


def check_size(raw: bytes, limit: int) -> None:
    """:class:`SchemaError` when a message is over ``limit`` bytes."""
    if len(raw) > limit:
        raise SchemaError(f"message is {len(raw)} bytes, over the limit of {limit}")


def load_json(raw: bytes, limit: int) -> Any:
    """A message's JSON, or :class:`SchemaError` when it is over ``limit`` bytes or not JSON/UTF-8."""
    check_size(raw, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise SchemaError(f"not valid JSON/UTF-8: {exc}") from None


@dataclasses.dataclass
class Record:
    """Base of every topic record. Subclasses are dataclasses with type-hinted fields."""

    topic: ClassVar[str] = ""
    description: ClassVar[str] = ""
    max_bytes: ClassVar[int] = 1 << 20

    @classmethod
    def from_json(cls: type[R], raw: bytes, *, max_bytes: int | None = None) -> R:
        """Decode and validate one message; raises :class:`SchemaError` with the field at fault."""
        return cls.from_dict(load_json(raw, cls.max_bytes if max_bytes is None else max_bytes))

    @classmethod
    def from_dict(cls: type[R], data: Any, path: str = "") -> R:
        if not isinstance(data, dict):
            raise SchemaError(f"expected an object, got {type(data).__name__}", path or None)
        hints = _hints(cls)
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            fpath = f"{path}.{f.name}" if path else f.name
            if f.name not in data or (data[f.name] is None and not _optional(hints[f.name])):
                if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                    continue
                raise SchemaError("required field is missing" if f.name not in data else "must not be null", fpath)
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], fpath)
        obj = cls(**kwargs)
        obj.validate()
        return obj

    def validate(self) -> None:
        """Cross-field checks; subclasses raise :class:`SchemaError`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> bytes:
        return orjson.dumps(self, option=orjson.OPT_SERIALIZE_DATACLASS)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        schema = _object_schema(cls)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = cls.__name__
        if cls.topic:
            schema["description"] = f"Value of a message on topic {cls.topic}. {cls.description}".strip()
        return schema


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    h = _HINTS.get(cls)
    if h is None:
        h = _HINTS[cls] = get_type_hints(cls)
    return h


def _optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in get_args(tp)


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _literal_values(tp: Any) -> tuple[Any, ...] | None:
    return get_args(tp) if get_origin(tp) is typing.Literal else None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    if tp is Any:
        return value
    if tp is str and type(value) is str:  # the common case first
        return value
    if _is_union(tp):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in get_args(tp):
                return None
            raise SchemaError("must not be null", path)
        errors = []
        for a in args:
            try:
                return _coerce(a, value, path)
            except SchemaError as exc:
                errors.append(exc.reason)
        raise SchemaError("; ".join(errors), path)
    lits = _literal_values(tp)
    if lits is not None:
        if value not in lits:
            raise SchemaError(f"must be one of {list(lits)}, got {value!r}"[:300], path)
        return value
    origin = get_origin(tp)
    if origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"expected a list, got {type(value).__name__}", path)
        (item,) = get_args(tp) or (Any,)
        if item is str and all(type(v) is str for v in value):  # fast path: a log chunk's lines
            return value
        return [_coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"expected an object, got {type(value).__name__}", path)
        _, vt = get_args(tp) or (str, Any)
        return {str(k): _coerce(vt, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Record):
        return tp.from_dict(value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise SchemaError(f"expected a boolean, got {type(value).__name__}", path)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SchemaError(f"expected an integer, got {type(value).__name__}", path)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SchemaError(f"expected a number, got {type(value).__name__}", path)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise SchemaError(f"expected a string, got {type(value).__name__}", path)
        return value
    raise SchemaError(f"unsupported type {tp!r}", path)  # pragma: no cover - programming error


def _type_schema(tp: Any) -> dict[str, Any]:
    if tp is Any:
        return {}
    if _is_union(tp):
        return {"anyOf": [_type_schema(a) for a in get_args(tp)]}
    if tp is type(None):
        return {"type": "null"}
    lits = _literal_values(tp)
    if lits is not None:
        return {"enum": list(lits)}
    origin = get_origin(tp)
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        return {"type": "array", "items": _type_schema(item)}
    if origin is dict:
        _, vt = get_args(tp) or (str, Any)
        return {"type": "object", "additionalProperties": _type_schema(vt)}
    if isinstance(tp, type) and issubclass(tp, Record):
        return _object_schema(tp)
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"}, str: {"type": "string"}}[tp]


def _object_schema(cls: type[Record]) -> dict[str, Any]:
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        s = _type_schema(hints[f.name])
        doc = f.metadata.get("doc")
        if doc:
            s["description"] = doc
        if f.default is not dataclasses.MISSING:
            s["default"] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            s["default"] = f.default_factory()
        else:
            required.append(f.name)
        props[f.name] = s
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required}
    if cls.__doc__ and not cls.topic:
        out["description"] = cls.__doc__.strip().splitlines()[0]
    return out


def field(doc: str, **kw: Any) -> Any:
    """A dataclass field with a description that ends up in the exported JSON Schema."""
    return dataclasses.field(metadata={"doc": doc}, **kw)
