//! Where a part's weights are on disk (single file, fp16 variant or shards)
//! and how they are mapped.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::LoadError;

/// The weight files of one part: `STEM.safetensors`, `STEM.fp16.safetensors`, or a sharded
/// `STEM[.fp16].safetensors.index.json` (its `weight_map`'s files). Under f16 the `.fp16`
/// variant comes first (half the bytes to map), otherwise the full-precision one.
pub fn weights(dir: &Path, stem: &str, dtype: DType) -> Result<Vec<PathBuf>, LoadError> {
    let full = [format!("{stem}.safetensors"), format!("{stem}.safetensors.index.json")];
    let half = [format!("{stem}.fp16.safetensors"), format!("{stem}.fp16.safetensors.index.json")];
    let names: Vec<&String> =
        if dtype == DType::F16 { half.iter().chain(&full).collect() } else { full.iter().chain(&half).collect() };
    let Some(found) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) else {
        let expected = names.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ");
        return Err(LoadError::MissingWeights { dir: dir.into(), expected });
    };
    if !found.to_string_lossy().ends_with(".index.json") {
        return Ok(vec![found]);
    }
    let bad = |reason: String| LoadError::Mismatch { path: found.clone(), reason };
    let text = std::fs::read_to_string(&found).map_err(|e| bad(format!("cannot read: {e}")))?;
    let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
    let map = index
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad("no \"weight_map\" object (tensor name -> shard file)".into()))?;
    let mut shards: Vec<PathBuf> = Vec::new();
    for (tensor, file) in map {
        let file = file.as_str().ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a file name")))?;
        if file.contains('/') || file.contains("..") {
            return Err(bad(format!("weight_map[{tensor:?}] = {file:?} is not a file in {}", dir.display())));
        }
        let path = dir.join(file);
        if !shards.contains(&path) {
            if !path.is_file() {
                return Err(bad(format!("shard {file:?} (for {tensor:?}) is missing")));
            }
            shards.push(path);
        }
    }
    if shards.is_empty() {
        return Err(bad("weight_map is empty".into()));
    }
    shards.sort();
    Ok(shards)
}

/// Builds a part from its memory-mapped weight files, naming the file (or the shards) on error.
pub(super) fn with_weights<T>(
    paths: &[PathBuf],
    dtype: DType,
    device: &Device,
    build: impl FnOnce(VarBuilder) -> candle_core::Result<T>,
) -> Result<T, LoadError> {
    let path = if paths.len() == 1 {
        paths[0].clone()
    } else {
        // Name the shards' directory and how many; candle names the tensor.
        let dir = paths[0].parent().map(Path::to_path_buf).unwrap_or_default();
        dir.join(format!("<{} shards>", paths.len()))
    };
    let err = |source| LoadError::Weights { path: path.clone(), source };
    // SAFETY: the weights are memory-mapped; the model directory is mounted
    // read-only (or owned by us), so the files do not change under the map.
    let vb = unsafe { VarBuilder::from_mmaped_safetensors(paths, dtype, device) }.map_err(err)?;
    build(vb).map_err(err)
}
