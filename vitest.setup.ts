/**
 * Global setup of the vitest projects (root `vitest.config.ts`, `ts/` and
 * `property-tests/`): runs once in the main vitest process, before any test
 * worker starts, so every worker (and the native addon in it) inherits what
 * it sets.
 *
 * Mesa's Vulkan drivers (lavapipe, which the wgpu backend runs on where there
 * is no GPU: `DART_BACKEND=wgpu`, `pnpm test:wgpu`) probe for a Wayland
 * display through libwayland, which prints "error: XDG_RUNTIME_DIR is invalid
 * or not set in the environment." for every engine when the variable is
 * unset: hundreds of lines in a `pnpm test` run. When it is unset, this
 * points it at a fresh private (0700) temporary folder, the kind of folder
 * the variable names, removed again after the run. The cargo tests get the
 * same from `.cargo/config.toml`.
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

export default function setup(): (() => void) | undefined {
  const current = process.env.XDG_RUNTIME_DIR
  if (current !== undefined && current.startsWith("/")) return undefined
  // mkdtemp creates the folder with mode 0700.
  const dir = mkdtempSync(join(tmpdir(), "dart-rl-xdg-runtime-"))
  process.env.XDG_RUNTIME_DIR = dir
  return () => {
    if (process.env.XDG_RUNTIME_DIR === dir) delete process.env.XDG_RUNTIME_DIR
    rmSync(dir, { recursive: true, force: true })
  }
}
