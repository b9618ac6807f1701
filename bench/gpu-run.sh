#!/usr/bin/env bash
# The trainer on a GPU, in one run: `cargo xtask bench-train wgpu` (every stream's training and
# inference throughput, the release trainer beside PyTorch on the same card, fp32 and autocast
# bf16, alternating), then a short synthetic training of ThinAgeNet at 224 px, batch 128, with
# the wall time of each epoch and the GPU's utilisation sampled by nvidia-smi meanwhile.
#
# Usage: bench/gpu-run.sh [OUT_DIR]            (default: bench/gpu-run)
#   TRAINER=PATH  a release trainer binary (default: `cargo build --release -p trainer`)
#   XTASK=PATH    an xtask binary, for a machine where cargo cannot build (default: cargo xtask)
#   QUICK=1       small settings that finish in minutes on a software Vulkan driver (lavapipe,
#                 Debian's mesa-vulkan-drivers), to try the script on a machine without a GPU
#
# It writes OUT_DIR/summary.md (also printed), bench/TRAINING-wgpu.md (through bench-train; with
# QUICK=1 into OUT_DIR instead), and the raw outputs beside the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/gpu-run}
mkdir -p "$out"
root=$PWD

say() { echo "gpu-run: $*" >&2; }

# The machine.
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
  else
    echo "gpu: none seen by nvidia-smi"
  fi
  if command -v vulkaninfo >/dev/null; then
    vulkaninfo --summary 2>/dev/null | grep -E 'deviceName|driverName' | sed 's/^ */vulkan: /' || true
  fi
} | tee "$out/machine.txt" >&2

# The trainer.
if [[ -z ${TRAINER:-} ]]; then
  say "building the release trainer (cargo build --release -p trainer)"
  cargo build --release -p trainer --quiet
  TRAINER=${CARGO_TARGET_DIR:-$HOME/.cache/apparent-age/target}/release/trainer
fi
[[ -x $TRAINER ]] || { say "TRAINER=$TRAINER is not an executable"; exit 1; }

# The side-by-side benchmark.
if [[ ${QUICK:-0} == 1 ]]; then
  bench_args=(--arch tiny-age-net --input-size 32 --batch-size 4 --steps 1 --rounds 1)
  train_args=(--arch tiny-age-net --input-size 32 --batch-size 16 --epochs 2)
  synth_args=(--train 64 --valid 16 --test 16 --image-size 32)
else
  bench_args=()
  train_args=(--arch thin-age-net --input-size 224 --batch-size 128 --epochs 3)
  synth_args=(--train 8192 --valid 1024 --test 1024 --image-size 224)
fi
say "bench-train wgpu ${bench_args[*]}"
if [[ -n ${XTASK:-} ]]; then
  CARGO_MANIFEST_DIR=$root/xtask "$XTASK" bench-train wgpu --trainer "$TRAINER" "${bench_args[@]}"
else
  cargo xtask bench-train wgpu --trainer "$TRAINER" "${bench_args[@]}"
fi
if [[ ${QUICK:-0} == 1 ]]; then
  # A trial run's figures are not the GPU's: they stay out of bench/.
  mv bench/TRAINING-wgpu.md "$out/"
else
  cp bench/TRAINING-wgpu.md "$out/"
fi

# A short training on the synthetic set, the GPU's utilisation sampled every 0.5 s meanwhile.
data=$(mktemp -d)
trap 'rm -rf "$data"; [[ -n ${sampler:-} ]] && kill "$sampler" 2>/dev/null || true' EXIT
"$TRAINER" synth --out "$data/synth" "${synth_args[@]}" --quiet
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 500 \
    >"$out/utilisation.csv" &
  sampler=$!
fi
say "training ${train_args[*]} on the synthetic set through wgpu"
"$TRAINER" train --train "$data/synth/train.csv" --valid "$data/synth/valid.csv" \
  --out "$data/run" --loss kl-l1 --learning-rate 1e-3 --device wgpu --quiet --json \
  "${train_args[@]}" >"$out/train.json"
[[ -n ${sampler:-} ]] && kill "$sampler" && wait "$sampler" 2>/dev/null || true
sampler=
"$TRAINER" eval --model "$data/run" --data "$data/synth/test.csv" --device wgpu --json --quiet \
  >"$out/eval.json"

python3 - "$out" "${train_args[*]}" "$(grep -c . "$data/synth/train.csv")" <<'EOF' | tee "$out/summary.md"
import json, pathlib, sys
out, args, rows = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
train = json.loads((out / "train.json").read_text())
evaluation = json.loads((out / "eval.json").read_text())
images = rows - 1  # the CSV's header
print(f"# Synthetic training through wgpu (`bench/gpu-run.sh`)\n")
print((out / "machine.txt").read_text().strip().replace("\n", "; ") + ".\n")
print(f"`trainer train {args}`, {images} training images per epoch.\n")
print("| epoch | seconds | images/s | train loss | validation MAE |\n|---:|---:|---:|---:|---:|")
for e in train["history"]:
    mae = (e.get("validation") or {}).get("mae")
    print(f"| {e['epoch']} | {e['seconds']:.1f} | {images / e['seconds']:.0f} | {e['train_loss']:.4f} | "
          + (f"{mae:.2f} |" if mae is not None else "– |"))
print(f"\nTest MAE after training: {evaluation.get('metrics', evaluation).get('mae', float('nan')):.2f}.")
util = out / "utilisation.csv"
if util.exists() and util.stat().st_size:
    samples = [line.split(",") for line in util.read_text().splitlines() if line.strip()]
    busy = sorted(float(s[0]) for s in samples)
    memory = max(float(s[1]) for s in samples)
    print(f"\nGPU utilisation while training (nvidia-smi, {len(busy)} samples every 0.5 s): median "
          f"{busy[len(busy) // 2]:.0f} %, mean {sum(busy) / len(busy):.0f} %; memory up to {memory:.0f} MiB.")
else:
    print("\nNo GPU utilisation: nvidia-smi is not on this machine.")
EOF
say "wrote $out/summary.md and bench/TRAINING-wgpu.md"
