"""NannyML's CBPE on the cases `benchmarks/estimate.py` wrote: run in the benchmark's own
environment (`.venv-bench-nannyml`, built by `make bench-estimate` from
benchmarks/requirements-nannyml.txt), never in SentiOps' environments or images.

    .venv-bench-nannyml/bin/python benchmarks/estimate_nannyml.py FOLDER

FOLDER holds reference.csv (the tweets validation split: raw probabilities `p_<label>`,
`y_pred`, `y_true`), case-<i>.csv and cases.json; writes FOLDER/nannyml.json: per case the
estimated accuracy and macro-F1 (CBPE fitted on the reference with its default isotonic
calibration, the whole case as one chunk). Usage telemetry is off (NML_DISABLE_USAGE_LOGGING).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"


def main(folder: Path) -> None:
    import nannyml as nml
    import pandas as pd

    index = json.loads((folder / "cases.json").read_text())
    labels = index["labels"]
    proba = {lab: f"p_{lab}" for lab in labels}
    reference = pd.read_csv(folder / "reference.csv")
    out = {}
    for case in index["cases"]:
        analysis = pd.read_csv(folder / case["file"])
        cbpe = nml.CBPE(
            metrics=["accuracy", "f1"],
            y_pred_proba=proba,
            y_pred="y_pred",
            y_true="y_true",
            problem_type="classification_multiclass",
            chunk_number=1,
        )
        cbpe.fit(reference)
        result = cbpe.estimate(analysis.drop(columns=["y_true"])).filter(period="analysis")
        df = result.to_df()
        out[case["case"]] = {
            "accuracy": round(float(df[("accuracy", "value")].iloc[0]), 4),
            "f1": round(float(df[("f1", "value")].iloc[0]), 4),
        }
    (folder / "nannyml.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
