//! The demo page's browser peer for `cargo xtask bench-page`: face-api.js (npm's
//! `@vladmandic/face-api` 1.7.15, TinyFaceDetector + AgeGenderNet) on tfjs's wasm backend
//! (`@tensorflow/tfjs-backend-wasm` 4.22.0, the tfjs that face-api 1.7.15 bundles). Both come
//! from npm's registry as tarballs pinned by the sha512 npm lists for them, kept in
//! `~/.cache/apparent-age/npm/`; the files the benchmark serves are unpacked with its own page
//! (`xtask/benches/face-api/index.html`) into `~/.cache/apparent-age/face-api/`. Never shipped:
//! only the benchmark serves this folder.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use base64::Engine;
use sha2::{Digest, Sha512};

use crate::{Result, cache_dir, workspace_root};

struct Tarball {
    name: &'static str,
    url: &'static str,
    /// npm's `dist.integrity`: sha512, base64.
    sha512: &'static str,
    /// The members to unpack (paths inside the tarball, under `package/`) and where they go in
    /// the served folder.
    members: &'static [(&'static str, &'static str)],
}

const FACE_API: Tarball = Tarball {
    name: "@vladmandic/face-api 1.7.15",
    url: "https://registry.npmjs.org/@vladmandic/face-api/-/face-api-1.7.15.tgz",
    sha512: "WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
    members: &[
        ("package/dist/face-api.esm.js", "face-api.esm.js"),
        ("package/LICENSE", "LICENSE-face-api"),
        (
            "package/model/tiny_face_detector_model-weights_manifest.json",
            "model/tiny_face_detector_model-weights_manifest.json",
        ),
        (
            "package/model/tiny_face_detector_model.bin",
            "model/tiny_face_detector_model.bin",
        ),
        (
            "package/model/age_gender_model-weights_manifest.json",
            "model/age_gender_model-weights_manifest.json",
        ),
        (
            "package/model/age_gender_model.bin",
            "model/age_gender_model.bin",
        ),
    ],
};

const TFJS_WASM: Tarball = Tarball {
    name: "@tensorflow/tfjs-backend-wasm 4.22.0",
    url: "https://registry.npmjs.org/@tensorflow/tfjs-backend-wasm/-/tfjs-backend-wasm-4.22.0.tgz",
    sha512: "/IYhReRIp4jg/wYW0OwbbJZG8ON87mbz0PgkiP3CdcACRSvUN0h8rvC0O3YcDtkTQtFWF/tcXq/KlVDyV49wmA==",
    members: &[
        (
            "package/dist/tfjs-backend-wasm.wasm",
            "tfjs-backend-wasm.wasm",
        ),
        (
            "package/dist/tfjs-backend-wasm-simd.wasm",
            "tfjs-backend-wasm-simd.wasm",
        ),
        (
            "package/dist/tfjs-backend-wasm-threaded-simd.wasm",
            "tfjs-backend-wasm-threaded-simd.wasm",
        ),
    ],
};

/// The tarball's bytes: from the cache when they match the pin, else downloaded and checked.
fn tarball(t: &Tarball) -> Result<Vec<u8>> {
    let cache = cache_dir().join("npm");
    let file = cache.join(t.url.rsplit('/').next().unwrap_or("package.tgz"));
    let matches = |bytes: &[u8]| {
        base64::engine::general_purpose::STANDARD.encode(Sha512::digest(bytes)) == t.sha512
    };
    if let Ok(bytes) = fs::read(&file)
        && matches(&bytes)
    {
        return Ok(bytes);
    }
    eprintln!("xtask: downloading {} from npm's registry", t.name);
    let mut bytes = Vec::new();
    ureq::get(t.url)
        .call()
        .map_err(|e| {
            format!(
                "cannot download {}: {e}; npm's registry must be reachable for the page's peer",
                t.url
            )
        })?
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("the download of {} broke off: {e}; try again", t.url))?;
    if !matches(&bytes) {
        return Err(format!(
            "{} does not match the sha512 npm lists for {}; try again",
            t.url, t.name
        ));
    }
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    crate::fetch::write_atomically(&file, &bytes)?;
    Ok(bytes)
}

fn unpack(t: &Tarball, into: &Path) -> Result<()> {
    let bytes = tarball(t)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut left: Vec<&(&str, &str)> = t.members.iter().collect();
    let entries = archive
        .entries()
        .map_err(|e| format!("{} is not a tarball: {e}", t.name))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{} is damaged: {e}", t.name))?;
        let path = entry
            .path()
            .map_err(|e| format!("{}: {e}", t.name))?
            .to_string_lossy()
            .into_owned();
        if let Some(at) = left.iter().position(|(member, _)| *member == path) {
            let target = into.join(left[at].1);
            let mut data = Vec::new();
            entry
                .read_to_end(&mut data)
                .map_err(|e| format!("{}: {path}: {e}", t.name))?;
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            fs::write(&target, data)
                .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
            left.remove(at);
        }
    }
    match left.first() {
        Some((member, _)) => Err(format!("{} has no {member}", t.name)),
        None => Ok(()),
    }
}

/// The folder the benchmark serves face-api.js from, written when missing.
pub fn face_api() -> Result<PathBuf> {
    let folder = cache_dir().join("face-api");
    let page = workspace_root().join("xtask/benches/face-api/index.html");
    let complete = FACE_API
        .members
        .iter()
        .chain(TFJS_WASM.members)
        .all(|(_, to)| folder.join(to).is_file());
    if !complete {
        for t in [&FACE_API, &TFJS_WASM] {
            unpack(t, &folder)?;
        }
    }
    // The peer's page is the repository's, copied each time.
    fs::copy(&page, folder.join("index.html"))
        .map_err(|e| format!("cannot copy {}: {e}", page.display()))?;
    Ok(folder)
}
