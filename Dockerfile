# levee in a container: a multi-stage build, a small Debian runtime, a
# non-root user, and a HEALTHCHECK that asks levee itself whether it is
# ready (`levee check`: 0 ready, 1 not ready, 2 unreachable).
#
#   docker build -t levee .
#   docker run -p 8080:8080 -v $PWD/levee.toml:/etc/levee/levee.toml:ro levee
#
# The `testkit` target is the fault-injecting backend the examples use:
#   docker build --target testkit -t levee-testkit .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# Builds jemalloc's C source (make, cc: in the rust image).
RUN cargo build --release -p levee -p levee-testkit \
    && strip target/release/levee target/release/levee-testkit

FROM debian:bookworm-slim AS runtime-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin levee

FROM runtime-base AS testkit
COPY --from=build /src/target/release/levee-testkit /usr/local/bin/levee-testkit
USER levee
ENTRYPOINT ["levee-testkit"]
CMD ["backend", "--listen", "0.0.0.0:8000"]

FROM runtime-base AS levee
COPY --from=build /src/target/release/levee /usr/local/bin/levee
COPY docs/levee.example.toml /usr/share/doc/levee/levee.example.toml
USER levee
EXPOSE 8080 9901
# The admin listener answers on loopback inside the container by default.
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=2 \
    CMD ["levee", "check", "--admin", "127.0.0.1:9901"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["levee"]
CMD ["run", "-c", "/etc/levee/levee.toml"]
