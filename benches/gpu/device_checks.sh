#!/usr/bin/env bash
# Issue 12's GPU measurements and checks in one call on the device machine
# (H100/H200, CUDA 13, PyTorch + PEFT, no Rust, no network). Each line it
# prints is a JSON line of `easel bench …` or a "## …" heading.
#
# Prepare here (a machine without a GPU); the stripped cuda binary is ~72 MB, over
# the 64 MiB that travels, so it goes compressed (~10 MB):
#   eval "$(bash ../shared/gpu/setup-cuda-build.sh)"
#   CARGO_TARGET_DIR=target/cuda cargo build --release --features cuda
#   mkdir -p target/gpu && xz -T2 -c target/cuda/release/easel > target/gpu/easel.xz
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d target/gpu/wheels diffusers==0.42.1 importlib_metadata
# Run there with the device tool, carrying target/gpu:
#   bash benches/gpu/device_checks.sh
# About 6 minutes on an H200 (est.): conformance, SD1.5-512 batch 1 and 4, SDXL-1024
# batch 1 with and without checkpointing, each beside diffusers + PEFT eager.
set -u
cd "$(dirname "$0")/../.."
python3 -c "import lzma, shutil; shutil.copyfileobj(lzma.open('target/gpu/easel.xz'), open('/tmp/easel', 'wb'))"
chmod +x /tmp/easel
python3 -m pip install -q --no-index --no-deps --target /tmp/easel-site target/gpu/wheels/*.whl
export PYTHONPATH=/tmp/easel-site${PYTHONPATH:+:$PYTHONPATH}
easel() { bash benches/gpu/gpu-env.sh /tmp/easel "$@"; }
check() {
    echo "## easel $*"
    easel "$@" || echo "## failed (exit $?): easel $*"
}

# Numerics: fused ops vs the CPU (f32, bf16), fixture UNet vs diffusers, falling loss.
check bench conformance --arch sd15 --steps 10
# Speed and memory beside diffusers + PEFT (eager), bf16.
check bench train --arch sd15 --batch 1 --steps 10 --python benches/lora_step.py
check bench train --arch sd15 --batch 4 --steps 10 --python benches/lora_step.py
check bench train --arch sdxl --batch 1 --steps 6 --python benches/lora_step.py
check bench train --arch sdxl --batch 1 --steps 6 --checkpointing --python benches/lora_step.py
