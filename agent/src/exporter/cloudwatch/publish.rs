//! The one network call: `PutMetricData` through `aws-sdk-cloudwatch`.
//!
//! Credentials and region come from the SDK's default chain (environment,
//! profile, IRSA web identity, EKS Pod Identity, instance metadata); the
//! endpoint from `AWS_ENDPOINT_URL_CLOUDWATCH` / `AWS_ENDPOINT_URL` when set.
//! The SDK retries throttling, 5xx and transient network errors with
//! exponential back-off and jitter; what still fails is classified here so the
//! caller knows whether to keep the data (outage) or give it up (refused).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_cloudwatch::config::http::HttpResponse;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatch::operation::put_metric_data::PutMetricDataError;
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

use super::encode::Datum;
use super::stats::Outcome;

/// Attempts per call, the first included (the SDK's standard mode).
const MAX_ATTEMPTS: u32 = 4;

/// The publisher could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The default chain found no region.
    #[error("no AWS region: set AWS_REGION (IRSA and EKS Pod Identity set it in the pod) or run on EC2")]
    NoRegion,
}

/// A call that failed after the SDK's retries.
#[derive(Debug)]
pub struct PublishError {
    /// What kind of failure, for the decision and the metrics.
    pub outcome: Outcome,
    /// CloudWatch's error code, when it answered.
    pub code: Option<String>,
    /// The HTTP status, when it answered.
    pub status: Option<u16>,
    /// The error and its causes in one line. The SDK's errors never contain
    /// credentials; the request (with its signature) is not part of them.
    pub message: String,
}

/// A CloudWatch client.
pub struct Publisher {
    client: aws_sdk_cloudwatch::Client,
}

impl Publisher {
    /// A client from the SDK's default chain.
    pub async fn from_env() -> Result<Self, SetupError> {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(500))
                    .with_max_backoff(Duration::from_secs(10)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .operation_attempt_timeout(Duration::from_secs(10))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .load()
            .await;
        if config.region().is_none() {
            return Err(SetupError::NoRegion);
        }
        Ok(Self { client: aws_sdk_cloudwatch::Client::new(&config) })
    }

    /// Sends one call's datums.
    pub async fn put(&self, namespace: &str, datums: &[Datum]) -> Result<(), PublishError> {
        let data = datums.iter().map(to_sdk).collect();
        let result = self.client.put_metric_data().namespace(namespace).set_metric_data(Some(data)).send().await;
        result.map(|_| ()).map_err(classify)
    }
}

fn to_sdk(d: &Datum) -> MetricDatum {
    let dimensions = d.key.dimensions.iter().map(|(n, v)| Dimension::builder().name(*n).value(v).build()).collect();
    MetricDatum::builder()
        .metric_name(d.key.metric.name)
        .unit(StandardUnit::from(d.key.metric.unit))
        .storage_resolution(1)
        .timestamp(DateTime::from_secs(d.timestamp))
        .set_dimensions(Some(dimensions))
        .set_values(Some(d.values.clone()))
        .set_counts(Some(d.counts.clone()))
        .build()
}

const THROTTLING: &[&str] =
    &["Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException"];
const AUTH: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
    "IncompleteSignature",
];

fn classify(err: SdkError<PutMetricDataError, HttpResponse>) -> PublishError {
    let code = err.code().map(str::to_owned);
    let status = match &err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        SdkError::ResponseError(e) => Some(e.raw().status().as_u16()),
        _ => None,
    };
    let outcome = match (&err, status, code.as_deref()) {
        (_, _, Some(c)) if THROTTLING.contains(&c) => Outcome::Throttled,
        (_, Some(429), _) => Outcome::Throttled,
        (_, Some(s), _) if s >= 500 => Outcome::ServerError,
        (_, Some(401 | 403), _) => Outcome::Unauthorized,
        (_, _, Some(c)) if AUTH.contains(&c) => Outcome::Unauthorized,
        (SdkError::ServiceError(_), _, _) => Outcome::Rejected,
        // Missing credentials or region fail before anything is sent.
        (SdkError::ConstructionFailure(_), _, _) => Outcome::Unauthorized,
        _ => Outcome::Network,
    };
    let mut message = DisplayErrorContext(&err).to_string();
    if message.len() > 400 {
        let cut = (0..=400).rev().find(|i| message.is_char_boundary(*i)).unwrap_or(0);
        message.truncate(cut);
        message.push('…');
    }
    PublishError { outcome, code, status, message }
}
