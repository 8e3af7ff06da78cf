/**
 * Shared pieces of the property tests: the addon, the fast-check generators
 * (random tiny models, batches, routes, adapter specs, dL/dlogp) and small
 * helpers (writer convention, tensor comparisons).
 */
import fc from "fast-check"
import type { Engine as EngineClass, AdapterSpec } from "@dart-rl/node"
import { LORA_TARGETS, ModelConfig as ModelConfigSchema } from "@dart-rl/ts/domain"
import { loadEngine } from "@dart-rl/ts/engine"

/** The build under test: DART_ENGINE = native (default here) or wasm. */
export const build = loadEngine(process.env.DART_ENGINE === "wasm" ? "wasm" : "native")
console.log(`property tests on the ${build.build} engine`)
export const { Engine, assignRoles } = build.module
export type Engine = EngineClass

/** Cases per property: DART_PROPERTY_RUNS (default 100). */
export const numRuns = Number(process.env.DART_PROPERTY_RUNS ?? 100)

/**
 * fast-check parameters: numRuns, plus a fixed seed only when
 * DART_PROPERTY_SEED is set (and the replay path of a reported failure when
 * DART_PROPERTY_PATH is set too). Otherwise fast-check draws a fresh seed and
 * prints it with any counterexample.
 */
export const fcParams = (): fc.Parameters<unknown> => {
  const seed = process.env.DART_PROPERTY_SEED
  const path = process.env.DART_PROPERTY_PATH
  if (seed === undefined || seed === "") return { numRuns }
  return path === undefined || path === "" ? { numRuns, seed: Number(seed) } : { numRuns, seed: Number(seed), path }
}

/**
 * Runs an async property for `numRuns` cases and prints how many cases ran
 * (the predicate counts its own executions, shrinking included).
 */
export const checkProperty = async <T>(
  label: string,
  arb: fc.Arbitrary<T>,
  predicate: (value: T) => Promise<void>
): Promise<void> => {
  let cases = 0
  try {
    await fc.assert(
      fc.asyncProperty(arb, async (value) => {
        cases++
        await predicate(value)
      }),
      fcParams()
    )
  } finally {
    console.log(`${label}: ${cases} cases`)
  }
}

// ---------------------------------------------------------------- models

export type ModelConfig = typeof ModelConfigSchema.Type

/**
 * Random tiny configs of every family the engine computes (head_dim explicit,
 * kv heads divide heads): Qwen2, Llama (random attention and MLP biases) and
 * Qwen3 (per-head q/k RMSNorm, random attention bias; q width may differ
 * from hidden).
 */
export const configArb: fc.Arbitrary<ModelConfig> = fc
  .record({
    headDim: fc.constantFrom(2, 4, 8),
    heads: fc.integer({ min: 1, max: 4 }),
    kvPick: fc.nat(),
    layers: fc.integer({ min: 1, max: 3 }),
    vocab: fc.integer({ min: 8, max: 64 }),
    intermediate: fc.integer({ min: 4, max: 48 }),
    tie: fc.boolean(),
    modelType: fc.constantFrom("qwen2" as const, "llama" as const, "qwen3" as const),
    attentionBias: fc.boolean(),
    mlpBias: fc.boolean(),
    qwen3Hidden: fc.constantFrom(4, 8, 12)
  })
  .map((r) => {
    const divisors = Array.from({ length: r.heads }, (_, i) => i + 1).filter((d) => r.heads % d === 0)
    const kv = divisors[r.kvPick % divisors.length]!
    const arch = { qwen2: "Qwen2ForCausalLM", llama: "LlamaForCausalLM", qwen3: "Qwen3ForCausalLM" }[r.modelType]
    const cfg: ModelConfig = {
      model_type: r.modelType,
      architectures: [arch],
      vocab_size: r.vocab,
      hidden_size: r.modelType === "qwen3" ? r.qwen3Hidden : r.heads * r.headDim,
      intermediate_size: r.intermediate,
      num_hidden_layers: r.layers,
      num_attention_heads: r.heads,
      num_key_value_heads: kv,
      head_dim: r.headDim,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: r.tie,
      max_position_embeddings: 64,
      hidden_act: "silu",
      ...(r.modelType !== "qwen2" ? { attention_bias: r.attentionBias } : {}),
      ...(r.modelType === "llama" ? { mlp_bias: r.mlpBias } : {})
    }
    return cfg
  })

export const seedArb = fc.integer({ min: 0, max: 0x7fffffff })

/** The backend the properties run on: DART_BACKEND ("cpu" default, "wgpu" or "auto"). */
export const backend = (process.env.DART_BACKEND ?? "cpu") as "cpu" | "wgpu" | "auto"

/** A seeded random engine (one thread: deterministic) on `backend`. */
export const makeEngine = (cfg: ModelConfig, seed: number): Engine =>
  Engine.random(JSON.stringify(cfg), seed, { threads: 1, backend })

// ---------------------------------------------------------------- adapters

export { LORA_TARGETS }

export const targetsArb: fc.Arbitrary<string[]> = fc
  .subarray([...LORA_TARGETS], { minLength: 1 })

/** Random adapter specs; B ~ N(0, 0.1..0.5) so that adapters change the outputs. */
export const adapterSpecArb: fc.Arbitrary<AdapterSpec> = fc.record({
  rank: fc.integer({ min: 1, max: 8 }),
  alpha: fc.integer({ min: 1, max: 32 }),
  targets: targetsArb,
  seed: seedArb,
  bInitStd: fc.double({ min: 0.1, max: 0.5, noNaN: true }),
  useRslora: fc.boolean()
})

export const adapterSpecsArb = (minK: number, maxK: number): fc.Arbitrary<AdapterSpec[]> =>
  fc.array(adapterSpecArb, { minLength: minK, maxLength: maxK })

// ---------------------------------------------------------------- batches

export type Batch = { tokens: Int32Array; seqLens: Int32Array }

export const seqLensArb = (maxSeqs = 4, maxLen = 12): fc.Arbitrary<number[]> =>
  fc.array(fc.integer({ min: 1, max: maxLen }), { minLength: 1, maxLength: maxSeqs })

export const batchArb = (vocab: number): fc.Arbitrary<Batch> =>
  seqLensArb().chain((lens) => {
    const total = lens.reduce((a, b) => a + b, 0)
    return fc
      .array(fc.integer({ min: 0, max: vocab - 1 }), { minLength: total, maxLength: total })
      .map((toks) => ({ tokens: Int32Array.from(toks), seqLens: Int32Array.from(lens) }))
  })

/** One route per token over {-1 (base), 0..k-1}. */
export const routesArb = (n: number, k: number): fc.Arbitrary<Int32Array> =>
  fc.array(fc.integer({ min: -1, max: k - 1 }), { minLength: n, maxLength: n }).map((r) => Int32Array.from(r))

/** dL/dlogp per token in [-1, 1], away from 0 (|x| >= 0.05) so that every token matters. */
export const dLdlogpArb = (n: number): fc.Arbitrary<Float32Array> =>
  fc
    .array(
      fc.tuple(fc.double({ min: 0.05, max: 1, noNaN: true }), fc.boolean()).map(([m, s]) => (s ? m : -m)),
      { minLength: n, maxLength: n }
    )
    .map((d) => Float32Array.from(d))

/** A model, K adapters (K in minK..maxK), a batch, routes over {-1, 0..K-1} and dL/dlogp. */
export type Case = {
  cfg: ModelConfig
  seed: number
  specs: AdapterSpec[]
  batch: Batch
  routes: Int32Array
  dLdlogp: Float32Array
}

export const caseArb = (minK = 1, maxK = 3): fc.Arbitrary<Case> =>
  fc
    .record({ cfg: configArb, seed: seedArb, specs: adapterSpecsArb(minK, maxK) })
    .chain(({ cfg, seed, specs }) =>
      batchArb(cfg.vocab_size).chain((batch) =>
        fc
          .record({ routes: routesArb(batch.tokens.length, specs.length), dLdlogp: dLdlogpArb(batch.tokens.length) })
          .map(({ routes, dLdlogp }) => ({ cfg, seed, specs, batch, routes, dLdlogp }))
      )
    )

/** The engine of a case with its adapters added (slot i = specs[i]). */
export const caseEngine = (c: Pick<Case, "cfg" | "seed" | "specs">): Engine => {
  const engine = makeEngine(c.cfg, c.seed)
  for (const spec of c.specs) engine.addAdapter(spec)
  return engine
}

// ---------------------------------------------------------------- writer convention

/** [start, length] of every sequence of a packed batch. */
export const sequences = (seqLens: ArrayLike<number>): Array<[number, number]> => {
  const out: Array<[number, number]> = []
  let start = 0
  for (let i = 0; i < seqLens.length; i++) {
    out.push([start, seqLens[i]!])
    start += seqLens[i]!
  }
  return out
}

/**
 * The index of the routes entry that position p runs with (writer convention):
 * p + 1 inside a sequence, p itself at the last position of a sequence.
 * routes[start] of a sequence of length >= 2 is never used.
 */
export const routeEntries = (seqLens: ArrayLike<number>): Int32Array => {
  const n = Array.from(seqLens).reduce((a, b) => a + b, 0)
  const out = new Int32Array(n)
  for (const [s, l] of sequences(seqLens)) {
    for (let i = 0; i < l; i++) out[s + i] = i + 1 === l ? s + i : s + i + 1
  }
  return out
}

/** The adapter slot (or -1 = base) that each position runs with. */
export const positionRoutes = (seqLens: ArrayLike<number>, routes: ArrayLike<number>): Int32Array =>
  routeEntries(seqLens).map((e) => routes[e]!)

/**
 * The routes of the positions that predict a token (every position but the
 * last of each sequence): what the engine counts as a slot's tokens.
 */
export const predictingRoutes = (seqLens: ArrayLike<number>, routes: ArrayLike<number>): Int32Array => {
  const out: number[] = []
  for (const [s, l] of sequences(seqLens)) for (let i = 1; i < l; i++) out.push(routes[s + i]!)
  return Int32Array.from(out)
}

/** Slots that some position runs with. */
export const routedSlots = (seqLens: ArrayLike<number>, routes: ArrayLike<number>): Set<number> =>
  new Set(Array.from(positionRoutes(seqLens, routes)).filter((r) => r >= 0))

// ---------------------------------------------------------------- comparisons

export type Tensors = Record<string, Float32Array>

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength)

/** Bitwise equality of two float arrays (NaN payloads and -0 included). */
export const sameBits = (a: Float32Array, b: Float32Array): boolean =>
  a.length === b.length && bytes(a).equals(bytes(b))

/** Names whose tensors differ in some bit (or exist in one map only). */
export const bitDiffs = (a: Tensors, b: Tensors): string[] => {
  const names = new Set([...Object.keys(a), ...Object.keys(b)])
  return [...names].filter((n) => a[n] === undefined || b[n] === undefined || !sameBits(a[n], b[n]))
}

export const maxAbs = (a: ArrayLike<number>): number => {
  let m = 0
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]!))
  return m
}

/**
 * Tolerance for sums of f32 products in a different order:
 * |a - b| <= rel * (1 + max|a|) element-wise. Returns a description of the
 * worst element when it fails, undefined when it holds.
 */
export const closeTo = (
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  rel: number,
  what: string
): string | undefined => {
  if (got.length !== want.length) return `${what}: length ${got.length} != ${want.length}`
  const tol = rel * (1 + maxAbs(want))
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - want[i]!)
    if (!(d <= tol)) return `${what}[${i}]: ${got[i]} vs ${want[i]} (|diff| ${d} > ${tol})`
  }
  return undefined
}

export const assertClose = (got: ArrayLike<number>, want: ArrayLike<number>, rel: number, what: string): void => {
  const err = closeTo(got, want, rel, what)
  if (err !== undefined) throw new Error(err)
}

export const assertTensorsClose = (got: Tensors, want: Tensors, rel: number, what: string): void => {
  const names = Object.keys(want).sort()
  if (Object.keys(got).sort().join() !== names.join()) {
    throw new Error(`${what}: tensor names differ: ${Object.keys(got).sort()} vs ${names}`)
  }
  for (const n of names) assertClose(got[n]!, want[n]!, rel, `${what} ${n}`)
}

export const isAllZero = (a: Float32Array): boolean => a.every((x) => x === 0)

/** Routes over {-1} ∪ live for the entries that matter; entries that never matter (routes[start] of a
 * sequence of length >= 2) are drawn over every slot {-1, 0..k-1}, to exercise the writer convention. */
export const liveRoutesArb = (seqLens: ArrayLike<number>, k: number, live: number[]): fc.Arbitrary<Int32Array> => {
  const used = new Set(routeEntries(seqLens))
  const n = Array.from(seqLens).reduce((a, b) => a + b, 0)
  const choices = [-1, ...live]
  return fc
    .array(fc.tuple(fc.nat(), fc.integer({ min: -1, max: k - 1 })), { minLength: n, maxLength: n })
    .map((draws) => Int32Array.from(draws, ([pick, any], i) => (used.has(i) ? choices[pick % choices.length]! : any)))
}

/** A small seeded PRNG (mulberry32) for bulk data such as perturbed tensors. */
export const prng = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const snapshot = (engine: Engine, slots: number): Tensors[] =>
  Array.from({ length: slots }, (_, s) => engine.adapterTensors(s))
