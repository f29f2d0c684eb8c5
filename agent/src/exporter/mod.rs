//! Exporters: each renders the node snapshot for one kind of reader. None of
//! them polls a device; they only read what the collectors stored.

pub mod cloudwatch;
pub mod prometheus;
pub mod samples;
pub mod stream;
