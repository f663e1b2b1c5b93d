# The Rust build base, made the way the official rust:<version>-slim-bookworm
# image makes it (Debian slim, gcc, rustup's minimal profile under
# /usr/local), for machines that cannot pull that image. deploy/local/image.sh
# builds it on a Debian base made with mmdebstrap and passes it to the
# repository's Dockerfile as RUST_IMAGE.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ARG RUST_VERSION=1.95.0
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev wget \
 && rm -rf /var/lib/apt/lists/* \
 && url=https://static.rust-lang.org/rustup/dist/x86_64-unknown-linux-gnu/rustup-init \
 && wget -q "$url" "$url.sha256" \
 && echo "$(cut -d' ' -f1 rustup-init.sha256)  rustup-init" | sha256sum -c - \
 && chmod +x rustup-init \
 && ./rustup-init -y --no-modify-path --profile minimal --default-toolchain "$RUST_VERSION" \
 && rm rustup-init rustup-init.sha256 \
 && chmod -R a+w "$RUSTUP_HOME" "$CARGO_HOME" \
 && rustc --version
