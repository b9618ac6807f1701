//! The repository's folders and the files `cargo xtask fetch-models` and `fetch-portraits` put
//! there.

use std::path::{Path, PathBuf};

/// The repository's root (every test crate lives one folder below it).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A fetched file under the repository, or a failure naming the command that fetches it.
pub fn fetched(relative: &str, fetch: &str) -> PathBuf {
    let path = root().join(relative);
    assert!(
        path.exists(),
        "{} is missing; run `cargo xtask {fetch}`",
        path.display()
    );
    path
}

/// The bytes of a file, or a failure naming the command that fetches it.
pub fn read(path: &Path, fetch: &str) -> Vec<u8> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `cargo xtask {fetch}` first", path.display()))
}

/// A test portrait (`tests/fixtures/portraits/`).
pub fn portrait(name: &str) -> PathBuf {
    fetched(
        &format!("tests/fixtures/portraits/{name}"),
        "fetch-portraits",
    )
}

/// A test portrait, decoded to RGB.
pub fn portrait_rgb(name: &str) -> image::RgbImage {
    image::load_from_memory(&read(&portrait(name), "fetch-portraits"))
        .unwrap()
        .to_rgb8()
}

/// A model file (`models/`).
pub fn model(name: &str) -> PathBuf {
    fetched(&format!("models/{name}"), "fetch-models")
}

/// A path as the `&str` a command line takes.
pub fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Copies a folder and everything in it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
