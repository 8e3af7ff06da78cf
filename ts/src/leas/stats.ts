/**
 * LEAS statistics (docs/leas.md), pure: per-question draws of the six
 * variants in, a plain JSON-able analysis out.
 *
 * - s = mean of the N draws of a (variant, question) cell; z = logit(s) with
 *   s clipped to [1/(2N), 1 - 1/(2N)]; lambda = X^-1 z (algebra.ts).
 * - A question where no variant is ever correct (every draw 0) is dropped
 *   and counted (its id is listed).
 * - Every cell of every question must hold the same number N of draws.
 * - Shares of the kept questions with lambda_23 < 0 (interference), > 0
 *   (synergy) and = 0, each with a seeded percentile bootstrap 95% CI:
 *   `bootstrap` resamples of the kept questions with replacement, the 2.5%
 *   and 97.5% quantiles (linear interpolation) of the resampled shares.
 * - The same per data source (a bootstrap stream per source).
 * - Sensitivity to N: for each n, each cell keeps n of its N draws (seeded,
 *   without replacement, independently per cell), the clip bounds become
 *   those of n and the dropping rule is applied again at n (what a run with
 *   only n samples would have seen); the shares are averaged over
 *   `sensitivityRepeats` such subsamples (min and max are kept too). At
 *   n = N the subsample is all draws in their order, so the last point of the
 *   line is the full analysis.
 *
 * Randomness comes from domain/random.ts's seeded PRNG; each stream (the
 * overall bootstrap, each source's, each sensitivity subsample) gets its own
 * seed derived from `seed` and the stream's name, so adding a source does not
 * shift the others.
 */
import { Result, Schema } from "effect"
import { prng } from "../domain/random.ts"
import { clipBounds, type Coefficient, COEFFICIENTS, fitQuestion, type Variant, VARIANTS } from "./algebra.ts"

// ---------------------------------------------------------------------------
// Input and issues

export interface QuestionDraws {
  readonly id: string
  readonly dataSource: string
  readonly question?: string
  /** The N exact-match draws (each in [0, 1]) of each variant. */
  readonly draws: Record<Variant, ReadonlyArray<number>>
}

export interface AnalyzeSettings {
  readonly seed: number
  /** Bootstrap resamples of the questions (default 2000). */
  readonly bootstrap?: number
  /** The n of the sensitivity lines (default [5, 10, 25, 50]); capped at N, and N is always added. */
  readonly sensitivity?: ReadonlyArray<number>
  /** Subsamples averaged per sensitivity point (default 5; one at n = N). */
  readonly sensitivityRepeats?: number
}

export const DEFAULT_BOOTSTRAP = 2000
export const DEFAULT_SENSITIVITY: ReadonlyArray<number> = [5, 10, 25, 50]
export const DEFAULT_SENSITIVITY_REPEATS = 5
/** The bootstrap confidence level. */
export const CI_LEVEL = 0.95

/** What can be wrong with the input of `analyze` / `analyzeGradients`. */
export const LeasInputIssue = Schema.Union([
  /** A cell holds a different number of draws than the first cell of the first question. */
  Schema.TaggedStruct("UnequalDraws", { question: Schema.String, variant: Schema.String, expected: Schema.Number, got: Schema.Number }),
  /** A draw that is not a number in [0, 1]. */
  Schema.TaggedStruct("BadDraw", { question: Schema.String, variant: Schema.String, index: Schema.Number, value: Schema.String }),
  Schema.TaggedStruct("DuplicateQuestion", { question: Schema.String }),
  /** Nothing to analyse (no questions, or every one dropped). */
  Schema.TaggedStruct("NoQuestions", { detail: Schema.String }),
  Schema.TaggedStruct("Settings", { detail: Schema.String }),
  /** A gradient cosine that is not a number in [-1, 1]. */
  Schema.TaggedStruct("BadCosine", { set: Schema.String, index: Schema.Number, value: Schema.String })
])
export type LeasInputIssue = typeof LeasInputIssue.Type

export const inputIssueMessage = (r: LeasInputIssue): string => {
  switch (r._tag) {
    case "UnequalDraws":
      return `question ${JSON.stringify(r.question)}, variant ${r.variant}: ${r.got} draws, expected ${r.expected} (every variant of every question needs the same N)`
    case "BadDraw":
      return `question ${JSON.stringify(r.question)}, variant ${r.variant}, draw ${r.index}: expected a number in [0, 1], got ${r.value}`
    case "DuplicateQuestion":
      return `question id ${JSON.stringify(r.question)} appears more than once`
    case "NoQuestions":
      return `nothing to analyse: ${r.detail}`
    case "Settings":
      return `settings: ${r.detail}`
    case "BadCosine":
      return `${r.set}[${r.index}]: expected a cosine in [-1, 1], got ${r.value}`
  }
}

// ---------------------------------------------------------------------------
// Output

/** The sign of lambda_23: < 0 interference, > 0 synergy, = 0 zero. */
export type Interaction = "interference" | "synergy" | "zero"

export interface QuestionResult {
  readonly id: string
  readonly dataSource: string
  readonly question?: string
  readonly s: Record<Variant, number>
  readonly clipped: Record<Variant, boolean>
  readonly z: Record<Variant, number>
  readonly lambda: Record<Coefficient, number>
  /** The sign of lambda_23. */
  readonly interaction: Interaction
}

export interface Share {
  readonly count: number
  readonly share: number
  /** Percentile bootstrap CI (CI_LEVEL) over questions. */
  readonly ci: readonly [number, number]
}

export interface Shares {
  /** Kept questions these shares are over. */
  readonly questions: number
  readonly interference: Share
  readonly synergy: Share
  readonly zero: Share
}

export interface Histogram {
  /** Bin edges, ascending; bin i is [edges[i], edges[i+1]) and the last bin is closed. */
  readonly edges: ReadonlyArray<number>
  readonly counts: ReadonlyArray<number>
}

export interface Quantile {
  readonly p: number
  readonly value: number
}

export interface Distribution {
  readonly n: number
  readonly mean: number
  readonly median: number
  readonly min: number
  readonly max: number
  /** p = 0.05, 0.25, 0.5, 0.75, 0.95 (linear interpolation). */
  readonly quantiles: ReadonlyArray<Quantile>
  readonly histogram: Histogram
}

export interface SourceResult {
  readonly dataSource: string
  readonly questions: number
  readonly kept: number
  readonly dropped: number
  readonly shares: Shares | null
}

export interface Spread {
  readonly mean: number
  readonly min: number
  readonly max: number
}

export interface SensitivityPoint {
  readonly n: number
  readonly repeats: number
  /** Mean number of kept questions over the repeats. */
  readonly kept: number
  /** Mean, min and max over the repeats that kept at least one question (null if none did). */
  readonly interference: Spread | null
  readonly synergy: Spread | null
  readonly zero: Spread | null
}

export interface LeasAnalysis {
  readonly settings: {
    /** Draws per (variant, question). */
    readonly n: number
    readonly clip: { readonly low: number; readonly high: number; readonly rule: string }
    readonly seed: number
    readonly bootstrap: number
    readonly ciLevel: number
    readonly sensitivity: ReadonlyArray<number>
    readonly sensitivityRepeats: number
  }
  readonly counts: {
    readonly questions: number
    readonly kept: number
    readonly dropped: number
    readonly droppedIds: ReadonlyArray<string>
  }
  readonly questions: ReadonlyArray<QuestionResult>
  readonly shares: Shares
  readonly lambda23: Distribution
  /** Mean and median of each coefficient over the kept questions. */
  readonly coefficients: Record<Coefficient, { readonly mean: number; readonly median: number }>
  readonly bySource: ReadonlyArray<SourceResult>
  readonly sensitivity: ReadonlyArray<SensitivityPoint>
}

// ---------------------------------------------------------------------------
// Small numeric helpers

const mean = (xs: ReadonlyArray<number>): number => {
  let sum = 0
  for (const x of xs) sum += x
  return sum / xs.length
}

/** Quantile of sorted values, linear interpolation between order statistics (R type 7). */
export const quantileSorted = (sorted: ReadonlyArray<number>, p: number): number => {
  const h = (sorted.length - 1) * p
  const lo = Math.floor(h)
  const hi = Math.min(sorted.length - 1, lo + 1)
  return sorted[lo]! + (h - lo) * (sorted[hi]! - sorted[lo]!)
}

const QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95] as const

/** 1, 2, 2.5 or 5 times a power of ten, at least `x`. */
const niceStep = (x: number): number => {
  const p = 10 ** Math.floor(Math.log10(x))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x * (1 - 1e-12)) return m * p
  return 10 * p
}

/** Counts of `xs` in the bins of `edges` (last bin closed; values outside are left out). */
export const histogram = (xs: ReadonlyArray<number>, edges: ReadonlyArray<number>): Histogram => {
  const counts = new Array<number>(edges.length - 1).fill(0)
  const last = edges.length - 2
  for (const x of xs) {
    if (x < edges[0]! || x > edges[last + 1]!) continue
    let i = 0
    while (i < last && x >= edges[i + 1]!) i++
    counts[i]!++
  }
  return { edges, counts }
}

/** Edges symmetric about 0 (0 is an edge), about 10 bins per side, covering every value. */
const symmetricEdges = (xs: ReadonlyArray<number>): Array<number> => {
  const m = xs.reduce((a, x) => Math.max(a, Math.abs(x)), 0)
  const step = m === 0 ? 1 : niceStep(m / 10)
  const k = Math.max(1, Math.ceil(m / step - 1e-9))
  return Array.from({ length: 2 * k + 1 }, (_, i) => Number(((i - k) * step).toPrecision(12)))
}

const distribution = (xs: ReadonlyArray<number>, edges: ReadonlyArray<number>): Distribution => {
  const sorted = [...xs].sort((a, b) => a - b)
  return {
    n: xs.length,
    mean: mean(xs),
    median: quantileSorted(sorted, 0.5),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
    quantiles: QUANTILES.map((p) => ({ p, value: quantileSorted(sorted, p) })),
    histogram: histogram(xs, edges)
  }
}

/** A 32-bit seed for the stream `name` of a run seeded `seed` (FNV-1a of the name, mixed with the seed). */
export const streamSeed = (seed: number, name: string): number => {
  let h = 0x811c9dc5 ^ (seed >>> 0)
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193)
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  return h >>> 0
}

// ---------------------------------------------------------------------------
// Shares and the bootstrap

export const interactionOf = (l23: number): Interaction => (l23 < 0 ? "interference" : l23 > 0 ? "synergy" : "zero")

/**
 * The shares of `effects` with a percentile bootstrap CI: `resamples`
 * resamples of the questions with replacement from `prng(seed)`.
 */
export const bootstrapShares = (effects: ReadonlyArray<Interaction>, resamples: number, seed: number): Shares => {
  const k = effects.length
  const code = effects.map((e) => (e === "interference" ? 0 : e === "synergy" ? 1 : 2))
  const counts = [0, 0, 0]
  for (const c of code) counts[c]!++
  const draws: [Array<number>, Array<number>, Array<number>] = [[], [], []]
  const rng = prng(seed)
  for (let b = 0; b < resamples; b++) {
    const cs = [0, 0, 0]
    for (let i = 0; i < k; i++) cs[code[Math.floor(rng() * k)]!]!++
    for (let j = 0; j < 3; j++) draws[j as 0 | 1 | 2].push(cs[j]! / k)
  }
  const alpha = (1 - CI_LEVEL) / 2
  const share = (j: 0 | 1 | 2): Share => {
    const sorted = draws[j].sort((a, b) => a - b)
    return { count: counts[j]!, share: counts[j]! / k, ci: [quantileSorted(sorted, alpha), quantileSorted(sorted, 1 - alpha)] }
  }
  return { questions: k, interference: share(0), synergy: share(1), zero: share(2) }
}

// ---------------------------------------------------------------------------
// Validation

const isInt = (x: number, min: number): boolean => Number.isInteger(x) && x >= min

const validate = (rows: ReadonlyArray<QuestionDraws>): Result.Result<number, LeasInputIssue> => {
  if (rows.length === 0) return Result.fail({ _tag: "NoQuestions", detail: "the input has no questions" })
  const first = rows[0]!
  const n = first.draws.base?.length ?? 0
  if (n === 0) return Result.fail({ _tag: "NoQuestions", detail: `question ${JSON.stringify(first.id)} has no draws of base` })
  const seen = new Set<string>()
  for (const row of rows) {
    if (seen.has(row.id)) return Result.fail({ _tag: "DuplicateQuestion", question: row.id })
    seen.add(row.id)
    for (const v of VARIANTS) {
      const cell = row.draws[v]
      if (cell === undefined) return Result.fail({ _tag: "UnequalDraws", question: row.id, variant: v, expected: n, got: 0 })
      if (cell.length !== n) return Result.fail({ _tag: "UnequalDraws", question: row.id, variant: v, expected: n, got: cell.length })
      for (let i = 0; i < cell.length; i++) {
        const x = cell[i]!
        if (typeof x !== "number" || !(x >= 0 && x <= 1)) return Result.fail({ _tag: "BadDraw", question: row.id, variant: v, index: i, value: String(x) })
      }
    }
  }
  return Result.succeed(n)
}

interface Resolved {
  readonly seed: number
  readonly bootstrap: number
  readonly sensitivity: ReadonlyArray<number>
  readonly repeats: number
}

const resolveSettings = (settings: AnalyzeSettings, n: number): Result.Result<Resolved, LeasInputIssue> => {
  const bad = (detail: string) => Result.fail<LeasInputIssue>({ _tag: "Settings", detail })
  const bootstrap = settings.bootstrap ?? DEFAULT_BOOTSTRAP
  const repeats = settings.sensitivityRepeats ?? DEFAULT_SENSITIVITY_REPEATS
  const requested = settings.sensitivity ?? DEFAULT_SENSITIVITY
  if (!Number.isInteger(settings.seed)) return bad(`seed: expected an integer, got ${settings.seed}`)
  if (!isInt(bootstrap, 1) || bootstrap > 1_000_000) return bad(`bootstrap: expected an integer in [1, 1000000], got ${bootstrap}`)
  if (!isInt(repeats, 1) || repeats > 1000) return bad(`sensitivityRepeats: expected an integer in [1, 1000], got ${repeats}`)
  const wrong = requested.find((x) => !isInt(x, 1))
  if (wrong !== undefined) return bad(`sensitivity: expected integers >= 1, got ${wrong}`)
  const sensitivity = [...new Set([...requested.map((x) => Math.min(x, n)), n])].sort((a, b) => a - b)
  return Result.succeed({ seed: settings.seed, bootstrap, sensitivity, repeats })
}

// ---------------------------------------------------------------------------
// Analysis

interface Fitted {
  readonly row: QuestionDraws
  readonly fit: ReturnType<typeof fitQuestion>
  readonly dropped: boolean
}

const meanScores = (cells: Record<Variant, ReadonlyArray<number>>): Record<Variant, number> =>
  Object.fromEntries(VARIANTS.map((v) => [v, mean(cells[v])])) as Record<Variant, number>

const fitRow = (row: QuestionDraws, cells: Record<Variant, ReadonlyArray<number>>, n: number): Fitted => {
  const s = meanScores(cells)
  return { row, fit: fitQuestion(s, n), dropped: VARIANTS.every((v) => s[v] === 0) }
}

/** `k` of `xs` without replacement (a partial Fisher-Yates shuffle); all of `xs`, in order, when k = length. */
const subsample = (xs: ReadonlyArray<number>, k: number, rng: () => number): ReadonlyArray<number> => {
  if (k >= xs.length) return xs
  const a = [...xs]
  for (let i = 0; i < k; i++) {
    const j = i + Math.floor(rng() * (a.length - i))
    const t = a[i]!
    a[i] = a[j]!
    a[j] = t
  }
  return a.slice(0, k)
}

const spread = (xs: ReadonlyArray<number>): Spread | null =>
  xs.length === 0 ? null : { mean: mean(xs), min: Math.min(...xs), max: Math.max(...xs) }

const sensitivityPoint = (rows: ReadonlyArray<QuestionDraws>, n: number, full: number, seed: number, repeats: number): SensitivityPoint => {
  const times = n >= full ? 1 : repeats
  const kept: Array<number> = []
  const shares: [Array<number>, Array<number>, Array<number>] = [[], [], []]
  for (let r = 0; r < times; r++) {
    const rng = prng(streamSeed(seed, `sensitivity:${n}:${r}`))
    const effects: Array<Interaction> = []
    for (const row of rows) {
      const cells = Object.fromEntries(VARIANTS.map((v) => [v, subsample(row.draws[v], n, rng)])) as Record<Variant, ReadonlyArray<number>>
      const f = fitRow(row, cells, n)
      if (!f.dropped) effects.push(interactionOf(f.fit.lambda.l23))
    }
    kept.push(effects.length)
    if (effects.length > 0) {
      shares[0].push(effects.filter((e) => e === "interference").length / effects.length)
      shares[1].push(effects.filter((e) => e === "synergy").length / effects.length)
      shares[2].push(effects.filter((e) => e === "zero").length / effects.length)
    }
  }
  return { n, repeats: times, kept: mean(kept), interference: spread(shares[0]), synergy: spread(shares[1]), zero: spread(shares[2]) }
}

const sharesOf = (fitted: ReadonlyArray<Fitted>, bootstrap: number, seed: number): Shares =>
  bootstrapShares(fitted.map((f) => interactionOf(f.fit.lambda.l23)), bootstrap, seed)

/** The LEAS analysis of per-question draws (see the module comment). */
export const analyze = (rows: ReadonlyArray<QuestionDraws>, settings: AnalyzeSettings): Result.Result<LeasAnalysis, LeasInputIssue> =>
  Result.flatMap(validate(rows), (n) =>
    Result.flatMap(resolveSettings(settings, n), (cfg) => {
      const fitted = rows.map((row) => fitRow(row, row.draws, n))
      const kept = fitted.filter((f) => !f.dropped)
      const droppedIds = fitted.filter((f) => f.dropped).map((f) => f.row.id)
      if (kept.length === 0) {
        return Result.fail<LeasInputIssue>({ _tag: "NoQuestions", detail: `all ${rows.length} questions were dropped (no variant is ever correct on any of them)` })
      }
      const l23 = kept.map((f) => f.fit.lambda.l23)
      const sources = [...new Set(rows.map((r) => r.dataSource))].sort()
      const { high, low } = clipBounds(n)
      const coefficients = Object.fromEntries(
        COEFFICIENTS.map((c) => {
          const xs = kept.map((f) => f.fit.lambda[c])
          return [c, { mean: mean(xs), median: quantileSorted([...xs].sort((a, b) => a - b), 0.5) }]
        })
      ) as Record<Coefficient, { mean: number; median: number }>
      const analysis: LeasAnalysis = {
        settings: {
          n,
          clip: { low, high, rule: `s clipped to [1/(2N), 1 - 1/(2N)] = [${low}, ${high}] before the logit` },
          seed: cfg.seed,
          bootstrap: cfg.bootstrap,
          ciLevel: CI_LEVEL,
          sensitivity: cfg.sensitivity,
          sensitivityRepeats: cfg.repeats
        },
        counts: { questions: rows.length, kept: kept.length, dropped: droppedIds.length, droppedIds },
        questions: kept.map(({ fit, row }) => ({
          id: row.id,
          dataSource: row.dataSource,
          ...(row.question === undefined ? {} : { question: row.question }),
          s: fit.s,
          clipped: fit.clipped,
          z: fit.z,
          lambda: fit.lambda,
          interaction: interactionOf(fit.lambda.l23)
        })),
        shares: sharesOf(kept, cfg.bootstrap, streamSeed(cfg.seed, "bootstrap")),
        lambda23: distribution(l23, symmetricEdges(l23)),
        coefficients,
        bySource: sources.map((dataSource) => {
          const all = fitted.filter((f) => f.row.dataSource === dataSource)
          const k = all.filter((f) => !f.dropped)
          return {
            dataSource,
            questions: all.length,
            kept: k.length,
            dropped: all.length - k.length,
            shares: k.length === 0 ? null : sharesOf(k, cfg.bootstrap, streamSeed(cfg.seed, `bootstrap:${dataSource}`))
          }
        }),
        sensitivity: cfg.sensitivity.map((m) => sensitivityPoint(rows, m, n, cfg.seed, cfg.repeats))
      }
      return Result.succeed(analysis)
    })
  )

// ---------------------------------------------------------------------------
// Gradient angles

export interface GradientSamples {
  /** cosine(g_reasoning, g_tool) within a trajectory. */
  readonly within: ReadonlyArray<number>
  /** cosine of reasoning gradients of different trajectories. */
  readonly acrossReasoning: ReadonlyArray<number>
  /** cosine of tool gradients of different trajectories. */
  readonly acrossTool: ReadonlyArray<number>
}

export const GRADIENT_SETS = ["within", "acrossReasoning", "acrossTool"] as const
export type GradientSet = (typeof GRADIENT_SETS)[number]

export interface CosineDistribution extends Distribution {
  /** Mean over the samples of the angle acos(cosine), in degrees. */
  readonly meanAngleDeg: number
  /** acos(mean cosine), in degrees. */
  readonly angleOfMeanDeg: number
}

/** One distribution per set; null for an empty set. */
export type GradientAnalysis = Record<GradientSet, CosineDistribution | null>

/** Histogram edges of the cosines: [-1, 1] in 20 bins of 0.1. */
export const COSINE_EDGES: ReadonlyArray<number> = Array.from({ length: 21 }, (_, i) => Number((-1 + i / 10).toFixed(1)))

const degrees = (c: number): number => (Math.acos(c) * 180) / Math.PI

/** Distributions of the gradient cosines; values within 1e-6 of [-1, 1] are clamped into it, others refused. */
export const analyzeGradients = (samples: GradientSamples): Result.Result<GradientAnalysis, LeasInputIssue> => {
  const out = {} as Record<GradientSet, CosineDistribution | null>
  for (const set of GRADIENT_SETS) {
    const xs: Array<number> = []
    const given = samples[set]
    for (let i = 0; i < given.length; i++) {
      const c = given[i]!
      if (typeof c !== "number" || !(Math.abs(c) <= 1 + 1e-6)) return Result.fail({ _tag: "BadCosine", set, index: i, value: String(c) })
      xs.push(Math.max(-1, Math.min(1, c)))
    }
    if (xs.length === 0) {
      out[set] = null
      continue
    }
    const d = distribution(xs, COSINE_EDGES)
    out[set] = { ...d, meanAngleDeg: mean(xs.map(degrees)), angleOfMeanDeg: degrees(d.mean) }
  }
  return Result.succeed(out)
}
