//! The live status line of `up`: per accelerator type, the queue the scaler
//! sees and whether KEDA would call the Deployment active — read through the
//! very RPCs KEDA calls (`GetMetrics`, `IsActive`).

use crate::keda::{self, Client};

/// The accelerator types the status line lists.
pub const ACCELERATORS: [&str; 3] = ["cpu", "nvidia", "neuron"];

/// The workers' namespace and Deployment name for `accelerator` in `up`.
pub fn deployment(accelerator: &str) -> String {
    format!("sd-{accelerator}")
}

/// What the scaler says about one accelerator type.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `cpu`, `nvidia` or `neuron`.
    pub accelerator: &'static str,
    /// Queued and running requests, or the scaler's error.
    pub value: Result<(f64, f64, bool), String>,
}

/// Asks the scaler about every accelerator type of `namespace`.
pub async fn read(client: &mut Client, namespace: &str) -> Vec<Reading> {
    let mut out = Vec::with_capacity(ACCELERATORS.len());
    for accelerator in ACCELERATORS {
        let dep = deployment(accelerator);
        let value = async {
            let queued = keda::metric(client, &keda::trigger(namespace, &dep, accelerator, "queueDepth")).await?;
            let running = keda::metric(client, &keda::trigger(namespace, &dep, accelerator, "inFlight")).await?;
            // Active as a `backlog` trigger (queued + running) with activationValue 0 sees it.
            let active = keda::is_active(client, &keda::trigger(namespace, &dep, accelerator, "backlog")).await?;
            Ok::<_, tonic::Status>((queued, running, active))
        }
        .await
        .map_err(|s| format!("{:?}", s.code()));
        out.push(Reading { accelerator, value });
    }
    out
}

/// `queue  cpu 2 +1 running ACTIVE | nvidia 0 inactive | neuron 0 inactive`;
/// the `waking` accelerator (woken, its worker not ready yet) says so.
pub fn render(readings: &[Reading], waking: Option<&str>) -> String {
    let parts: Vec<String> = readings
        .iter()
        .map(|r| match &r.value {
            Ok((queued, running, active)) => {
                let running = if *running > 0.0 { format!(" +{running} running") } else { String::new() };
                let state = if waking == Some(r.accelerator) {
                    "waking"
                } else if *active {
                    "ACTIVE"
                } else {
                    "inactive"
                };
                format!("{} {queued}{running} {state}", r.accelerator)
            }
            Err(code) => format!("{} scaler: {code}", r.accelerator),
        })
        .collect();
    format!("queue  {}", parts.join(" | "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_shows_queue_running_and_activity_per_accelerator() {
        let readings = [
            Reading { accelerator: "cpu", value: Ok((2.0, 1.0, true)) },
            Reading { accelerator: "nvidia", value: Ok((0.0, 0.0, false)) },
            Reading { accelerator: "neuron", value: Err("Unavailable".into()) },
        ];
        assert_eq!(
            render(&readings, None),
            "queue  cpu 2 +1 running ACTIVE | nvidia 0 inactive | neuron scaler: Unavailable"
        );
        assert_eq!(
            render(&readings, Some("cpu")),
            "queue  cpu 2 +1 running waking | nvidia 0 inactive | neuron scaler: Unavailable"
        );
    }
}
