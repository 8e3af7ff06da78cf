/**
 * LEAS algebra (ts/src/leas/algebra.ts): the design matrix is the paper's
 * table, X^-1 is its exact inverse, the fitted coefficients reproduce the
 * six logits (X lambda = z), lambda_23 = z_Unified - z_Tool - z_Reas +
 * z_Base, and s is clipped to [1/(2N), 1 - 1/(2N)] (fast-check properties,
 * DART_PROPERTY_RUNS cases each, 500 by default).
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import {
  clipBounds,
  clipScore,
  COEFFICIENTS,
  DESIGN,
  DESIGN_INVERSE,
  fitQuestion,
  logit,
  matMul,
  predict,
  sigmoid,
  type Variant,
  VARIANTS
} from "../src/leas/algebra.ts"

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 500)
const run = (name: string, prop: fc.IProperty<any>) => {
  fc.assert(prop, { numRuns: NUM_RUNS })
  console.log(`property "${name}": ${NUM_RUNS} cases`)
}

/** A mean score: often exactly 0 or 1 (the clipped cases), else anything in [0, 1]. */
const score = fc.oneof(fc.constantFrom(0, 1), fc.double({ min: 0, max: 1, noNaN: true }))
const scores = fc.record(Object.fromEntries(VARIANTS.map((v) => [v, score])) as Record<Variant, typeof score>)
const samples = fc.integer({ min: 1, max: 1000 })

/** |a - b| within a few ulps of the magnitudes involved. */
const close = (a: number, b: number, scale: number) => expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-12 * (1 + scale))

describe("design matrix", () => {
  it("is the paper's table: Base, Reas, Tool, Unified, H_Tool, H_Reas over [x1, x2, x3, x12, x13, x23]", () => {
    expect(VARIANTS).toEqual(["base", "reas", "tool", "unified", "hTool", "hReas"])
    expect(COEFFICIENTS).toEqual(["l1", "l2", "l3", "l12", "l13", "l23"])
    expect(DESIGN).toEqual([
      [1, 0, 0, 0, 0, 0],
      [1, 0, 1, 0, 1, 0],
      [1, 1, 0, 1, 0, 0],
      [1, 1, 1, 1, 1, 1],
      [1, 1, 0, 0, 0, 0],
      [1, 0, 1, 0, 0, 0]
    ])
  })

  it("X . X^-1 = X^-1 . X = I exactly (integer entries)", () => {
    const identity = DESIGN.map((row, i) => row.map((_, j) => (i === j ? 1 : 0)))
    expect(matMul(DESIGN, DESIGN_INVERSE)).toEqual(identity)
    expect(matMul(DESIGN_INVERSE, DESIGN)).toEqual(identity)
    for (const row of DESIGN_INVERSE) for (const x of row) expect([-1, 0, 1]).toContain(x)
  })
})

describe("fitQuestion", () => {
  it("the six coefficients reproduce the six logits: X lambda = z", () => {
    run(
      "X lambda = z",
      fc.property(scores, samples, (s, n) => {
        const fit = fitQuestion(s, n)
        const back = predict(fit.lambda)
        const scale = Math.max(...VARIANTS.map((v) => Math.abs(fit.z[v])))
        for (const v of VARIANTS) close(back[v], fit.z[v], scale)
        // and the model's scores are the clipped scores
        for (const v of VARIANTS) close(sigmoid(back[v]), clipScore(s[v], n), scale)
      })
    )
  })

  it("lambda_23 = z_Unified - z_Tool - z_Reas + z_Base", () => {
    run(
      "lambda_23 = zU - zT - zR + zB",
      fc.property(scores, samples, (s, n) => {
        const { lambda, z } = fitQuestion(s, n)
        close(lambda.l23, z.unified - z.tool - z.reas + z.base, Math.abs(z.unified) + Math.abs(z.tool) + Math.abs(z.reas) + Math.abs(z.base))
        // the other coefficients are differences along the paths of the design
        expect(lambda.l1).toBe(z.base)
        close(lambda.l2, z.hTool - z.base, Math.abs(z.hTool) + Math.abs(z.base))
        close(lambda.l13, z.reas - z.hReas, Math.abs(z.reas) + Math.abs(z.hReas))
      })
    )
  })

  it("lambda_23 is exactly 0 when Unified matches Tool and Reas matches Base (or Unified Reas and Tool Base)", () => {
    run(
      "cancelling pairs give lambda_23 = 0 exactly",
      fc.property(score, score, score, score, samples, (a, b, c, d, n) => {
        expect(fitQuestion({ base: b, reas: b, tool: a, unified: a, hTool: c, hReas: d }, n).lambda.l23).toBe(0)
        expect(fitQuestion({ base: b, reas: a, tool: b, unified: a, hTool: c, hReas: d }, n).lambda.l23).toBe(0)
      })
    )
  })

  it("equal scores everywhere: only lambda_1 is non-zero", () => {
    const fit = fitQuestion({ base: 0.3, reas: 0.3, tool: 0.3, unified: 0.3, hTool: 0.3, hReas: 0.3 }, 50)
    expect(fit.lambda).toEqual({ l1: logit(0.3), l2: 0, l3: 0, l12: 0, l13: 0, l23: 0 })
  })

  it("a worked example: interference (Unified below what Tool and Reas predict)", () => {
    const fit = fitQuestion({ base: 0.2, reas: 0.4, tool: 0.5, unified: 0.5, hTool: 0.3, hReas: 0.3 }, 50)
    expect(fit.lambda.l23).toBeCloseTo(logit(0.5) - logit(0.5) - logit(0.4) + logit(0.2), 12)
    expect(fit.lambda.l23).toBeLessThan(0)
  })
})

describe("clipping", () => {
  it("s = 0 and s = 1 are clipped to 1/(2N) and 1 - 1/(2N); interior scores are kept", () => {
    run(
      "clip bounds for N",
      fc.property(samples, fc.double({ min: 0, max: 1, noNaN: true }), (n, s) => {
        expect(clipBounds(n)).toEqual({ low: 1 / (2 * n), high: 1 - 1 / (2 * n) })
        expect(clipScore(0, n)).toBe(1 / (2 * n))
        expect(clipScore(1, n)).toBe(1 - 1 / (2 * n))
        const inside = s >= 1 / (2 * n) && s <= 1 - 1 / (2 * n)
        expect(clipScore(s, n)).toBe(inside ? s : s < 0.5 ? 1 / (2 * n) : 1 - 1 / (2 * n))
        const fit = fitQuestion({ base: 0, reas: 1, tool: s, unified: s, hTool: s, hReas: s }, n)
        expect(fit.clipped.base).toBe(true)
        expect(fit.clipped.reas).toBe(true)
        expect(fit.clipped.tool).toBe(!inside)
        expect(Number.isFinite(fit.z.base) && Number.isFinite(fit.z.reas)).toBe(true)
      })
    )
  })

  it("N = 50: z(0) = logit(0.01) = -ln 99, z(1) = ln 99; the raw s is kept in the fit", () => {
    const fit = fitQuestion({ base: 0, reas: 1, tool: 0.5, unified: 0.5, hTool: 0.5, hReas: 0.5 }, 50)
    expect(fit.z.base).toBeCloseTo(-Math.log(99), 12)
    expect(fit.z.reas).toBeCloseTo(Math.log(99), 12)
    expect(fit.z.tool).toBe(0)
    expect(fit.s.base).toBe(0)
    expect(fit.clipped).toEqual({ base: true, reas: true, tool: false, unified: false, hTool: false, hReas: false })
  })

  it("N = 1 clips both 0 and 1 to 1/2", () => {
    expect(clipScore(0, 1)).toBe(0.5)
    expect(clipScore(1, 1)).toBe(0.5)
  })
})
