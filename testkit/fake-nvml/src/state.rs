//! The library's global state: whether NVML is initialised, and the config
//! file, re-read whenever it changes so a test can change values or lose a
//! GPU while the agent runs.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use crate::code::{self, Return};
use crate::config::Config;

/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "FAKE_NVML_CONFIG";

/// NVML counts `nvmlInit` calls; queries work until as many `nvmlShutdown`s.
static INITS: AtomicU32 = AtomicU32::new(0);
static SOURCE: Mutex<Option<Source>> = Mutex::new(None);

/// Identifies one version of the file: tests replace it by renaming a new
/// file over it (new inode), or rewrite it (new mtime or size).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stamp {
    modified: SystemTime,
    len: u64,
    inode: u64,
}

struct Source {
    path: PathBuf,
    stamp: Option<Stamp>,
    config: Result<Arc<Config>, String>,
}

impl Source {
    fn new(path: PathBuf) -> Self {
        let mut s = Source { path, stamp: None, config: Err("not read yet".to_owned()) };
        s.reload(stamp(&s.path));
        s
    }

    /// Re-reads the file if it changed since the last read.
    fn refresh(&mut self) {
        let now = stamp(&self.path);
        if now != self.stamp {
            self.reload(now);
        }
    }

    fn reload(&mut self, now: Option<Stamp>) {
        self.stamp = now;
        self.config = std::fs::read_to_string(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|text| Config::parse(&text))
            .map(Arc::new);
        if let Err(e) = &self.config {
            // The agent logs our stderr: this is how a broken test config shows up.
            eprintln!("fake-nvml: {}: {e}", self.path.display());
        }
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: m.modified().ok()?, len: m.len(), inode: m.ino() })
}

fn source() -> std::sync::MutexGuard<'static, Option<Source>> {
    SOURCE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `nvmlInit`: reads the config named by [`CONFIG_ENV`]; a missing or bad
/// config fails like a machine without a working driver.
pub fn init() -> Return {
    let Some(path) = std::env::var_os(CONFIG_ENV) else {
        eprintln!("fake-nvml: {CONFIG_ENV} is not set");
        return code::UNINITIALIZED;
    };
    let loaded = Source::new(PathBuf::from(path));
    if loaded.config.is_err() {
        return code::UNINITIALIZED;
    }
    *source() = Some(loaded);
    INITS.fetch_add(1, Ordering::AcqRel);
    code::SUCCESS
}

/// `nvmlShutdown`.
pub fn shutdown() -> Return {
    match INITS.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1)) {
        Ok(_) => code::SUCCESS,
        Err(_) => code::UNINITIALIZED,
    }
}

/// The current config, for a query; `UNINITIALIZED` before `nvmlInit`,
/// `UNKNOWN` while the file is missing or invalid.
pub fn config() -> Result<Arc<Config>, Return> {
    if INITS.load(Ordering::Acquire) == 0 {
        return Err(code::UNINITIALIZED);
    }
    let mut guard = source();
    let source = guard.as_mut().ok_or(code::UNINITIALIZED)?;
    source.refresh();
    source.config.clone().map_err(|_| code::UNKNOWN)
}
