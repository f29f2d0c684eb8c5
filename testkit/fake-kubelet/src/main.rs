//! `fake-kubelet --socket PATH --fixture FILE`: the kubelet's PodResources v1
//! gRPC API (the vendored `api.proto`, the same generated code the agent's
//! client uses) on a real Unix socket, answering from a JSON fixture (see
//! [`fixture`]) read again for every request.
//!
//! Like the kubelet it removes a stale socket file before it listens, and it
//! removes its socket when it stops (SIGTERM, SIGINT), so stopping and
//! starting it again is what a kubelet restart looks like to the agent.

mod fixture;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use edge_telemetry::podresources as v1;
use edge_telemetry::podresources::pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer};
use tokio::signal::unix::{SignalKind, signal};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::fixture::Fixture;

struct Lister {
    fixture: PathBuf,
}

impl Lister {
    async fn load(&self) -> Result<Fixture, Status> {
        let text = tokio::fs::read_to_string(&self.fixture)
            .await
            .map_err(|e| Status::internal(format!("{}: {e}", self.fixture.display())))?;
        let fixture =
            Fixture::parse(&text).map_err(|e| Status::internal(format!("{}: {e}", self.fixture.display())))?;
        if fixture.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(fixture.delay_ms)).await;
        }
        Ok(fixture)
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<v1::ListPodResourcesRequest>,
    ) -> Result<Response<v1::ListPodResourcesResponse>, Status> {
        Ok(Response::new(self.load().await?.list()))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<v1::AllocatableResourcesRequest>,
    ) -> Result<Response<v1::AllocatableResourcesResponse>, Status> {
        Ok(Response::new(self.load().await?.allocatable()))
    }

    async fn get(
        &self,
        request: Request<v1::GetPodResourcesRequest>,
    ) -> Result<Response<v1::GetPodResourcesResponse>, Status> {
        let want = request.into_inner();
        let list = self.load().await?.list();
        let pod = list
            .pod_resources
            .into_iter()
            .find(|p| p.name == want.pod_name && p.namespace == want.pod_namespace)
            .ok_or_else(|| Status::not_found(format!("pod {}/{} not found", want.pod_namespace, want.pod_name)))?;
        Ok(Response::new(v1::GetPodResourcesResponse { pod_resources: Some(pod) }))
    }
}

struct Args {
    socket: PathBuf,
    fixture: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let usage = "usage: fake-kubelet --socket PATH --fixture FILE";
    let (mut socket, mut fixture) = (None, None);
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--socket") => socket = it.next().map(PathBuf::from),
            Some("--fixture") => fixture = it.next().map(PathBuf::from),
            _ => anyhow::bail!("unknown argument {a:?}; {usage}"),
        }
    }
    Ok(Args {
        socket: socket.with_context(|| format!("--socket is required; {usage}"))?,
        fixture: fixture.with_context(|| format!("--fixture is required; {usage}"))?,
    })
}

fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        eprintln!("fake-kubelet: cannot remove {}: {e}", path.display());
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = args()?;
    remove_socket(&args.socket);
    let listener = tokio::net::UnixListener::bind(&args.socket)
        .with_context(|| format!("cannot listen on {}", args.socket.display()))?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    let served = tonic::transport::Server::builder()
        .add_service(PodResourcesListerServer::new(Lister { fixture: args.fixture }))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), stop)
        .await;
    remove_socket(&args.socket);
    served.context("serving PodResources")
}
