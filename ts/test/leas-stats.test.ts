/**
 * LEAS statistics (ts/src/leas/stats.ts): dropping never-correct questions,
 * the shares of lambda_23 < 0 / > 0 / = 0 with their seeded bootstrap CI,
 * the histogram and quantiles, shares by data source, the sensitivity lines
 * (at n = N they are the full analysis), input errors, and the gradient
 * cosine distributions. Properties draw DART_PROPERTY_RUNS cases (50 by
 * default: each analysis bootstraps).
 */
import { describe, expect, it } from "@effect/vitest"
import { Result } from "effect"
import fc from "fast-check"
import { prng } from "../src/domain/random.ts"
import { type Variant, VARIANTS } from "../src/leas/algebra.ts"
import {
  analyze,
  type AnalyzeSettings,
  analyzeGradients,
  bootstrapShares,
  COSINE_EDGES,
  type Interaction,
  type LeasAnalysis,
  type LeasInputIssue,
  type QuestionDraws
} from "../src/leas/stats.ts"

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 50)

const ok = <A>(r: Result.Result<A, LeasInputIssue>): A => {
  if (Result.isFailure(r)) throw new Error(`expected success, got ${JSON.stringify(r.failure)}`)
  return r.success
}
const issue = <A>(r: Result.Result<A, LeasInputIssue>): LeasInputIssue => {
  if (Result.isSuccess(r)) throw new Error("expected a failure")
  return r.failure
}

/** `k` ones then zeros, `n` draws. */
const ones = (k: number, n: number): Array<number> => Array.from({ length: n }, (_, i) => (i < k ? 1 : 0))

/** A question from correct counts per variant (n draws each). */
const question = (id: string, correct: Record<Variant, number>, n: number, dataSource = "nq"): QuestionDraws => ({
  id,
  dataSource,
  draws: Object.fromEntries(VARIANTS.map((v) => [v, ones(correct[v], n)])) as Record<Variant, Array<number>>
})

const N = 10
/** lambda_23 < 0: Unified as bad as Base while Tool and Reas help. */
const interfering = (id: string, source = "nq") => question(id, { base: 2, reas: 5, tool: 5, unified: 2, hTool: 3, hReas: 3 }, N, source)
/** lambda_23 > 0: Unified better than Tool and Reas predict. */
const synergetic = (id: string, source = "nq") => question(id, { base: 2, reas: 3, tool: 3, unified: 9, hTool: 3, hReas: 3 }, N, source)
/** lambda_23 = 0 exactly: Unified = Tool, Reas = Base. */
const neutral = (id: string, source = "nq") => question(id, { base: 3, reas: 3, tool: 6, unified: 6, hTool: 4, hReas: 3 }, N, source)
const never = (id: string, source = "nq") => question(id, { base: 0, reas: 0, tool: 0, unified: 0, hTool: 0, hReas: 0 }, N, source)

const settings: AnalyzeSettings = { seed: 1, bootstrap: 400 }

describe("dropping", () => {
  it("drops questions where no variant is ever correct and counts them (ids listed)", () => {
    const a = ok(analyze([interfering("a"), never("b"), synergetic("c"), never("d")], settings))
    expect(a.counts).toEqual({ questions: 4, kept: 2, dropped: 2, droppedIds: ["b", "d"] })
    expect(a.questions.map((q) => q.id)).toEqual(["a", "c"])
    expect(a.shares.questions).toBe(2)
  })

  it("one correct draw of any variant keeps the question (even H_Tool, which is not in lambda_23)", () => {
    const once = question("once", { base: 0, reas: 0, tool: 0, unified: 0, hTool: 1, hReas: 0 }, N)
    const a = ok(analyze([once, never("b")], settings))
    expect(a.counts.kept).toBe(1)
    expect(a.questions[0]!.interaction).toBe("zero")
    expect(a.questions[0]!.clipped.base).toBe(true)
    expect(a.questions[0]!.clipped.hTool).toBe(false)
  })

  it("per data source: dropped and kept counted separately", () => {
    const a = ok(analyze([interfering("a", "nq"), never("b", "nq"), never("c", "hotpotqa"), synergetic("d", "hotpotqa")], settings))
    expect(a.bySource.map((s) => [s.dataSource, s.questions, s.kept, s.dropped])).toEqual([["hotpotqa", 2, 1, 1], ["nq", 2, 1, 1]])
  })

  it("every question dropped, or none given: a NoQuestions issue", () => {
    expect(issue(analyze([never("a"), never("b")], settings))).toMatchObject({ _tag: "NoQuestions", detail: expect.stringContaining("all 2 questions were dropped") })
    expect(issue(analyze([], settings))._tag).toBe("NoQuestions")
  })
})

describe("input errors", () => {
  it("a variant with another number of draws names the question and the variant", () => {
    const bad = { ...interfering("q7"), draws: { ...interfering("q7").draws, hReas: ones(1, N - 1) } }
    expect(issue(analyze([interfering("q1"), bad], settings))).toEqual({ _tag: "UnequalDraws", question: "q7", variant: "hReas", expected: N, got: N - 1 })
  })

  it("draws outside [0, 1], duplicate ids and bad settings", () => {
    const bad = { ...interfering("q2"), draws: { ...interfering("q2").draws, tool: [...ones(1, N - 1), 2] } }
    expect(issue(analyze([bad], settings))).toEqual({ _tag: "BadDraw", question: "q2", variant: "tool", index: N - 1, value: "2" })
    expect(issue(analyze([interfering("x"), synergetic("x")], settings))).toEqual({ _tag: "DuplicateQuestion", question: "x" })
    expect(issue(analyze([interfering("x")], { seed: 1, bootstrap: 0 }))).toMatchObject({ _tag: "Settings", detail: expect.stringContaining("bootstrap") })
    expect(issue(analyze([interfering("x")], { seed: 0.5 }))).toMatchObject({ _tag: "Settings", detail: expect.stringContaining("seed") })
    expect(issue(analyze([interfering("x")], { seed: 1, sensitivity: [0] }))).toMatchObject({ _tag: "Settings", detail: expect.stringContaining("sensitivity") })
  })
})

describe("shares and the bootstrap", () => {
  it("all questions interfering: share 1, CI [1, 1]; synergy and zero 0 with CI [0, 0]", () => {
    const a = ok(analyze(Array.from({ length: 12 }, (_, i) => interfering(`q${i}`)), settings))
    expect(a.shares.interference).toEqual({ count: 12, share: 1, ci: [1, 1] })
    expect(a.shares.synergy).toEqual({ count: 0, share: 0, ci: [0, 0] })
    expect(a.shares.zero).toEqual({ count: 0, share: 0, ci: [0, 0] })
    expect(a.questions.every((q) => q.interaction === "interference" && q.lambda.l23 < 0)).toBe(true)
  })

  it("a known mix (30 / 10 / 10 of 50): the CI contains the share, has the binomial width, is reproducible and depends on the seed", () => {
    const effects: Array<Interaction> = [...Array(30).fill("interference"), ...Array(10).fill("synergy"), ...Array(10).fill("zero")]
    const s = bootstrapShares(effects, 2000, 42)
    expect(s.interference.share).toBe(0.6)
    expect(s.synergy.share).toBe(0.2)
    expect(s.zero.share).toBe(0.2)
    const [lo, hi] = s.interference.ci
    expect(lo).toBeLessThan(0.6)
    expect(hi).toBeGreaterThan(0.6)
    // binomial: sd = sqrt(0.6 * 0.4 / 50) = 0.069, so the 95% interval is about 0.6 -+ 0.136
    expect(lo).toBeGreaterThan(0.4)
    expect(lo).toBeLessThan(0.52)
    expect(hi).toBeGreaterThan(0.68)
    expect(hi).toBeLessThan(0.8)
    expect(bootstrapShares(effects, 2000, 42)).toEqual(s)
    expect(bootstrapShares(effects, 2000, 43).interference.ci).not.toEqual(s.interference.ci)
  })

  it("analyze: the same seed gives the same analysis, another seed other CIs (same point shares)", () => {
    const rows = [...Array.from({ length: 9 }, (_, i) => interfering(`i${i}`)), ...Array.from({ length: 6 }, (_, i) => synergetic(`s${i}`)), neutral("z")]
    const a = ok(analyze(rows, { seed: 5, bootstrap: 500 }))
    expect(ok(analyze(rows, { seed: 5, bootstrap: 500 }))).toEqual(a)
    // with 16 questions a share is a multiple of 1/16, so two seeds' CIs can coincide: compare several
    const others = [6, 7, 8, 9, 10].map((seed) => ok(analyze(rows, { seed, bootstrap: 500 })).shares)
    for (const b of others) expect(b.interference.share).toBe(a.shares.interference.share)
    expect(others.some((b) => JSON.stringify(b) !== JSON.stringify(a.shares))).toBe(true)
    expect(a.shares.interference).toMatchObject({ count: 9, share: 9 / 16 })
    expect(a.shares.synergy).toMatchObject({ count: 6, share: 6 / 16 })
    expect(a.shares.zero).toMatchObject({ count: 1, share: 1 / 16 })
    expect(a.settings).toMatchObject({ n: N, clip: { low: 1 / (2 * N), high: 1 - 1 / (2 * N) }, seed: 5, bootstrap: 500, ciLevel: 0.95 })
  })

  it("the analysis is plain JSON (survives JSON.stringify / parse unchanged)", () => {
    const a = ok(analyze([interfering("a"), synergetic("b"), neutral("c"), never("d")], settings))
    expect(JSON.parse(JSON.stringify(a))).toEqual(a)
  })
})

/** Random datasets: 1..30 questions of N in 1..30 draws, two data sources, EM draws of random rates. */
const dataset = fc
  .record({ n: fc.integer({ min: 1, max: 30 }), questions: fc.integer({ min: 1, max: 30 }), seed: fc.integer({ min: 0, max: 2 ** 31 - 1 }) })
  .map(({ n, questions, seed }) => {
    const rng = prng(seed)
    const rows: Array<QuestionDraws> = Array.from({ length: questions }, (_, q) => {
      const rate = Object.fromEntries(VARIANTS.map((v) => [v, rng() < 0.15 ? 0 : rng()])) as Record<Variant, number>
      return {
        id: `q${q}`,
        dataSource: rng() < 0.5 ? "nq" : "hotpotqa",
        draws: Object.fromEntries(VARIANTS.map((v) => [v, Array.from({ length: n }, () => (rng() < rate[v] ? 1 : 0))])) as Record<Variant, Array<number>>
      }
    })
    // make sure at least one question is kept
    rows[0] = { ...rows[0]!, draws: { ...rows[0]!.draws, base: [1, ...rows[0]!.draws.base.slice(1)] } }
    return { n, rows }
  })

describe("summaries", () => {
  it("histogram, quantiles and per-source counts are consistent with the per-question rows", () => {
    let cases = 0
    fc.assert(
      fc.property(dataset, fc.integer({ min: 0, max: 1000 }), ({ rows }, seed) => {
        const a: LeasAnalysis = ok(analyze(rows, { seed, bootstrap: 50, sensitivity: [1, 3], sensitivityRepeats: 2 }))
        const l23 = a.questions.map((q) => q.lambda.l23)
        const { edges, counts } = a.lambda23.histogram
        expect(counts.reduce((s, c) => s + c, 0)).toBe(a.counts.kept)
        expect(edges).toContain(0)
        expect(edges[0]!).toBeLessThanOrEqual(Math.min(...l23))
        expect(edges[edges.length - 1]!).toBeGreaterThanOrEqual(Math.max(...l23))
        const qs = a.lambda23.quantiles.map((q) => q.value)
        expect([a.lambda23.min, ...qs, a.lambda23.max]).toEqual([...[a.lambda23.min, ...qs, a.lambda23.max]].sort((x, y) => x - y))
        expect(a.shares.interference.count + a.shares.synergy.count + a.shares.zero.count).toBe(a.counts.kept)
        expect(a.shares.interference.count).toBe(l23.filter((x) => x < 0).length)
        for (const kind of ["interference", "synergy", "zero"] as const) {
          const s = a.shares[kind]
          expect(s.ci[0]).toBeLessThanOrEqual(s.ci[1])
          expect(s.ci[0]).toBeGreaterThanOrEqual(0)
          expect(s.ci[1]).toBeLessThanOrEqual(1)
        }
        expect(a.bySource.reduce((s, x) => s + x.kept, 0)).toBe(a.counts.kept)
        expect(a.bySource.reduce((s, x) => s + x.dropped, 0)).toBe(a.counts.dropped)
        expect(a.counts.kept + a.counts.dropped).toBe(rows.length)
        cases++
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "summaries consistent": ${cases} cases`)
  })
})

describe("sensitivity", () => {
  it("at n = N the sensitivity point is the full analysis (shares and kept count)", () => {
    let cases = 0
    fc.assert(
      fc.property(dataset, fc.integer({ min: 0, max: 1000 }), ({ n, rows }, seed) => {
        const a = ok(analyze(rows, { seed, bootstrap: 20, sensitivity: [1, 2, 5, 1000], sensitivityRepeats: 3 }))
        const last = a.sensitivity[a.sensitivity.length - 1]!
        expect(last.n).toBe(n)
        expect(last.repeats).toBe(1)
        expect(last.kept).toBe(a.counts.kept)
        expect(last.interference).toEqual({ mean: a.shares.interference.share, min: a.shares.interference.share, max: a.shares.interference.share })
        expect(last.synergy?.mean).toBe(a.shares.synergy.share)
        expect(last.zero?.mean).toBe(a.shares.zero.share)
        // the n are capped at N, deduplicated, ascending, N last
        expect(a.settings.sensitivity).toEqual([...new Set([1, 2, 5, 1000].map((m) => Math.min(m, n)).concat(n))].sort((x, y) => x - y))
        cases++
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "sensitivity at n = N is the full analysis": ${cases} cases`)
  })

  it("defaults [5, 10, 25, 50] capped at N = 10; subsamples are seeded; the mean lies within min..max", () => {
    const rows = [
      ...Array.from({ length: 6 }, (_, i) => interfering(`i${i}`)),
      ...Array.from({ length: 4 }, (_, i) => synergetic(`s${i}`)),
      never("x")
    ]
    const a = ok(analyze(rows, { seed: 3, bootstrap: 10 }))
    expect(a.settings.sensitivity).toEqual([5, 10])
    expect(a.settings.sensitivityRepeats).toBe(5)
    const p5 = a.sensitivity[0]!
    expect(p5).toMatchObject({ n: 5, repeats: 5 })
    expect(p5.interference!.min).toBeLessThanOrEqual(p5.interference!.mean)
    expect(p5.interference!.mean).toBeLessThanOrEqual(p5.interference!.max)
    expect(p5.kept).toBeLessThanOrEqual(10)
    expect(ok(analyze(rows, { seed: 3, bootstrap: 10 })).sensitivity).toEqual(a.sensitivity)
    const others = [4, 5, 6, 7, 8].map((seed) => ok(analyze(rows, { seed, bootstrap: 10 })).sensitivity[0])
    expect(others.some((p) => JSON.stringify(p) !== JSON.stringify(p5))).toBe(true)
  })
})

describe("analyzeGradients", () => {
  it("mean, median, angles and histogram of known cosines; an empty set is null", () => {
    const g = ok(analyzeGradients({ within: [1, -1], acrossReasoning: [0.5, 0.5, 0.5], acrossTool: [] }))
    expect(g.acrossTool).toBeNull()
    expect(g.within).toMatchObject({ n: 2, mean: 0, median: 0, min: -1, max: 1, meanAngleDeg: 90, angleOfMeanDeg: 90 })
    expect(g.acrossReasoning!.meanAngleDeg).toBeCloseTo(60, 10)
    expect(g.within!.histogram.edges).toEqual(COSINE_EDGES)
    expect(COSINE_EDGES).toHaveLength(21)
    const counts = g.within!.histogram.counts
    expect(counts[0]).toBe(1)
    expect(counts[counts.length - 1]).toBe(1)
    expect(g.acrossReasoning!.histogram.counts[15]).toBe(3)
  })

  it("cosines a hair outside [-1, 1] are clamped; others and NaN are refused with the set and index", () => {
    expect(ok(analyzeGradients({ within: [1 + 1e-9], acrossReasoning: [], acrossTool: [] })).within!.max).toBe(1)
    expect(issue(analyzeGradients({ within: [0], acrossReasoning: [], acrossTool: [0.2, 1.5] }))).toEqual({ _tag: "BadCosine", set: "acrossTool", index: 1, value: "1.5" })
    expect(issue(analyzeGradients({ within: [Number.NaN], acrossReasoning: [], acrossTool: [] }))).toMatchObject({ _tag: "BadCosine", set: "within", index: 0 })
  })
})
