"""Metric names referenced by a PromQL expression (enough PromQL for rules and dashboards).

Removes string literals, label matchers `{...}`, ranges/subqueries `[...]` and the label lists
of `by`/`without`/`on`/`ignoring`/`group_left`/`group_right`; what remains as an identifier
that is not a function call, keyword or number is a metric name.
"""

from __future__ import annotations

import re

KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
    # aggregation operators may be followed by `by (...)` instead of their argument list
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
}
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_GRAFANA_VAR = re.compile(r"\$\{?\w+\}?")


def _strip_brackets(expr: str, open_: str, close: str) -> str:
    out, depth = [], 0
    for ch in expr:
        if ch == open_:
            depth += 1
        elif ch == close and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def metric_names(expr: str) -> set[str]:
    # label_values(metric, label) is Grafana templating around a selector
    expr = re.sub(r"label_values\(\s*([^,()]+)\s*,[^)]*\)", r"\1", expr)
    expr = _STRING.sub(" ", expr)
    expr = _strip_brackets(expr, "{", "}")
    expr = _strip_brackets(expr, "[", "]")
    expr = _LABEL_LIST.sub(r"\1", expr)
    expr = _GRAFANA_VAR.sub(" ", expr)
    names = set()
    for match in _IDENT.finditer(expr):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in KEYWORDS:
            continue
        # durations/numbers like 5m or 1e3 never start with a letter; exponents do ("e3")
        if re.fullmatch(r"[eE]\d+", name):
            continue
        names.add(name)
    return names
