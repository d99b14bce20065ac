#!/usr/bin/env bash
# Wheels for the offline GPU machine (benchmarks/README.md, "GPU check"): what its image lacks of our
# dependencies, for its Python 3.12 on x86-64, into .whl/ (ignored by git). Run here, where pip reaches PyPI;
# carry .whl to the GPU machine, where gpu_check.sh installs them with pip --no-index.
# Its image has torch, transformers, peft, accelerate, safetensors, huggingface-hub, typer, rich, pyyaml,
# pillow, numpy, attrs, zipp; it lacks diffusers, psd-tools, importlib-metadata and lazy-importer.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(diffusers==0.42.1 importlib-metadata==10.2.0 lazy-importer==0.1.0 psd-tools==1.26.0)
python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl "${WHEELS[@]}"
count=$(ls .whl/*.whl | wc -l)
[[ $count -eq ${#WHEELS[@]} ]] || { echo "fetch_wheels: expected ${#WHEELS[@]} wheels in .whl/, found $count (two versions of one package stop the install)" >&2; exit 1; }
du -sh .whl
