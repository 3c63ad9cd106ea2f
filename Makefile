# tnc: `make demo` installs and compiles the examples; `make test` installs and runs the tests.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TNC    := $(VENV)/bin/tnc
STAMP  := $(VENV)/.installed
OUT    := out

.PHONY: install demo test train bench docs lint clean

install: $(STAMP)

# The venv sees system packages, so a torch that is already installed is reused; otherwise the
# CPU build is pinned (an unpinned torch would pull several GB of CUDA packages).
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

demo: install
	@mkdir -p $(OUT)
	@for f in examples/*.tn; do \
	  name=$$(basename $$f .tn); \
	  echo "== $$f -> einsum"; \
	  $(TNC) compile $$f --target einsum || exit 1; \
	  $(TNC) compile $$f --target torch -o $(OUT)/$$name.py || exit 1; \
	  $(PY) -m py_compile $(OUT)/$$name.py || exit 1; \
	done
	@echo "== PyTorch modules written to $(OUT)/; the one for examples/conv2d.tn:"
	@cat $(OUT)/conv2d.py
	@$(PY) examples/demo_check.py $(OUT)

test: install
	$(PY) -m pytest

# make train [TRAIN_ARGS="--processes 2"]: KFAC on scikit-learn's digits, its conv factors from
# examples/kfac/factors.tn, against the unfold-based factors (python examples/kfac/train_digits.py --help)
train: install
	$(PY) examples/kfac/train_digits.py $(TRAIN_ARGS)

# make bench [BENCH_ARGS="--quick" | "--layers 20,ResNeXt --batch 16" ...]: see python -m benchmarks.run --help;
# then the whole-network derivatives against autograd (python -m benchmarks.multilayer --help)
# second-order training end to end (python -m benchmarks.training --help), tensor dropout's
# error against memory saved (python -m benchmarks.dropout --help) and per-sample quantities
# against BackPACK (python -m benchmarks.per_sample --help)
# (torch pinned to the installed build: BackPACK's torchvision would otherwise pull a newer, CUDA torch)
bench: install
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-pin.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]' -c $(VENV)/torch-pin.txt || \
	  echo "warning: the bench extra (matplotlib, einconv, BackPACK) did not install: no plots, no einconv baseline"
	$(PY) -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.multilayer
	$(PY) -m benchmarks.training
	$(PY) -m benchmarks.dropout
	$(PY) -m benchmarks.per_sample

# make docs: the documentation site in site/ (mkdocs, strict: a broken link or page is an error)
docs: install
	$(PY) -m mkdocs build --strict --site-dir site

lint: install
	$(PY) -m compileall -q tnc tests examples
	@for f in examples/*.tn; do $(TNC) check $$f > /dev/null || exit 1; done

clean:
	rm -rf $(OUT) site build dist *.egg-info .pytest_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
