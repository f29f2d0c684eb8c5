//! The report the soak prints on stdout.

use std::collections::BTreeMap;

use crate::WORKERS;
use crate::counts::CountsSnapshot;

pub(crate) struct Report {
    pub(crate) minutes: f64,
    pub(crate) rss: Vec<(f64, BTreeMap<String, u64>)>,
    pub(crate) counts: CountsSnapshot,
    pub(crate) wakes: (u32, u32),
    pub(crate) keda_ok: u64,
    pub(crate) keda_failed: u64,
    pub(crate) collector_errors: Vec<(String, f64)>,
    pub(crate) cloudwatch: Vec<String>,
    pub(crate) cloudwatch_before_kill: Vec<String>,
    pub(crate) events: Vec<String>,
}

impl Report {
    pub(crate) fn print(&self) {
        println!("# soak: {} min on loopback, {WORKERS} workers", self.minutes);
        println!("\n## RSS (MiB), sampled every 5 s");
        let names: Vec<String> = self.rss.first().map(|(_, r)| r.keys().cloned().collect()).unwrap_or_default();
        let minute = |from: f64, to: f64, name: &str| {
            let v: Vec<f64> = self
                .rss
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .filter_map(|(_, r)| r.get(name).map(|k| *k as f64 / 1024.0))
                .filter(|v| *v > 0.0)
                .collect();
            if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 }
        };
        let end = self.rss.last().map_or(0.0, |(t, _)| *t);
        println!("| process | first minute | last minute | last / first | max |");
        println!("|---|---|---|---|---|");
        for name in &names {
            let (first, last) = (minute(0.0, 60.0, name), minute(end - 60.0, end + 1.0, name));
            let max = self.rss.iter().filter_map(|(_, r)| r.get(name)).max().copied().unwrap_or(0) as f64 / 1024.0;
            println!("| {name} | {first:.1} | {last:.1} | {:.2} | {max:.1} |", last / first);
        }
        println!("\nper minute:");
        let mut t = 0.0;
        while t < end {
            let row: Vec<String> = names.iter().map(|n| format!("{n}={:.1}", minute(t, t + 60.0, n))).collect();
            println!("  {:>3.0}-{:<3.0}s {}", t, t + 60.0, row.join("  "));
            t += 60.0;
        }
        let c = &self.counts;
        println!("\n## requests");
        println!(
            "sent {}, refused at the door (429/503) {}, accepted {}, answered {}, lost {}",
            c.sent,
            c.refused,
            c.accepted(),
            c.answered,
            c.accepted() - c.answered
        );
        for f in c.failed.iter().take(10) {
            println!("  failed: {f}");
        }
        println!("\n## wakes");
        println!("bursts {}, StreamIsActive wakes missed {}", self.wakes.0, self.wakes.1);
        println!("\n## errors counted");
        println!("KEDA calls ok {}, failed {} (the scaler restart)", self.keda_ok, self.keda_failed);
        for (c, e) in &self.collector_errors {
            println!("agent collector {c}: {e} errors (since its last start)");
        }
        for l in &self.cloudwatch_before_kill {
            println!("agent before its kill: {l}");
        }
        for l in &self.cloudwatch {
            println!("agent since its restart: {l}");
        }
        println!("\n## timeline");
        for e in &self.events {
            println!("  {e}");
        }
    }
}
