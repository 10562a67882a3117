#!/usr/bin/env bash
# Fresh machine -> ready: system data, a virtual environment in .venv, torch with the pins
# that work here (see docs/environment.md), then the project with its dev extras.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  echo "[install] Fashion-MNIST from Debian (dataset-fashion-mnist)"
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, exactly pinned: a CUDA build that also runs on CPU. torch 2.13.0's CPU wheel
# breaks torchvision (and robustbench, timm) at import.
$PIP install -q "torch==2.14.1" "torchvision==0.29.1"
$PIP install -q -e ".[dev]"
echo "[install] done: $(.venv/bin/python -c 'import torch, dard_plugin; print("torch", torch.__version__, "dard_plugin", dard_plugin.__version__)')"
