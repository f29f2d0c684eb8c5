//! Where the other binaries and the cached tiny model are.

use std::path::PathBuf;

use anyhow::{Context, bail};

/// A workspace binary next to this executable (`target/debug/edge-agent`
/// beside `target/debug/edge-diffusion`, or one install directory).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let dir = exe.parent().context("this executable has no parent directory")?;
    let path = dir.join(name);
    if !path.is_file() {
        bail!("{name} not found in {}: build the workspace first with `cargo build --workspace`", dir.display());
    }
    Ok(path)
}

/// `$XDG_CACHE_HOME/edge-diffusion`, else `$HOME/.cache/edge-diffusion`.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).filter(|d| d.is_absolute()) {
        return Ok(dir.join("edge-diffusion"));
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".cache/edge-diffusion")),
        _ => bail!("neither XDG_CACHE_HOME nor HOME is set: pass --model-dir or set one of them"),
    }
}
