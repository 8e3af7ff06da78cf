/**
 * Evaluation: one episode per question under a generation plan (any mode,
 * or a hybrid plan), scored by the Reward service; per-question results and
 * a summary with EM and F1 overall and per data source, and searches per
 * question. Used by `train` (validation before, during and after) and by
 * `eval`.
 */
import { Effect } from "effect"
import type { DatasetRecord } from "../data/record.ts"
import type { GenerationPlanInput } from "../engine/Engine.ts"
import { Reward, type RewardError } from "../reward/Reward.ts"
import { Rollout, type RolloutConfig, type RolloutError } from "../rollout/Rollout.ts"
import { Progress } from "./Progress.ts"

export interface QuestionResult {
  readonly id: string | undefined
  readonly question: string
  readonly goldenAnswers: ReadonlyArray<string>
  readonly dataSource: string
  readonly answer: string | undefined
  readonly reward: number
  readonly em: number
  readonly f1: number
  readonly searches: number
  readonly invalidActions: number
  readonly finish: string
  readonly response: string
}

export interface EvalGroup {
  readonly questions: number
  readonly em: number
  readonly f1: number
  readonly searchesPerQuestion: number
}

export interface EvalSummary extends EvalGroup {
  readonly byDataSource: Readonly<Record<string, EvalGroup>>
}

const group = (rs: ReadonlyArray<QuestionResult>): EvalGroup => {
  const n = rs.length
  const mean = (f: (r: QuestionResult) => number) => (n === 0 ? 0 : rs.reduce((s, r) => s + f(r), 0) / n)
  return { questions: n, em: mean((r) => r.em), f1: mean((r) => r.f1), searchesPerQuestion: mean((r) => r.searches) }
}

export const summarize = (results: ReadonlyArray<QuestionResult>): EvalSummary => {
  const sources = [...new Set(results.map((r) => r.dataSource))].sort()
  return { ...group(results), byDataSource: Object.fromEntries(sources.map((s) => [s, group(results.filter((r) => r.dataSource === s))])) }
}

export interface EvaluateOptions {
  readonly plan: GenerationPlanInput
  readonly seed: number
  readonly temperature: number
  readonly batchSize: number
  readonly label?: string
  /** Further rollout overrides (the group size is always 1). */
  readonly rollout?: Partial<RolloutConfig>
}

export const evaluate = (
  records: ReadonlyArray<DatasetRecord>,
  options: EvaluateOptions
): Effect.Effect<{ readonly results: ReadonlyArray<QuestionResult>; readonly summary: EvalSummary }, RolloutError | RewardError, Rollout | Reward | Progress> =>
  Effect.gen(function*() {
    const rollout = yield* Rollout
    const reward = yield* Reward
    const progress = yield* Progress
    const task = yield* progress.start(options.label ?? "eval", records.length)
    const results: Array<QuestionResult> = []
    for (let at = 0; at < records.length; at += options.batchSize) {
      const chunk = records.slice(at, at + options.batchSize)
      const trajectories = yield* rollout.run({
        prompts: chunk,
        plan: options.plan,
        seed: (options.seed + at) >>> 0,
        config: { ...options.rollout, groupSize: 1, temperature: options.temperature }
      })
      for (const t of trajectories) {
        const record = chunk[t.prompt]!
        const s = yield* reward.score({ response: t.response, goldenAnswers: record.goldenAnswers })
        results.push({
          id: record.id,
          question: record.question,
          goldenAnswers: record.goldenAnswers,
          dataSource: record.dataSource,
          answer: s.answer,
          reward: s.reward,
          em: s.em,
          f1: s.f1,
          searches: t.searches,
          invalidActions: t.invalidActions,
          finish: t.finish,
          response: t.response
        })
      }
      yield* task.update(results.length, { em: group(results).em.toFixed(3) })
    }
    yield* task.stop
    return { results, summary: summarize(results) }
  })
