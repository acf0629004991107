"""No import circles in the core, the predictor or the sidecar, and every import goes down the
layers (`LAYERS`, docs/architecture.md): every `import` counts, also the ones inside functions
(a lazy import is still a dependency), except `if TYPE_CHECKING:`."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("sentiops", "serving", "drift")

#: The layers, lowest first. A module belongs to the longest unit that is its name or a package
#: above it (the root `sentiops` only to itself); it may import its own unit and the units of
#: lower layers, never a higher layer nor another unit of its own layer. Adapters sit above the
#: core; inside the core a later stage sits above the stages it builds on.
LAYERS: tuple[tuple[str, ...], ...] = (
    # foundation: imports nothing of sentiops
    ("sentiops", "sentiops.errors", "sentiops.metrics", "sentiops.scoring", "sentiops.records"),
    ("sentiops.significance",),  # the paired bootstrap (the gate, the serving form's check)
    ("sentiops.estimation",),  # calibration, performance estimated without labels (numpy)
    ("sentiops.config",),  # settings and defaults
    ("sentiops.security",),  # tokens, rate limits (predictor, sidecar, local stack)
    ("sentiops.store",),  # the artifact store and its live-traffic layouts
    ("sentiops.data",),  # datasets, validation, the split
    ("sentiops.models",),  # the model directory format, model types, the serving form
    ("sentiops.registry",),  # MLflow tracking and the model lifecycle
    ("sentiops.params",),  # typed run parameters (they know the model types)
    ("sentiops.data.prepare",),  # one run's data from its DataConfig
    ("sentiops.detection",),  # the drift detector (fitted when a model is packaged)
    ("sentiops.evaluation",),
    ("sentiops.training",),
    ("sentiops.gate",),  # the gate, and promotion: gate + register
    ("sentiops.rollout",),  # the canary judge, the step loop, its executors' protocol
    ("sentiops.feedback",),  # labels and live accuracy
    ("sentiops.labelling",),  # Label Studio: tasks from the store, annotations -> feedback
    ("sentiops.batch",),  # batch scoring: the served model over files (models + store only)
    # adapters
    ("sentiops.pipeline",),  # KFP: stages, components, runs
    ("sentiops.local",),  # the embedded stack, the loop, make up
    ("sentiops.console",),  # status and the web console
    ("sentiops.cli",),
    ("serving", "drift"),  # the predictor and the drift sidecar (their own processes)
)


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    """module -> the modules of `packages` it imports (names resolved to real modules)."""
    modules: dict[str, Path] = {}
    for pkg in packages:
        for f in (root / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(root).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = f

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                target = resolve(name)
                if target and target != module:
                    graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def unit_of(module: str, layers: tuple[tuple[str, ...], ...]) -> str | None:
    """The longest unit of `layers` that is `module` or a package above it (a top-level unit
    that holds other units, like the root `sentiops`, only to itself)."""
    units = [u for layer in layers for u in layer]
    parents = {u.rpartition(".")[0] for u in units}
    found = [
        u
        for u in units
        if module == u or (module.startswith(u + ".") and (u not in parents or "." in u))
    ]
    return max(found, key=len, default=None)


def upward_imports(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """Imports that go up the layers or sideways into another unit of the same layer, and
    modules that belong to no layer."""
    rank = {u: i for i, layer in enumerate(layers) for u in layer}
    problems = []
    for module in sorted(graph):
        unit = unit_of(module, layers)
        if unit is None:
            problems.append(f"{module} belongs to no layer (add it to LAYERS)")
            continue
        for target in sorted(graph[module]):
            other = unit_of(target, layers)
            if other is None or other == unit:
                continue
            if rank[other] >= rank[unit]:
                where = "a higher layer" if rank[other] > rank[unit] else "its own layer"
                problems.append(f"{module} ({unit}) imports {target} ({other}, {where})")
    return problems


def test_no_import_circles() -> None:
    found = cycles(import_graph(REPO, PACKAGES))
    assert not found, f"import circles (break each: move the shared piece down a layer): {found}"


def test_the_check_finds_a_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import thing\n")
    (pkg / "b.py").write_text("def thing():\n    from pkg import c\n")  # a lazy import counts
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a\n"
    )
    graph = import_graph(tmp_path, ("pkg",))
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    assert graph["pkg.d"] == set()


def test_imports_go_down_the_layers() -> None:
    found = upward_imports(import_graph(REPO, PACKAGES), LAYERS)
    assert not found, "imports against the layers (docs/architecture.md):\n" + "\n".join(found)


def test_the_check_finds_an_upward_import(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    for sub in ("low", "high"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "base.py").write_text("")
    (pkg / "low" / "a.py").write_text("from pkg import base\n")
    (pkg / "low" / "b.py").write_text("def f():\n    from pkg.high import c\n")  # lazy: counts
    (pkg / "high" / "c.py").write_text("from pkg.low import a\n")
    (pkg / "stray.py").write_text("")
    layers = (("pkg", "pkg.base"), ("pkg.low",), ("pkg.high",))
    assert upward_imports(import_graph(tmp_path, ("pkg",)), layers) == [
        "pkg.low.b (pkg.low) imports pkg.high (pkg.high, a higher layer)",
        "pkg.low.b (pkg.low) imports pkg.high.c (pkg.high, a higher layer)",
        "pkg.stray belongs to no layer (add it to LAYERS)",
    ]
