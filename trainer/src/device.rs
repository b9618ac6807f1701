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
}

/// The device for `choice`, with a description for logs and model cards.
pub fn select(choice: DeviceChoice) -> Result<(Device, String)> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::flex(), "cpu (burn flex)".to_string())),
        DeviceChoice::Wgpu => wgpu_adapter(true),
        DeviceChoice::Cuda => cuda(),
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
