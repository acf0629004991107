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
    from sentiops.evaluation.evaluate import plot_confusion  # lazy: pulls cryptography

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
        f"{calibration_html(result)}"
        "<table border='1' cellpadding='4'><tr><th>class</th><th>precision</th><th>recall</th>"
        f"<th>F1</th><th>support</th></tr>{rows}</table>"
        f"<h2>Confusion matrix</h2><img src='data:image/png;base64,{img}'/>"
        f"<h2>Behavioural tests</h2><ul>{beh}</ul></body></html>"
    )


def calibration_html(result: dict[str, Any]) -> str:
    """The calibration paragraph: ECE and Brier score of the served probabilities on these
    rows, before calibration beside them, and what the calibrator did on validation."""
    if "brier" not in result:
        return ""
    here = f"ECE {result['ece']:.4f}, Brier score {result['brier']:.4f}"
    if "ece_uncalibrated" in result:
        here = (
            f"ECE {result['ece_uncalibrated']:.4f} &rarr; <b>{result['ece']:.4f}</b>, "
            f"Brier score {result['brier_uncalibrated']:.4f} &rarr; "
            f"<b>{result['brier']:.4f}</b> (uncalibrated &rarr; served)"
        )
    cal = result.get("calibration") or {}
    if cal.get("skipped"):
        fitted = f"not calibrated: {html.escape(str(cal['skipped']))}"
    elif cal:
        b, a = cal.get("before", {}), cal.get("after", {})
        fitted = (
            f"{html.escape(str(cal.get('method')))} scaling (T = "
            f"{cal.get('temperature', 1.0):.3f}) fitted on {cal.get('rows')} validation "
            f"rows; held-out ECE {b.get('ece', 0):.4f} &rarr; {a.get('ece', 0):.4f}, "
            f"Brier {b.get('brier', 0):.4f} &rarr; {a.get('brier', 0):.4f}"
        )
    else:
        fitted = "no calibrator in this model directory (raw probabilities)"
    return f"<h2>Calibration</h2><p>{here}</p><p class='muted'>{fitted}</p>"
