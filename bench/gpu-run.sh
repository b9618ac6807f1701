#!/usr/bin/env bash
# Trains ThinAgeNet on the synthetic set with the release `trainer` on a GPU machine, through wgpu
# (Vulkan), and keeps what the trainer reports (per-epoch times, metrics). bench/RESULTS.md holds
# what it measured.
# Usage: bench/gpu-run.sh TRAINER_BINARY OUT_DIR
set -u
trainer=$1 out=$2
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; } >"$out/machine.txt" 2>&1
"$trainer" synth --out /tmp/synth --train 8000 --valid 1000 --test 1000 --image-size 64 --quiet

# name device input-size epochs time-limit
run() {
  local name=$1 device=$2 size=$3 epochs=$4 limit=$5
  timeout "$limit" "$trainer" train --train /tmp/synth/train.csv --valid /tmp/synth/valid.csv \
    --out "/tmp/run-$name" --arch thin-age-net --loss kl-l1 --input-size "$size" --epochs "$epochs" \
    --batch-size 128 --learning-rate 1e-3 --lr-step 4 --device "$device" --quiet --json \
    >"$out/train-$name.json" 2>"$out/$name.err"
  echo "$name: train exit $?"
  timeout 60 "$trainer" eval --model "/tmp/run-$name" --data /tmp/synth/test.csv --device "$device" \
    --json --quiet >"$out/eval-$name.json" 2>>"$out/$name.err"
  echo "$name: eval exit $?"
}
run wgpu-64 wgpu 64 3 330
# With a trainer built with `--features cuda`:
# run cuda-64 cuda 64 3 330
