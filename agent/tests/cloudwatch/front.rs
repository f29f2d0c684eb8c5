//! The CloudWatch front (`edge_testkit::cloudwatch_front`), and a real SDK
//! client for reading back from it.

use aws_sdk_cloudwatch::config::{BehaviorVersion, Credentials, Region};
pub use edge_testkit::cloudwatch_front::{Front, REGION};

/// An SDK client for reading back from `front`, with dummy credentials.
pub fn client(front: &Front) -> aws_sdk_cloudwatch::Client {
    let config = aws_sdk_cloudwatch::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(front.url())
        .credentials_provider(Credentials::new("AKIDREADER", "reader-secret", None, None, "test"))
        .build();
    aws_sdk_cloudwatch::Client::from_conf(config)
}
