# Every target bootstraps what it needs: on a fresh machine `make synth` and `make test` are enough.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
CONFIG ?= pipeline.yml
OUT    ?= build/templates
ARGS   ?=
# The image tables' source, pinned once in pipeline/images.py (SOURCE_VERSION).
SMC         := sagemaker-core
SMC_VERSION := $(shell sed -n 's/^SOURCE_VERSION = "\(.*\)"/\1/p' pipeline/images.py)

.DEFAULT_GOAL := help
# pytest keeps its rewritten test modules in __pycache__ only where Python may write bytecode: an
# environment that forbids it (PYTHONDONTWRITEBYTECODE) would make every worker rewrite every file.
test test-heavy: export PYTHONDONTWRITEBYTECODE :=
CODE   := pipeline scripts tests model examples
.PHONY: help local test-examples synth schema regions region-data test test-heavy lint format checkov checkov-examples golden deploy destroy promote rollback status bench clean ci-lint train build-image endpoint-test batch-transform prepare-stack self-update cost prices image-data

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.runtime: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the generator's dependencies into $(VENV) ..."
	@$(PIP) install -e . --config-settings editable_mode=compat
	@touch $@

$(VENV)/.dev: pyproject.toml $(VENV)/.runtime $(VENV)/.image-source
	@echo "installing the test tools into $(VENV) ..."
	@$(PIP) install -e '.[dev]' --config-settings editable_mode=compat
	@touch $@

# Its own stamp, remade when pipeline/images.py (which pins the version) changes, also in an existing .venv.
$(VENV)/.image-source: pipeline/images.py $(VENV)/.runtime
	@echo "installing $(SMC) $(SMC_VERSION) (source of the image tables, checked by tests/test_images.py) ..."
	@$(PIP) install --no-deps $(SMC)==$(SMC_VERSION)
	@touch $@

$(VENV)/.local: pyproject.toml $(VENV)/.runtime
	@echo "installing the local loop's packages (scikit-learn, sagemaker-training, sagemaker-inference) into $(VENV) ..."
	@$(PIP) install -e '.[local]' --config-settings editable_mode=compat
	@touch $@

local: $(VENV)/.local ## Train, serve and test the model on this machine: no AWS account, no Docker, seconds
	@$(PY) -m scripts.local --config $(CONFIG) $(ARGS)

$(VENV)/.examples: pyproject.toml $(VENV)/.local
	@echo "installing the examples' CPU wheels (xgboost-cpu, 6 MB) into $(VENV) ..."
	@$(PIP) install -e '.[local,examples]' --config-settings editable_mode=compat
	@touch $@

test-examples: $(VENV)/.examples ## Opt-in: train each example here and run its handlers on its payloads; says which ran or why not
	@$(PY) -m scripts.test_examples $(ARGS)

synth: $(VENV)/.runtime ## Validate pipeline.yml; write build/templates/{pipeline,endpoint-ENV}.json (offline)
	@$(PY) -m pipeline synth --config $(CONFIG) --out $(OUT)

schema: $(VENV)/.runtime ## Write the config's JSON Schema to build/pipeline.schema.json
	@mkdir -p build
	@$(PY) -m pipeline schema > build/pipeline.schema.json
	@echo "wrote build/pipeline.schema.json"

regions: $(VENV)/.runtime ## Which regions pipeline.yml can be deployed to, and why not the others (offline)
	@$(PY) -m pipeline.regions --config $(CONFIG)

region-data: $(VENV)/.dev ## Rewrite pipeline/data/resource_types/ from the installed cfn-lint's per-region schemas
	@$(PY) -m pipeline.regions --write-data pipeline/data/resource_types

test: $(VENV)/.dev $(VENV)/.image-source ## Run the offline test suite (cfn-lint, cfripper, golden, scripts under moto)
	@$(PY) -m pytest -n auto --dist loadfile -m "not heavy" $(ARGS)

test-heavy: $(VENV)/.dev $(VENV)/.image-source ## Opt-in, slow (CI runs it): cfn-lint of every template shape in every region that accepts it
	@$(PY) -m pytest -n auto --dist loadfile -m heavy $(ARGS)

lint: $(VENV)/.dev synth ## ruff and mypy over the code, cfn-lint and cfripper over every template
	@$(VENV)/bin/ruff check $(CODE)
	@$(VENV)/bin/ruff format --check $(CODE)
	@$(VENV)/bin/mypy
	@$(PY) -m pipeline.scan --config $(CONFIG) $(OUT)/*.json

format: $(VENV)/.dev ## ruff: fix what it can, then format the code
	@$(VENV)/bin/ruff check --fix $(CODE)
	@$(VENV)/bin/ruff format $(CODE)

checkov: synth ## checkov over the templates, in its own venv (.venv-checkov; slow first time)
	@test -x .venv-checkov/bin/checkov || { $(PYTHON) -m venv .venv-checkov && .venv-checkov/bin/pip -q --disable-pip-version-check install checkov==3.3.30; }
	@.venv-checkov/bin/checkov -d $(OUT) --framework cloudformation --compact --quiet --skip-download

checkov-examples: ## checkov over every example's templates (examples/*/pipeline.yml), each into build/examples/NAME
	@for config in examples/*/pipeline.yml; do name=$${config#examples/}; name=$${name%/pipeline.yml}; echo "checkov: $$name"; $(MAKE) --no-print-directory checkov CONFIG=$$config OUT=build/examples/$$name || exit 1; done

golden: $(VENV)/.runtime ## Regenerate tests/golden/*.json from the sample config tests/golden/pipeline.yml
	@$(PY) -m pipeline synth --config tests/golden/pipeline.yml --root . --out tests/golden

deploy: $(VENV)/.runtime ## Create or update the pipeline stack in AWS (needs credentials)
	@$(PY) -m pipeline deploy --config $(CONFIG) $(ARGS)

destroy: $(VENV)/.runtime ## Delete the endpoint stacks and the pipeline stack; keeps models and data
	@$(PY) -m pipeline destroy --config $(CONFIG) $(ARGS)

promote: $(VENV)/.runtime ## Deploy a registered model version to an environment (ARGS='--version N --to ENV')
	@$(PY) -m pipeline promote --config $(CONFIG) $(ARGS)

rollback: $(VENV)/.runtime ## Put an environment back on the newest Approved version before its own (ARGS='--to ENV')
	@$(PY) -m pipeline rollback --config $(CONFIG) $(ARGS)

status: $(VENV)/.runtime ## Where the newest commit is in the pipeline, a pending approval, the endpoints
	@$(PY) -m pipeline status --config $(CONFIG) $(ARGS)

cost: $(VENV)/.runtime ## What the stacks keep running and its monthly cost, from the price table (offline)
	@$(PY) -m pipeline cost --config $(CONFIG) $(ARGS)

prices: $(VENV)/.runtime ## Rewrite pipeline/data/prices.json from AWS's Price List bulk files (needs the network)
	@$(PY) -m pipeline.cost --write-prices pipeline/data/prices.json

image-data: $(VENV)/.runtime ## Rewrite pipeline/data/images/*.json (framework and built-in algorithm images, Model Monitor) from sagemaker-core's wheel (needs PyPI)
	@rm -rf build/image-data && mkdir -p build/image-data
	@$(PIP) download --no-deps --only-binary=:all: -d build/image-data $(SMC)==$(SMC_VERSION)
	@$(PY) -m pipeline.images build/image-data/sagemaker_core-$(SMC_VERSION)-py3-none-any.whl pipeline/data/images

bench: $(VENV)/.local ## Time a full synth in a fresh process (median of several runs; goal <= 0.3 s), and make local's loop
	@$(PY) -m pipeline.bench --config $(CONFIG)

REPORTS ?= build/reports
# Every check runs and writes its JUnit report even when one before it failed (the Lint action
# publishes them all); the target fails if any check did.
ci-lint: $(VENV)/.dev synth ## (Lint action) cfn-nag, cfn-lint and cfripper over every template, the local loop, the test suite; JUnit in build/reports
	@mkdir -p $(REPORTS); FAILED=0; \
	cfn_nag_scan --input-path $(OUT) --output-format json > $(REPORTS)/cfn-nag.json || FAILED=1; \
	$(PY) -m pipeline.lint_reports $(REPORTS)/cfn-nag.json --junit $(REPORTS)/cfn-nag.xml --exports build/lint-exports.env || FAILED=1; \
	$(PY) -m pipeline.scan --config $(CONFIG) --junit $(REPORTS)/scan.xml $(OUT)/*.json || FAILED=1; \
	$(PY) -m scripts.local --config $(CONFIG) --offline --junit-xml $(REPORTS)/local-endpoint-tests.xml || FAILED=1; \
	$(MAKE) --no-print-directory test ARGS='--junitxml=$(REPORTS)/unit-tests.xml $(ARGS)' || FAILED=1; \
	exit $$FAILED

train: $(VENV)/.runtime ## (Train action) run one training job; needs MODEL_BUCKET, SAGEMAKER_ROLE_ARN
	@$(PY) -m scripts.train --config $(CONFIG) --output-dir build/train $(ARGS)

build-image: $(VENV)/.runtime ## (BuildImage action) build and push model.container's image(s) tagged by COMMIT_ID
	@$(PY) -m scripts.build_image --config $(CONFIG) $(ARGS)

prepare-stack: $(VENV)/.runtime ## (PrepareStack actions) ready ENDPOINT_ENV's endpoint stack for its deploy
	@$(PY) -m scripts.prepare_stack --config $(CONFIG) $(ARGS)

self-update: $(VENV)/.runtime ## Update the pipeline stack from this checkout unless a stateful resource would go
	@$(PY) -m scripts.self_update --config $(CONFIG) $(ARGS)

endpoint-test: $(VENV)/.runtime ## (Test actions) test the endpoint of ENDPOINT_ENV (an environment's name)
	@$(PY) -m scripts.endpoint_test --config $(CONFIG) $(ARGS)

batch-transform: $(VENV)/.runtime ## (BatchTransform action) transform batch_transform.input with the deployed model, check the outputs
	@$(PY) -m scripts.batch_transform --config $(CONFIG) $(ARGS)

clean: ## Remove build output (keeps .venv)
	rm -rf build
