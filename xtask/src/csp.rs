//! The demo page's Content-Security-Policy, written into the built page (`dist/index.html`)
//! after `trunk build`: the page may load its own files and nothing else, so that no build that
//! ships can send a frame, or anything, to another server, whoever serves it. The page's own
//! script (`page.js`) and the worker's are its own files, allowed as `'self'`; any inline script
//! (trunk's loader, whose file names change with every build, where one is emitted) and its
//! style sheet are allowed by their sha256, so the policy is computed from the built file.

use std::{fs, path::Path};

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::Result;

/// The policy, with the hashes of the inline scripts and styles in `scripts` and `styles`.
pub fn policy(scripts: &[String], styles: &[String]) -> String {
    let hashes = |blocks: &[String]| -> String {
        blocks
            .iter()
            .map(|b| {
                let digest = Sha256::digest(b.as_bytes());
                format!(
                    " 'sha256-{}'",
                    base64::engine::general_purpose::STANDARD.encode(digest)
                )
            })
            .collect()
    };
    format!(
        "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'{}; style-src 'self'{}; \
         img-src 'self' data: blob:; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; \
         form-action 'none'",
        hashes(scripts),
        hashes(styles)
    )
}

/// The contents of every inline `<tag>` element (one without a `src`) in `html`.
fn inline_blocks(html: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}"), format!("</{tag}>"));
    let mut blocks = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end_of_tag) = after.find('>') else {
            break;
        };
        let attributes = &after[..end_of_tag];
        let body = &after[end_of_tag + 1..];
        let Some(end) = body.find(&close) else {
            break;
        };
        if !attributes.contains("src=") {
            blocks.push(body[..end].to_string());
        }
        rest = &body[end + close.len()..];
    }
    blocks
}

/// Writes the policy into `index` as the first element of its `<head>`, replacing one written
/// before.
pub fn pin(index: &Path) -> Result<()> {
    let html =
        fs::read_to_string(index).map_err(|e| format!("cannot read {}: {e}", index.display()))?;
    const MARK: &str = "<meta http-equiv=\"Content-Security-Policy\"";
    let html = match html.find(MARK) {
        Some(at) => {
            let end = html[at..].find('>').map_or(html.len(), |e| at + e + 1);
            format!("{}{}", &html[..at], html[end..].trim_start_matches('\n'))
        }
        None => html,
    };
    let policy = policy(
        &inline_blocks(&html, "script"),
        &inline_blocks(&html, "style"),
    );
    let Some(head) = html.find("<head>") else {
        return Err(format!("{} has no <head>", index.display()));
    };
    let at = head + "<head>".len();
    let pinned = format!(
        "{}\n  {MARK} content=\"{policy}\">{}",
        &html[..at],
        &html[at..]
    );
    fs::write(index, pinned).map_err(|e| format!("cannot write {}: {e}", index.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_scripts_and_styles_are_hashed_linked_ones_are_not() {
        let html = "<head><script type=\"module\">a()</script><script src=\"/x.js\"></script>\
                    <style>p{}</style></head>";
        assert_eq!(inline_blocks(html, "script"), ["a()"]);
        assert_eq!(inline_blocks(html, "style"), ["p{}"]);
        let policy = policy(&["a()".into()], &[]);
        assert!(
            policy.starts_with("default-src 'self'; script-src 'self' 'wasm-unsafe-eval' 'sha256-")
        );
        assert!(!policy.contains("unsafe-inline"));
    }
}
