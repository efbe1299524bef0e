#!/usr/bin/env bash
# Installs what hpm needs on a fresh machine: the Fashion-MNIST data package (apt) and the
# Python package with its dependencies (pip). Safe to re-run; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
if [ ! -f "$DATA" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing the Fashion-MNIST data (Debian package dataset-fashion-mnist)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev]"
