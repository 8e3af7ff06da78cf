/**
 * Summary statistics of a comparison across seeds (pure): the mean of the
 * seeds' scores with a two-sided 95% Student-t confidence interval, and
 * the learning curve of a mode (mean and range over seeds per step, after
 * a trailing moving average).
 *
 * Hand-written on purpose: a mean, a standard deviation and a table of 30
 * t quantiles; a statistics library would bring far more than that.
 */

/** t_{0.975, df} for df = 1..30 (two-sided 95%). */
const T975 = [
  12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
  2.201, 2.179, 2.16, 2.145, 2.131, 2.12, 2.11, 2.101, 2.093, 2.086,
  2.08, 2.074, 2.069, 2.064, 2.06, 2.056, 2.052, 2.048, 2.045, 2.042
]

/** The 0.975 quantile of Student's t with `df` degrees of freedom (df >= 1). */
export const tQuantile975 = (df: number): number => {
  if (!Number.isInteger(df) || df < 1) throw new RangeError(`degrees of freedom must be an integer >= 1, got ${df}`)
  if (df <= T975.length) return T975[df - 1]!
  // Cornish-Fisher expansion around the normal quantile: < 1e-3 off beyond df 30.
  const z = 1.959964
  return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)
}

export interface MeanInterval {
  readonly n: number
  readonly mean: number
  /** Sample standard deviation (n - 1); 0 for one value. */
  readonly std: number
  /** 95% t interval; equal to the mean for one value (no spread to estimate). */
  readonly low: number
  readonly high: number
  /** Half the interval's width. */
  readonly halfWidth: number
}

export const meanInterval = (xs: ReadonlyArray<number>): MeanInterval => {
  const n = xs.length
  if (n === 0) throw new RangeError("meanInterval of no values")
  const mean = xs.reduce((a, b) => a + b, 0) / n
  const std = n === 1 ? 0 : Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1))
  const halfWidth = n === 1 ? 0 : tQuantile975(n - 1) * std / Math.sqrt(n)
  return { n, mean, std, low: mean - halfWidth, high: mean + halfWidth, halfWidth }
}

/** Trailing moving average over `window` points (shorter at the start). */
export const movingAverage = (xs: ReadonlyArray<number>, window: number): Array<number> => {
  if (!Number.isInteger(window) || window < 1) throw new RangeError(`window must be an integer >= 1, got ${window}`)
  const out: Array<number> = []
  let sum = 0
  for (let i = 0; i < xs.length; i++) {
    sum += xs[i]!
    if (i >= window) sum -= xs[i - window]!
    out.push(sum / Math.min(i + 1, window))
  }
  return out
}

export interface CurvePoint {
  readonly step: number
  readonly mean: number
  readonly min: number
  readonly max: number
}

/**
 * The curve of several seeds' per-step values (each smoothed first): the
 * mean, min and max over the seeds at each step that every seed reached.
 */
export const seedCurve = (seeds: ReadonlyArray<ReadonlyArray<number>>, window: number): Array<CurvePoint> => {
  if (seeds.length === 0) return []
  const smoothed = seeds.map((s) => movingAverage(s, window))
  const steps = Math.min(...smoothed.map((s) => s.length))
  return Array.from({ length: steps }, (_, step) => {
    const at = smoothed.map((s) => s[step]!)
    return { step, mean: at.reduce((a, b) => a + b, 0) / at.length, min: Math.min(...at), max: Math.max(...at) }
  })
}
