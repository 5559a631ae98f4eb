#!/usr/bin/env bash
# Prepare a Debian (12 or later) host to build and test Outpost for the boards:
# cross compilers, qemu-user to run ARM binaries, and the Rust targets.
# Run as root (or with sudo); needs the Debian and rustup mirrors.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf \
    libc6-dev-arm64-cross libc6-dev-armhf-cross qemu-user
# One at a time: rustup handles one download at a time more reliably here.
for target in aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl; do
    rustup target add "$target"
done
echo "ready: cargo --config cross/cargo-config.toml build --release --target <target>"
