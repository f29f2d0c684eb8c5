//! The metadata keys a ScaledObject's trigger may set, and KEDA's own.

/// Metadata key: `nvidia`, `neuron` or `cpu` (required).
pub const ACCELERATOR_TYPE: &str = "acceleratorType";
/// Metadata key: which value to scale on (default `queueDepth`).
pub const METRIC: &str = "metric";
/// Metadata key: the HPA target (per replica with KEDA's default `AverageValue`).
pub const TARGET_VALUE: &str = "targetValue";
/// Metadata key: the value above which a Deployment at zero is woken (default 0).
pub const ACTIVATION_VALUE: &str = "activationValue";
/// Metadata key: the workers' Deployment (this or `labelSelector`).
pub const DEPLOYMENT: &str = "deployment";
/// Metadata key: a label selector over the labels workers report (this or `deployment`).
pub const LABEL_SELECTOR: &str = "labelSelector";
/// Metadata key: the workers' namespace (default: the ScaledObject's).
pub const NAMESPACE: &str = "namespace";
/// Metadata key: only agents in this zone count (e.g. a Local Zone).
pub const ZONE: &str = "zone";
/// Metadata key: this trigger's own staleness bound.
pub const STALE_AFTER: &str = "staleAfter";
/// Metadata key: whether device demand at the endpoint inventory wakes this
/// trigger (`true`, the default, or `false`).
pub const ACTIVATE_ON_DEMAND: &str = "activateOnDemand";
/// Metadata key: a sibling accelerator type whose backlog spills over into
/// this trigger (see [`Spill`]).
pub const SPILL_FROM: &str = "spillFrom";
/// Metadata key: with `spillFrom`, the backlog per ready worker of the
/// sibling above which the excess spills over.
pub const SPILL_ABOVE: &str = "spillAbove";

/// Every key the scaler reads.
pub const KEYS: [&str; 12] = [
    ACCELERATOR_TYPE,
    METRIC,
    TARGET_VALUE,
    ACTIVATION_VALUE,
    DEPLOYMENT,
    LABEL_SELECTOR,
    NAMESPACE,
    ZONE,
    STALE_AFTER,
    ACTIVATE_ON_DEMAND,
    SPILL_FROM,
    SPILL_ABOVE,
];

/// KEDA's own keys for external scalers: accepted and ignored (KEDA uses them
/// to reach us; `scalerAddress` is always in the map).
pub const KEDA_KEYS: [&str; 7] =
    ["scalerAddress", "enableTLS", "unsafeSsl", "caCert", "tlsCertFile", "tlsClientCert", "tlsClientKey"];
