#!/usr/bin/env bash
# Runs the release `trainer` on a GPU machine: the synthetic set, then ThinAgeNet trained on it on
# CUDA, on wgpu (Vulkan) and on the CPU, with the per-epoch times the trainer reports.
# Usage: bench/gpu-run.sh TRAINER_BINARY OUT_DIR
set -u
trainer=$1 out=$2
mkdir -p "$out"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; nproc; } >"$out/machine.txt" 2>&1
"$trainer" synth --out /tmp/synth --train 8000 --valid 1000 --test 1000 --image-size 64 --quiet
for device in cuda wgpu cpu; do
  epochs=6; [ "$device" = cpu ] && epochs=1
  timeout 240 "$trainer" train --train /tmp/synth/train.csv --valid /tmp/synth/valid.csv \
    --out "/tmp/run-$device" --arch thin-age-net --loss kl-l1 --input-size 64 --epochs $epochs \
    --batch-size 128 --learning-rate 1e-3 --lr-step 4 --device "$device" --quiet --json \
    >"$out/train-$device.json" 2>"$out/train-$device.err"
  echo "$device train exit $?"
  "$trainer" eval --model "/tmp/run-$device" --data /tmp/synth/test.csv --device "$device" --json --quiet \
    >"$out/eval-$device.json" 2>>"$out/train-$device.err"
  echo "$device eval exit $?"
done
