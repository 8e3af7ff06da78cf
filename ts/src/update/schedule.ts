/**
 * Learning-rate schedule and micro-batches of the Update stage, pure.
 *
 * `learningRate(step)`: linear warm-up from 0 over `warmupSteps`, then cosine
 * decay from `lr` to `minLr` at `totalSteps` (constant after), as verl's and
 * TRL's "cosine with warm-up"; `schedule: "constant"` keeps `lr` after the
 * warm-up.
 *
 * `microBatches(lengths, tokenBudget)`: sequences packed in order into
 * micro-batches of at most `tokenBudget` tokens (a longer sequence goes
 * alone), so gradient accumulation over them equals one big batch.
 */
import { Schema } from "effect"

export const LrSchedule = Schema.Struct({
  lr: Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1)),
  minLr: Schema.Finite.check(Schema.isGreaterThanOrEqualTo(0)),
  warmupSteps: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  totalSteps: Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)),
  schedule: Schema.Literals(["cosine", "constant"])
})
export type LrSchedule = typeof LrSchedule.Type

/** The learning rate of optimizer step `step` (0-based). */
export const learningRate = (s: LrSchedule, step: number): number => {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`step = ${step}, expected an integer >= 0`)
  if (s.minLr > s.lr) throw new RangeError(`minLr = ${s.minLr} is above lr = ${s.lr}`)
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / (s.warmupSteps + 1)
  if (s.schedule === "constant") return s.lr
  const span = Math.max(1, s.totalSteps - s.warmupSteps)
  const progress = Math.min(1, (step - s.warmupSteps) / span)
  return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * progress))
}

/** Indices of the sequences of each micro-batch, in order. */
export const microBatches = (lengths: ReadonlyArray<number>, tokenBudget: number): Array<Array<number>> => {
  if (!Number.isInteger(tokenBudget) || tokenBudget < 1) throw new RangeError(`tokenBudget = ${tokenBudget}, expected an integer >= 1`)
  const out: Array<Array<number>> = []
  let current: Array<number> = []
  let used = 0
  lengths.forEach((len, i) => {
    if (!Number.isInteger(len) || len < 1) throw new RangeError(`lengths[${i}] = ${len}, expected an integer >= 1`)
    if (current.length > 0 && used + len > tokenBudget) {
      out.push(current)
      current = []
      used = 0
    }
    current.push(i)
    used += len
  })
  if (current.length > 0) out.push(current)
  return out
}
