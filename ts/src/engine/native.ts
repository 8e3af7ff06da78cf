/**
 * The native addon `@dart-rl/node` as seen from TypeScript (docs/engine-api.md).
 *
 * Every type here is derived from the addon's own declarations, which
 * `napi build` generates from the Rust source (crates/dart-node/index.d.ts),
 * so they cannot drift from the bindings; where the addon's typing is wider
 * than what it accepts (a target name is a `string` there), the narrower
 * type is written on top of the generated one. The module is loaded lazily:
 * importing this file never loads the addon.
 */
import { createRequire } from "node:module"
import type * as Addon from "@dart-rl/node"
import type { LoraTarget } from "../domain/model.ts"
import { type EngineBuild, engineBuildFromEnv, type EngineModule, loadEngineModule } from "./wasm.ts"

export { ENGINE_BUILDS, engineBuildFromEnv } from "./wasm.ts"
export type { EngineBuild, EngineModule } from "./wasm.ts"

export { LORA_TARGETS, ROLE, SOURCE } from "../domain/model.ts"
export type { LoraTarget, RoleCode } from "../domain/model.ts"

export type EngineOptions = Addon.EngineOptions
export type BackendInfo = Addon.BackendInfo
export type StepOptions = Addon.StepOptions
export type SlotReport = Addon.SlotReport
export type StepReport = Addon.StepReport
export type RoleRules = Addon.RoleRules
export type SessionOptions = Addon.SessionOptions
export type GenPlan = Addon.GenPlan
export type GenerateOptions = Addon.GenerateOptions
export type Generated = Addon.Generated

/** The addon's adapter spec with target names from the seven projections. */
export type AdapterSpec = Omit<Addon.AdapterSpec, "targets"> & { readonly targets: ReadonlyArray<LoraTarget> }

/** How a generation stopped (the addon types it as a string). */
export type StopReason = "eos" | "stop" | "tool_call" | "length" | "running"

/** An instance of the addon's `Session` class (from `NativeEngine.session`). */
export type NativeSession = Addon.Session

/** An instance of the addon's `Engine` class. */
export type NativeEngine = Addon.Engine

/** The addon module. */
export type NativeModule = typeof Addon

/** The DART_* code of an error the addon threw or rejected with ("" when it has none). */
export const nativeErrorCode = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "code" in cause ? String(cause.code) : ""

let cached: NativeModule | undefined
const engines = new Map<EngineBuild, { readonly build: "native" | "wasm"; readonly module: EngineModule }>()

/**
 * The engine classes of the chosen build (`build`, else DART_ENGINE, else
 * auto: the addon where it loads, otherwise the WASM build). The tokenizer
 * and the search index live only in the addon (`loadNative`).
 */
export const loadEngine = (build: EngineBuild = engineBuildFromEnv()): { readonly build: "native" | "wasm"; readonly module: EngineModule } => {
  let e = engines.get(build)
  if (e === undefined) {
    e = loadEngineModule(build, loadNative)
    engines.set(build, e)
  }
  return e
}

/**
 * Loads `@dart-rl/node` (throws when the addon has not been built:
 * run `pnpm build:addon` or `bash scripts/setup.sh`).
 */
export const loadNative = (): NativeModule => {
  if (cached === undefined) {
    const require = createRequire(import.meta.url)
    cached = require("@dart-rl/node") as NativeModule
  }
  return cached
}
