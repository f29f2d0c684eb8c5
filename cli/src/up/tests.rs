use clap::Parser;

use super::*;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    up: UpArgs,
}

/// With `--model-dir`, the worker gets no request defaults from `up`: it takes the
/// checkout's own (`edge-inference serve` reads them from the model: an SD-Turbo checkout
/// runs 1 step without guidance at 512², see inference/tests/family.rs). It computes on the
/// CPU and reports as the CPU Deployment's worker.
#[test]
fn a_real_checkout_gets_its_own_defaults_on_the_cpu() {
    let args = Cli::parse_from(["up", "--model-dir", "/m/sd-turbo"]).up;
    let real = worker_args(&args, &Model { dir: "/m/sd-turbo".into(), tiny: false });
    assert!(!real.iter().any(|a| a.starts_with("--default-")), "{real:?}");
    assert!(real.contains(&"--device=cpu".to_owned()) && real.contains(&"--accelerator=cpu".to_owned()));
    let tiny = worker_args(&args, &Model { dir: "/cache/tiny".into(), tiny: true });
    assert!(tiny.contains(&"--default-size=64x64".to_owned()), "{tiny:?}");
}
