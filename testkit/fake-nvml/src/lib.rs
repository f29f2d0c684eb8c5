//! A `libnvidia-ml.so` stand-in for tests.
//!
//! The agent loads it with the real `dlopen` path (`nvml-wrapper`'s
//! `Nvml::builder().lib_path(..)`) and calls the same C functions it calls on
//! a GPU node; the answers come from the JSON file named by
//! `FAKE_NVML_CONFIG` (see [`config`]), re-read whenever it changes.
//!
//! nvml-wrapper-sys resolves every symbol when the library is opened but keeps
//! a missing one as an error that only surfaces when that function is called,
//! so this library exports just the functions the agent's collector uses
//! (plus `nvmlSystemGetDriverVersion`, which `Nvml::init` asks for).
//!
//! No panic crosses into C: every export runs inside [`ffi::guard`].

pub mod code;
pub mod config;
pub mod device;
pub mod ffi;
pub mod gpm;
pub mod mig;
pub mod state;
pub mod system;
