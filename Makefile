# FERbench. Every target creates the virtualenv when it is missing and installs nothing when it is there.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ferbench-installed
TABLE ?= apvit_tab5
SCALE ?= tiny
SEEDS ?=
EXECUTOR ?= local
RESULTS ?= results
REPORTS ?= reports
ARGS ?=
SITE ?= site
BRANCH ?=
# The MTCNN face detector (weights ship in the wheel). Installed with --no-deps: its metadata pins
# torch<2.3, torchvision<0.18, numpy<2 and Pillow<10.3, which would replace our pins.
FACENET := facenet-pytorch==2.6.0

.PHONY: venv test reproduce report publish bench clean-venv

venv: $(STAMP)

# The stamp is newer than pyproject.toml and this file once the pinned dependencies are in.
$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m pip install --quiet --no-deps '$(FACENET)'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

# The report is written even when some cells failed (it shows the ledger); the exit status is kept.
reproduce: $(STAMP)
	@$(PY) -m harness reproduce --table $(TABLE) --scale $(SCALE) $(if $(SEEDS),--seeds $(SEEDS)) \
		--executor $(EXECUTOR) --results $(RESULTS) --report $(REPORTS) $(ARGS)

report: $(STAMP)
	$(PY) -m harness report --results $(RESULTS) --out $(REPORTS)

# The site: every table, the methods compared, the claims ledger, data and provenance (harness/report/publish.py).
# BRANCH=gh-pages also commits it to that branch of this repository; ARGS=--archive also writes $(SITE).tar.gz.
publish: $(STAMP)
	$(PY) -m harness publish --results $(RESULTS) --out $(SITE) $(if $(BRANCH),--git-branch $(BRANCH)) $(ARGS)

bench: $(STAMP)
	$(PY) -m pytest tests/benchmarks -q --benchmark-enable --benchmark-only \
		--benchmark-columns=median,iqr,min,max,rounds --benchmark-sort=name \
		--benchmark-autosave --benchmark-storage=$(RESULTS)/benchmarks $(ARGS)

clean-venv:
	rm -rf $(VENV)
