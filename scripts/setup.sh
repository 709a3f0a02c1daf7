# Sourced by the other scripts: makes sure the toolchain can build the host
# and the wasm32-wasip2 plugins. Idempotent.
if ! command -v cargo >/dev/null 2>&1; then
  [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || { echo "jobhost needs Rust (cargo and rustup): https://rustup.rs" >&2; exit 1; }
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
