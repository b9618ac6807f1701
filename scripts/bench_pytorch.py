"""PyTorch's training and inference throughput on the trainer's five streams, for
`cargo xtask bench-train`, which runs it beside `trainer bench` and alternates the two.

The networks are those of `dldl/src/networks/` layer for layer: VGG-16's trunk (3×3 convolutions
with bias, no normalisation), VGG-16-BN, ThinAgeNet and TinyAgeNet (half and a quarter of VGG-16's
channels, bias-free convolutions with batch norm), each ending in a global average pool and a
linear layer onto the 101 ages; and the pretrained ResNet of 64×64 chips (a 7×7/2 convolution
and a 3×3/2 max-pool, five residual blocks of 64, 128 and 256 channels whose widening blocks
downsample with a 3×3/2 convolution beside an average-pooled, zero-padded shortcut, per-channel
affine layers after each convolution, a 101-age head). The step is the trainer's: random u8
images normalised into a batch, forward, KL(label ‖ prediction) + |E[age] − μ| with Gaussian
labels (σ = 3) renormalised over the 101 ages, backward and Adam; inference is the forward pass
with the softmax, read back to the host. Timing as in `trainer bench`: one warm-up step, then
`--steps` timed steps.

Prints one JSON object on the last line, in the shape of `trainer bench --json`.

With `--layers`, times one VGG-style stream layer by layer instead, in the shape of
`cargo bench -p dldl --bench train_layers` (for `cargo xtask bench-layers`): each 3×3
convolution, its batch norm, ReLU and max-pool, forward and backward, and the convolution's
weight gradient alone (`torch.nn.grad.conv2d_weight`).
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

AGES = 101
VGG16_STAGES = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
WIDTH_DIVISOR = {"vgg16": 1, "vgg16-bn": 1, "thin-age-net": 2, "tiny-age-net": 4}
ARCHITECTURES = ["vgg16", "vgg16-bn", "thin-age-net", "tiny-age-net", "pretrained"]
# ImageNet's normalisation (the VGG family) and the pretrained package's.
NORMALIZATION = {
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "pretrained": ([122.781998 / 255, 117.000999 / 255, 104.297997 / 255], [256 / 255] * 3),
}


class Vgg(nn.Module):
    def __init__(self, architecture):
        super().__init__()
        divisor = WIDTH_DIVISOR[architecture]
        batch_norm = architecture != "vgg16"
        layers, channels = [], 3
        for stage in VGG16_STAGES:
            for width in stage:
                out = width // divisor
                layers.append(nn.Conv2d(channels, out, 3, padding=1, bias=not batch_norm))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(out))
                layers.append(nn.ReLU(inplace=True))
                channels = out
            layers.append(nn.MaxPool2d(2))
        self.trunk = nn.Sequential(*layers)
        self.head = nn.Linear(channels, AGES)

    def forward(self, x):
        return self.head(torch.flatten(F.adaptive_avg_pool2d(self.trunk(x), 1), 1))


class ConvAffine(nn.Module):
    def __init__(self, cin, cout, kernel, stride, padding):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding)
        self.scale = nn.Parameter(torch.ones(1, cout, 1, 1))
        self.offset = nn.Parameter(torch.zeros(1, cout, 1, 1))

    def forward(self, x):
        return self.conv(x) * self.scale + self.offset


class Residual(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.widening = cin != cout
        stride, padding = (2, 0) if self.widening else (1, 1)
        self.first = ConvAffine(cin, cout, 3, stride, padding)
        self.second = ConvAffine(cout, cout, 3, 1, 1)
        self.extra = cout - cin

    def forward(self, x):
        y = self.second(F.relu(self.first(x)))
        if not self.widening:
            return F.relu(x + y)
        shortcut = F.avg_pool2d(x, 2, 2)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra))
        y = F.pad(y, (0, shortcut.shape[3] - y.shape[3], 0, shortcut.shape[2] - y.shape[2]))
        return F.relu(shortcut + y)


class Pretrained(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = ConvAffine(3, 64, 7, 2, 0)
        blocks = [(64, 64), (64, 128), (128, 128), (128, 256), (256, 256)]
        self.blocks = nn.Sequential(*(Residual(i, o) for i, o in blocks))
        self.head = nn.Linear(256, AGES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        return self.head(self.blocks(x).mean(dim=(2, 3)))


def network(architecture):
    return Pretrained() if architecture == "pretrained" else Vgg(architecture)


def normalise(images_u8, normalization, device):
    """u8 `[batch, size, size, 3]` → normalised f32 `[batch, 3, size, size]`, as the trainer does."""
    mean, std = (torch.tensor(v, device=device).view(1, 3, 1, 1) for v in NORMALIZATION[normalization])
    x = images_u8.to(device).permute(0, 3, 1, 2).float() / 255
    return ((x - mean) / std).contiguous()


def kl_l1_loss(logits, mu, sigma):
    grid = torch.arange(AGES, dtype=torch.float32, device=logits.device)
    target = torch.softmax(-((grid[None, :] - mu[:, None]) ** 2) / (2 * sigma[:, None] ** 2), dim=1)
    log_p = torch.log_softmax(logits.float(), dim=1)
    kl = (target * (target.clamp_min(1e-30).log() - log_p)).sum(dim=1).mean()
    expected = (log_p.exp() * grid).sum(dim=1)
    return kl + (expected - mu).abs().mean()


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(architecture, input_size, batch_size, steps, device, autocast):
    size = 64 if architecture == "pretrained" else input_size
    normalization = "pretrained" if architecture == "pretrained" else "imagenet"
    generator = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8, generator=generator)
    mu = (torch.rand(batch_size, generator=generator) * 89 + 1).to(device)
    sigma = torch.full((batch_size,), 3.0, device=device)
    model = network(architecture).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    context = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if autocast else None

    def step():
        x = normalise(images, normalization, device)
        optimizer.zero_grad(set_to_none=True)
        if context:
            with context():
                logits = model(x)
        else:
            logits = model(x)
        loss = kl_l1_loss(logits, mu, sigma)
        loss.backward()
        optimizer.step()
        return loss

    model.train()
    step()
    synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    synchronize(device)
    train = steps * batch_size / (time.perf_counter() - started)

    model.eval()
    with torch.inference_mode():
        def infer():
            x = normalise(images, normalization, device)
            if context:
                with context():
                    logits = model(x)
            else:
                logits = model(x)
            return torch.softmax(logits.float(), dim=1).cpu()

        infer()
        started = time.perf_counter()
        for _ in range(steps):
            infer()
        inference = steps * batch_size / (time.perf_counter() - started)
    return {
        "architecture": architecture,
        "parameters": parameters,
        "input_size": size,
        "batch_size": batch_size,
        "train_images_per_second": train,
        "inference_images_per_second": inference,
    }


def conv_layers(architecture, input_size):
    """The 3×3 convolutions in order, `(in, out, size, pooled)`, runs of one shape merged with
    their count, as `dldl::networks::vgg::conv_layers` and the bench grouping them."""
    divisor, channels, size, layers = WIDTH_DIVISOR[architecture], 3, input_size, []
    for stage in VGG16_STAGES:
        for i, width in enumerate(stage):
            out, pooled = width // divisor, i + 1 == len(stage)
            if layers and layers[-1][0][:3] == (channels, out, size):
                (c, o, s, p), count = layers[-1]
                layers[-1] = ((c, o, s, p or pooled), count + 1)
            else:
                layers.append(((channels, out, size, pooled), 1))
            channels = out
        size //= 2
    return layers


def median_ms(budget, f):
    """Median milliseconds per call of `f`, run for at least `budget` seconds and 5 times,
    after one warm-up call."""
    f()
    times, started = [], time.perf_counter()
    while time.perf_counter() - started < budget or len(times) < 5:
        t = time.perf_counter()
        f()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def measure_layers(architecture, input_size, batch_size, budget, device):
    batch_norm = architecture != "vgg16"
    n, rows = batch_size, []
    for (c, co, size, pooled), count in conv_layers(architecture, input_size):
        print(f"bench_pytorch.py: conv {c}→{co} at {size} px", file=sys.stderr)
        x = torch.rand(n, c, size, size, device=device, requires_grad=True)
        y = torch.rand(n, co, size, size, device=device, requires_grad=True)
        weighting = torch.rand(n, co, size, size, device=device)
        weighting_pooled = torch.rand(n, co, size // 2, size // 2, device=device)
        conv = nn.Conv2d(c, co, 3, padding=1, bias=not batch_norm).to(device)
        norm = nn.BatchNorm2d(co).to(device).train()
        pool = nn.MaxPool2d(2)

        def backward(out, leaf):
            w = weighting if out.shape[2] == size else weighting_pooled
            (out * w).sum().backward()
            leaf.grad = None
            synchronize(device)

        conv_ms = median_ms(budget, lambda: backward(conv(x), x))
        norm_ms = median_ms(budget, lambda: backward(norm(y), y)) if batch_norm else None
        relu_ms = median_ms(budget, lambda: backward(F.relu(y), y))
        pool_ms = median_ms(budget, lambda: backward(pool(y), y)) if pooled else None
        with torch.no_grad():
            xp, gp = x.detach(), torch.rand(n, co, size, size, device=device)

            def weight_grad():
                torch.nn.grad.conv2d_weight(xp, (co, c, 3, 3), gp, padding=1)
                synchronize(device)

            weight_grad_ms = median_ms(budget, weight_grad)
        rows.append({"in_channels": c, "out_channels": co, "size": size, "count": count,
                     "conv": conv_ms, "batch_norm": norm_ms, "relu": relu_ms, "pool": pool_ms,
                     "weight_grad": weight_grad_ms})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"],
                        help="auto: CUDA when PyTorch sees a GPU, else the CPU")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="intra-op threads on the CPU (default: every core, as burn's CPU backend)")
    parser.add_argument("--autocast", choices=["bf16"], help="mixed precision (autocast to bfloat16)")
    parser.add_argument("--layers", action="store_true",
                        help="time one VGG-style stream (--arch) layer by layer instead")
    parser.add_argument("--budget-ms", type=int, default=400,
                        help="with --layers: the least time spent timing each figure")
    args = parser.parse_args()
    if args.steps < 1 or args.batch_size < 1:
        sys.exit("bench_pytorch.py: --steps and --batch-size must be at least 1")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_pytorch.py: no CUDA device is visible to PyTorch; use --device cpu")
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {args.threads} threads"
    if args.layers:
        architecture = (args.arch or ["tiny-age-net"])[0]
        if architecture == "pretrained":
            sys.exit("bench_pytorch.py: --layers times a VGG-style stream, not the pretrained network")
        if args.input_size < 32:
            sys.exit("bench_pytorch.py: --input-size: at least 32 (five 2×2 max-pools)")
        layers = measure_layers(architecture, args.input_size, args.batch_size, args.budget_ms / 1e3, device)
        print(json.dumps({"runtime": f"PyTorch {torch.__version__} ({name}, fp32)",
                          "threads": args.threads, "architecture": architecture,
                          "input_size": args.input_size, "batch_size": args.batch_size,
                          "layers": layers}))
        return
    streams = [measure(a, args.input_size, args.batch_size, args.steps, device, args.autocast)
               for a in args.arch or ARCHITECTURES]
    precision = "autocast bf16" if args.autocast else "fp32"
    print(json.dumps({"device": f"PyTorch {torch.__version__} ({name}, {precision})",
                      "device_type": device.type, "streams": streams}))


if __name__ == "__main__":
    sys.exit(main())
