# syntax=docker/dockerfile:1.7
# edge-agent and edge-scaler in one small image (distroless, glibc for NVML's dlopen, non-root).
# Cross-compiled on the build machine's own platform for each target platform, so a multi-arch
# build needs no emulation:
#   docker buildx build -f deploy/docker/edge.Dockerfile --platform linux/amd64,linux/arm64 \
#     -t $REGISTRY/edge-diffusion/edge:$TAG --push .
# Target `agent-neuron` adds AWS's neuron-monitor for the agent on Inferentia2 nodes (amd64):
#   docker buildx build -f deploy/docker/edge.Dockerfile --target agent-neuron --platform linux/amd64 \
#     -t $REGISTRY/edge-diffusion/edge-agent-neuron:$TAG --push .

ARG RUST_IMAGE=rust:1.94-bookworm

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A C cross toolchain for the target (the -sys crates and the final link).
RUN case "${TARGETARCH}" in \
      amd64) echo x86_64-unknown-linux-gnu > /rust-target; echo gcc-x86-64-linux-gnu > /cc-pkg ;; \
      arm64) echo aarch64-unknown-linux-gnu > /rust-target; echo gcc-aarch64-linux-gnu > /cc-pkg ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}" >&2; exit 1 ;; \
    esac \
 && apt-get update \
 && apt-get install -y --no-install-recommends "$(cat /cc-pkg)" \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$(cat /rust-target)"
ENV CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=edge-target-${TARGETARCH} \
    cargo build --locked --profile daemon --target "$(cat /rust-target)" -p edge-agent \
 && cargo build --locked --release --target "$(cat /rust-target)" -p edge-scaler \
 && mkdir -p /out \
 && cp "target/$(cat /rust-target)/daemon/edge-agent" "target/$(cat /rust-target)/release/edge-scaler" /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS edge
COPY --from=build /out/edge-agent /usr/local/bin/edge-agent
COPY --from=build /out/edge-scaler /usr/local/bin/edge-scaler
USER 65532:65532
EXPOSE 9400 9500 9501
ENTRYPOINT ["/usr/local/bin/edge-agent"]

# The agent with AWS's neuron-monitor (package aws-neuronx-tools from the Neuron apt repository).
# Ubuntu 22.04 because that is a distribution the Neuron repository publishes for (jammy).
FROM ubuntu:22.04 AS agent-neuron
ARG NEURON_TOOLS_VERSION=2.*
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates=2023* gnupg=2.2.* wget=1.21.* \
 && wget -qO - https://apt.repos.neuron.amazonaws.com/GPG-PUB-KEY-AMAZON-AWS-NEURON.PUB | gpg --dearmor > /usr/share/keyrings/neuron.gpg \
 && echo "deb [signed-by=/usr/share/keyrings/neuron.gpg] https://apt.repos.neuron.amazonaws.com jammy main" > /etc/apt/sources.list.d/neuron.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends "aws-neuronx-tools=${NEURON_TOOLS_VERSION}" \
 && apt-get purge -y gnupg wget \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/edge-agent /usr/local/bin/edge-agent
USER 65532:65532
EXPOSE 9400
ENTRYPOINT ["/usr/local/bin/edge-agent"]

# The default target: the small image.
FROM edge
