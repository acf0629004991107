"""The evaluation report people read: one self-contained HTML page (headline metrics, the
per-class table, the confusion matrix, the behavioural tests). Rendering only: the numbers come
from `sentiops.evaluation.evaluate`."""

from __future__ import annotations

import base64
import html
import tempfile
from pathlib import Path
from typing import Any


def evaluation_html(result: dict[str, Any], title: str) -> str:
    """A self-contained HTML report: headline metrics, per-class table, confusion matrix."""
    from sentiops.evaluation.evaluate import plot_confusion

    with tempfile.TemporaryDirectory() as tmp:
        png = plot_confusion(result, Path(tmp) / "cm.png", title)
        img = base64.b64encode(png.read_bytes()).decode()
    rows = "".join(
        f"<tr><td>{html.escape(lab)}</td><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
        f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
        for lab, m in result["per_class"].items()
    )
    beh = "".join(
        f"<li>{html.escape(k)}: {b['passed']}/{b['n']} passed</li>"
        for k, b in result.get("behavioural", {}).items()
    )
    return (
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1>"
        f"<p>n={result['n']}, macro-F1 <b>{result['macro_f1']:.4f}</b>, accuracy "
        f"{result['accuracy']:.4f}, ECE {result['ece']:.4f}, "
        f"{result['texts_per_sec']:.0f} texts/s</p>"
        "<table border='1' cellpadding='4'><tr><th>class</th><th>precision</th><th>recall</th>"
        f"<th>F1</th><th>support</th></tr>{rows}</table>"
        f"<h2>Confusion matrix</h2><img src='data:image/png;base64,{img}'/>"
        f"<h2>Behavioural tests</h2><ul>{beh}</ul></body></html>"
    )
