/**
 * `pipeline leas`: the interference analysis end to end on a model and a
 * dataset the pipeline can train.
 *
 * 1. Variants: Reas (mode reas-only), Tool (tool-only) and Unified (joint)
 *    are trained with the config's budget, seed and data into
 *    `<out>/runs/<variant>`; a finished run there with the same config is
 *    reused, a stopped one resumed.
 * 2. Sampling: every question of the evaluation set, N samples per
 *    variant at the given temperature, scored by EM. The trained adapters
 *    are loaded side by side into one engine and each variant is a routing
 *    plan over them (variants.ts). A decode batch holds many questions x N
 *    samples of one variant (a session has one plan, so variants take
 *    turns). Results are appended per batch ("chunk": a fixed slice of the
 *    questions) to `<out>/samples.jsonl`; a killed run redoes only the
 *    chunk it was in.
 * 3. Gradient angles: on Unified's shared adapter, for a seeded sample of
 *    the questions Unified sometimes but not always answers, G rollouts
 *    each, one backward per role per trajectory (GRPO objective, the
 *    group's advantages): cosine(g_R, g_A) within each trajectory, and
 *    same-role cosines between the trajectories of a question. Trajectories
 *    with advantage 0 (their gradient is the KL term alone) are left out
 *    and counted.
 * 4. Statistics and report (Leas.ts): leas.json and leas.html in `<out>`.
 */
import { Effect } from "effect"
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { DatasetRecord } from "../data/record.ts"
import { Engine } from "../engine/Engine.ts"
import { prng, shuffleInPlace } from "../domain/random.ts"
import { groupAdvantages } from "../objective/advantages.ts"
import { Reward } from "../reward/Reward.ts"
import { Rollout } from "../rollout/Rollout.ts"
import type { TrainConfig } from "../train/config.ts"
import { writeFileAtomic } from "../train/checkpoint.ts"
import { pipelineLayer } from "../train/layers.ts"
import { Progress } from "../train/Progress.ts"
import { ensureRun, firstDifference, sharedSearch } from "../train/runs.ts"
import { loadRecords, TrainError, type TrainSummary } from "../train/Train.ts"
import { cosine, Update } from "../update/Update.ts"
import { type Variant, VARIANTS } from "./algebra.ts"
import * as Leas from "./Leas.ts"
import type { GradientSamples, LeasAnalysis, QuestionDraws } from "./stats.ts"
import { TRAINED_VARIANTS, type TrainedVariant, TRAINING_MODE, variantPlan, type VariantSlots } from "./variants.ts"

export interface LeasRunOptions {
  readonly outDir: string
  /** The evaluation set (Search-R1 layout). */
  readonly questions: string
  /** Only the first this many questions (0 = all). */
  readonly limit: number
  /** N: samples per (variant, question). */
  readonly samples: number
  readonly temperature: number
  /** Episodes per decode batch (whole questions: floor(batch / N) of them, at least one). */
  readonly batchSize: number
  /** Questions of the gradient-angle analysis (0 = skip it). */
  readonly gradientQuestions: number
  /** Rollouts per question there. */
  readonly gradientRollouts: number
  readonly bootstrap: number
  readonly sensitivity: ReadonlyArray<number>
}

export const defaultLeasOptions = {
  /**
   * Steps of each trained variant: half the training default, so that the
   * whole analysis (three runs and 6 x N samples per question) fits in
   * about half an hour on two cores; `--steps` sets it.
   */
  steps: 50,
  limit: 0,
  samples: 50,
  temperature: 1,
  batchSize: 256,
  gradientQuestions: 16,
  gradientRollouts: 16,
  bootstrap: 2000,
  sensitivity: [5, 10, 25, 50]
} as const

const fail = (detail: string) => new TrainError({ reason: { _tag: "Config", detail } })

/** The seed of a chunk's sampling session (fixed per variant and chunk, so a redone chunk draws the same). */
export const chunkSeed = (seed: number, variant: Variant, chunk: number): number =>
  (Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(VARIANTS.indexOf(variant) + 1, 0x85ebca6b) ^ Math.imul(chunk + 1, 0xc2b2ae35)) >>> 0

interface ChunkLine {
  readonly variant: Variant
  readonly chunk: number
  readonly ids: ReadonlyArray<string>
  /** Per question of the chunk, its N EM draws. */
  readonly draws: ReadonlyArray<ReadonlyArray<number>>
  readonly searches: number
}

/**
 * The finished chunks of samples.jsonl. A torn last line (a killed run) is
 * dropped and the file rewritten without it, so that the chunk redone next
 * starts on a line of its own.
 */
const readChunks = (file: string): Map<string, ChunkLine> => {
  const done = new Map<string, ChunkLine>()
  if (!existsSync(file)) return done
  const kept: Array<string> = []
  for (const line of readFileSync(file, "utf8").split("\n")) {
    try {
      const c = JSON.parse(line) as ChunkLine
      if (typeof c.chunk === "number") {
        done.set(`${c.variant}/${c.chunk}`, c)
        kept.push(line)
      }
    } catch {
      // torn line of a killed run
    }
  }
  writeFileAtomic(file, kept.map((l) => `${l}\n`).join(""))
  return done
}

const questionId = (r: DatasetRecord, i: number) => r.id ?? `q${i}`

/** Seeded choice of `k` of `xs` (without replacement). */
const sample = <A>(xs: ReadonlyArray<A>, k: number, seed: number): Array<A> => {
  const out = [...xs]
  shuffleInPlace(out, prng(seed >>> 0))
  return out.slice(0, k)
}

export interface LeasRunResult {
  readonly files: Leas.ReportFiles
  readonly analysis: LeasAnalysis
  readonly runs: Readonly<Record<TrainedVariant, TrainSummary>>
  readonly samplingSeconds: number
}

export const runLeas = (config: TrainConfig, options: LeasRunOptions) =>
  Effect.gen(function*() {
    const started = performance.now()
    const progress = yield* Progress
    const { outDir } = options
    mkdirSync(outDir, { recursive: true })
    // The settings that the samples depend on: a folder sampled with others is refused.
    const sampling = { model: config.model, questions: options.questions, limit: options.limit, samples: options.samples, temperature: options.temperature, batchSize: options.batchSize, seed: config.seed, steps: config.steps }
    const settingsFile = join(outDir, "sampling.json")
    if (existsSync(settingsFile)) {
      const diff = firstDifference(JSON.parse(readFileSync(settingsFile, "utf8")), sampling)
      if (diff !== undefined) return yield* fail(`${outDir} holds a LEAS run with other settings (they differ at ${diff}); remove it or choose another output folder`)
    } else writeFileSync(settingsFile, JSON.stringify(sampling, null, 2) + "\n")

    // 1. The trained variants.
    if (config.data.validation !== undefined) {
      yield* progress.log(`leas: the variants train without validation (data.validation ${config.data.validation} is not used); LEAS samples ${options.questions}`)
    }
    const search = yield* sharedSearch(config.search, outDir)
    const base: TrainConfig = { ...config, search, data: { train: config.data.train } }
    const runs = {} as Record<TrainedVariant, TrainSummary>
    for (const v of TRAINED_VARIANTS) {
      const runDir = join(outDir, "runs", v)
      yield* progress.log(`leas: variant ${v} (mode ${TRAINING_MODE[v]}, ${config.steps} steps) in ${runDir}`)
      runs[v] = yield* ensureRun({ ...base, mode: TRAINING_MODE[v] }, runDir)
    }

    // 2. Sampling, and 3. gradient angles, in one engine with the three adapters.
    const all = yield* loadRecords(options.questions)
    const records = options.limit > 0 ? all.slice(0, options.limit) : all
    const ids = records.map(questionId)
    if (new Set(ids).size !== ids.length) return yield* fail(`${options.questions}: question ids are not unique (LEAS keys its samples by id)`)
    const samplesFile = join(outDir, "samples.jsonl")
    const perChunk = Math.max(1, Math.floor(options.batchSize / options.samples))
    const chunks = Math.ceil(records.length / perChunk)
    const samplingStarted = performance.now()

    const { draws, gradients } = yield* Effect.gen(function*() {
      const engine = yield* Engine
      const rollout = yield* Rollout
      const reward = yield* Reward
      const update = yield* Update
      const slots = {} as Record<TrainedVariant, number>
      for (const v of TRAINED_VARIANTS) slots[v] = yield* engine.loadAdapter(join(outDir, "runs", v, "adapters", "shared"))
      const variantSlots: VariantSlots = slots

      const done = readChunks(samplesFile)
      const task = yield* progress.start("leas sampling (variant x question)", VARIANTS.length * records.length)
      let finished = 0
      for (const variant of VARIANTS) {
        const plan = variantPlan(variant, variantSlots).generation
        for (let c = 0; c < chunks; c++) {
          const chunk = records.slice(c * perChunk, (c + 1) * perChunk)
          if (!done.has(`${variant}/${c}`)) {
            const trajectories = yield* rollout.run({
              prompts: chunk,
              plan,
              seed: chunkSeed(config.seed, variant, c),
              config: { groupSize: options.samples, temperature: options.temperature }
            })
            const cell: Array<Array<number>> = chunk.map(() => [])
            let searches = 0
            for (const t of trajectories) {
              const s = yield* reward.score({ response: t.response, goldenAnswers: chunk[t.prompt]!.goldenAnswers })
              cell[t.prompt]!.push(s.em)
              searches += t.searches
            }
            const line: ChunkLine = { variant, chunk: c, ids: chunk.map((r, i) => questionId(r, c * perChunk + i)), draws: cell, searches }
            appendFileSync(samplesFile, JSON.stringify(line) + "\n")
            done.set(`${variant}/${c}`, line)
          }
          finished += chunk.length
          yield* task.update(finished, { variant })
        }
      }
      yield* task.stop

      const draws: Array<QuestionDraws> = records.map((r, i) => {
        const c = Math.floor(i / perChunk)
        const byVariant = Object.fromEntries(VARIANTS.map((v) => [v, done.get(`${v}/${c}`)!.draws[i - c * perChunk]!])) as Record<Variant, ReadonlyArray<number>>
        return { id: ids[i]!, dataSource: r.dataSource, question: r.question, draws: byVariant }
      })

      // 3. Gradient angles on Unified's adapter.
      const gradientsFile = join(outDir, "gradients.json")
      if (options.gradientQuestions === 0) return { draws, gradients: undefined }
      if (existsSync(gradientsFile)) return { draws, gradients: JSON.parse(readFileSync(gradientsFile, "utf8")) as GradientSamples & { skipped: number; questions: ReadonlyArray<string> } }
      const mixed = draws.filter((d) => {
        const s = d.draws.unified.reduce((a, b) => a + b, 0) / d.draws.unified.length
        return s > 0 && s < 1
      })
      const chosen = sample(mixed, options.gradientQuestions, config.seed ^ 0x5bd1e995)
      const plan = variantPlan("unified", variantSlots)
      const within: Array<number> = [], acrossReasoning: Array<number> = [], acrossTool: Array<number> = []
      let skipped = 0
      const gtask = yield* progress.start("leas gradient angles (questions)", chosen.length)
      for (let q = 0; q < chosen.length; q++) {
        const record = records[ids.indexOf(chosen[q]!.id)]!
        const trajectories = yield* rollout.run({ prompts: [record], plan: plan.generation, seed: chunkSeed(config.seed, "unified", 1_000_000 + q), config: { groupSize: options.gradientRollouts, temperature: options.temperature } })
        const rewards: Array<number> = []
        for (const t of trajectories) rewards.push((yield* reward.score({ response: t.response, goldenAnswers: record.goldenAnswers })).reward)
        const advantages = groupAdvantages(rewards, trajectories.map(() => 0), config.advantage)
        const keep = trajectories.map((_, i) => i).filter((i) => advantages[i] !== 0)
        skipped += trajectories.length - keep.length
        if (keep.length > 0) {
          const grads = yield* update.roleGradients({ sequences: keep.map((i) => trajectories[i]!), advantages: keep.map((i) => advantages[i]!), plan, lr: 0 })
          for (let i = 0; i < grads.length; i++) {
            within.push(cosine(grads[i]!.reasoning, grads[i]!.tool))
            for (let j = i + 1; j < grads.length; j++) {
              acrossReasoning.push(cosine(grads[i]!.reasoning, grads[j]!.reasoning))
              acrossTool.push(cosine(grads[i]!.tool, grads[j]!.tool))
            }
          }
        }
        yield* gtask.update(q + 1)
      }
      yield* gtask.stop
      const gradients = { within, acrossReasoning, acrossTool, skipped, questions: chosen.map((c) => c.id) }
      writeFileSync(gradientsFile, JSON.stringify(gradients) + "\n")
      return { draws, gradients }
    }).pipe(Effect.provide(pipelineLayer({ ...base, mode: "joint" }, outDir)))
    const samplingSeconds = (performance.now() - samplingStarted) / 1000

    // 4. Statistics and report.
    const leas = Leas.make()
    const analysis = yield* leas.analyze(draws, { seed: config.seed, bootstrap: options.bootstrap, sensitivity: options.sensitivity })
    const gradientAnalysis = gradients === undefined ? undefined : yield* leas.analyzeGradients(gradients)
    const files = yield* leas.writeReport({
      dir: outDir,
      analysis,
      ...(gradientAnalysis === undefined ? {} : { gradients: gradientAnalysis }),
      meta: {
        title: "LEAS: interference between reasoning and tool use",
        model: config.model,
        questions: options.questions,
        evaluated: records.length,
        samples: options.samples,
        temperature: options.temperature,
        training: Object.fromEntries(TRAINED_VARIANTS.map((v) => [v, { mode: TRAINING_MODE[v], steps: runs[v].steps, seconds: runs[v].seconds, runDir: runs[v].runDir }])),
        gradientQuestions: gradients?.questions.length ?? 0,
        gradientRollouts: options.gradientRollouts,
        gradientTrajectoriesSkipped: gradients?.skipped ?? 0,
        samplingSeconds,
        seconds: (performance.now() - started) / 1000
      }
    })
    return { files, analysis, runs, samplingSeconds }
  })
