#!/usr/bin/env bash
# Set up ViT Feature Atlas in ./.venv. With --test, also the test tools and Debian's chromium
# (for the browser tests; never a downloaded browser).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
if [ "${1:-}" = "--test" ]; then
  .venv/bin/python -m pip install --quiet -e ".[test]"
  if [ ! -x /usr/bin/chromium ]; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
else
  .venv/bin/python -m pip install --quiet -e .
fi
echo "setup done: .venv ($(.venv/bin/python -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'))"
