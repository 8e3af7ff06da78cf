/**
 * The plans `eval` and `ask` run: a training mode with its trained
 * adapters (loaded from a folder with one PEFT sub-folder per adapter, as a
 * run's `adapters/` or a checkpoint's), the untrained base, or a hybrid
 * plan whose reasoning writer and tool-call writer are each an adapter
 * folder or the base (the paper's H_Tool and H_Reas).
 */
import { Effect } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import { Engine } from "../engine/Engine.ts"
import { basePlan, BASE, hybridPlan, MODES, type ModePlan, modePlan, type TrainMode } from "../routing/modes.ts"
import * as Checkpoint from "./checkpoint.ts"
import { modeSlots, slotNames, TrainError } from "./Train.ts"

export const PLANS = [...MODES, "base", "hybrid"] as const
export type PlanChoice = (typeof PLANS)[number]

export interface AdapterSource {
  /** A folder holding one PEFT folder per adapter of the mode (reason/ and tool/, or shared/). */
  readonly adapters?: string
  /** hybrid: the reasoning writer, a PEFT folder or "base". */
  readonly reason?: string
  /** hybrid: the tool-call writer, a PEFT folder or "base". */
  readonly tool?: string
}

const fail = (detail: string) => new TrainError({ reason: { _tag: "Config", detail } })

/** A run's adapters: its final `adapters/`, else its newest complete checkpoint's. */
export const runAdapters = (runDir: string): string | undefined => {
  if (existsSync(join(runDir, "summary.json")) && existsSync(join(runDir, "adapters"))) return join(runDir, "adapters")
  const latest = Checkpoint.latest(join(runDir, "checkpoints"))
  return latest === undefined ? undefined : join(latest.dir, "adapters")
}

/** Loads what the plan needs into the engine (which must have no adapters yet) and returns the plan. */
export const setupPlan = (choice: PlanChoice, source: AdapterSource) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    if (!(PLANS as ReadonlyArray<string>).includes(choice)) return yield* fail(`unknown plan ${JSON.stringify(choice)}: expected one of ${PLANS.join(", ")}`)
    if (choice === "base") return basePlan()
    if (choice === "hybrid") {
      if (source.reason === undefined || source.tool === undefined) {
        return yield* fail("plan hybrid needs --reason-adapter and --tool-adapter (each a PEFT adapter folder or \"base\")")
      }
      const slotOf = (dir: string) => (dir === "base" ? Effect.succeed(BASE) : engine.loadAdapter(dir))
      const r = yield* slotOf(source.reason)
      const t = yield* slotOf(source.tool)
      return hybridPlan(r, t)
    }
    const mode: TrainMode = choice
    if (source.adapters === undefined) return yield* fail(`plan ${mode} needs trained adapters (--run or --adapters)`)
    for (const name of slotNames(mode)) {
      const dir = join(source.adapters, name)
      if (!existsSync(join(dir, "adapter_config.json"))) {
        return yield* fail(`${source.adapters} has no adapter ${name}/ (mode ${mode} needs ${slotNames(mode).join(" and ")}/, each a PEFT folder)`)
      }
      yield* engine.loadAdapter(dir)
    }
    return modePlan(mode, modeSlots(mode)) satisfies ModePlan
  })
