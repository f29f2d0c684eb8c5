//! The KEDA port over TLS and mutual TLS (KEDA's `enableTLS`, `caCert`,
//! `tlsClientCert`/`tlsClientKey`), with certificates made at test time.

mod common;

use std::path::Path;

use common::*;
use edge_scaler::keda::external_scaler_client::ExternalScalerClient;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(issuer: &Issuer<'static, KeyPair>, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn pki() -> Pki {
    let (ca_pem, issuer) = ca("edge test CA");
    let (_, other_ca) = ca("someone else's CA");
    Pki {
        ca_pem,
        server: leaf(&issuer, "localhost", ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(&issuer, "keda-operator", ExtendedKeyUsagePurpose::ClientAuth),
        stranger: leaf(&other_ca, "keda-operator", ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn write(dir: &Path, name: &str, pem: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn tls_client(
    scaler: &Scaler,
    ca_pem: &str,
    identity: Option<&(String, String)>,
) -> Result<ExternalScalerClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem)).domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://{}", scaler.addr)).unwrap().tls_config(tls)?.connect().await?;
    Ok(ExternalScalerClient::new(channel))
}

async fn spec_works(client: Result<ExternalScalerClient<Channel>, tonic::transport::Error>) -> bool {
    match client {
        Ok(mut c) => c.get_metric_spec(object(CPU)).await.is_ok(),
        Err(_) => false,
    }
}

const CPU: &[(&str, &str)] = &[("acceleratorType", "cpu"), ("deployment", "sd-cpu"), ("targetValue", "2")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tls_serves_keda_over_tls_only() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let scaler = start_scaler(
        &[
            ("agents", "127.0.0.1:1".into()),
            ("tls-cert", write(dir.path(), "tls.crt", &pki.server.0)),
            ("tls-key", write(dir.path(), "tls.key", &pki.server.1)),
        ],
        &[],
    );
    assert!(spec_works(tls_client(&scaler, &pki.ca_pem, None).await).await, "TLS client refused");
    let plain = ExternalScalerClient::connect(format!("http://{}", scaler.addr)).await;
    assert!(!spec_works(plain).await, "plain-text call answered on a TLS port");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let scaler = start_scaler(
        &[
            ("agents", "127.0.0.1:1".into()),
            ("tls-cert", write(dir.path(), "tls.crt", &pki.server.0)),
            ("tls-key", write(dir.path(), "tls.key", &pki.server.1)),
            ("tls-client-ca", write(dir.path(), "ca.crt", &pki.ca_pem)),
        ],
        &[],
    );
    assert!(spec_works(tls_client(&scaler, &pki.ca_pem, Some(&pki.client)).await).await, "KEDA's cert refused");
    assert!(!spec_works(tls_client(&scaler, &pki.ca_pem, None).await).await, "answered without a client cert");
    assert!(
        !spec_works(tls_client(&scaler, &pki.ca_pem, Some(&pki.stranger)).await).await,
        "answered a client cert from another CA"
    );
}

#[test]
fn a_key_that_is_not_a_key_fails_at_start_naming_the_flags() {
    let pki = pki();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_edge-scaler"))
        .arg("--agents=127.0.0.1:1")
        .arg("--listen=127.0.0.1:0")
        .arg("--metrics-listen=")
        .arg(format!("--tls-cert={}", write(dir.path(), "tls.crt", &pki.server.0)))
        // A certificate where the key should be: PEM, but not a key.
        .arg(format!("--tls-key={}", write(dir.path(), "tls.key", &pki.server.0)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
