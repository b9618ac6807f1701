//! The threaded build of the page's CPU backend: the `web` crate with its `threads` feature
//! (rayon's pool on web workers through wasm-bindgen-rayon, no WebGPU), compiled with shared
//! memory and atomics. That needs nightly Rust with `-Z build-std` (the standard library built
//! again with atomics), so it has a toolchain and a target folder of its own
//! (`<target>/threads`); the page's standard build stays on stable.
//!
//! `cargo xtask demo` writes it beside the standard module (`dist/threads-<digest>/`) and names
//! it in the page's module element, which runs it when the page is cross-origin isolated.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use sha2::{Digest, Sha256};

use crate::{Result, WASM_TARGET, output, run, target_dir, workspace_root};

/// The nightly toolchain installed when none is (the one this build was tried with);
/// `APPARENT_AGE_NIGHTLY` names another.
const PINNED_NIGHTLY: &str = "nightly-2026-05-20";

/// The threaded module's memory limit (shared memory must declare one): 2 GiB.
const MAX_MEMORY: u64 = 2 << 30;

/// The nightly toolchain to build with, installed (with `rust-src`) when missing.
pub fn nightly() -> Result<String> {
    let toolchain = std::env::var("APPARENT_AGE_NIGHTLY").unwrap_or_else(|_| {
        // A nightly already installed (the image has one) saves a download.
        if output("rustup", &["run", "nightly", "rustc", "--version"]).is_some() {
            "nightly".to_string()
        } else {
            PINNED_NIGHTLY.to_string()
        }
    });
    if output("rustup", &["run", &toolchain, "rustc", "--version"]).is_none() {
        let mut install = Command::new("rustup");
        install.args([
            "toolchain",
            "install",
            &toolchain,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]);
        run(
            &format!("installing Rust {toolchain} for the threaded CPU build (once)"),
            install,
        )?;
    }
    let components = output(
        "rustup",
        &[
            "component",
            "list",
            "--installed",
            "--toolchain",
            &toolchain,
        ],
    )
    .unwrap_or_default();
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        let mut add = Command::new("rustup");
        add.args(["component", "add", "rust-src", "--toolchain", &toolchain]);
        run(&format!("installing rust-src for {toolchain} (once)"), add)?;
    }
    Ok(toolchain)
}

/// Builds the threaded module into `dist/threads-<digest>/` (`web.js`, `web_bg.wasm` and
/// wasm-bindgen-rayon's worker script) and returns the two files' paths from `dist/`.
pub fn build(dist: &Path) -> Result<(String, String)> {
    let toolchain = nightly()?;
    let target = target_dir().join("threads");
    let mut cargo = Command::new("rustup");
    cargo
        .current_dir(workspace_root())
        .args([
            "run",
            &toolchain,
            "cargo",
            "build",
            "--locked",
            "-Z",
            "build-std=panic_abort,std",
            "--target",
            WASM_TARGET,
            "-p",
            "web",
            "--profile",
            "web-threads",
            "--no-default-features",
            "--features",
            "threads",
        ])
        .arg("--target-dir")
        .arg(&target)
        // Atomics, and one memory shared by the threads: imported (each thread instantiates
        // the module on it), with a limit, and the thread-local storage's symbols exported for
        // wasm-bindgen. wasm SIMD as in the standard build (`.cargo/config.toml`, which this
        // replaces).
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                "-C".to_string(),
                "target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128".to_string(),
            ]
            .into_iter()
            .chain(
                [
                    "--shared-memory".to_string(),
                    "--import-memory".to_string(),
                    format!("--max-memory={MAX_MEMORY}"),
                    "--export=__wasm_init_tls".to_string(),
                    "--export=__tls_size".to_string(),
                    "--export=__tls_align".to_string(),
                    "--export=__tls_base".to_string(),
                ]
                .into_iter()
                .flat_map(|arg| ["-C".to_string(), format!("link-arg={arg}")]),
            )
            .collect::<Vec<_>>()
            .join("\x1f"),
        )
        .env_remove("RUSTFLAGS");
    run(
        &format!("building the threaded CPU backend ({toolchain}, -Z build-std)"),
        cargo,
    )?;
    let wasm: PathBuf = target.join(WASM_TARGET).join("web-threads/web.wasm");
    let bytes = std::fs::read(&wasm).map_err(|e| format!("{}: {e}", wasm.display()))?;
    let digest: String = Sha256::digest(&bytes)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Only this build's folder stays: an older one is stale.
    if let Ok(entries) = std::fs::read_dir(dist) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with("threads-") {
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| format!("{}: {e}", entry.path().display()))?;
            }
        }
    }
    let folder = format!("threads-{digest}");
    let mut bindgen = Command::new("wasm-bindgen");
    bindgen
        .args(["--target", "web", "--no-typescript", "--out-name", "web"])
        .arg("--out-dir")
        .arg(dist.join(&folder))
        .arg(&wasm);
    run("wasm-bindgen for the threaded CPU backend", bindgen)?;
    Ok((
        format!("/{folder}/web.js"),
        format!("/{folder}/web_bg.wasm"),
    ))
}

/// Names the threaded module in the page's module element (`data-threads-glue`,
/// `data-threads-wasm`).
pub fn name_in_page(html: &str, glue: &str, wasm: &str) -> Result<String> {
    const ELEMENT: &str = "<meta name=\"apparent-age-module\"";
    if !html.contains(ELEMENT) {
        return Err("dist/index.html has no module element to name the threaded build in".into());
    }
    Ok(html.replacen(
        ELEMENT,
        &format!("{ELEMENT} data-threads-glue=\"{glue}\" data-threads-wasm=\"{wasm}\""),
        1,
    ))
}
