/**
 * LEAS's six variants as routing plans (pure): which training mode builds
 * each trained variant, and which adapter writes the reasoning and the tool
 * calls of each variant at evaluation time.
 *
 * | variant | built by                      | reasoning written by | tool calls written by |
 * |---------|-------------------------------|----------------------|-----------------------|
 * | base    | nothing (untrained)           | base                 | base                  |
 * | reas    | mode reas-only (loss on R)    | Reas's adapter       | Reas's adapter        |
 * | tool    | mode tool-only (loss on A)    | Tool's adapter       | Tool's adapter        |
 * | unified | mode joint (loss on R and A)  | Unified's adapter    | Unified's adapter     |
 * | hTool   | a plan, no training           | base                 | Tool's adapter        |
 * | hReas   | a plan, no training           | Reas's adapter       | base                  |
 */
import { BASE, basePlan, hybridPlan, type ModePlan, modePlan, type TrainMode } from "../routing/modes.ts"
import type { Variant } from "./algebra.ts"

/** The variants that are trained, each by one single-adapter mode. */
export const TRAINED_VARIANTS = ["reas", "tool", "unified"] as const
export type TrainedVariant = (typeof TRAINED_VARIANTS)[number]

export const TRAINING_MODE: Readonly<Record<TrainedVariant, TrainMode>> = { reas: "reas-only", tool: "tool-only", unified: "joint" }

/** The engine slot holding each trained variant's adapter. */
export type VariantSlots = Readonly<Record<TrainedVariant, number>>

/** The generation plan of a variant, given where the trained adapters are loaded. */
export const variantPlan = (variant: Variant, slots: VariantSlots): ModePlan => {
  switch (variant) {
    case "base":
      return basePlan()
    case "reas":
    case "tool":
    case "unified":
      return modePlan(TRAINING_MODE[variant], { shared: slots[variant] })
    case "hTool":
      return hybridPlan(BASE, slots.tool)
    case "hReas":
      return hybridPlan(slots.reas, BASE)
  }
}
