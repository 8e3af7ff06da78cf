#!/usr/bin/env bash
# Builds the engine as WebAssembly (crates/dart-wasm) into crates/dart-wasm/pkg:
# dart_wasm.js + dart_wasm_bg.wasm (wasm-bindgen --target web: one ES module
# for Node and browsers), with SIMD128.
#
# There is no rustup here, so no prebuilt wasm32 standard library: Debian's
# rustc-web (a rustc that has the wasm32 target) compiles std from
# rust-web-src (-Zbuild-std, allowed on a stable rustc by RUSTC_BOOTSTRAP=1),
# and lld's wasm-ld links. scripts/setup.sh installs all three and
# wasm-bindgen-cli; this script only builds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WASM_BINDGEN_VERSION=0.2.130
WASM_BINDGEN="$ROOT/.tools/wasm-bindgen-$WASM_BINDGEN_VERSION/bin/wasm-bindgen"
RUSTC_WEB=/usr/bin/rustc
CARGO_WEB=/usr/bin/cargo

die() { printf '[build-wasm] ERROR: %s\n' "$*" >&2; exit 1; }
[ -x "$RUSTC_WEB" ] || die "$RUSTC_WEB is missing: apt-get install rustc-web rust-web-src lld (or run bash scripts/setup.sh)"
[ -d /usr/lib/rustlib/src/rust/library ] || die "rust-web-src is missing (the std sources -Zbuild-std compiles): apt-get install rust-web-src"
command -v wasm-ld >/dev/null 2>&1 || die "wasm-ld is missing: apt-get install lld"
[ -x "$WASM_BINDGEN" ] || die "$WASM_BINDGEN is missing: cargo install wasm-bindgen-cli --version $WASM_BINDGEN_VERSION --root .tools/wasm-bindgen-$WASM_BINDGEN_VERSION (or run bash scripts/setup.sh)"

# A target folder of its own: the wasm32 std and deps do not evict the native builds.
export CARGO_TARGET_DIR="$ROOT/target/wasm"
printf '[build-wasm] cargo build -p dart-wasm --target wasm32-unknown-unknown (profile wasm, simd128)\n'
RUSTC_BOOTSTRAP=1 RUSTC="$RUSTC_WEB" \
  CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER=wasm-ld \
  RUSTFLAGS="-C target-feature=+simd128 --cfg getrandom_backend=\"wasm_js\"" \
  "$CARGO_WEB" build -Zbuild-std=std,panic_abort --target wasm32-unknown-unknown -p dart-wasm --profile wasm
"$WASM_BINDGEN" --target web --out-dir crates/dart-wasm/pkg --out-name dart_wasm \
  "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm/dart_wasm.wasm"
printf '[build-wasm] crates/dart-wasm/pkg/dart_wasm_bg.wasm: %s bytes\n' "$(stat -c %s crates/dart-wasm/pkg/dart_wasm_bg.wasm)"
