#!/usr/bin/env bash
# Installs what hpm needs on a fresh machine: the Fashion-MNIST data package and FFmpeg (apt;
# torchcodec decodes and writes video through FFmpeg's libraries) and the Python package with
# its dependencies (pip). Safe to re-run; skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
APT=()
[ -f "$DATA" ] || APT+=(dataset-fashion-mnist)
command -v ffmpeg >/dev/null 2>&1 || APT+=(ffmpeg)
if [ ${#APT[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "installing through apt: ${APT[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT[@]}"
fi

PY=${PYTHON:-python3}
$PY -m pip install -q --disable-pip-version-check --root-user-action=ignore -e ".[dev]"
