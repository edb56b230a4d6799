"""Fuzzing an OpenAPI document with schemathesis, run as its own CLI (``st run``): its lazy
pytest integration does not work with this pytest, and the CLI's report is the clearer one to
read on a failure anyway."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

#: Generated requests per operation (plus schemathesis' example, coverage and stateful cases).
MAX_EXAMPLES = int(os.environ.get("EMBER_CONTRACT_EXAMPLES", "25"))
#: A fixed seed: a failure seen in CI is the failure seen on a laptop.
SEED = os.environ.get("EMBER_CONTRACT_SEED", "20261123")
#: A server error, or an answer that does not match the document (status, content type, body).
ALL_CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)


def schemathesis_cli() -> str:
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else "st"


def fuzz(
    document_url: str,
    base_url: str,
    workdir: Path,
    *,
    headers: Sequence[str],
    checks: str = ALL_CHECKS,
    extra: Sequence[str] = (),
    timeout: float = 1200,
) -> str:
    """Fuzz every operation of the document at ``document_url`` against ``base_url``, each
    request carrying ``headers`` (``"Name: value"``); the CLI's output, once it passed (an
    AssertionError with the end of the report otherwise)."""
    argv = [
        schemathesis_cli(),
        "--no-color",
        "run",
        document_url,
        "--url",
        base_url,
        "--checks",
        checks,
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        SEED,
        *(item for header in headers for item in ("--header", header)),
        # One worker: concurrent generation threads trip a CPython 3.11 bug in ast.parse
        # ("AST constructor recursion depth mismatch") inside hypothesis.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        *extra,
    ]
    result = subprocess.run(  # noqa: S603 - our own argv, no shell
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=workdir,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"schemathesis found problems in {document_url}:\n{output[-15000:]}"
    )
    return output
