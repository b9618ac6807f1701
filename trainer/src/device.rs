//! Choosing where tensors live: burn's CPU backend, or a GPU through wgpu or CUDA.

use anyhow::Result;
use clap::ValueEnum;
use dldl::burn::tensor::{Device, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// A GPU through wgpu when one is found, else the CPU.
    Auto,
    /// burn's CPU backend (flex).
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal or DX12), else any wgpu adapter (a software
    /// rasteriser such as lavapipe included); fails when there is none.
    Wgpu,
    /// An NVIDIA GPU through CUDA (needs a build with `--features cuda`).
    Cuda,
    /// burn's ndarray CPU backend, deprecated in burn 0.22 (needs a build with `--features
    /// ndarray`, or `openblas` for its matrix products through OpenBLAS); for comparing the CPU
    /// backends (`cargo xtask bench-backends`).
    Ndarray,
}

/// The device for `choice`, with a description for logs and model cards.
pub fn select(choice: DeviceChoice) -> Result<(Device, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::flex(), "cpu (burn flex)".to_string())),
        DeviceChoice::Wgpu => wgpu_adapter(true),
        DeviceChoice::Cuda => cuda(),
        DeviceChoice::Ndarray => ndarray(),
        DeviceChoice::Auto => Ok(wgpu_adapter(false).unwrap_or_else(|_| {
            (
                Device::flex(),
                "cpu (burn flex; no GPU adapter found)".to_string(),
            )
        })),
    }
}

/// A discrete, then an integrated GPU; with `any_adapter`, then whatever wgpu offers.
#[cfg(feature = "wgpu")]
fn wgpu_adapter(any_adapter: bool) -> Result<(Device, String)> {
    use dldl::burn::tensor::DeviceKind;
    let mut kinds = vec![DeviceKind::DiscreteGpu(0), DeviceKind::IntegratedGpu(0)];
    if any_adapter {
        kinds.push(DeviceKind::DefaultDevice);
    }
    let mut last_error = None;
    for kind in kinds {
        match Device::wgpu_options().device_kind(kind.clone()).init() {
            Ok(device) => return Ok((device, format!("wgpu {kind:?}"))),
            Err(e) => last_error = Some(e),
        }
    }
    anyhow::bail!(
        "no adapter found through wgpu ({}); install the GPU's Vulkan driver or use --device cpu",
        last_error.map(|e| e.to_string()).unwrap_or_default()
    )
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_adapter(_any_adapter: bool) -> Result<(Device, String)> {
    anyhow::bail!(
        "this trainer was built without the `wgpu` feature; rebuild with `--features wgpu` or use --device cpu"
    )
}

#[cfg(feature = "cuda")]
fn cuda() -> Result<(Device, String)> {
    Ok((Device::cuda(0), "cuda:0".to_string()))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<(Device, String)> {
    anyhow::bail!(
        "this trainer was built without CUDA; rebuild with `cargo build --release -p trainer --features cuda`"
    )
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // measured beside flex, the backend burn recommends
fn ndarray() -> Result<(Device, String)> {
    let blas = if cfg!(feature = "openblas") {
        "OpenBLAS"
    } else {
        "matrixmultiply"
    };
    Ok((Device::ndarray(), format!("cpu (burn ndarray, {blas})")))
}

#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Result<(Device, String)> {
    anyhow::bail!(
        "this trainer was built without burn's ndarray backend; rebuild with `cargo build \
         --release -p trainer --features ndarray` (or `openblas`), or use --device cpu"
    )
}

/// A tensor's values, read back from `device`: a device that fails (lost, out of memory) is an
/// error that names it, not a panic.
pub fn values<const D: usize>(tensor: Tensor<D>, device: &Device) -> Result<Vec<f32>> {
    tensor.try_into_vec_as::<f32>().map_err(|error| {
        anyhow::anyhow!(
            "cannot read the results back from the device {device:?}: {error}; rerun, or pick \
             another with --device"
        )
    })
}

/// The devices `--devices` (or a pipeline's `devices`) names, for data-parallel training: `cpu`,
/// `wgpu` (the adapter `--device wgpu` picks), `wgpu:N` (the N-th discrete GPU through wgpu) or
/// `cuda:N`, all of one kind. `cpu` may be named more than once (one CPU device, each part of
/// the batch in turn: for testing the data-parallel path); a GPU may not. Anything else is one
/// line listing the devices this machine has.
pub fn select_many(names: &[String]) -> Result<Vec<(Device, String)>> {
    let names: Vec<&str> = names.iter().map(|n| n.trim()).collect();
    let Some(first) = names.first() else {
        anyhow::bail!(
            "--devices names no device; devices here: {}",
            available().join(", ")
        );
    };
    let kind = |name: &str| name.split(':').next().unwrap_or_default().to_string();
    if let Some(other) = names.iter().find(|n| kind(n) != kind(first)) {
        anyhow::bail!(
            "--devices names devices of different kinds ({first} and {other}); data-parallel \
             training takes devices of one kind; devices here: {}",
            available().join(", ")
        );
    }
    let mut devices = Vec::new();
    for (i, name) in names.iter().enumerate() {
        if *name != "cpu" && names[..i].contains(name) {
            anyhow::bail!("--devices names {name} twice; name each GPU once");
        }
        let unknown = || {
            anyhow::anyhow!(
                "--devices: no device `{name}` here; devices here: {}",
                available().join(", ")
            )
        };
        let device = match name.split_once(':') {
            None if *name == "cpu" => select(DeviceChoice::Cpu)?,
            None if *name == "wgpu" => select(DeviceChoice::Wgpu).map_err(|_| unknown())?,
            Some(("wgpu", index)) => {
                let index: usize = index.parse().map_err(|_| unknown())?;
                wgpu_discrete(index).ok_or_else(unknown)?
            }
            Some(("cuda", index)) => {
                let index: usize = index.parse().map_err(|_| unknown())?;
                cuda_index(index).ok_or_else(unknown)?
            }
            _ => return Err(unknown()),
        };
        devices.push(device);
    }
    Ok(devices)
}

/// The N-th discrete GPU through wgpu, when there is one.
#[cfg(feature = "wgpu")]
fn wgpu_discrete(index: usize) -> Option<(Device, String)> {
    use dldl::burn::tensor::DeviceKind;
    let kind = DeviceKind::DiscreteGpu(index);
    let device = Device::wgpu_options()
        .device_kind(kind.clone())
        .init()
        .ok()?;
    Some((device, format!("wgpu {kind:?}")))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_discrete(_index: usize) -> Option<(Device, String)> {
    None
}

/// How many NVIDIA GPUs `nvidia-smi -L` lists.
fn nvidia_gpus() -> usize {
    std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("GPU "))
                .count()
        })
}

#[cfg(feature = "cuda")]
fn cuda_index(index: usize) -> Option<(Device, String)> {
    (index < nvidia_gpus()).then(|| (Device::cuda(index), format!("cuda:{index}")))
}

#[cfg(not(feature = "cuda"))]
fn cuda_index(_index: usize) -> Option<(Device, String)> {
    None
}

/// What `--devices` can name on this machine, with this build.
fn available() -> Vec<String> {
    let mut names = vec!["cpu".to_string()];
    names.extend((0..16).map_while(|i| wgpu_discrete(i).map(|_| format!("wgpu:{i}"))));
    let gpus = nvidia_gpus();
    if cfg!(feature = "cuda") {
        names.extend((0..gpus).map(|i| format!("cuda:{i}")));
    } else if gpus > 0 {
        names.push(format!(
            "(cuda:0–{} with a build with --features cuda)",
            gpus - 1
        ));
    }
    if select(DeviceChoice::Wgpu).is_ok() && !names.iter().any(|n| n.starts_with("wgpu:")) {
        names.push("wgpu (no discrete GPU: a software or integrated adapter)".to_string());
    }
    names
}
