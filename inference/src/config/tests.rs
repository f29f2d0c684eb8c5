use super::*;
use crate::cli::{Cli, Command};
use clap::Parser;

#[test]
fn labels_parse_as_kubernetes_labels() {
    let l = parse_labels(" app.kubernetes.io/name=sd, tier=gold ,canary=").unwrap();
    let pairs: Vec<_> = l.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(pairs, [("app.kubernetes.io/name", "sd"), ("canary", ""), ("tier", "gold")]);
    assert!(parse_labels("").unwrap().is_empty(), "the chart may pass an empty list");
    let too_many = (0..17).map(|i| format!("k{i}=v")).collect::<Vec<_>>().join(",");
    for (bad, needle) in [
        ("tier", "KEY=VALUE"),
        ("tier=a b", "not a label value"),
        ("-x=y", "not a label key"),
        ("a=1,a=2", "twice"),
        ("a=1,,b=2", "KEY=VALUE"),
        (too_many.as_str(), "at most 16"),
    ] {
        let err = parse_labels(bad).unwrap_err().to_string();
        assert!(err.contains(needle), "{bad}: {err}");
    }
}

#[test]
fn labels_go_into_every_report() {
    let cli = Cli::try_parse_from([
        "edge-inference",
        "serve",
        "--model-dir",
        "/m",
        "--deployment",
        "sd-cpu",
        "--labels",
        "app=sd,tier=gold",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else { panic!("serve") };
    let report = args.validate().unwrap().report_template(&candle_core::Device::Cpu).unwrap().unwrap();
    assert_eq!(report.labels.get("tier").map(String::as_str), Some("gold"));
    assert_eq!(report.labels.len(), 2);
    let err = Cli::try_parse_from(["edge-inference", "serve", "--model-dir", "/m", "--labels", "x=a b"]).unwrap_err();
    assert!(err.to_string().contains("--labels"), "{err}");
}

#[test]
fn the_advertised_url_is_checked_and_an_ipv6_host_bracketed() {
    assert_eq!(parse_advertise_url("http://10.0.3.7:30080").unwrap(), "http://10.0.3.7:30080");
    // What $(HOST_IP) gives on an IPv6 cluster.
    assert_eq!(parse_advertise_url("http://fd00:ec2::7:30080").unwrap(), "http://[fd00:ec2::7]:30080");
    assert_eq!(parse_advertise_url("http://[fd00::7]:30080/sd").unwrap(), "http://[fd00::7]:30080/sd");
    assert_eq!(parse_advertise_url("").unwrap(), "", "empty: not advertised");
    for bad in ["10.0.3.7:30080", "http://10.0.3.7", "http://:30080"] {
        assert!(parse_advertise_url(bad).unwrap_err().to_string().contains("expected an http"), "{bad}");
    }
    let serve = |url: &str| {
        let cli = Cli::try_parse_from(["edge-inference", "serve", "--model-dir", "/m", "--advertise-url", url]);
        let Command::Serve(args) = cli.unwrap().command else { panic!("serve") };
        args.validate().unwrap().report_template(&candle_core::Device::Cpu).unwrap().unwrap().endpoint
    };
    assert_eq!(serve("http://10.0.3.7:30080").as_deref(), Some("http://10.0.3.7:30080"));
    assert_eq!(serve(""), None);
}

#[test]
fn the_reported_accelerator_follows_the_device() {
    let serve = |extra: &[&str]| {
        let mut argv = vec!["edge-inference", "serve", "--model-dir", "/m"];
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else { panic!("serve") };
        args.validate().unwrap().report_template(&candle_core::Device::Cpu)
    };
    assert_eq!(serve(&[]).unwrap().unwrap().accelerator, AcceleratorType::Cpu);
    assert_eq!(serve(&["--accelerator", "cpu"]).unwrap().unwrap().accelerator, AcceleratorType::Cpu);
    // The chart's GPU pod on a CPU: refused, naming both sides.
    let err = serve(&["--accelerator", "nvidia"]).unwrap_err().to_string();
    assert!(err.contains("--accelerator nvidia") && err.contains("computes on cpu"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    let sim = serve(&["--simulated-accelerator", "neuron"]).unwrap().unwrap();
    assert_eq!(sim.accelerator, AcceleratorType::Neuron);
    let cli = Cli::try_parse_from(["edge-inference", "serve", "--model-dir", "/m"]).unwrap();
    let Command::Serve(args) = cli.command else { panic!("serve") };
    assert_eq!(args.model.device, DeviceRequest::Auto, "local runs pick the device");
}

fn serve_args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
    let mut argv = vec!["edge-inference", "serve", "--model-dir", "/m"];
    argv.extend_from_slice(extra);
    let Command::Serve(args) = Cli::try_parse_from(argv)?.command else { panic!("serve") };
    Ok(*args)
}

#[test]
fn serve_flags_are_checked_before_any_model_is_read() {
    // Typed at parse time, each error naming the flag and what it allows.
    let err = serve_args(&["--default-size", "big"]).unwrap_err().to_string();
    assert!(err.contains("--default-size") && err.contains("WIDTHxHEIGHT"), "{err}");
    let err = serve_args(&["--dtype", "f64"]).unwrap_err().to_string();
    assert!(err.contains("--dtype") && err.contains("f32, f16, bf16"), "{err}");
    let err = serve_args(&["--scheduler", "plms"]).unwrap_err().to_string();
    assert!(err.contains("--scheduler") && err.contains(SamplerKind::ALLOWED), "{err}");
    assert_eq!(serve_args(&["--dtype", "bf16"]).unwrap().model.dtype, Some(DType::BF16));
    assert_eq!(serve_args(&["--default-size", "64x128"]).unwrap().limits.default_size, Some((64, 128)));

    // Bounds against each other, at start, whatever model comes later.
    for (flags, needle) in [
        (&["--min-side", "100"][..], "--min-side 100"),
        (&["--min-side", "512", "--max-side", "256"], "min <= max"),
        (&["--default-size", "2048x64"], "--default-size width 2048"),
        (&["--default-steps", "60"], "--default-steps 60"),
        (&["--max-images", "0"], "--max-images"),
        (&["--default-guidance=-1"], "--default-guidance -1"),
        (&["--deployment", "Not A Name"], "--deployment"),
    ] {
        let err = serve_args(flags).unwrap().validate().unwrap_err().to_string();
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    let settings = serve_args(&["--default-size", "64x128"]).unwrap().validate().unwrap();
    let model = crate::model::Recommended { steps: 4, guidance: 1.0, size: (512, 512), why: "test" };
    let limits = settings.limits.for_model(8, &model).unwrap();
    assert_eq!((limits.default_size, limits.default_steps, limits.default_guidance), ((64, 128), 4, 1.0));
    // A model whose factor the flags miss is refused when it is read.
    assert!(settings.limits.for_model(128, &model).unwrap_err().to_string().contains("multiples of 128"));
}

#[test]
fn batches_hold_one_image_on_the_cpu_unless_the_flag_says_otherwise() {
    let cpu = candle_core::Device::Cpu;
    assert_eq!(serve_args(&[]).unwrap().validate().unwrap().max_batch(&cpu), 1);
    assert_eq!(serve_args(&["--max-batch", "8"]).unwrap().validate().unwrap().max_batch(&cpu), 8);
    for bad in ["0", "65", "many"] {
        let err = serve_args(&["--max-batch", bad]).unwrap_err().to_string();
        assert!(err.contains("--max-batch"), "{bad}: {err}");
    }
}
