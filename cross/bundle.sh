#!/usr/bin/env bash
# Build the install bundle for one board: the release binary for the board's
# target and CPU, its configuration, a systemd unit and install notes, in one
# archive with checksums.
#
#     cross/bundle.sh rpi4            # -> target/bundles/outpost-<version>-rpi4.tar.gz
#
# The binary in the bundle is run under qemu-user before it is packed
# (`--version`, and `check` on the board's configuration).
set -euo pipefail
cd "$(dirname "$0")/.."

board=${1:?usage: cross/bundle.sh <board> (one of: $(ls boards | grep -v -e common -e README | tr '\n' ' '))}
profile=boards/$board/profile.env
[ -f "$profile" ] || { echo "no board profile $profile" >&2; exit 2; }
# shellcheck source=/dev/null
source "$profile"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
RUSTFLAGS="${BOARD_RUSTFLAGS:-}" cargo --config cross/cargo-config.toml \
    build --locked --release --target "$TARGET" --target-dir "target/boards/$board"
binary="target/boards/$board/$TARGET/release/outpost"

# The runner from cross/cargo-config.toml, for the smoke test.
case "$TARGET" in
    aarch64-unknown-linux-gnu) run=(qemu-aarch64 -L /usr/aarch64-linux-gnu) ;;
    aarch64-unknown-linux-musl) run=(qemu-aarch64) ;;
    armv7-unknown-linux-gnueabihf) run=(qemu-arm -L /usr/arm-linux-gnueabihf) ;;
    *) echo "no qemu runner known for $TARGET" >&2; exit 2 ;;
esac
"${run[@]}" "$binary" --version
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed "s|^data_dir = .*|data_dir = \"$scratch/data\"|" "boards/$board/outpost.toml" > "$scratch/check.toml"
"${run[@]}" "$binary" check -c "$scratch/check.toml" > /dev/null

name="outpost-$version-$board"
stage="$scratch/$name"
mkdir -p "$stage"
cp "$binary" "$stage/outpost"
cp "boards/$board/outpost.toml" "$stage/outpost.toml"
if [ "$CONSOLE_TRUSTED" = yes ]; then
    console_login="this board's console is trusted: it needs no password."
else
    console_login="the first session sets the admin password; later ones ask for it."
fi
fill() {
    sed -e "s|@CONSOLE_LOGIN@|$console_login|g" -e "s|@VERSION@|$version|g" -e "s|@BOARD_NAME@|$BOARD_NAME|g" \
        -e "s|@TARGET@|$TARGET|g" -e "s|@CONFIG_DIR@|$CONFIG_DIR|g" \
        -e "s|@DATA_DIR@|$DATA_DIR|g" -e "s|@SERIAL@|$SERIAL|g" "$1"
}
fill boards/common/outpost.service > "$stage/outpost.service"
fill boards/common/INSTALL.md.in > "$stage/INSTALL.md"
(cd "$stage" && sha256sum outpost outpost.toml outpost.service INSTALL.md > SHA256SUMS)

mkdir -p target/bundles
archive="target/bundles/$name.tar.gz"
tar -C "$scratch" --owner=0 --group=0 --sort=name -czf "$archive" "$name"
size=$(stat -c %s "$stage/outpost")
echo "$archive: outpost for $TARGET, $size bytes, sha256 $(cut -d' ' -f1 < <(grep ' outpost$' "$stage/SHA256SUMS"))"
