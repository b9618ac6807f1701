//! A run's checkpoints: after every epoch, the weights, the optimiser's state and the run's
//! state in a folder of their own under `checkpoints/`, and `checkpoints/latest.json` pointing at
//! the last complete one, so that a run resumes from where it stopped.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use dldl::{
    burn::{module::Module, optim::ModuleOptimizer, tensor::Device},
    distribution::metrics::MetricsReport,
    networks::vgg::{AgeNet, AgeNetConfig},
};
use serde::{Deserialize, Serialize};

use crate::{
    artifacts::card::{WEIGHTS_FILE, load_weights},
    files,
    train::spec::{OptimizerSpec, RunSpec},
};

/// What a checkpoint holds besides the weights and the optimiser.
/// One epoch of a run, as the learning curves, the checkpoint and the summary record it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub learning_rate: f64,
    pub train_loss: f64,
    pub validation: Option<MetricsReport>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointState {
    pub spec: RunSpec,
    pub epochs_done: usize,
    pub history: Vec<EpochLog>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LatestPointer {
    pub epoch: usize,
    pub folder: String,
}

pub(crate) fn checkpoints_dir(out: &Path) -> PathBuf {
    out.join("checkpoints")
}

pub(crate) fn latest_path(out: &Path) -> PathBuf {
    checkpoints_dir(out).join("latest.json")
}

/// Writes a checkpoint folder and then points `latest.json` at it; only then are older
/// checkpoints removed, so a crash at any moment leaves a complete checkpoint to resume from.
pub(crate) fn save_checkpoint(
    out: &Path,
    model: &AgeNet,
    optim: &ModuleOptimizer,
    state: &CheckpointState,
) -> Result<()> {
    let dir = checkpoints_dir(out);
    let name = format!("epoch-{:04}", state.epochs_done);
    fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A folder of its own for every writer: two runs into one folder never share a staging area.
    let prefix = format!("{name}.tmp-");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    // The mode `create_dir` gives (the umask applies), not a temporary folder's private one.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o777));
    let staging_dir = builder
        .tempdir_in(&dir)
        .with_context(|| format!("cannot create a staging folder in {}", dir.display()))?;
    let staging = staging_dir.path().to_path_buf();
    let target = dir.join(&name);
    model
        .clone()
        .into_record()
        .save(staging.join(WEIGHTS_FILE))
        .map_err(|e| anyhow::anyhow!("cannot write the checkpoint's weights: {e}"))?;
    optim
        .save(staging.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("cannot write the checkpoint's optimiser state: {e}"))?;
    fs::write(
        staging.join("state.json"),
        serde_json::to_vec_pretty(state)?,
    )?;
    for entry in fs::read_dir(&staging)? {
        fs::File::open(entry?.path())?.sync_all()?;
    }
    if target.exists() {
        // Left by a run that crashed before pointing `latest.json` at it.
        fs::remove_dir_all(&target)?;
    }
    fs::rename(&staging, &target)
        .with_context(|| format!("cannot move the checkpoint into {}", target.display()))?;
    // Moved into place: nothing is left for the staging folder's guard to remove.
    let _ = staging_dir.keep();
    let pointer = LatestPointer {
        epoch: state.epochs_done,
        folder: name.clone(),
    };
    files::write(&latest_path(out), &serde_json::to_vec_pretty(&pointer)?)?;
    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() && file_name.starts_with("epoch-") && file_name != name {
            let _ = fs::remove_dir_all(&path);
        }
    }
    Ok(())
}

pub(crate) fn load_checkpoint(
    out: &Path,
    config: &AgeNetConfig,
    optimizer: &OptimizerSpec,
    device: &Device,
) -> Result<(AgeNet, ModuleOptimizer, CheckpointState)> {
    let pointer: LatestPointer = serde_json::from_slice(
        &fs::read(latest_path(out)).context("cannot read checkpoints/latest.json")?,
    )
    .context("checkpoints/latest.json is corrupt")?;
    let dir = checkpoints_dir(out).join(&pointer.folder);
    let state: CheckpointState = serde_json::from_slice(
        &fs::read(dir.join("state.json"))
            .with_context(|| format!("cannot read {}", dir.join("state.json").display()))?,
    )
    .context("the checkpoint's state.json is corrupt")?;
    let model = load_weights(config, &dir.join(WEIGHTS_FILE), device)?;
    let optim = optimizer
        .init()
        .load(dir.join("optimizer.bpk"))
        .map_err(|e| anyhow::anyhow!("cannot read the checkpoint's optimiser state: {e}"))?;
    Ok((model, optim, state))
}
