# evoctl in a small image: the binary and CA roots, nothing else (for CI jobs and ECS scheduled
# tasks). Build from the repository root:
#
#   docker build -t evoctl \
#     --build-arg EVOCTL_BUILD_COMMIT="$(git rev-parse --short=7 HEAD) $(git log -1 --format=%cs)" .
#   docker run --rm -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
#     -v "$PWD/evoctl.toml:/work/evoctl.toml:ro" evoctl audit
#
# The binary links glibc (aws-lc, the TLS library under rustls, is C), so the runtime image is
# distroless/cc of the same Debian release as the builder: glibc, libgcc and
# /etc/ssl/certs/ca-certificates.crt, which evoctl's rustls-native-certs reads. No shell, no
# package manager; it runs as the nonroot user.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The commit `evoctl --version` names; without it (no .git in the context) it says "unknown".
ARG EVOCTL_BUILD_COMMIT=""
ENV EVOCTL_BUILD_COMMIT=${EVOCTL_BUILD_COMMIT}
COPY . .
# Only the evoctl binary (not the lab), with the release profile; cargo's caches survive
# rebuilds through BuildKit cache mounts.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin evoctl \
    && install -D -m 0755 target/release/evoctl /out/evoctl \
    && /out/evoctl --version

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/evoctl /usr/local/bin/evoctl
COPY LICENSE /usr/share/doc/evoctl/LICENSE
WORKDIR /work
# evoctl reads ./evoctl.toml (mount it at /work/evoctl.toml) or the file EVOCTL_CONFIG names.
ENTRYPOINT ["/usr/local/bin/evoctl"]
CMD ["--help"]
