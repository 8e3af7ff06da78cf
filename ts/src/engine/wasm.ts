/**
 * The WebAssembly build of the engine (crates/dart-wasm, built by
 * `scripts/build-wasm.sh` into crates/dart-wasm/pkg) behind the native
 * addon's interface: the class below is checked by the compiler against
 * `typeof import("@dart-rl/node").Engine`, so code written for the addon
 * runs on it unchanged (docs/engine-api.md, "WebAssembly").
 *
 * What the adapter adds to the WASM module: Promises where the addon returns
 * them (the WASM calls run on the calling thread and are synchronous),
 * `Engine.load(dir)` (reads config.json and model.safetensors, which the WASM
 * build cannot), DART_PANIC for a Rust panic (WASM aborts the call with a
 * RuntimeError; the module kept the panic's message) and DART_IO for the
 * checkpoint methods, which need a file system the WASM build does not have.
 */
import { existsSync, readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import type * as Addon from "@dart-rl/node"

/** What a WASM build exports (crates/dart-wasm/src/lib.rs). */
interface WasmExports {
  readonly initSync: (module: { module: Uint8Array }) => unknown
  readonly takePanic: () => string | undefined
  readonly assignRoles: (tokens: Int32Array, sources: Uint8Array, rules: Addon.RoleRules) => Uint8Array
  readonly Engine: {
    random(configJson: string, seed: number, opts: unknown): WasmEngine
    fromBytes(configJson: string, safetensors: Uint8Array, opts: unknown): WasmEngine
  }
}

interface WasmEngine {
  backendInfo(): Addon.BackendInfo
  configJson(): string
  addAdapter(spec: Addon.AdapterSpec): number
  numAdapters(): number
  setTrainBase(on: boolean): void
  forward(tokens: Int32Array, seqLens: Int32Array, routes: Int32Array, logprobMask?: Uint8Array | null): Float32Array
  backward(dLdlogp: Float32Array): void
  zeroGrad(): void
  step(options: Addon.StepOptions): Addon.StepReport
  adapterTensors(slot: number): Record<string, Float32Array>
  adapterGrads(slot: number): Record<string, Float32Array>
  optimizerState(slot: number): Record<string, Float32Array>
  setAdapterTensor(slot: number, name: string, data: Float32Array): void
  baseTensor(name: string): Float32Array
  session(options: Addon.SessionOptions): WasmSession
  debugPanic(): void
}

interface WasmSession {
  addSequence(prompt: Int32Array): number
  extend(seq: number, tokens: Int32Array, role: string): void
  finish(seq: number): void
  generate(options: Addon.GenerateOptions): Array<Addon.Generated>
  sequence(seq: number): Addon.Generated
  numSequences(): number
}

/** The part of the addon the WASM build provides: the engine. */
export type EngineModule = Pick<typeof Addon, "Engine" | "assignRoles">

/** Where `scripts/build-wasm.sh` writes the package. */
export const wasmPackageDir = fileURLToPath(new URL("../../../crates/dart-wasm/pkg/", import.meta.url))

const codedError = (code: string, message: string): Error => Object.assign(new Error(message), { code })

let wasm: WasmExports | undefined

const exportsOf = (): WasmExports => {
  if (wasm === undefined) {
    const js = join(wasmPackageDir, "dart_wasm.js")
    if (!existsSync(js)) {
      throw codedError(
        "DART_UNKNOWN",
        `the WASM engine is not built (${js} is missing): run bash scripts/build-wasm.sh (or bash scripts/setup.sh)`
      )
    }
    // Node >= 22.12 loads an ES module through require, so loading stays synchronous like the addon's.
    const m = createRequire(import.meta.url)(js) as WasmExports
    m.initSync({ module: readFileSync(join(wasmPackageDir, "dart_wasm_bg.wasm")) })
    wasm = m
  }
  return wasm
}

/** Runs a WASM call; a trap (a Rust panic) becomes DART_PANIC with the panic's message. */
const call = <A>(f: () => A): A => {
  try {
    return f()
  } catch (cause) {
    // A trap is a WebAssembly.RuntimeError (the lib this project compiles against does not declare it).
    if (cause instanceof Error && cause.name === "RuntimeError") {
      const panic = exportsOf().takePanic()
      throw codedError("DART_PANIC", `internal panic (please report): ${panic ?? cause.message}`)
    }
    throw cause
  }
}

/** The addon's Promise-returning methods run the WASM call now and settle with it. */
const later = <A>(f: () => A): Promise<A> => {
  try {
    return Promise.resolve(call(f))
  } catch (cause) {
    return Promise.reject(cause)
  }
}

const noFiles = (op: string): Promise<never> =>
  Promise.reject(
    codedError(
      "DART_IO",
      `${op}: the WASM engine has no file system, so it cannot read or write checkpoints; use the native addon (DART_ENGINE=native) for ${op}`
    )
  )

class Session implements Addon.Session {
  constructor(private readonly inner: WasmSession) {}
  addSequence(prompt: Int32Array): number {
    return call(() => this.inner.addSequence(prompt))
  }
  extend(seq: number, tokens: Int32Array, role: string): void {
    call(() => this.inner.extend(seq, tokens, role))
  }
  finish(seq: number): void {
    call(() => this.inner.finish(seq))
  }
  generate(options: Addon.GenerateOptions): Promise<Array<Addon.Generated>> {
    return later(() => this.inner.generate(options))
  }
  sequence(seq: number): Addon.Generated {
    return call(() => this.inner.sequence(seq))
  }
  numSequences(): number {
    return call(() => this.inner.numSequences())
  }
}

class Engine {
  private constructor(private readonly inner: WasmEngine) {}

  /** Reads a model folder's config.json and model.safetensors (sharded folders are not read here). */
  static load(dir: string, opts?: Addon.EngineOptions | null): Promise<Engine> {
    return later(() => {
      const config = join(dir, "config.json")
      const weights = join(dir, "model.safetensors")
      for (const p of [config, weights]) {
        if (!existsSync(p)) {
          throw codedError(
            "DART_IO",
            `${p}: no such file (the WASM engine reads config.json and a single model.safetensors; for sharded weights use the native addon)`
          )
        }
      }
      return new Engine(exportsOf().Engine.fromBytes(readFileSync(config, "utf8"), readFileSync(weights), opts ?? undefined))
    })
  }
  static random(configJson: string, seed: number, opts?: Addon.EngineOptions | null): Engine {
    return new Engine(call(() => exportsOf().Engine.random(configJson, seed, opts ?? undefined)))
  }
  backendInfo(): Addon.BackendInfo {
    return call(() => this.inner.backendInfo())
  }
  configJson(): string {
    return call(() => this.inner.configJson())
  }
  addAdapter(spec: Addon.AdapterSpec): number {
    return call(() => this.inner.addAdapter(spec))
  }
  numAdapters(): number {
    return call(() => this.inner.numAdapters())
  }
  setTrainBase(on: boolean): void {
    call(() => this.inner.setTrainBase(on))
  }
  forward(tokens: Int32Array, seqLens: Int32Array, routes: Int32Array, logprobMask?: Uint8Array | null): Promise<Float32Array> {
    return later(() => this.inner.forward(tokens, seqLens, routes, logprobMask ?? undefined))
  }
  backward(dlDlogp: Float32Array): Promise<void> {
    return later(() => this.inner.backward(dlDlogp))
  }
  zeroGrad(): void {
    call(() => this.inner.zeroGrad())
  }
  step(options: Addon.StepOptions): Promise<Addon.StepReport> {
    return later(() => this.inner.step(options))
  }
  adapterTensors(slot: number): Record<string, Float32Array> {
    return call(() => this.inner.adapterTensors(slot))
  }
  adapterGrads(slot: number): Record<string, Float32Array> {
    return call(() => this.inner.adapterGrads(slot))
  }
  optimizerState(slot: number): Record<string, Float32Array> {
    return call(() => this.inner.optimizerState(slot))
  }
  setAdapterTensor(slot: number, name: string, data: Float32Array): void {
    call(() => this.inner.setAdapterTensor(slot, name, data))
  }
  baseTensor(name: string): Float32Array {
    return call(() => this.inner.baseTensor(name))
  }
  saveAdapter(_slot: number, _dir: string): Promise<void> {
    return noFiles("saveAdapter")
  }
  loadAdapter(_dir: string): Promise<number> {
    return noFiles("loadAdapter")
  }
  saveModel(_dir: string): Promise<void> {
    return noFiles("saveModel")
  }
  saveState(_dir: string): Promise<void> {
    return noFiles("saveState")
  }
  loadState(_dir: string): Promise<void> {
    return noFiles("loadState")
  }
  session(options: Addon.SessionOptions): Addon.Session {
    return new Session(call(() => this.inner.session(options)))
  }
  debugPanic(): Promise<void> {
    return later(() => this.inner.debugPanic())
  }
}

// Compile-time proof that the adapter has the addon's shape: its statics,
// and its instances wherever an addon engine is expected.
const statics: Pick<typeof Addon.Engine, "load" | "random"> = Engine
type AddonEngine<E extends Addon.Engine> = E
export type WasmEngineInstance = AddonEngine<Engine>

/** The WASM build as the addon's engine module (loads the .wasm now). */
export const loadWasm = (): EngineModule => {
  exportsOf()
  const module: EngineModule = {
    // Only the constructor differs (the addon's is not callable either).
    Engine: statics as typeof Addon.Engine,
    assignRoles: (tokens, sources, rules) => call(() => exportsOf().assignRoles(tokens, sources, rules))
  }
  return module
}

/** True when scripts/build-wasm.sh has built the package. */
export const wasmBuilt = (): boolean => existsSync(join(wasmPackageDir, "dart_wasm.js"))

// ---------------------------------------------------------------------------
// Choosing a build

/** Which build runs the engine: the native addon, the WASM build, or auto (native where it loads, else WASM). */
export type EngineBuild = "native" | "wasm" | "auto"
export const ENGINE_BUILDS: ReadonlyArray<EngineBuild> = ["native", "wasm", "auto"]

/** DART_ENGINE (default auto), refused when it names no build. */
export const engineBuildFromEnv = (value: string | undefined = process.env.DART_ENGINE): EngineBuild => {
  if (value === undefined || value === "") return "auto"
  if ((ENGINE_BUILDS as ReadonlyArray<string>).includes(value)) return value as EngineBuild
  throw codedError("DART_INVALID_ARGUMENT", `DART_ENGINE = ${JSON.stringify(value)}, expected "native", "wasm" or "auto"`)
}

/**
 * The engine module of `build`: `loadNative` for the addon (passed in, so
 * this file never loads it itself). Auto takes the addon and falls back to
 * the WASM build only when the addon cannot be loaded (not built, or no
 * binary for this platform); when neither loads, the error names both.
 */
export const loadEngineModule = (
  build: EngineBuild,
  loadNative: () => EngineModule
): { readonly build: "native" | "wasm"; readonly module: EngineModule } => {
  if (build === "native") return { build, module: loadNative() }
  if (build === "wasm") return { build, module: loadWasm() }
  try {
    return { build: "native", module: loadNative() }
  } catch (nativeCause) {
    if (!wasmBuilt()) {
      const why = nativeCause instanceof Error ? nativeCause.message : String(nativeCause)
      throw codedError(
        "DART_UNKNOWN",
        `no engine build loads: the native addon failed (${why}) and the WASM build is missing; run bash scripts/setup.sh`
      )
    }
    return { build: "wasm", module: loadWasm() }
  }
}
