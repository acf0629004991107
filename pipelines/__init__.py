"""KFP pipeline definitions; compiled YAML lives in pipelines/compiled/."""
