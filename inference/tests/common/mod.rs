//! What the inference tests share beyond [`edge_testkit`]'s process handles
//! and HTTP client: the binary under test, a tiny model written by it, and a
//! PNG decoder.

#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub const BIN: &str = env!("CARGO_BIN_EXE_edge-inference");

/// A tiny model written by the binary's own `tiny-model` subcommand.
pub fn tiny_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN).arg("tiny-model").arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "tiny-model failed: {}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// `edge-inference serve` on `model_dir`, answering 64×64 when a request
/// names no size (the tiny models' cheapest).
pub fn worker(model_dir: &Path) -> edge_testkit::WorkerBuilder {
    edge_testkit::WorkerBuilder::new(BIN, model_dir).flag("default-size", "64x64")
}

/// Decodes a PNG: (width, height, RGB bytes).
pub fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("valid PNG header");
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).expect("valid PNG data");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}
