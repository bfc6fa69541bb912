#!/usr/bin/env bash
# One-time set-up on a bare Debian/Ubuntu machine: system packages, a virtual environment, the requirements.
# Usage: bash scripts/setup.sh        (run as root, or with sudo available for apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng libportaudio2 libsndfile1 ffmpeg chromium fonts-wqy-microhei)
missing=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements.txt
python -m pip install -q --no-deps -e .
echo "set-up done: activate with '. .venv/bin/activate'"
