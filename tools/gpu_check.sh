#!/usr/bin/env bash
# The GPU check, prepared for a lent GPU machine (run through the device tool, from the repository
# root, with the trained artefact and a folder of test images carried, e.g. carry models/ and
# gpu-images/). It needs PyTorch with CUDA, which that machine has; nothing is downloaded.
# Writes $OUT/gpu.json (or ./gpu.json) and prints the table for docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}/gpu.json"
artefact="${1:-}"
images="${2:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
# the project's pure-Python dependencies travel with the call where the machine lacks them
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" timeout 480 python3 tools/gpu_bench.py \
    ${artefact:+--artefact "$artefact"} ${images:+--images "$images"} --out "$out"
