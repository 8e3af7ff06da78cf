/**
 * LEAS algebra (docs/leas.md): the six model variants, their indicator rows
 * x = [x1, x2, x3, x12, x13, x23], the design matrix X and its inverse, the
 * clipping of a mean score to [1/(2N), 1 - 1/(2N)], the logit, and the fit
 * of one question: lambda^q = X^-1 logit(clip(s^q)).
 *
 * Hand-written on purpose: X is a fixed 6x6 matrix of 0/1 with an exact
 * integer inverse (entries -1, 0, 1), so a linear-algebra library would add
 * nothing; the test checks X . X^-1 = I entry by entry.
 */

/** The variants, in the row order of X (and the column order of X^-1). */
export const VARIANTS = ["base", "reas", "tool", "unified", "hTool", "hReas"] as const
export type Variant = (typeof VARIANTS)[number]

/** The coefficients, in the column order of X (and the row order of X^-1). */
export const COEFFICIENTS = ["l1", "l2", "l3", "l12", "l13", "l23"] as const
export type Coefficient = (typeof COEFFICIENTS)[number]

/** Display names of the variants (PAPER.md). */
export const VARIANT_LABELS: Record<Variant, string> = {
  base: "Base",
  reas: "Reas",
  tool: "Tool",
  unified: "Unified",
  hTool: "H_Tool",
  hReas: "H_Reas"
}

export type Matrix = ReadonlyArray<ReadonlyArray<number>>

/**
 * X: one row per variant (VARIANTS order), one column per indicator
 * (COEFFICIENTS order): 1 = base capability, 2 = tool, 3 = reasoning,
 * x_ij = 1 iff capabilities i and j were optimised jointly in the same
 * parameters.
 */
export const DESIGN: Matrix = [
  /* base    */ [1, 0, 0, 0, 0, 0],
  /* reas    */ [1, 0, 1, 0, 1, 0],
  /* tool    */ [1, 1, 0, 1, 0, 0],
  /* unified */ [1, 1, 1, 1, 1, 1],
  /* hTool   */ [1, 1, 0, 0, 0, 0],
  /* hReas   */ [1, 0, 1, 0, 0, 0]
]

/**
 * X^-1: one row per coefficient, one column per variant
 * (base, reas, tool, unified, hTool, hReas):
 *   l1  = z_base
 *   l2  = z_hTool - z_base
 *   l3  = z_hReas - z_base
 *   l12 = z_tool - z_hTool
 *   l13 = z_reas - z_hReas
 *   l23 = z_unified - z_tool - z_reas + z_base
 */
export const DESIGN_INVERSE: Matrix = [
  /* l1  */ [1, 0, 0, 0, 0, 0],
  /* l2  */ [-1, 0, 0, 0, 1, 0],
  /* l3  */ [-1, 0, 0, 0, 0, 1],
  /* l12 */ [0, 0, 1, 0, -1, 0],
  /* l13 */ [0, 1, 0, 0, 0, -1],
  /* l23 */ [1, -1, -1, 1, 0, 0]
]

/** A . B for small dense matrices. */
export const matMul = (a: Matrix, b: Matrix): Array<Array<number>> =>
  a.map((row) => b[0]!.map((_, j) => row.reduce((sum, x, k) => sum + x * b[k]![j]!, 0)))

/** The clip bounds for means of `n` samples: [1/(2n), 1 - 1/(2n)]. */
export const clipBounds = (n: number): { readonly low: number; readonly high: number } => ({ low: 1 / (2 * n), high: 1 - 1 / (2 * n) })

/** `s` clipped to [1/(2n), 1 - 1/(2n)], so that logit(0) and logit(1) stay finite. */
export const clipScore = (s: number, n: number): number => {
  const { high, low } = clipBounds(n)
  return Math.min(high, Math.max(low, s))
}

export const logit = (p: number): number => Math.log(p / (1 - p))

export const sigmoid = (x: number): number => 1 / (1 + Math.exp(-x))

export interface QuestionFit {
  /** The mean score of each variant, as given (before clipping). */
  readonly s: Record<Variant, number>
  /** Whether the variant's score was outside the clip bounds (0 or 1 for 0/1 EM draws). */
  readonly clipped: Record<Variant, boolean>
  /** logit of the clipped score. */
  readonly z: Record<Variant, number>
  /** lambda = X^-1 z, all six coefficients. */
  readonly lambda: Record<Coefficient, number>
}

/**
 * One coefficient from its row of X^-1: the sum of the terms with
 * coefficient +1 minus the sum of those with -1 (each summed in VARIANTS
 * order). With every entry in {-1, 0, 1}, cancelling pairs give exactly 0
 * in floating point (e.g. l23 = 0 when z_unified = z_tool and z_reas =
 * z_base, or z_unified = z_reas and z_tool = z_base).
 */
const coefficient = (row: ReadonlyArray<number>, z: Record<Variant, number>): number => {
  let plus = 0
  let minus = 0
  VARIANTS.forEach((v, j) => {
    const c = row[j]!
    if (c > 0) plus += c * z[v]
    else if (c < 0) minus -= c * z[v]
  })
  return plus - minus
}

/** lambda = X^-1 z. */
export const solve = (z: Record<Variant, number>): Record<Coefficient, number> =>
  Object.fromEntries(COEFFICIENTS.map((c, i) => [c, coefficient(DESIGN_INVERSE[i]!, z)])) as Record<Coefficient, number>

/** X lambda: the logit of each variant that the coefficients predict. */
export const predict = (lambda: Record<Coefficient, number>): Record<Variant, number> =>
  Object.fromEntries(VARIANTS.map((v, i) => [v, DESIGN[i]!.reduce((sum, x, j) => sum + x * lambda[COEFFICIENTS[j]!], 0)])) as Record<Variant, number>

/** Fits one question: clip each mean score for `n` samples, take logits, solve for lambda. */
export const fitQuestion = (s: Record<Variant, number>, n: number): QuestionFit => {
  const { high, low } = clipBounds(n)
  const clipped = {} as Record<Variant, boolean>
  const z = {} as Record<Variant, number>
  for (const v of VARIANTS) {
    clipped[v] = s[v] < low || s[v] > high
    z[v] = logit(clipScore(s[v], n))
  }
  return { s: { ...s }, clipped, z, lambda: solve(z) }
}
