//! Where a CPU training step's time goes, layer by layer: each 3×3 convolution of a VGG-style
//! stream (ThinAgeNet, TinyAgeNet, VGG-16) with its batch norm, ReLU and max-pool, forward and
//! backward through autodiff on burn's CPU backend (flex), as the trainer runs them (bias-free
//! convolutions through `conv_grad::conv3x3`). Also each convolution's weight gradient alone:
//! burn's default (`conv2d_weight_backward`, a convolution of the input by the output gradient)
//! beside the nine shifted matrix products of `conv_grad::weight_grad_shifted`, which `conv3x3`
//! uses from 16 × 16 up.
//!
//! `cargo xtask bench-layers` runs this beside `scripts/bench_pytorch.py --layers` and records
//! both. Alone: `cargo bench -p dldl --bench train_layers -- --arch tiny-age-net --input-size 64
//! --batch-size 32`. Prints one JSON object.

use std::time::Duration;

use dldl::{
    burn::{
        nn::{BatchNormConfig, PaddingConfig2d, conv::Conv2dConfig, pool::MaxPool2dConfig},
        tensor::{Device, Distribution, Tensor, activation::relu, module, ops::ConvOptions},
    },
    networks::{
        conv_grad::{self, weight_grad_shifted},
        vgg::{Architecture, ConvLayer, conv_layers},
    },
};

mod support;

/// [`support::median_seconds`] in milliseconds.
fn median_ms(budget: Duration, f: impl FnMut()) -> f64 {
    support::median_seconds(budget, f) * 1e3
}

/// Reads a tensor back, so that the timed work is done.
fn touch(t: Tensor<4>) {
    let data = t.into_data();
    std::hint::black_box(data.as_slice::<f32>().map(|s| s[0]).unwrap_or_default());
}

struct Args {
    architecture: Architecture,
    input_size: usize,
    batch_size: usize,
    budget: Duration,
}

fn args() -> Args {
    let mut parsed = Args {
        architecture: Architecture::TinyAgeNet,
        input_size: 64,
        batch_size: 32,
        budget: Duration::from_millis(400),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        // `cargo bench` adds `--bench`; anything else unknown is a mistake.
        let mut value = || it.next().unwrap_or_default();
        match flag.as_str() {
            "--bench" => {}
            "--arch" => {
                let name = value();
                parsed.architecture = Architecture::ALL
                    .into_iter()
                    .find(|a| a.name() == name && *a != Architecture::Pretrained)
                    .unwrap_or_else(|| {
                        exit(&format!(
                            "--arch {name}: takes vgg16, vgg16-bn, thin-age-net or tiny-age-net"
                        ))
                    });
            }
            "--input-size" => parsed.input_size = number(&flag, &value()),
            "--batch-size" => parsed.batch_size = number(&flag, &value()),
            "--budget-ms" => parsed.budget = Duration::from_millis(number(&flag, &value()) as u64),
            other => exit(&format!(
                "train_layers takes --arch, --input-size, --batch-size, --budget-ms; not `{other}`"
            )),
        }
    }
    if parsed.input_size < 32 {
        exit("--input-size: at least 32 (five 2×2 max-pools)");
    }
    parsed
}

fn number(flag: &str, value: &str) -> usize {
    value.parse().ok().filter(|&n| n > 0).unwrap_or_else(|| {
        exit(&format!(
            "{flag} takes a whole number above 0, not `{value}`"
        ))
    })
}

fn exit(message: &str) -> ! {
    eprintln!("train_layers: {message}");
    std::process::exit(2)
}

fn main() {
    let args = args();
    let device = Device::flex().autodiff();
    let plain = Device::flex();
    let batch_norm = args.architecture != Architecture::Vgg16;
    let n = args.batch_size;
    // Consecutive layers of one shape are timed once and counted (the pool once, if one ends
    // the run).
    let mut layers: Vec<(ConvLayer, usize)> = Vec::new();
    for layer in conv_layers(args.architecture, args.input_size) {
        let same = |l: &ConvLayer| {
            (l.in_channels, l.out_channels, l.size)
                == (layer.in_channels, layer.out_channels, layer.size)
        };
        match layers.last_mut() {
            Some((last, count)) if same(last) => {
                *count += 1;
                last.pooled |= layer.pooled;
            }
            _ => layers.push((layer, 1)),
        }
    }
    let mut rows = Vec::new();
    for (layer, count) in layers {
        let (c, co, s) = (layer.in_channels, layer.out_channels, layer.size);
        eprintln!("train_layers: conv {c}→{co} at {s} px");
        let random = |shape: [usize; 4], device: &Device| {
            Tensor::<4>::random(shape, Distribution::Default, device)
        };
        let x = random([n, c, s, s], &device).require_grad();
        let y = random([n, co, s, s], &device).require_grad();
        // A random weighting of each output, so that the gradient flowing back is an ordinary
        // dense tensor, as in a network.
        let weighting = random([n, co, s, s], &device);
        let weighting_pooled = random([n, co, s / 2, s / 2], &device);
        let conv = Conv2dConfig::new([c, co], [3, 3])
            .with_padding(PaddingConfig2d::Same)
            .with_bias(!batch_norm)
            .init(&device);
        let norm = BatchNormConfig::new(co).init(&device);
        let pool = MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init();
        let backward = |out: Tensor<4>, input: &Tensor<4>| {
            let weighting = if out.dims()[2] == s {
                weighting.clone()
            } else {
                weighting_pooled.clone()
            };
            let grads = (out * weighting).sum().backward();
            if let Some(g) = input.grad(&grads) {
                touch(g);
            }
        };
        let budget = args.budget;
        // As the stream's `ConvBlock` runs it.
        let conv_ms = median_ms(budget, || {
            backward(conv_grad::forward(&conv, x.clone()), &x)
        });
        let norm_ms =
            batch_norm.then(|| median_ms(budget, || backward(norm.forward(y.clone()), &y)));
        let relu_ms = median_ms(budget, || backward(relu(y.clone()), &y));
        let pool_ms = layer
            .pooled
            .then(|| median_ms(budget, || backward(pool.forward(y.clone()), &y)));

        let xp = random([n, c, s, s], &plain);
        let wp = random([co, c, 3, 3], &plain);
        let gp = random([n, co, s, s], &plain);
        let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
        let flex_wgrad = median_ms(budget, || {
            touch(module::conv2d_weight_backward(
                xp.clone(),
                wp.clone(),
                gp.clone(),
                options.clone(),
            ))
        });
        let shifted_wgrad = median_ms(budget, || {
            touch(weight_grad_shifted(xp.clone(), gp.clone()))
        });
        // The two weight gradients agree (else the comparison means nothing).
        let reference =
            module::conv2d_weight_backward(xp.clone(), wp.clone(), gp.clone(), options.clone());
        let difference = (reference.clone() - weight_grad_shifted(xp, gp))
            .abs()
            .max()
            / reference.abs().max();
        let difference = difference.into_scalar::<f32>();
        assert!(
            difference < 1e-4,
            "the shifted weight gradient differs from flex's by {difference:e} (relative)"
        );
        rows.push(serde_json::json!({
            "in_channels": c, "out_channels": co, "size": s, "count": count,
            "conv": conv_ms, "batch_norm": norm_ms, "relu": relu_ms, "pool": pool_ms,
            "weight_grad": flex_wgrad, "weight_grad_shifted": shifted_wgrad,
        }));
    }
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    println!(
        "{}",
        serde_json::json!({
            "runtime": "burn (flex, autodiff)",
            "threads": threads,
            "architecture": args.architecture.name(),
            "input_size": args.input_size,
            "batch_size": args.batch_size,
            "layers": rows,
        })
    );
}
