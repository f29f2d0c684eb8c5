# syntax=docker/dockerfile:1.7
# edge-inference for CPU nodes, x86 and Graviton (candle's CPU backend), distroless and non-root.
# The model is not in the image: the chart mounts it read-only (S3, EFS, an image volume).
#   docker buildx build -f deploy/docker/inference-cpu.Dockerfile --platform linux/amd64,linux/arm64 \
#     -t $REGISTRY/edge-diffusion/edge-inference:$TAG --push .

ARG RUST_IMAGE=rust:1.94-bookworm

FROM --platform=$BUILDPLATFORM ${RUST_IMAGE} AS build
ARG TARGETARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
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
    cargo build --locked --release --target "$(cat /rust-target)" -p edge-inference \
 && mkdir -p /out \
 && cp "target/$(cat /rust-target)/release/edge-inference" /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/edge-inference /usr/local/bin/edge-inference
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/edge-inference"]
CMD ["serve"]
