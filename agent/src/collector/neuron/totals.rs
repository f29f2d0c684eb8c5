//! Turns per-period reports into the reading the snapshot holds.
//!
//! neuron-monitor reports execution outcomes, execution errors and hardware
//! ECC events as counts *for the captured period* (the User Guide says so for
//! `execution_stats`; AWS's `neuron-monitor-prometheus.py` treats
//! `neuron_hw_counters` the same way, `inc()`-ing its counters by each
//! report's value). Prometheus wants cumulative counters, so they are added up
//! here: per runtime (pid + tag) while the runtime keeps appearing in reports,
//! per device for the agent's lifetime. A runtime missing from a report has
//! exited; its totals are forgotten, so a new process with the same tag starts
//! from zero (a counter reset, which Prometheus handles).
//!
//! Adding up is only right if every report carries fresh counts for every
//! group. neuron-monitor re-collects a group when its period is due; the
//! agent's config gives every group the same period, so each report does.

use std::collections::{BTreeMap, HashMap};

use edge_telemetry::proto::{NeuronDevice, NeuronErrorCounts, NeuronExecutionCounts, NeuronInstance, NeuronRuntime};

use super::NeuronReading;
use super::report::Report;

/// Cumulative counts since the agent started watching.
#[derive(Debug, Default)]
pub struct Totals {
    runtimes: HashMap<(u32, String), RuntimeTotals>,
    devices: BTreeMap<u32, NeuronDevice>,
    instance: Option<NeuronInstance>,
}

#[derive(Debug, Default)]
struct RuntimeTotals {
    executions: Option<NeuronExecutionCounts>,
    errors: Option<NeuronErrorCounts>,
}

impl Totals {
    /// Adds one report's counts and returns the reading it gives.
    pub fn apply(&mut self, report: Report) -> NeuronReading {
        let mut seen: HashMap<(u32, String), RuntimeTotals> = HashMap::with_capacity(report.runtimes.len());
        let mut cores = Vec::new();
        let mut runtimes = Vec::with_capacity(report.runtimes.len());
        for r in report.runtimes {
            let key = (r.pid, r.tag.clone());
            let mut totals = seen.remove(&key).or_else(|| self.runtimes.remove(&key)).unwrap_or_default();
            if let Some(period) = r.executions {
                add_executions(totals.executions.get_or_insert_with(Default::default), &period);
            }
            if let Some(period) = r.errors {
                add_errors(totals.errors.get_or_insert_with(Default::default), &period);
            }
            runtimes.push(NeuronRuntime {
                tag: r.tag,
                pid: r.pid,
                error: r.error,
                executions: totals.executions,
                errors: totals.errors,
                total_latency: r.total_latency,
                device_latency: r.device_latency,
                host_memory_used_bytes: r.host_memory_used_bytes,
                device_memory_used_bytes: r.device_memory_used_bytes,
                vcpu_user_ratio: r.vcpu_user_ratio,
                vcpu_system_ratio: r.vcpu_system_ratio,
            });
            cores.extend(r.cores);
            seen.insert(key, totals);
        }
        self.runtimes = seen;
        for d in report.devices.unwrap_or_default() {
            let total = self
                .devices
                .entry(d.neuron_device_index)
                .or_insert_with(|| NeuronDevice { index: d.neuron_device_index, ..Default::default() });
            total.mem_ecc_corrected = total.mem_ecc_corrected.saturating_add(d.mem_ecc_corrected);
            total.mem_ecc_uncorrected = total.mem_ecc_uncorrected.saturating_add(d.mem_ecc_uncorrected);
            total.sram_ecc_corrected = total.sram_ecc_corrected.saturating_add(d.sram_ecc_corrected);
            total.sram_ecc_uncorrected = total.sram_ecc_uncorrected.saturating_add(d.sram_ecc_uncorrected);
        }
        if report.instance.is_some() {
            self.instance = report.instance;
        }
        // Stable order, so an unchanged report leaves the snapshot unchanged.
        cores.sort_by(|a, b| (a.index, &a.runtime_tag).cmp(&(b.index, &b.runtime_tag)));
        runtimes.sort_by(|a, b| (&a.tag, a.pid).cmp(&(&b.tag, b.pid)));
        NeuronReading {
            cores,
            runtimes,
            devices: self.devices.values().cloned().collect(),
            instance: self.instance.clone(),
        }
    }
}

fn add_executions(total: &mut NeuronExecutionCounts, p: &NeuronExecutionCounts) {
    total.completed = total.completed.saturating_add(p.completed);
    total.completed_with_err = total.completed_with_err.saturating_add(p.completed_with_err);
    total.completed_with_num_err = total.completed_with_num_err.saturating_add(p.completed_with_num_err);
    total.timed_out = total.timed_out.saturating_add(p.timed_out);
    total.incorrect_input = total.incorrect_input.saturating_add(p.incorrect_input);
    total.failed_to_queue = total.failed_to_queue.saturating_add(p.failed_to_queue);
}

fn add_errors(total: &mut NeuronErrorCounts, p: &NeuronErrorCounts) {
    total.generic = total.generic.saturating_add(p.generic);
    total.numerical = total.numerical.saturating_add(p.numerical);
    total.transient = total.transient.saturating_add(p.transient);
    total.model = total.model.saturating_add(p.model);
    total.runtime = total.runtime.saturating_add(p.runtime);
    total.hardware = total.hardware.saturating_add(p.hardware);
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{FAULTS, X48LARGE, XLARGE};
    use super::super::report::parse;
    use super::*;

    fn apply_all(totals: &mut Totals, fixture: &str) -> NeuronReading {
        let mut last = NeuronReading::default();
        for line in fixture.lines() {
            last = totals.apply(parse(line).unwrap());
        }
        last
    }

    fn completed(reading: &NeuronReading, tag: &str) -> Option<u64> {
        reading.runtimes.iter().find(|r| r.tag == tag).and_then(|r| r.executions).map(|x| x.completed)
    }

    #[test]
    fn per_period_counts_become_cumulative() {
        let mut totals = Totals::default();
        let reading = apply_all(&mut totals, XLARGE);
        // 0 + 412 + 731 + 1016 + 1042 + 533, read from the fixture.
        assert_eq!(completed(&reading, "2817"), Some(3734));
        // Gauges are the last report's, not sums.
        assert!((reading.cores[1].utilization_ratio.unwrap() - 0.4651).abs() < 1e-9);
        assert_eq!(reading.runtimes[0].host_memory_used_bytes, Some(1_920_466_944));
        assert_eq!(reading.devices.len(), 1);
        assert_eq!(reading.instance.as_ref().unwrap().instance_id, "i-0a1b2c3d4e5f60718");
        // Another pass keeps counting.
        let reading = apply_all(&mut totals, XLARGE);
        assert_eq!(completed(&reading, "2817"), Some(2 * 3734));
    }

    #[test]
    fn runtimes_are_counted_while_they_appear_and_forgotten_when_gone() {
        let mut totals = Totals::default();
        let reading = apply_all(&mut totals, X48LARGE);
        // Sums over the four reports, read from the fixture.
        assert_eq!(completed(&reading, "llama-8b-a"), Some(6403));
        assert_eq!(completed(&reading, "llama-8b-b"), Some(5259));
        assert_eq!(completed(&reading, "embedder"), Some(2817));
        assert_eq!(completed(&reading, "13310"), Some(2210));
        assert_eq!(completed(&reading, "12044"), None, "12044 exited after the second report");
        assert_eq!(reading.cores.len(), 20);
        assert!(reading.cores.iter().filter(|c| c.index >= 16 && c.index < 18).all(|c| c.runtime_tag == "13310"));
        assert_eq!(reading.devices.len(), 12);

        // 12044 comes back (a new process with the same pid and tag): from zero.
        let first = X48LARGE.lines().next().unwrap();
        let reading = totals.apply(parse(first).unwrap());
        assert_eq!(completed(&reading, "12044"), Some(2870));
        assert_eq!(completed(&reading, "llama-8b-a"), Some(6403 + 1520));
    }

    #[test]
    fn errors_and_ecc_events_accumulate_and_survive_failed_groups() {
        let mut totals = Totals::default();
        let lines: Vec<&str> = FAULTS.lines().collect();
        totals.apply(parse(lines[0]).unwrap());
        let reading = totals.apply(parse(lines[0]).unwrap());
        let crashed = reading.runtimes.iter().find(|r| r.tag == "crashed-app").unwrap();
        assert!(crashed.executions.is_none() && crashed.errors.is_none(), "never reported, never 0");
        let ok = reading.runtimes.iter().find(|r| r.tag == "2817").unwrap();
        assert_eq!(ok.errors.unwrap().hardware, 4);
        assert_eq!(ok.executions.unwrap().completed_with_err, 6);
        let d = reading.devices[0];
        assert_eq!((d.mem_ecc_corrected, d.sram_ecc_uncorrected, d.sram_ecc_corrected), (8, 2, 0));

        // execution_stats failed and hw counters null: totals stay, nothing resets.
        let reading = totals.apply(parse(lines[1]).unwrap());
        let ok = reading.runtimes.iter().find(|r| r.tag == "2817").unwrap();
        assert_eq!(ok.executions.unwrap().completed, 800);
        assert_eq!(reading.devices[0].mem_ecc_corrected, 8);
        assert!(reading.runtimes.iter().all(|r| r.tag != "crashed-app"), "gone from the report");

        // No runtime at all: no runtimes or cores, devices still counted.
        let reading = totals.apply(parse(lines[2]).unwrap());
        assert!(reading.runtimes.is_empty() && reading.cores.is_empty());
        assert_eq!(reading.devices[0].mem_ecc_corrected, 8);
    }

    #[test]
    fn the_instance_is_kept_when_a_report_lacks_it() {
        let mut totals = Totals::default();
        totals.apply(parse(XLARGE.lines().next().unwrap()).unwrap());
        let mut v: serde_json::Value = serde_json::from_str(XLARGE.lines().nth(1).unwrap()).unwrap();
        v["instance_info"]["error"] = "metadata service unreachable".into();
        let reading = totals.apply(parse(&v.to_string()).unwrap());
        assert_eq!(reading.instance.unwrap().instance_type, "inf2.xlarge");
    }
}
