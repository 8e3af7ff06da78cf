/**
 * The engine (dart-core via the `@dart-rl/node` addon) as an Effect service.
 *
 * Every addon call that returns a promise or may throw becomes an Effect whose
 * error channel holds one of four schema-backed tagged errors, chosen by the
 * family of the addon's `code` (docs/engine-api.md, "Errors"):
 *
 * - `EngineInputError`  bad arguments: DART_INVALID_ARGUMENT, DART_SHAPE,
 *                       DART_MISSING_TENSOR, DART_UNKNOWN_SLOT, DART_CONFIG
 * - `EngineIoError`     DART_IO
 * - `EngineStateError`  DART_STATE (e.g. backward without forward), DART_NON_FINITE
 * - `EngineDefect`      DART_PANIC (a caught Rust panic) or DART_UNKNOWN (an error
 *                       without a DART code, e.g. the addon is not built)
 *
 * The native engine is stateful (backward refers to the latest forward), so
 * every call goes through one lock per engine: two fibers cannot interleave
 * a forward/backward pair. Forward plus backward is one call,
 * `accumulate(batch, objective)`; several calls that must not be
 * interleaved run inside `exclusive`. Generation sessions are scoped
 * (`session`, below): a closed session refuses further calls.
 */
import { Context, Effect, Layer, Schema, type Scope, Semaphore } from "effect"
import {
  type AdapterSpec,
  type EngineOptions,
  type Generated,
  type GenerateOptions,
  type EngineBuild,
  type GenPlan,
  loadEngine,
  type NativeEngine,
  type NativeSession,
  nativeErrorCode,
  type RoleRules,
  type StepOptions,
  type StepReport
} from "./native.ts"

import type { ModelConfig } from "../domain/model.ts"

export type {
  AdapterSpec,
  BackendInfo,
  EngineOptions,
  Generated,
  GenerateOptions,
  GenPlan,
  LoraTarget,
  NativeEngine,
  RoleRules,
  SlotReport,
  StepOptions,
  StepReport,
  StopReason
} from "./native.ts"
export { ENGINE_BUILDS, engineBuildFromEnv, LORA_TARGETS, loadEngine, ROLE } from "./native.ts"
export type { EngineBuild, EngineModule } from "./native.ts"

// ---------------------------------------------------------------------------
// Errors

export const InputErrorCode = Schema.Literals([
  "DART_INVALID_ARGUMENT",
  "DART_SHAPE",
  "DART_MISSING_TENSOR",
  "DART_UNKNOWN_SLOT",
  "DART_CONFIG"
])
export const IoErrorCode = Schema.Literals(["DART_IO"])
export const StateErrorCode = Schema.Literals(["DART_STATE", "DART_NON_FINITE"])
export const DefectCode = Schema.Literals(["DART_PANIC", "DART_UNKNOWN"])

const errorFields = {
  /** The engine operation that failed, e.g. "forward". */
  op: Schema.String,
  message: Schema.String
}

export class EngineInputError extends Schema.TaggedError<EngineInputError>()("EngineInputError", {
  code: InputErrorCode,
  ...errorFields
}) {}

export class EngineIoError extends Schema.TaggedError<EngineIoError>()("EngineIoError", {
  code: IoErrorCode,
  ...errorFields
}) {}

export class EngineStateError extends Schema.TaggedError<EngineStateError>()("EngineStateError", {
  code: StateErrorCode,
  ...errorFields
}) {}

export class EngineDefect extends Schema.TaggedError<EngineDefect>()("EngineDefect", {
  code: DefectCode,
  ...errorFields
}) {}

export type EngineError = EngineInputError | EngineIoError | EngineStateError | EngineDefect
export type EngineErrorCode = EngineError["code"]

const isIn = <const L extends ReadonlyArray<string>>(literals: L, code: string): code is L[number] =>
  (literals as ReadonlyArray<string>).includes(code)

/** Maps anything the addon throws or rejects with to a typed engine error. */
export const toEngineError = (op: string) => (cause: unknown): EngineError => {
  const code = nativeErrorCode(cause)
  const message = cause instanceof Error ? cause.message : String(cause)
  if (isIn(InputErrorCode.literals, code)) return new EngineInputError({ op, code, message })
  if (isIn(IoErrorCode.literals, code)) return new EngineIoError({ op, code, message })
  if (isIn(StateErrorCode.literals, code)) return new EngineStateError({ op, code, message })
  if (code === "DART_PANIC") return new EngineDefect({ op, code, message })
  return new EngineDefect({ op, code: "DART_UNKNOWN", message: code ? `${code}: ${message}` : message })
}

const attempt = <A>(op: string, f: () => A): Effect.Effect<A, EngineError> =>
  Effect.try({ try: f, catch: toEngineError(op) })

const attemptPromise = <A>(op: string, f: () => Promise<A>): Effect.Effect<A, EngineError> =>
  Effect.tryPromise({ try: f, catch: toEngineError(op) })

// ---------------------------------------------------------------------------
// Model config: one schema, in ../domain/model.ts

export { ModelConfig } from "../domain/model.ts"

// ---------------------------------------------------------------------------
// Service

/** Sequences packed end to end; `routes[t]` = slot that writes token t, -1 = base. */
export interface Batch {
  readonly tokens: Int32Array
  readonly seqLens: Int32Array
  readonly routes: Int32Array
  /**
   * 1 = token t's logprob is wanted, 0 = not (default: all). The LM head runs
   * only on the wanted tokens; the others read 0 and their dL/dlogp is
   * ignored. The layers still run on every token, so the context is the same.
   */
  readonly logprobMask?: Uint8Array
}

/** What an objective returns to `accumulate`: dL/dlogp per token, and anything else it computed. */
export interface ObjectiveResult {
  readonly dLdlogp: Float32Array
}

/** A generation session (docs/engine-api.md, "Generation") with typed errors; closed with its scope. */
export interface GenerationSessionShape {
  /** Adds a sequence with its prompt tokens (role P); returns its index. */
  readonly addSequence: (prompt: Int32Array) => Effect.Effect<number, EngineError>
  /** Appends prompt or tool-output tokens and resumes the sequence. */
  readonly extend: (seq: number, tokens: Int32Array, role: "prompt" | "observation") => Effect.Effect<void, EngineError>
  /** Stops a sequence until it is extended again. */
  readonly finish: (seq: number) => Effect.Effect<void, EngineError>
  /** Decodes every active sequence (one batch) until each stops; what each gained. */
  readonly generate: (options: GenerateOptions) => Effect.Effect<ReadonlyArray<Generated>, EngineError>
  /** The whole history of a sequence. */
  readonly sequence: (seq: number) => Effect.Effect<Generated, EngineError>
}

/** The addon's GenPlan, read-only (the session copies it). */
export interface GenerationPlanInput {
  readonly agents: ReadonlyArray<ReadonlyArray<number>>
  readonly writerR: number
  readonly writerA: number
}

export interface SessionOptions {
  readonly plan: GenerationPlanInput
  readonly rules: RoleRules
  readonly seed?: number
}

export interface EngineShape {
  /** The addon object itself, for what this wrapper does not cover (unsynchronised). */
  readonly native: NativeEngine
  readonly configJson: Effect.Effect<string, EngineError>
  readonly addAdapter: (spec: AdapterSpec) => Effect.Effect<number, EngineError>
  readonly numAdapters: Effect.Effect<number, EngineError>
  readonly setTrainBase: (on: boolean) => Effect.Effect<void, EngineError>
  /** Per-token logprobs of the given tokens (0 at each sequence start). */
  readonly forward: (batch: Batch) => Effect.Effect<Float32Array, EngineError>
  /** Accumulates gradients for dL/dlogp (same layout as the latest forward). */
  readonly backward: (dLdlogp: Float32Array) => Effect.Effect<void, EngineError>
  /**
   * forward, then the objective on its logprobs, then backward of the
   * objective's dL/dlogp, with no other engine call in between.
   */
  readonly accumulate: <R extends ObjectiveResult, E, Req>(
    batch: Batch,
    objective: (logprobs: Float32Array) => Effect.Effect<R, E, Req>
  ) => Effect.Effect<R, E | EngineError, Req>
  /**
   * Runs `f` with the engine to itself: `f` receives an unsynchronised view
   * (calling the synchronised engine inside `f` would wait forever).
   */
  readonly exclusive: <A, E, Req>(f: (engine: EngineShape) => Effect.Effect<A, E, Req>) => Effect.Effect<A, E, Req>
  readonly zeroGrad: Effect.Effect<void, EngineError>
  readonly step: (options: StepOptions) => Effect.Effect<StepReport, EngineError>
  readonly adapterTensors: (slot: number) => Effect.Effect<Record<string, Float32Array>, EngineError>
  readonly adapterGrads: (slot: number) => Effect.Effect<Record<string, Float32Array>, EngineError>
  readonly setAdapterTensor: (slot: number, name: string, data: Float32Array) => Effect.Effect<void, EngineError>
  readonly baseTensor: (name: string) => Effect.Effect<Float32Array, EngineError>
  readonly saveAdapter: (slot: number, dir: string) => Effect.Effect<void, EngineError>
  readonly loadAdapter: (dir: string) => Effect.Effect<number, EngineError>
  readonly saveModel: (dir: string) => Effect.Effect<void, EngineError>
  readonly saveState: (dir: string) => Effect.Effect<void, EngineError>
  readonly loadState: (dir: string) => Effect.Effect<void, EngineError>
  /** A generation session over this engine, closed when the scope closes. */
  readonly session: (options: SessionOptions) => Effect.Effect<GenerationSessionShape, EngineError, Scope.Scope>
}

export class Engine extends Context.Service<Engine, EngineShape>()("@dart-rl/ts/Engine") {}

const sessionOf = (
  native: NativeSession,
  guard: <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>,
  isOpen: () => boolean
): GenerationSessionShape => {
  const open = <A>(op: string, f: () => A): Effect.Effect<A, EngineError> =>
    Effect.suspend(() =>
      isOpen()
        ? attempt(op, f)
        : Effect.fail(new EngineStateError({ op, code: "DART_STATE", message: "the generation session is closed (its scope ended)" }))
    )
  return {
    addSequence: (prompt) => guard(open("addSequence", () => native.addSequence(prompt))),
    extend: (seq, tokens, role) => guard(open("extend", () => native.extend(seq, tokens, role))),
    finish: (seq) => guard(open("finish", () => native.finish(seq))),
    generate: (options) =>
      guard(Effect.flatMap(open("generate", () => native.generate(options)), (p) => attemptPromise("generate", () => p))),
    sequence: (seq) => guard(open("sequence", () => native.sequence(seq)))
  }
}

/** The engine's calls without the lock (what `exclusive` hands out). */
const unlocked = (native: NativeEngine, guard: <A, E, R>(e: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>): EngineShape => {
  const self: EngineShape = {
    native,
    configJson: attempt("configJson", () => native.configJson()),
    addAdapter: (spec) => attempt("addAdapter", () => native.addAdapter({ ...spec, targets: [...spec.targets] })),
    numAdapters: attempt("numAdapters", () => native.numAdapters()),
    setTrainBase: (on) => attempt("setTrainBase", () => native.setTrainBase(on)),
    forward: ({ logprobMask, routes, seqLens, tokens }) => attemptPromise("forward", () => native.forward(tokens, seqLens, routes, logprobMask)),
    backward: (dLdlogp) => attemptPromise("backward", () => native.backward(dLdlogp)),
    accumulate: (batch, objective) =>
      Effect.gen(function*() {
        const logprobs = yield* self.forward(batch)
        const result = yield* objective(logprobs)
        yield* self.backward(result.dLdlogp)
        return result
      }),
    exclusive: (f) => f(self),
    zeroGrad: attempt("zeroGrad", () => native.zeroGrad()),
    step: (options) => attemptPromise("step", () => native.step(options)),
    adapterTensors: (slot) => attempt("adapterTensors", () => native.adapterTensors(slot)),
    adapterGrads: (slot) => attempt("adapterGrads", () => native.adapterGrads(slot)),
    setAdapterTensor: (slot, name, data) => attempt("setAdapterTensor", () => native.setAdapterTensor(slot, name, data)),
    baseTensor: (name) => attempt("baseTensor", () => native.baseTensor(name)),
    saveAdapter: (slot, dir) => attemptPromise("saveAdapter", () => native.saveAdapter(slot, dir)),
    loadAdapter: (dir) => attemptPromise("loadAdapter", () => native.loadAdapter(dir)),
    saveModel: (dir) => attemptPromise("saveModel", () => native.saveModel(dir)),
    saveState: (dir) => attemptPromise("saveState", () => native.saveState(dir)),
    loadState: (dir) => attemptPromise("loadState", () => native.loadState(dir)),
    session: ({ plan, rules, seed }) =>
      Effect.gen(function*() {
        let open = true
        const session = yield* attempt("session", () =>
          native.session({ plan: { ...plan, agents: plan.agents.map((a) => [...a]) }, rules, ...(seed === undefined ? {} : { seed }) }))
        yield* Effect.addFinalizer(() => Effect.sync(() => void (open = false)))
        return sessionOf(session, guard, () => open)
      })
  }
  return self
}

/** Wraps an addon engine instance; every call takes the engine's lock. */
export const make = (native: NativeEngine): EngineShape => {
  const lock = Semaphore.makeUnsafe(1)
  const guard = <A, E, R>(effect: Effect.Effect<A, E, R>) => lock.withPermits(1)(effect)
  const raw = unlocked(native, guard)
  return {
    native,
    configJson: guard(raw.configJson),
    addAdapter: (spec) => guard(raw.addAdapter(spec)),
    numAdapters: guard(raw.numAdapters),
    setTrainBase: (on) => guard(raw.setTrainBase(on)),
    forward: (batch) => guard(raw.forward(batch)),
    backward: (d) => guard(raw.backward(d)),
    accumulate: (batch, objective) => guard(raw.accumulate(batch, objective)),
    exclusive: (f) => guard(f(raw)),
    zeroGrad: guard(raw.zeroGrad),
    step: (options) => guard(raw.step(options)),
    adapterTensors: (slot) => guard(raw.adapterTensors(slot)),
    adapterGrads: (slot) => guard(raw.adapterGrads(slot)),
    setAdapterTensor: (slot, name, data) => guard(raw.setAdapterTensor(slot, name, data)),
    baseTensor: (name) => guard(raw.baseTensor(name)),
    saveAdapter: (slot, dir) => guard(raw.saveAdapter(slot, dir)),
    loadAdapter: (dir) => guard(raw.loadAdapter(dir)),
    saveModel: (dir) => guard(raw.saveModel(dir)),
    saveState: (dir) => guard(raw.saveState(dir)),
    loadState: (dir) => guard(raw.loadState(dir)),
    session: (options) => raw.session(options)
  }
}
/**
 * The engine's options, plus `build`: which build computes (default: the
 * DART_ENGINE environment variable, else auto = the native addon where it
 * loads, otherwise the WASM build).
 */
export type LoadOptions = EngineOptions & { readonly build?: EngineBuild }

const engineClass = (build: EngineBuild | undefined) => loadEngine(build).module.Engine

const engineOptions = ({ build: _, ...rest }: LoadOptions): EngineOptions => rest

/** An engine over a Hugging Face model folder (config.json + safetensors). */
export const load = (dir: string, options: LoadOptions = {}): Effect.Effect<EngineShape, EngineError> =>
  attemptPromise("load", () => engineClass(options.build).load(dir, engineOptions(options))).pipe(Effect.map(make))

/** An engine over a randomly initialised model of the given architecture. */
export const random = (
  config: ModelConfig,
  seed: number,
  options: LoadOptions = {}
): Effect.Effect<EngineShape, EngineError> =>
  attempt("random", () => engineClass(options.build).random(JSON.stringify(config), seed, engineOptions(options))).pipe(
    Effect.map(make)
  )

/** Provides `Engine` from a model folder. */
export const layerLoad = (dir: string, options?: LoadOptions): Layer.Layer<Engine, EngineError> =>
  Layer.effect(Engine)(load(dir, options))

/** Provides `Engine` from a random model (tests, demos). */
export const layerRandom = (
  config: ModelConfig,
  seed: number,
  options?: LoadOptions
): Layer.Layer<Engine, EngineError> => Layer.effect(Engine)(random(config, seed, options))

/** A tiny Qwen2-shaped architecture for tests and demos. */
export const tinyQwen2Config: ModelConfig = {
  model_type: "qwen2",
  architectures: ["Qwen2ForCausalLM"],
  vocab_size: 64,
  hidden_size: 64,
  intermediate_size: 128,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 512,
  hidden_act: "silu"
}
