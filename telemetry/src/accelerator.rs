//! The accelerator types a Deployment is scaled per.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of device an inference worker runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorType {
    /// NVIDIA GPUs through CUDA (g5, g6, p4 … instances).
    Nvidia,
    /// AWS Inferentia2 / Trainium NeuronCores.
    Neuron,
    /// Plain CPU (x86 or Graviton).
    Cpu,
}

impl AcceleratorType {
    /// Every type, in a fixed order.
    pub const ALL: [AcceleratorType; 3] = [Self::Nvidia, Self::Neuron, Self::Cpu];
    /// The allowed spellings, for error messages.
    pub const ALLOWED: &'static str = "nvidia, neuron, cpu";

    /// The lowercase name used in labels, reports and trigger metadata.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Nvidia => "nvidia",
            Self::Neuron => "neuron",
            Self::Cpu => "cpu",
        }
    }
}

impl fmt::Display for AcceleratorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An accelerator name that is none of [`AcceleratorType::ALLOWED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown accelerator type {0:?}; allowed: {allowed}", allowed = AcceleratorType::ALLOWED)]
pub struct UnknownAccelerator(pub String);

impl FromStr for AcceleratorType {
    type Err = UnknownAccelerator;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| UnknownAccelerator(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_name_it_prints() {
        for a in AcceleratorType::ALL {
            assert_eq!(a.as_str().parse::<AcceleratorType>().unwrap(), a);
        }
    }

    #[test]
    fn unknown_name_lists_allowed_values() {
        let err = "gpu".parse::<AcceleratorType>().unwrap_err().to_string();
        assert!(err.contains("\"gpu\"") && err.contains("nvidia, neuron, cpu"), "{err}");
    }
}
