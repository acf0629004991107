"""The shape a newcomer can follow (issue 27): no function in the platform's packages is longer
than a screen and a half (80 lines), and none takes more than 8 positional parameters (wider
ones are keyword-only, so every call names what it passes)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sentiops", "serving", "drift")
MAX_LINES = 80
MAX_POSITIONAL = 8


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "compiled" in path.parts:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                    found.append((where, node))
    return found


def is_kfp_pipeline(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """`@dsl.pipeline` functions: kfp 2.17 builds the graph by calling them positionally
    (`GraphComponent.__init__`: `pipeline_func(*args_list)`), so they cannot be keyword-only;
    each parameter is a pipeline input named in the compiled spec."""
    for d in node.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        if isinstance(target, ast.Attribute) and target.attr == "pipeline":
            return True
    return False


def positional(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    args = [*node.args.posonlyargs, *node.args.args]
    if args and args[0].arg in ("self", "cls"):
        args = args[1:]
    return len(args)


def test_the_checks_see_every_package() -> None:
    functions = _functions()
    assert len(functions) > 500  # the walk found the code it is meant to check
    assert {w.split("/", 1)[0] for w, _ in functions} == set(PACKAGES)


def test_no_function_is_longer_than_80_lines() -> None:
    long = [
        f"{where} ({node.end_lineno - node.lineno + 1} lines)"
        for where, node in _functions()
        if (node.end_lineno or node.lineno) - node.lineno + 1 > MAX_LINES
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_kfp_pipelines_are_the_only_exception() -> None:
    pipelines = [where for where, node in _functions() if is_kfp_pipeline(node)]
    assert any("kubeflow/training.py" in w for w in pipelines), pipelines


def test_no_function_takes_more_than_8_positional_parameters() -> None:
    wide = [
        f"{where} ({positional(node)} positional)"
        for where, node in _functions()
        if positional(node) > MAX_POSITIONAL and not is_kfp_pipeline(node)
    ]
    assert not wide, "make these keyword-only (`*,`):\n" + "\n".join(wide)
