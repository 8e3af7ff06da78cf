/**
 * Group-relative advantages (GRPO): each prompt's G samples form a group and
 * a sample's advantage is its reward against the group's,
 *
 *   A_i = (r_i - mean_g) / (std_g + eps)      (GRPO)
 *   A_i =  r_i - mean_g                       (Dr.GRPO: no std division)
 *
 * with the population standard deviation (divide by G), as verl and TRL
 * compute it. Pure: no addon, no Effect.
 */
import { Schema } from "effect"

export const AdvantageConfig = Schema.Struct({
  /** false = Dr.GRPO (no division by the group's standard deviation). */
  scaleByStd: Schema.Boolean,
  /** Added to the standard deviation (a group of equal rewards gets A = 0). */
  eps: Schema.Finite.check(Schema.isGreaterThan(0))
})
export type AdvantageConfig = typeof AdvantageConfig.Type

export const defaultAdvantageConfig: AdvantageConfig = { scaleByStd: true, eps: 1e-6 }

/**
 * Advantages of samples whose group is `groups[i]` (any labels; a group is
 * the samples sharing a label). Throws a RangeError naming the bad input
 * when lengths differ or a reward is not finite.
 */
export const groupAdvantages = (
  rewards: ReadonlyArray<number>,
  groups: ReadonlyArray<number | string>,
  config: AdvantageConfig = defaultAdvantageConfig
): Float64Array => {
  if (rewards.length !== groups.length) {
    throw new RangeError(`rewards has ${rewards.length} entries but groups has ${groups.length}; expected one group label per reward`)
  }
  const bad = rewards.findIndex((r) => !Number.isFinite(r))
  if (bad >= 0) throw new RangeError(`rewards[${bad}] = ${rewards[bad]}, expected a finite number`)
  const members = new Map<number | string, Array<number>>()
  groups.forEach((g, i) => {
    const list = members.get(g)
    if (list === undefined) members.set(g, [i])
    else list.push(i)
  })
  const out = new Float64Array(rewards.length)
  for (const idx of members.values()) {
    const mean = idx.reduce((s, i) => s + rewards[i]!, 0) / idx.length
    const variance = idx.reduce((s, i) => s + (rewards[i]! - mean) ** 2, 0) / idx.length
    const scale = config.scaleByStd ? 1 / (Math.sqrt(variance) + config.eps) : 1
    for (const i of idx) out[i] = (rewards[i]! - mean) * scale
  }
  return out
}
