# KFP training pipeline (issue 3). Included by the main Makefile, which defines BIN.
#   make pipeline        compile sentiops/pipeline/kubeflow/compiled/sentiops.yaml (package data; a test
#                        fails when it is stale; pipelines/sentiops.yaml links to it)
#   make pipeline-local  run the pipeline here with kfp.local, twice: baseline, then transformer
# Another component image: SENTIOPS_COMPONENT_IMAGE=registry/sentiops/components:tag make pipeline
# (`make pipeline-submit` lives in mk/cluster.mk; `sentiops pipeline submit --host URL` also works.)

.PHONY: pipeline pipeline-local

pipeline: install ## compile the KFP pipeline to sentiops/pipeline/kubeflow/compiled/sentiops.yaml
	$(BIN)/sentiops pipeline compile --output sentiops/pipeline/kubeflow/compiled/sentiops.yaml

pipeline-local: install ## run the KFP pipeline locally twice: baseline champion, transformer challenger
	$(BIN)/sentiops pipeline demo
