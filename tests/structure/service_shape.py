"""Checks that every service has the one shape AGENTS.md describes ("Service template").

Read from the source alone (``ast``, nothing imported), so the tests can run it on a copy of
the services with a rule broken on purpose, as well as on the real tree. Each function returns
the problems it found; an empty list means the service has the shape.

The rules, per service ``services/<name>/src/<name>/``:

- ``app.py`` defines ``create_app(settings: <Name>Settings | None = None) -> Litestar``, its one
  parameter, and loads the settings with ``load_settings(settings, ...)``.
- ``settings.py`` defines ``<Name>Settings`` (with ``validate`` and ``production_problems``) and
  ``load_settings(settings: <Name>Settings | None = None, service: ServiceSettings | None =
  None) -> <Name>Settings`` built on ``ember_shared.settings.checked_settings``; no other
  ``load_*settings`` function exists in the service.
- A service that publishes events (a contract names it ``PRODUCER``) or handles them (its
  ``ServiceSpec`` has ``events=``) has ``events.py``, which holds its ``outbox`` (publishers),
  ``PUBLISHES`` (exactly the contracts naming it producer) and ``handlers`` (handlers). No other
  module makes an ``Outbox`` or ``EventHandlers``, and the outbox is imported from ``events``
  only. A service that does neither has no ``events.py``.
- A service has ``models.py`` (tables on ``service_base("<name>")``), ``migrations/`` (with
  versions) and ``ServiceSpec(base=...)`` all three or none.
- Every package folder is a domain (it has ``controllers.py``) or a support folder listed in
  :data:`SUPPORT` (no routes). An ``internal`` domain (``/internal/...`` routes over other
  domains' services) holds ``controllers.py`` only. Any other domain also has ``services.py``,
  ``repositories.py`` and ``schemas.py``, but for the exceptions listed (with why) in
  :data:`NO_REPOSITORIES` / :data:`NO_SCHEMAS`; a domain without repositories builds no SQL. An
  exception that no longer applies is a problem too, so the lists cannot rot.
"""

from __future__ import annotations

import ast
from pathlib import Path

#: Package folders that serve no routes, and why each exists.
SUPPORT: dict[str, dict[str, str]] = {
    "catalog": {
        "media": "image processing and the local/Cloudinary stores the product routes use",
        "demo": "the demo catalog's data, loaded by catalog.seed",
    },
    "checkout": {"reconciliation": "the background loop that asks Stripe about quiet checkouts"},
    "identity": {
        "audit": "the audit log's writer and queries, used by the other domains",
        "security": "password hashing, breach checks, rate limits and token signing",
    },
    "orders": {
        "tracking": "the carrier client, the poller and shipping rules ordering's routes use"
    },
    "storefront": {"pages": "the storefront's routes: pages over the services' APIs, no tables"},
}
#: Domains without ``repositories.py``: their reads and writes go through other domains'.
NO_REPOSITORIES: dict[str, dict[str, str]] = {
    "identity": {
        "admin": "staff's user routes over the accounts' and audit's repositories",
        "google": "sign-in with Google over the accounts' and profile's repositories",
    },
    "notifier": {"dead_letters": "reads and replays the events' dead-letter stream (Redis)"},
}
#: Domains without ``schemas.py``, and why.
NO_SCHEMAS: dict[str, dict[str, str]] = {
    "checkout": {"webhooks": "Stripe's signed bytes in, verified before any decoding"},
    "identity": {"google": "redirects to and from Google, no JSON bodies"},
}
#: Imports that build SQL statements (kept to repositories).
SQL_NAMES = frozenset({"select", "insert", "update", "delete", "text", "func", "exists"})
NOT_PACKAGES = frozenset({"migrations", "__pycache__"})


def service_problems(name: str, package: Path, producers: dict[str, set[str]]) -> list[str]:
    """Everything ``services/<name>/src/<name>`` (``package``) does not have of the template."""
    problems: list[str] = []
    cls = f"{name.capitalize()}Settings"
    app = _parse(package / "app.py", problems)
    settings = _parse(package / "settings.py", problems)
    if app is not None:
        problems += _app_problems(name, app, cls)
    if settings is not None:
        problems += _settings_problems(name, settings, cls)
    modules = {
        path: tree
        for path in sorted(package.rglob("*.py"))
        if "migrations" not in path.relative_to(package).parts
        and (tree := _parse(path, problems)) is not None
    }
    problems += _loader_twins(name, package, modules)
    spec = _service_spec(app) if app is not None else {}
    problems += _events_problems(name, package, modules, producers.get(name, set()), spec)
    problems += _table_problems(name, package, spec)
    problems += _folder_problems(name, package, modules)
    return problems


def producers_of(contracts: Path) -> dict[str, set[str]]:
    """Service -> the event data classes whose ``PRODUCER`` names it (from contracts.py)."""
    found: dict[str, set[str]] = {}
    for node in ast.parse(contracts.read_text(encoding="utf-8")).body:
        if not isinstance(node, ast.ClassDef):
            continue
        for statement in node.body:
            if (
                isinstance(statement, ast.Assign)
                and [ast.unparse(t) for t in statement.targets] == ["PRODUCER"]
                and isinstance(statement.value, ast.Constant)
            ):
                found.setdefault(str(statement.value.value), set()).add(node.name)
    return found


def all_problems(services: Path, contracts: Path) -> list[str]:
    """The problems of every service under ``services`` (``services/<name>/src/<name>``)."""
    producers = producers_of(contracts)
    problems: list[str] = []
    names = sorted(p.name for p in services.iterdir() if (p / "src" / p.name).is_dir())
    for name in names:
        problems += service_problems(name, services / name / "src" / name, producers)
    for producer in sorted(set(producers) - set(names)):
        problems.append(f"contracts name {producer!r} as a producer, which is no service")
    return problems


def _parse(path: Path, problems: list[str]) -> ast.Module | None:
    if not path.is_file():
        problems.append(f"{_short(path)} is missing")
        return None
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _short(path: Path) -> str:
    parts = path.parts
    return "/".join(parts[parts.index("src") + 1 :]) if "src" in parts else str(path)


def _function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return found[0] if found else None


def _signature(fn: ast.FunctionDef) -> list[tuple[str, str, str]]:
    """(name, annotation, default) of each parameter; ``*`` marks the other kinds."""
    args = fn.args
    plain = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(plain) - len(args.defaults)) + list(args.defaults)
    found = [
        (a.arg, ast.unparse(a.annotation) if a.annotation else "", ast.unparse(d) if d else "")
        for a, d in zip(plain, defaults, strict=True)
    ]
    if args.posonlyargs or args.vararg or args.kwonlyargs or args.kwarg:
        found.append(("*", "", ""))
    return found


def _calls(node: ast.AST, name: str) -> list[ast.Call]:
    return [
        n
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Name) and n.func.id == name)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == name)
        )
    ]


def _app_problems(name: str, app: ast.Module, cls: str) -> list[str]:
    fn = _function(app, "create_app")
    if fn is None:
        return [f"{name}/app.py defines no create_app"]
    problems = []
    wanted = [("settings", f"{cls} | None", "None")]
    if _signature(fn) != wanted or ast.unparse(fn.returns or ast.Constant(None)) != "Litestar":
        problems.append(
            f"{name}/app.py: create_app must be create_app(settings: {cls} | None = None) "
            f"-> Litestar, not {ast.unparse(fn.args)} -> {ast.unparse(fn.returns or ast.Constant(None))}"
        )
    loads = _calls(fn, "load_settings")
    if not any(c.args and ast.unparse(c.args[0]) == "settings" for c in loads):
        problems.append(
            f"{name}/app.py: create_app must load its settings with load_settings(settings, ...)"
        )
    return problems


def _settings_problems(name: str, settings: ast.Module, cls: str) -> list[str]:
    problems = []
    classes = {n.name: n for n in settings.body if isinstance(n, ast.ClassDef)}
    if cls not in classes:
        problems.append(f"{name}/settings.py defines no {cls}")
    else:
        methods = {n.name for n in classes[cls].body if isinstance(n, ast.FunctionDef)}
        for method in ("validate", "production_problems"):
            if method not in methods:
                problems.append(f"{name}/settings.py: {cls} has no {method}()")
    fn = _function(settings, "load_settings")
    if fn is None:
        return [*problems, f"{name}/settings.py defines no load_settings"]
    wanted = [("settings", f"{cls} | None", "None"), ("service", "ServiceSettings | None", "None")]
    if _signature(fn) != wanted or ast.unparse(fn.returns or ast.Constant(None)) != cls:
        problems.append(
            f"{name}/settings.py: load_settings must be load_settings(settings: {cls} | None = "
            f"None, service: ServiceSettings | None = None) -> {cls}"
        )
    if not _calls(fn, "checked_settings"):
        problems.append(f"{name}/settings.py: load_settings must use checked_settings")
    return problems


def _loader_twins(name: str, package: Path, modules: dict[Path, ast.Module]) -> list[str]:
    problems = []
    for path, tree in modules.items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and node.name.startswith("load_")
                and node.name.endswith("settings")
                and not (path == package / "settings.py" and node.name == "load_settings")
            ):
                problems.append(f"{_short(path)}: {node.name} is a second settings loader")
    return problems


def _service_spec(app: ast.Module) -> dict[str, str]:
    """The keywords of ``ServiceSpec(...)`` in app.py, unparsed."""
    for call in _calls(app, "ServiceSpec"):
        return {k.arg: ast.unparse(k.value) for k in call.keywords if k.arg}
    return {}


def _module_assign(tree: ast.Module, target: str) -> ast.expr | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [target]:
            return node.value
        if isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == target:
            return node.value
    return None


def _events_problems(
    name: str,
    package: Path,
    modules: dict[Path, ast.Module],
    publishes: set[str],
    spec: dict[str, str],
) -> list[str]:
    problems: list[str] = []
    events_path = package / "events.py"
    handles = "events" in spec
    events = modules.get(events_path)
    if not publishes and not handles:
        if events is not None:
            problems.append(f"{name}/events.py exists, but {name} publishes and handles nothing")
        return problems
    if events is None:
        return [f"{name}/events.py is missing ({name} publishes or handles events)"]
    outbox = _module_assign(events, "outbox")
    if publishes:
        wanted = f"Outbox({name!r}, Base.metadata)".replace("'", '"')
        if outbox is None or ast.unparse(outbox).replace("'", '"') != wanted:
            problems.append(f"{name}/events.py must hold its outbox: outbox = {wanted}")
        declared = _module_assign(events, "PUBLISHES")
        names = (
            {ast.unparse(e) for e in declared.elts} if isinstance(declared, ast.Tuple) else set()
        )
        if names != publishes:
            problems.append(
                f"{name}/events.py: PUBLISHES must be what contracts say {name} produces: "
                f"{sorted(publishes)}, not {sorted(names)}"
            )
    elif outbox is not None:
        problems.append(f"{name}/events.py has an outbox, but no contract names {name} producer")
    registry = _module_assign(events, "handlers")
    if handles:
        if not (
            isinstance(registry, ast.Call)
            and ast.unparse(registry.func) == "EventHandlers"
            and registry.args
            and ast.unparse(registry.args[0]).strip("'\"") == name
        ):
            problems.append(f'{name}/events.py must hold its handlers = EventHandlers("{name}")')
        if spec["events"] not in ("handlers", "events.handlers"):
            problems.append(f"{name}/app.py: ServiceSpec(events=...) must be events.py's handlers")
    elif registry is not None:
        problems.append(f"{name}/events.py has handlers the app does not run (no events=)")
    for path, tree in modules.items():
        if path == events_path:
            continue
        for maker in ("Outbox", "EventHandlers"):
            if _calls(tree, maker):
                problems.append(f"{_short(path)} makes an {maker}: only events.py does")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and any(a.name == "outbox" for a in node.names)
                and node.module != f"{name}.events"
            ):
                problems.append(
                    f"{_short(path)} imports the outbox from {node.module}, not {name}.events"
                )
    return problems


def _table_problems(name: str, package: Path, spec: dict[str, str]) -> list[str]:
    models = package / "models.py"
    migrations = package / "migrations"
    has = {
        "models.py": models.is_file(),
        "migrations/": (migrations / "env.py").is_file()
        and any((migrations / "versions").glob("*.py")),
        "ServiceSpec(base=...)": "base" in spec,
    }
    if not any(has.values()):
        return []
    problems = [f"{name} has tables but no {what}" for what, there in has.items() if not there]
    if models.is_file():
        tree = ast.parse(models.read_text(encoding="utf-8"))
        if not any(
            c.args and ast.unparse(c.args[0]).strip("'\"") == name
            for c in _calls(tree, "service_base")
        ):
            problems.append(f'{name}/models.py: tables must be on service_base("{name}")')
    return problems


def _folder_problems(name: str, package: Path, modules: dict[Path, ast.Module]) -> list[str]:
    problems: list[str] = []
    support = SUPPORT.get(name, {})
    no_repositories = NO_REPOSITORIES.get(name, {})
    no_schemas = NO_SCHEMAS.get(name, {})
    folders = sorted(p for p in package.iterdir() if p.is_dir() and (p / "__init__.py").is_file())
    for folder in folders:
        if folder.name in NOT_PACKAGES:
            continue
        files = {p.name for p in folder.glob("*.py")}
        where = f"{name}/{folder.name}"
        if "controllers.py" not in files:
            if folder.name not in support:
                problems.append(f"{where} has no controllers.py and is not a listed support folder")
            continue
        if folder.name in support:
            problems.append(f"{where} has routes: it is a domain, not a support folder")
        if folder.name == "internal":
            if files - {"__init__.py", "controllers.py"}:
                problems.append(f"{where} holds only controllers.py (its rules live in domains)")
            continue
        rules = (
            ("services.py", {}),
            ("repositories.py", no_repositories),
            ("schemas.py", no_schemas),
        )
        for wanted, exempt in rules:
            if wanted not in files and folder.name not in exempt:
                problems.append(f"{where} has routes but no {wanted}")
            if wanted in files and folder.name in exempt:
                problems.append(f"{where} has {wanted} now: drop its exception")
        if "repositories.py" not in files:
            for path in sorted(folder.glob("*.py")):
                problems += _sql_problems(where, path, modules.get(path))
    for listed in sorted(set(support) | set(no_repositories) | set(no_schemas)):
        if not (package / listed / "__init__.py").is_file():
            problems.append(f"{name}/{listed} is listed as an exception but does not exist")
    return problems


def _sql_problems(where: str, path: Path, tree: ast.Module | None) -> list[str]:
    if tree is None:
        return []
    built = sorted(
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy")
        for alias in node.names
        if alias.name in SQL_NAMES
    )
    if built:
        return [
            f"{where}/{path.name} builds SQL ({', '.join(built)}) but the domain has no repositories"
        ]
    return []
