# Multi-stage build: compile in the Rust image, run from a small distroless
# image as a non-root user.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir-control -p weir-loadtest \
 && mkdir -p /out/weir-state \
 && cp target/release/weir target/release/weir-loadtest /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/weir /out/weir-loadtest /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/weir-state /var/lib/weir
COPY examples/weir.yaml /etc/weir/weir.yaml
USER 65532:65532
EXPOSE 8080 9900
ENTRYPOINT ["/usr/local/bin/weir"]
CMD ["run", "--config", "/etc/weir/weir.yaml", "--log-format", "json"]
