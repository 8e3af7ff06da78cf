/**
 * Runs that other commands build on (`compare`, `leas`): a training run in
 * a given directory that is trained once and reused after, resumed where it
 * stopped, and refused when the directory holds a run of another config (it
 * is never silently reused for something it was not trained for). And the
 * evaluation of a finished run's adapters on a dataset, written next to it
 * once.
 */
import { Effect } from "effect"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { DatasetRecord } from "../data/record.ts"
import { buildIndex } from "../search/bm25.ts"
import type { SearchConfig, TrainConfig } from "./config.ts"
import { evaluate, type EvalSummary, type QuestionResult } from "./evaluate.ts"
import { type Overrides, pipelineLayer } from "./layers.ts"
import { type PlanChoice, runAdapters, setupPlan } from "./plans.ts"
import { train, TrainError, type TrainSummary } from "./Train.ts"

/** The first path at which two JSON values differ, or undefined when they are equal. */
export const firstDifference = (a: unknown, b: unknown, path = ""): string | undefined => {
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) {
    return Object.is(a, b) ? undefined : path || "(root)"
  }
  if (Array.isArray(a) !== Array.isArray(b)) return path || "(root)"
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()
  for (const k of keys) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], path === "" ? k : `${path}.${k}`)
    if (d !== undefined) return d
  }
  return undefined
}

/**
 * The search of runs that share one output folder: a corpus is indexed once
 * into `<dir>/index` (one thread: deterministic order of equal scores) and
 * every run opens that index; an index or a server is used as it is.
 */
export const sharedSearch = (search: SearchConfig, dir: string) =>
  Effect.gen(function*() {
    if (!("corpus" in search)) return search
    const index = join(dir, "index")
    if (!existsSync(join(index, "dart-index.json"))) yield* buildIndex(search.corpus, index, { progress: false, threads: 1 })
    return { index } satisfies SearchConfig
  })

const configError = (detail: string) => new TrainError({ reason: { _tag: "Config", detail } })

/**
 * The finished run of `config` in `runDir`: read back when it is there,
 * resumed from its newest checkpoint when it stopped, trained when the
 * directory is new.
 */
export const ensureRun = (config: TrainConfig, runDir: string, overrides: Overrides = {}) =>
  Effect.gen(function*() {
    const configFile = join(runDir, "config.json")
    const exists = existsSync(configFile)
    if (exists) {
      const held: unknown = JSON.parse(readFileSync(configFile, "utf8"))
      const diff = firstDifference(held, JSON.parse(JSON.stringify(config)))
      if (diff !== undefined) {
        return yield* configError(`${runDir} holds a run of another config (they differ at ${diff}); remove it or choose another output folder`)
      }
      if (existsSync(join(runDir, "summary.json"))) return JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as TrainSummary
    }
    mkdirSync(runDir, { recursive: true })
    return yield* train(config, { runDir, resume: exists }).pipe(Effect.provide(pipelineLayer(config, runDir, overrides)))
  })

export interface RunEvaluation {
  readonly summary: EvalSummary
  readonly results: ReadonlyArray<QuestionResult>
}

/**
 * The greedy evaluation of a plan (a finished run's mode with its adapters,
 * or the base model) on `records`, cached in `file`: computed once, read
 * back after.
 */
export const evaluateOnce = (
  config: TrainConfig,
  plan: { readonly choice: PlanChoice; readonly runDir?: string },
  records: ReadonlyArray<DatasetRecord>,
  file: string,
  label: string,
  overrides: Overrides = {}
) =>
  Effect.gen(function*() {
    if (existsSync(file)) return JSON.parse(readFileSync(file, "utf8")) as RunEvaluation
    const adapters = plan.runDir === undefined ? undefined : runAdapters(plan.runDir)
    if (plan.runDir !== undefined && adapters === undefined) return yield* configError(`${plan.runDir} has no adapters to evaluate`)
    const result = yield* Effect.gen(function*() {
      const modePlan = yield* setupPlan(plan.choice, adapters === undefined ? {} : { adapters })
      return yield* evaluate(records, { plan: modePlan.generation, seed: config.seed, temperature: 0, batchSize: config.eval.batchSize, label })
    }).pipe(Effect.provide(pipelineLayer(config, plan.runDir ?? join(file, ".."), overrides)))
    const out: RunEvaluation = { summary: result.summary, results: result.results }
    writeFileSync(file, JSON.stringify(out, null, 2) + "\n")
    return out
  })
