#!/usr/bin/env bash
# Install what miabench needs on a fresh Debian machine: the embedded Fashion-MNIST data
# (Debian's dataset-fashion-mnist; torchvision downloads it instead where apt is unavailable
# and there is internet) and the package with its Python dependencies.
# Usage: scripts/install.sh [--dev]     (--dev adds the test tools; the serve extra always)
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST_DIR=${MIABENCH_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ ! -f "$FMNIST_DIR/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "[install] Fashion-MNIST: apt-get install dataset-fashion-mnist"
    $SUDO apt-get update -qq || echo "[install] apt-get update failed; trying the install anyway"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist \
      || echo "[install] could not install dataset-fashion-mnist; torchvision will try to download it"
  else
    echo "[install] no apt-get: torchvision will download Fashion-MNIST on first use"
  fi
fi

# --dev: a real browser for the audit web app's browser test (tests/serve/test_browser.py:
# Selenium drives Debian's headless Chromium); without one that test says it skipped.
if [ "${1:-}" = "--dev" ] && { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "[install] browser test: apt-get install chromium chromium-driver"
    $SUDO apt-get update -qq || echo "[install] apt-get update failed; trying the install anyway"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
      || echo "[install] could not install chromium; the browser test will say it skipped"
  else
    echo "[install] no apt-get: the browser test will say it skipped unless chromium is present"
  fi
fi

PYTHON=${PYTHON:-python3}
# Every extra is part of the install ([all]: DP-SGD, detection mAP, SLURM, the audit web app
# python -m miabench.serve); --dev adds the test tools, Selenium included (the browser
# itself: see .ci/run).
extra="[all]"
if [ "${1:-}" = "--dev" ]; then extra="[dev]"; fi
# torch/torchvision first, pinned as the project allows, so pip takes the local wheels here.
"$PYTHON" -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1" \
  || "$PYTHON" -m pip install --quiet "torch<=2.14.1" "torchvision<=0.29.1"
# The configs (conf/) reach the package as miabench.conf through the path mapping that the
# editable install writes; an install from before conf/ moved to the top level lacks it, so
# re-run this script after pulling that change. The check fails loudly where they are missing.
"$PYTHON" -m pip install --quiet -e ".$extra"
(cd / && "$PYTHON" -c 'import hydra_plugins.hydra_joblib_launcher  # hydra/launcher=parallel
from importlib import resources as r; c = r.files("miabench.conf")
assert (c / "train_victim.yaml").is_file(), c; print(f"[install] configs: {c}")')
echo "[install] done"
