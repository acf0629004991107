"""The model registry: which model versions exist and what each one is (MLflow).

    tracking    MLflow: runs, logged models (a pyfunc over the model directory), aliases
    lifecycle   challenger -> candidate -> champion (-> previous), one place; every
                transition tagged with its time and reason; the gate's record as tags

The package imports nothing itself: import the module you need (docs/architecture.md).
"""
