# syntax=docker/dockerfile:1.7
# edge-inference with candle's CUDA backend for NVIDIA nodes (g4dn, g5, g6: amd64), non-root.
# CUDA_COMPUTE_CAP picks the kernels' target: 75 (T4, g4dn) also runs on A10G (86, g5) and L4
# (89, g6) through PTX; build one image per family for the best kernels.
#   docker buildx build -f deploy/docker/inference-cuda.Dockerfile --platform linux/amd64 \
#     --build-arg CUDA_COMPUTE_CAP=86 -t $REGISTRY/edge-diffusion/edge-inference-cuda:$TAG --push .

ARG CUDA_VERSION=12.4.1
ARG RUST_IMAGE=rust:1.94-bookworm

FROM ${RUST_IMAGE} AS rust

FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu22.04 AS build
ARG CUDA_COMPUTE_CAP=75
ENV CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP} \
    RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:${PATH}
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc=4:11.2.* libc6-dev=2.35-* pkg-config=0.29.* \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=edge-target-cuda \
    cargo build --locked --release -p edge-inference --features cuda \
 && mkdir -p /out \
 && cp target/release/edge-inference /out/

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu22.04
COPY --from=build /out/edge-inference /usr/local/bin/edge-inference
# The device plugin gives the pod its GPU; the runtime needs compute (and NVML for utility).
ENV NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/edge-inference"]
CMD ["serve"]
