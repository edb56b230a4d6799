"""Render a kustomization the way ``kubectl kustomize`` does, for the parts deploy/kubernetes uses.

kustomize is a Go binary that no package registry we install from ships, so ``make test`` renders
with this instead: resources (files and kustomization folders), namespace, labels, images,
patches (strategic merge files, and JSON 6902 with a target), secretGenerator from env files and
generatorOptions. Anything else in a kustomization is refused, so a manifest change that needs
more of kustomize fails here instead of being silently ignored. (Checked against kubectl's
kustomize on a developer machine: the same documents.)
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "patches",
    "secretGenerator",
    "generatorOptions",
}
#: Kinds that live outside any namespace (the namespace transformer leaves them alone).
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "StorageClass",
}


class KustomizeError(ValueError):
    pass


def render(folder: Path) -> list[Doc]:
    """The documents ``kubectl kustomize folder`` would print."""
    path = folder / "kustomization.yaml"
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{path}: fields this renderer does not know: {sorted(unknown)}")
    docs: list[Doc] = []
    for resource in spec.get("resources", []):
        target = (folder / resource).resolve()
        if target.is_dir():
            docs.extend(render(target))
        else:
            _within(folder, target)
            docs.extend(d for d in yaml.safe_load_all(target.read_text()) if d)
    options = spec.get("generatorOptions", {})
    for generator in spec.get("secretGenerator", []):
        docs.append(_secret(folder, generator, options))
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc.setdefault("metadata", {})["namespace"] = spec["namespace"]
    for group in spec.get("labels", []):
        if group.get("includeSelectors") or group.get("includeTemplates"):
            raise KustomizeError("labels: only includeSelectors: false is supported")
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(group["pairs"])
    for image in spec.get("images", []):
        for doc in docs:
            for container in _containers(doc):
                _set_image(container, image)
    for patch in spec.get("patches", []):
        _apply_patch(folder, patch, docs)
    return docs


def _within(root: Path, target: Path) -> None:
    # kustomize's default load restrictor: files only from the kustomization's own folder down.
    if not target.is_relative_to(root.resolve()):
        raise KustomizeError(f"{target} is outside {root} (kustomize refuses to load it)")


def _secret(folder: Path, generator: Doc, options: Doc) -> Doc:
    data: dict[str, str] = {}
    for env_file in generator.get("envs", []):
        path = (folder / env_file).resolve()
        _within(folder, path)
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, value = line.partition("=")
            if not sep:
                raise KustomizeError(f"{path}: {line!r} is not KEY=VALUE")
            data[key] = base64.b64encode(value.encode()).decode()
    if not options.get("disableNameSuffixHash"):
        raise KustomizeError("secretGenerator: only disableNameSuffixHash: true is supported")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": generator["name"]},
        "type": generator.get("type", "Opaque"),
        "data": data,
    }


def _containers(doc: Doc) -> list[Doc]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec") or spec.get("jobTemplate", {}).get("spec", {}).get(
        "template", {}
    ).get("spec")
    if not pod:
        return []
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _set_image(container: Doc, image: Doc) -> None:
    name, _, tag = container["image"].partition(":")
    if name != image["name"]:
        return
    name = image.get("newName", name)
    tag = str(image.get("newTag", tag))
    container["image"] = f"{name}:{tag}" if tag else name


def _apply_patch(folder: Path, patch: Doc, docs: list[Doc]) -> None:
    if "path" in patch:
        path = (folder / patch["path"]).resolve()
        _within(folder, path)
        body = yaml.safe_load(path.read_text())
    else:
        body = yaml.safe_load(patch["patch"])
    if isinstance(body, list):  # JSON 6902, applied to every document the target matches
        target = patch.get("target") or {}
        matched = [d for d in docs if _matches(d, target)]
        if not matched:
            raise KustomizeError(f"patch target {target} matches nothing")
        for doc in matched:
            for operation in body:
                _json_patch(doc, operation)
        return
    kind, name = body["kind"], body["metadata"]["name"]
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    if len(found) != 1:
        raise KustomizeError(f"strategic merge patch {kind}/{name} matches {len(found)} documents")
    merged = _merge(found[0], body)
    found[0].clear()
    found[0].update(merged)


def _matches(doc: Doc, target: Doc) -> bool:
    if "kind" in target and doc["kind"] != target["kind"]:
        return False
    return not ("name" in target and not re.fullmatch(target["name"], doc["metadata"]["name"]))


def _json_patch(doc: Doc, operation: Doc) -> None:
    *parents, last = [
        p.replace("~1", "/").replace("~0", "~") for p in operation["path"][1:].split("/")
    ]
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    op = operation["op"]
    if op in ("replace", "add"):
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, operation["value"])
            else:
                node[index] = operation["value"]
        else:
            if op == "replace" and last not in node:
                raise KustomizeError(f"replace of a missing path {operation['path']}")
            node[last] = operation["value"]
    elif op == "remove":
        del node[int(last) if isinstance(node, list) else last]
    else:
        raise KustomizeError(f"JSON patch op {op!r} is not supported")


def _merge(base: Any, patch: Any) -> Any:
    """Strategic merge as Kubernetes does it for these kinds: maps merge, lists of named items
    (containers, env, ports, volumes) merge by name, any other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in [*base, *patch])
    ):
        out_list = copy.deepcopy(base)
        for item in patch:
            index = next((i for i, b in enumerate(out_list) if b["name"] == item["name"]), None)
            if index is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[index] = _merge(out_list[index], item)
        return out_list
    return copy.deepcopy(patch)
