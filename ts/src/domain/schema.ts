/** Bounded number schemas shared by the config sections. */
import { Schema } from "effect"

export const boundedInt = (min: number, max: number) => Schema.Int.check(Schema.isGreaterThanOrEqualTo(min), Schema.isLessThanOrEqualTo(max))
export const boundedNumber = (min: number, max: number) => Schema.Finite.check(Schema.isGreaterThanOrEqualTo(min), Schema.isLessThanOrEqualTo(max))
