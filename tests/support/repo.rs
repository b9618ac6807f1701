//! The repository's folders and the files `cargo xtask fetch-models` and `fetch-portraits` put
//! there.

use std::path::{Path, PathBuf};

/// The repository's root (every test crate lives one folder below it): from
/// `CARGO_MANIFEST_DIR` as `cargo test` sets it when it runs the test, so that a test binary
/// built by a clone at another path (one target folder serves every clone, and cargo reuses a
/// build whose sources are no newer) reads this clone's files; the folder it was compiled in
/// otherwise.
pub fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
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
