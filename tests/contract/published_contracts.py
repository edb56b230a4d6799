"""The contracts Ember publishes: every service's OpenAPI document and the AsyncAPI document of
every domain event, generated from the code, plus the rules that keep them compatible.

This module imports every service, so it lives with the tests (``ember_shared`` may import no
service). Run it through make:

    make asyncapi             # rewrite the served AsyncAPI document after changing an event
    make contract-baselines   # accept the current documents as the published ones

``tests/contract/test_published_contracts.py`` fails when the committed AsyncAPI document is not
what the code generates, and when a document drops, renames or newly requires something that a
published version (the baselines) offered.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[2]
ASYNCAPI_PATH = ROOT / "shared/src/ember_shared/events/asyncapi.json"
BASELINES = Path(__file__).resolve().parent / "baselines"
SCHEMA_REF = "#/components/schemas/{name}"

Document = dict[str, Any]


# --- generating -------------------------------------------------------------------------------


def _quiet_settings() -> None:
    """Building an app connects to nothing, but its settings want addresses to parse."""
    os.environ.setdefault("DATABASE_URL", "postgresql://contracts@127.0.0.1:1/contracts")
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:1/0")


def services() -> tuple[str, ...]:
    from ember_devkit.devstack.layout import SERVICES

    return SERVICES


def openapi_documents() -> dict[str, Document]:
    _quiet_settings()
    documents: dict[str, Document] = {}
    for service in services():
        app = importlib.import_module(f"{service}.app").create_app()
        documents[service] = json.loads(json.dumps(app.openapi_schema.to_schema()))
    return documents


def event_types() -> list[Any]:
    """Every payload type in the published language, in declaration order."""
    from ember_shared.events import contracts
    from ember_shared.events.envelope import EventData

    found = [
        value
        for value in vars(contracts).values()
        if isinstance(value, type) and issubclass(value, EventData) and value is not EventData
    ]
    missing = [t.__name__ for t in found if not t.TYPE or not t.PRODUCER]
    if missing:
        raise SystemExit(f"events without TYPE or PRODUCER: {', '.join(missing)}")
    return found


def consumers() -> dict[str, list[tuple[str, str]]]:
    """Event type -> (consumer group, handler name) of every service's ``events.handlers``."""
    from ember_shared.events.handlers import EventHandlers

    _quiet_settings()
    by_type: dict[str, list[tuple[str, str]]] = {}
    for service in services():
        try:
            module = importlib.import_module(f"{service}.events")
        except ModuleNotFoundError:
            continue
        handlers = getattr(module, "handlers", None)
        if not isinstance(handlers, EventHandlers):
            continue
        for handler in handlers.handlers:
            by_type.setdefault(handler.event_type, []).append((handlers.service, handler.name))
    return {key: sorted(value) for key, value in by_type.items()}


def _envelope_schema(data_ref: str) -> Document:
    """The envelope around a payload, from :class:`Envelope`'s own fields (its ``data`` is raw
    JSON there; here it is the payload's schema)."""
    from ember_shared.events.envelope import Envelope

    properties: Document = {}
    required: list[str] = []
    for field in msgspec.structs.fields(Envelope):
        if field.name == "data":
            properties["data"] = {"$ref": data_ref}
        else:
            properties[field.name] = msgspec.json.schema(field.type)
        if field.required:
            required.append(field.name)
    return {"type": "object", "properties": properties, "required": required}


def _doc_of(data_type: type) -> str:
    return " ".join((data_type.__doc__ or "").split())


def asyncapi_document() -> Document:
    from ember_shared.events.envelope import DEAD_LETTER_STREAM, stream_for

    types = event_types()
    handled = consumers()
    _, schemas = msgspec.json.schema_components(types, ref_template=SCHEMA_REF)
    channels: Document = {}
    operations: Document = {}
    messages: Document = {}
    for data_type in types:
        event = data_type.TYPE
        message: Document = {
            "name": event,
            "title": data_type.__name__,
            "contentType": "application/json",
            "payload": _envelope_schema(SCHEMA_REF.format(name=data_type.__name__)),
            "x-producer": data_type.PRODUCER,
        }
        if summary := _doc_of(data_type):
            message["summary"] = summary
        messages[event] = message
        channels[event] = {
            "address": stream_for(event),
            "title": event,
            "messages": {data_type.__name__: {"$ref": f"#/components/messages/{event}"}},
        }
        channel_ref = {"$ref": f"#/channels/{event}"}
        message_ref = [{"$ref": f"#/channels/{event}/messages/{data_type.__name__}"}]
        operations[f"{data_type.PRODUCER}.publish.{event}"] = {
            "action": "send",
            "channel": channel_ref,
            "messages": message_ref,
            "summary": f"{data_type.PRODUCER} publishes {event} through its outbox.",
        }
        for group, handler in handled.get(event, []):
            key = f"{group}.receive.{event}"
            if key in operations:
                operations[key]["x-handlers"].append(handler)
                continue
            operations[key] = {
                "action": "receive",
                "channel": channel_ref,
                "messages": message_ref,
                "summary": f"{group} handles {event} (consumer group {group!r}).",
                "x-consumer-group": group,
                "x-handlers": [handler],
            }
    unknown = sorted(set(handled) - {t.TYPE for t in types})
    if unknown:
        raise SystemExit(f"handlers of events not in contracts.py: {', '.join(unknown)}")
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Ember domain events",
            "version": "1.0.0",
            "description": (
                "Every domain event Ember publishes. Each event type (versioned: a breaking "
                "change is a new .vN type) has its own Redis stream; one service publishes it "
                "through its transactional outbox; each consuming service reads it as one "
                "consumer group. Messages that keep failing go to the stream "
                f"{DEAD_LETTER_STREAM}. Generated from "
                "shared/src/ember_shared/events/contracts.py by `make asyncapi`."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {
            "redis": {
                "host": "redis:6379",
                "protocol": "redis",
                "description": "Redis Streams (REDIS_URL).",
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render(document: Document) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def baseline_path(name: str) -> Path:
    return BASELINES / f"{name}.json"


# --- compatibility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Breaks:
    """Where a new document breaks what a published one offered."""

    items: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.items)


class _Resolver:
    def __init__(self, document: Document) -> None:
        self.document = document

    def resolve(
        self, schema: Any, seen: frozenset[str] = frozenset()
    ) -> tuple[Any, frozenset[str]]:
        while isinstance(schema, dict) and "$ref" in schema:
            ref = schema["$ref"]
            if ref in seen:
                return {}, seen
            seen = seen | {ref}
            target: Any = self.document
            for part in ref.removeprefix("#/").split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            schema = target
        return schema, seen


def _variants(schema: Any) -> list[Any]:
    if not isinstance(schema, dict):
        return []
    for key in ("oneOf", "anyOf"):
        if key in schema:
            return list(schema[key])
    return [schema]


def _types(schema: Document) -> set[str]:
    kind = schema.get("type")
    if isinstance(kind, list):
        return set(kind)
    return {kind} if isinstance(kind, str) else set()


def _compare_schema(
    where: str,
    old: Any,
    new: Any,
    *,
    old_doc: _Resolver,
    new_doc: _Resolver,
    incoming: bool,
    seen: frozenset[str] = frozenset(),
) -> Iterator[str]:
    """What ``new`` takes away from ``old``: properties removed (or renamed), a type changed,
    and, when the value is one that clients send (``incoming``), a property newly required."""
    old, seen_old = old_doc.resolve(old, seen)
    new, seen_new = new_doc.resolve(new, seen)
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    seen = seen_old | seen_new
    if len(seen) > 64:
        return
    old_variants, new_variants = _variants(old), _variants(new)
    if old_variants != [old] or new_variants != [new]:
        old_objects = [
            v for v in (old_doc.resolve(x, seen)[0] for x in old_variants) if "properties" in v
        ]
        new_objects = [
            v for v in (new_doc.resolve(x, seen)[0] for x in new_variants) if "properties" in v
        ]
        if len(old_objects) == 1 and len(new_objects) == 1:
            yield from _compare_schema(
                where,
                old_objects[0],
                new_objects[0],
                old_doc=old_doc,
                new_doc=new_doc,
                incoming=incoming,
                seen=seen,
            )
        return
    old_types, new_types = _types(old), _types(new)
    if old_types and new_types and not (old_types & new_types):
        yield f"{where}: type {sorted(old_types)} became {sorted(new_types)}"
        return
    old_props: Document = old.get("properties", {})
    new_props: Document = new.get("properties", {})
    for name, schema in old_props.items():
        if name not in new_props:
            yield f"{where}: property {name!r} removed"
            continue
        yield from _compare_schema(
            f"{where}.{name}",
            schema,
            new_props[name],
            old_doc=old_doc,
            new_doc=new_doc,
            incoming=incoming,
            seen=seen,
        )
    if incoming:
        for name in sorted(set(new.get("required", [])) - set(old.get("required", []))):
            yield f"{where}: property {name!r} newly required"
    if "items" in old and "items" in new:
        yield from _compare_schema(
            f"{where}[]",
            old["items"],
            new["items"],
            old_doc=old_doc,
            new_doc=new_doc,
            incoming=incoming,
            seen=seen,
        )


def _major(document: Document) -> str:
    return str(document.get("info", {}).get("version", "")).split(".", 1)[0]


METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def openapi_breaks(old: Document, new: Document) -> Breaks:
    """Breaking changes from a published OpenAPI document ``old`` to ``new``. A new major
    ``info.version`` is a new published version: nothing is compared against the old one."""
    if _major(old) != _major(new):
        return Breaks(())
    old_doc, new_doc = _Resolver(old), _Resolver(new)
    found: list[str] = []
    new_paths: Document = new.get("paths", {})
    for path, old_item in old.get("paths", {}).items():
        if path not in new_paths:
            found.append(f"{path}: route removed")
            continue
        for method in METHODS:
            if method not in old_item:
                continue
            where = f"{method.upper()} {path}"
            if method not in new_paths[path]:
                found.append(f"{where}: operation removed")
                continue
            old_op, new_op = old_item[method], new_paths[path][method]
            found.extend(_parameter_breaks(where, old_op, new_op, old_doc, new_doc))
            found.extend(_body_breaks(where, old_op, new_op, old_doc, new_doc))
            found.extend(_response_breaks(where, old_op, new_op, old_doc, new_doc))
    return Breaks(tuple(found))


def _parameters(operation: Document, doc: _Resolver) -> dict[tuple[str, str], Document]:
    found: dict[tuple[str, str], Document] = {}
    for parameter in operation.get("parameters", []):
        resolved, _ = doc.resolve(parameter)
        found[(resolved.get("in", ""), resolved.get("name", ""))] = resolved
    return found


def _parameter_breaks(
    where: str, old_op: Document, new_op: Document, old_doc: _Resolver, new_doc: _Resolver
) -> Iterator[str]:
    old_params, new_params = _parameters(old_op, old_doc), _parameters(new_op, new_doc)
    for key in old_params:
        if key not in new_params:
            yield f"{where}: {key[0]} parameter {key[1]!r} removed"
    for key, parameter in new_params.items():
        was = old_params.get(key)
        if parameter.get("required") and (was is None or not was.get("required")):
            yield f"{where}: {key[0]} parameter {key[1]!r} newly required"


def _json_schema(content: Document) -> Any:
    for media_type, body in sorted(content.items()):
        if "json" in media_type or media_type.startswith("multipart/"):
            return body.get("schema")
    return None


def _body_breaks(
    where: str, old_op: Document, new_op: Document, old_doc: _Resolver, new_doc: _Resolver
) -> Iterator[str]:
    old_body, _ = old_doc.resolve(old_op.get("requestBody"))
    new_body, _ = new_doc.resolve(new_op.get("requestBody"))
    if not new_body:
        return
    if not old_body:
        if new_body.get("required"):
            yield f"{where}: request body newly required"
        return
    old_schema = _json_schema(old_body.get("content", {}))
    new_schema = _json_schema(new_body.get("content", {}))
    if old_schema is not None and new_schema is not None:
        yield from _compare_schema(
            f"{where} body",
            old_schema,
            new_schema,
            old_doc=old_doc,
            new_doc=new_doc,
            incoming=True,
        )


def _response_breaks(
    where: str, old_op: Document, new_op: Document, old_doc: _Resolver, new_doc: _Resolver
) -> Iterator[str]:
    new_responses: Document = new_op.get("responses", {})
    for status, old_response in old_op.get("responses", {}).items():
        if not str(status).startswith("2"):
            continue
        if status not in new_responses:
            yield f"{where}: response {status} removed"
            continue
        old_resolved, _ = old_doc.resolve(old_response)
        new_resolved, _ = new_doc.resolve(new_responses[status])
        old_schema = _json_schema(old_resolved.get("content", {}))
        new_schema = _json_schema(new_resolved.get("content", {}))
        if old_schema is not None and new_schema is not None:
            yield from _compare_schema(
                f"{where} -> {status}",
                old_schema,
                new_schema,
                old_doc=old_doc,
                new_doc=new_doc,
                incoming=False,
            )


def asyncapi_breaks(old: Document, new: Document) -> Breaks:
    """Breaking changes from a published AsyncAPI document ``old`` to ``new``: an event type
    gone, its stream moved, a payload property removed (or renamed) or retyped, or one newly
    required (a consumer built on the new contract would refuse what is still in the streams,
    outboxes and dead letters). A changed payload belongs in a new ``.vN`` type."""
    old_doc, new_doc = _Resolver(old), _Resolver(new)
    found: list[str] = []
    new_messages: Document = new.get("components", {}).get("messages", {})
    for event, old_message in old.get("components", {}).get("messages", {}).items():
        if event not in new_messages:
            found.append(f"{event}: event type removed")
            continue
        old_address = old.get("channels", {}).get(event, {}).get("address")
        new_address = new.get("channels", {}).get(event, {}).get("address")
        if old_address != new_address:
            found.append(f"{event}: stream {old_address!r} became {new_address!r}")
        found.extend(
            _compare_schema(
                event,
                old_message.get("payload"),
                new_messages[event].get("payload"),
                old_doc=old_doc,
                new_doc=new_doc,
                incoming=True,
            )
        )
    return Breaks(tuple(found))


# --- command line -----------------------------------------------------------------------------


def write_asyncapi() -> None:
    ASYNCAPI_PATH.write_text(render(asyncapi_document()), encoding="utf-8")
    print(f"wrote {ASYNCAPI_PATH.relative_to(ROOT)}")


def write_baselines() -> None:
    BASELINES.mkdir(exist_ok=True)
    for service, document in openapi_documents().items():
        baseline_path(f"{service}.openapi").write_text(render(document), encoding="utf-8")
    baseline_path("events.asyncapi").write_text(render(asyncapi_document()), encoding="utf-8")
    print(f"wrote {BASELINES.relative_to(ROOT)}/")


if __name__ == "__main__":
    commands = {"asyncapi": write_asyncapi, "baselines": write_baselines}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        raise SystemExit(f"usage: {sys.argv[0]} {'|'.join(commands)}")
    commands[sys.argv[1]]()
