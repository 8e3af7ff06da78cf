/**
 * The training loop (docs/pipeline.md): a step is Rollout (G episodes per
 * prompt), Reward, group-relative advantages, Update; every `eval.every`
 * steps a validation; every `checkpointEvery` steps (and after the last) an
 * atomic checkpoint. Everything a step draws is derived from the run's seed
 * and the step number (the rollout's session seed, the data order), and
 * everything that changes is in the checkpoint (adapters in PEFT layout,
 * AdamW moments and the engine's RNG, the data cursor, the step), so a run
 * resumed from a checkpoint continues exactly as if it had not stopped
 * (bit for bit on the cpu backend).
 *
 * Run directory:
 *   config.json         the resolved config (what --resume reads)
 *   metrics.jsonl       one line per step ({"kind": "step", ...}) and per validation ({"kind": "validation", ...})
 *   eval/before.json, eval/step-N.json, eval/after.json   per-question validation results and their summary
 *   checkpoints/step-N/ adapters/<name>/ (PEFT), optimizer/, trainer.json, manifest.json (last)
 *   adapters/<name>/    the final adapters (PEFT), written at the end
 *   summary.json        EM before and after (overall and per data source), searches per question, run time
 */
import { Effect, Schema, Stream } from "effect"
import type { FileSystem } from "effect/FileSystem"
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { readDataset } from "../data/dataset.ts"
import type { DatasetError, DatasetRecord } from "../data/record.ts"
import { type AdapterSpec, Engine, type EngineError } from "../engine/Engine.ts"
import { prng, shuffleInPlace } from "../domain/random.ts"
import { groupAdvantages } from "../objective/advantages.ts"
import { Reward, type RewardError } from "../reward/Reward.ts"
import { Rollout, type RolloutError } from "../rollout/Rollout.ts"
import { type ModePlan, type ModeSlots, modePlan, type TrainMode } from "../routing/modes.ts"
import { Update, type UpdateError } from "../update/Update.ts"
import { learningRate } from "../update/schedule.ts"
import * as Checkpoint from "./checkpoint.ts"
import type { TrainConfig } from "./config.ts"
import { evaluate, type EvalSummary } from "./evaluate.ts"
import { Progress } from "./Progress.ts"

// ---------------------------------------------------------------------------
// Pure rules

/** The adapter slots of a mode, in slot order. */
export const slotNames = (mode: TrainMode): ReadonlyArray<string> =>
  mode === "dart" || mode === "two-agent" ? ["reason", "tool"] : ["shared"]

export const modeSlots = (mode: TrainMode): ModeSlots =>
  mode === "dart" || mode === "two-agent" ? { reason: 0, tool: 1 } : { shared: 0 }

/** The order of the `n` training questions in data epoch `epoch` (a seeded Fisher-Yates shuffle). */
export const epochOrder = (n: number, seed: number, epoch: number): Int32Array => {
  const order = Int32Array.from({ length: n }, (_, i) => i)
  shuffleInPlace(order, prng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(epoch + 1, 0x85ebca6b)) >>> 0))
  return order
}

/** The question indices of the `count` prompts after `cursor` prompts were used. */
export const promptsAt = (n: number, seed: number, cursor: number, count: number): Array<number> => {
  const out: Array<number> = []
  let order: Int32Array | undefined
  let epoch = -1
  for (let c = cursor; c < cursor + count; c++) {
    const e = Math.floor(c / n)
    if (e !== epoch) {
      epoch = e
      order = epochOrder(n, seed, e)
    }
    out.push(order![c % n]!)
  }
  return out
}

/** The seed of step `step`'s rollout session. */
export const stepSeed = (seed: number, step: number): number => (seed * 1_000_003 + step * 7919 + 1) >>> 0

// ---------------------------------------------------------------------------
// Errors

export const TrainErrorReason = Schema.Union([
  Schema.TaggedStruct("Data", { detail: Schema.String }),
  Schema.TaggedStruct("Resume", { detail: Schema.String }),
  Schema.TaggedStruct("Checkpoint", { detail: Schema.String }),
  Schema.TaggedStruct("Config", { detail: Schema.String })
])

export class TrainError extends Schema.TaggedError<TrainError>()("TrainError", { reason: TrainErrorReason }) {
  override get message(): string {
    const r = this.reason
    return `${r._tag === "Data" ? "data" : r._tag === "Resume" ? "resume" : r._tag === "Checkpoint" ? "checkpoint" : "config"}: ${r.detail}`
  }
}

const trainError = (tag: "Data" | "Resume" | "Checkpoint" | "Config", detail: string) => new TrainError({ reason: { _tag: tag, detail } })

export type StageError = TrainError | RolloutError | UpdateError | RewardError | EngineError

// ---------------------------------------------------------------------------
// Data

export const loadRecords = (file: string): Effect.Effect<ReadonlyArray<DatasetRecord>, TrainError, FileSystem> =>
  Stream.runCollect(readDataset(file)).pipe(
    Effect.map((chunk) => Array.from(chunk)),
    Effect.mapError((e: DatasetError) => trainError("Data", e.message)),
    Effect.flatMap((records) => (records.length === 0 ? Effect.fail(trainError("Data", `${file}: no questions`)) : Effect.succeed(records)))
  )

// ---------------------------------------------------------------------------
// Adapters

const adapterSpecs = (config: TrainConfig): ReadonlyArray<AdapterSpec> => {
  const names = slotNames(config.mode)
  const a = config.adapters
  return names.map((_, i) => ({
    rank: names.length === 1 ? a.sharedRank : a.rank,
    alpha: names.length === 1 ? a.sharedAlpha : a.alpha,
    targets: a.targets,
    seed: config.seed * 16 + i + 1,
    bInitStd: a.bInitStd
  }))
}

/** Adds the mode's adapters (fresh) or loads them and the optimizer state from a checkpoint. */
export const setupAdapters = (config: TrainConfig, checkpoint?: string) =>
  Effect.gen(function*() {
    const engine = yield* Engine
    const existing = yield* engine.numAdapters
    if (existing !== 0) return yield* trainError("Config", `the engine already has ${existing} adapters; the trainer adds its own`)
    const names = slotNames(config.mode)
    if (checkpoint === undefined) {
      for (const spec of adapterSpecs(config)) yield* engine.addAdapter(spec)
    } else {
      for (const name of names) yield* engine.loadAdapter(join(checkpoint, "adapters", name))
      yield* engine.loadState(join(checkpoint, "optimizer"))
    }
    return modePlan(config.mode, modeSlots(config.mode))
  })

// ---------------------------------------------------------------------------
// The loop

export interface TrainOptions {
  readonly runDir: string
  /** Continue from the newest complete checkpoint in runDir. */
  readonly resume: boolean
}

export interface TrainSummary {
  readonly runDir: string
  readonly mode: TrainMode
  readonly steps: number
  readonly emBefore: EvalSummary | undefined
  readonly emAfter: EvalSummary | undefined
  /** Wall-clock seconds of training, over every process of a resumed run. */
  readonly seconds: number
  readonly resumedFrom: number | undefined
}

interface TrainerState {
  readonly step: number
  readonly cursor: number
  readonly elapsedSeconds: number
}

const TrainerStateSchema = Schema.Struct({ step: Schema.Int, cursor: Schema.Int, elapsedSeconds: Schema.Finite })

/**
 * metrics.jsonl as it was when `completed` steps were done (what a resumed
 * run continues from): step lines of the steps before, validation lines
 * up to and including `completed` (the validation after step N is written
 * before checkpoint N) but not the final one, no torn last line.
 * `completed` = 0 keeps nothing.
 */
const truncateMetrics = (file: string, completed: number, steps: number) => {
  if (!existsSync(file)) return
  const kept = readFileSync(file, "utf8").split("\n").filter((line) => {
    try {
      const m = JSON.parse(line) as { step?: unknown; kind?: unknown }
      if (typeof m.step !== "number" || completed === 0) return false
      // The validation after the last step is redone (it comes after the last checkpoint).
      return m.kind === "validation" ? m.step <= completed && m.step < steps : m.step < completed
    } catch {
      return false
    }
  })
  writeFileSync(file, kept.map((l) => `${l}\n`).join(""))
}

/** The process's memory after a step, MB: resident set, JS heap, and buffers outside it (typed arrays, the engine's tensors are not counted there). */
const memoryMb = () => {
  const m = process.memoryUsage()
  const mb = (x: number) => Math.round(x / 2 ** 20)
  return { rss: mb(m.rss), heapUsed: mb(m.heapUsed), external: mb(m.external), arrayBuffers: mb(m.arrayBuffers) }
}

const mean = (xs: ReadonlyArray<number>) => (xs.length === 0 ? 0 : xs.reduce((a, b) => a + b, 0) / xs.length)

export const train = (
  config: TrainConfig,
  options: TrainOptions
): Effect.Effect<TrainSummary, StageError, Engine | Rollout | Reward | Update | Progress | FileSystem> =>
  Effect.gen(function*() {
    const started = performance.now()
    const { runDir } = options
    const progress = yield* Progress
    const engine = yield* Engine
    const rollout = yield* Rollout
    const reward = yield* Reward
    const update = yield* Update
    const ckptRoot = join(runDir, "checkpoints")
    const metricsFile = join(runDir, "metrics.jsonl")
    mkdirSync(join(runDir, "eval"), { recursive: true })

    let resumed: { dir: string; state: TrainerState } | undefined
    if (options.resume) {
      if (!existsSync(join(runDir, "config.json"))) return yield* trainError("Resume", `${runDir} is not a run directory (no config.json)`)
      const found = Checkpoint.latest(ckptRoot)
      for (const s of Checkpoint.incompleteAll(ckptRoot)) yield* progress.log(`skipping incomplete checkpoint ${s}`)
      if (found === undefined) {
        // Stopped before its first checkpoint: nothing to keep, start it again from step 0.
        yield* progress.log(`${runDir} has no complete checkpoint yet: starting it again from step 0`)
        truncateMetrics(metricsFile, 0, config.steps)
      }
    }
    if (options.resume && Checkpoint.latest(ckptRoot) !== undefined) {
      const found = Checkpoint.latest(ckptRoot)!
      const state = yield* Effect.try({
        try: () => Schema.decodeUnknownSync(TrainerStateSchema)(JSON.parse(readFileSync(join(found.dir, "trainer.json"), "utf8"))),
        catch: (e) => trainError("Resume", `${found.dir}/trainer.json: ${String(e)}`)
      })
      resumed = { dir: found.dir, state }
      if (state.step >= config.steps && existsSync(join(runDir, "summary.json"))) {
        yield* progress.log(`${runDir} is complete (${config.steps} steps); nothing to resume`)
        return JSON.parse(readFileSync(join(runDir, "summary.json"), "utf8")) as TrainSummary
      }
      truncateMetrics(metricsFile, state.step, config.steps)
      yield* progress.log(`resuming ${runDir} from ${found.dir} (step ${state.step} of ${config.steps})`)
    } else if (!options.resume) {
      if (existsSync(metricsFile)) return yield* trainError("Config", `${runDir} already holds a run (metrics.jsonl); resume it with --resume ${runDir} or choose another --run-dir`)
      Checkpoint.writeFileAtomic(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n")
    }

    if (config.gradientProbeEvery > 0 && slotNames(config.mode).length !== 1) {
      return yield* trainError("Config", `gradientProbeEvery needs one shared adapter (modes joint, reas-only, tool-only); mode ${config.mode} trains reasoning and tool calls in separate adapters`)
    }
    const trainSet = yield* loadRecords(config.data.train)
    const validation = config.data.validation === undefined ? [] : yield* loadRecords(config.data.validation)
    const validSet = config.eval.limit > 0 ? validation.slice(0, config.eval.limit) : validation
    const plan: ModePlan = yield* setupAdapters(config, resumed?.dir)
    const names = slotNames(config.mode)

    const validate = (label: string, file: string, step: number) =>
      Effect.gen(function*() {
        if (validSet.length === 0) return undefined
        const { results, summary } = yield* evaluate(validSet, {
          plan: plan.generation,
          seed: stepSeed(config.seed, 1_000_000 + step),
          temperature: config.eval.temperature,
          batchSize: config.eval.batchSize,
          label
        })
        writeFileSync(join(runDir, "eval", file), JSON.stringify({ step, summary, results }, null, 2) + "\n")
        appendFileSync(metricsFile, JSON.stringify({ kind: "validation", step, ...summary }) + "\n")
        yield* progress.log(`${label}: EM ${summary.em.toFixed(3)} F1 ${summary.f1.toFixed(3)} searches/question ${summary.searchesPerQuestion.toFixed(2)} (${summary.questions} questions)`)
        return summary
      })

    const readSummary = (file: string): EvalSummary | undefined =>
      existsSync(join(runDir, "eval", file)) ? (JSON.parse(readFileSync(join(runDir, "eval", file), "utf8")) as { summary: EvalSummary }).summary : undefined

    const emBefore = resumed === undefined ? yield* validate("validation before training", "before.json", 0) : readSummary("before.json")

    let step = resumed?.state.step ?? 0
    let cursor = resumed?.state.cursor ?? 0
    const priorSeconds = resumed?.state.elapsedSeconds ?? 0
    const task = yield* progress.start("steps", config.steps)
    yield* task.update(step)
    const schedule = { ...config.schedule, totalSteps: config.steps }

    const checkpoint = (at: number) =>
      Checkpoint.write(ckptRoot, at, (dir) =>
        Effect.gen(function*() {
          for (let s = 0; s < names.length; s++) yield* engine.saveAdapter(s, join(dir, "adapters", names[s]!))
          mkdirSync(join(dir, "optimizer"), { recursive: true })
          yield* engine.saveState(join(dir, "optimizer"))
          const state: TrainerState = { step: at, cursor, elapsedSeconds: priorSeconds + (performance.now() - started) / 1000 }
          writeFileSync(join(dir, "trainer.json"), JSON.stringify(state) + "\n")
        })).pipe(
          Effect.mapError((e) => (e._tag === "CheckpointError" ? trainError("Checkpoint", `${e.path}: ${e.message}`) : e)),
          Effect.tap(() => Effect.sync(() => Checkpoint.prune(ckptRoot, config.keepCheckpoints)))
        )

    while (step < config.steps) {
      const t0 = performance.now()
      const indices = promptsAt(trainSet.length, config.seed, cursor, config.promptsPerStep)
      const prompts = indices.map((i) => trainSet[i]!)
      const trajectories = yield* rollout.run({ prompts, plan: plan.generation, seed: stepSeed(config.seed, step) })
      const rolloutSeconds = (performance.now() - t0) / 1000
      const scores = []
      for (const t of trajectories) scores.push(yield* reward.score({ response: t.response, goldenAnswers: prompts[t.prompt]!.goldenAnswers }))
      const rewards = scores.map((s) => s.reward)
      const advantages = groupAdvantages(rewards, trajectories.map((t) => t.prompt), config.advantage)
      const lr = learningRate(schedule, step)
      const request = { sequences: trajectories, advantages, plan, lr }
      const probe = config.gradientProbeEvery > 0 && step % config.gradientProbeEvery === 0 ? yield* update.gradientCosine(request) : undefined
      const report = yield* update.update(request)
      cursor += config.promptsPerStep
      step++
      const generated = trajectories.reduce((n, t) => n + t.roles.filter((r) => r === 1 || r === 2).length, 0)
      const tokens = trajectories.reduce((n, t) => n + t.tokens.length, 0)
      const line = {
        kind: "step",
        step: step - 1,
        lr,
        reward: mean(rewards),
        em: mean(scores.map((s) => s.em)),
        f1: mean(scores.map((s) => s.f1)),
        formatRate: mean(scores.map((s) => (s.format.valid ? 1 : 0))),
        answerRate: mean(trajectories.map((t) => (t.finish === "answer" ? 1 : 0))),
        searchesPerEpisode: mean(trajectories.map((t) => t.searches)),
        invalidActionsPerEpisode: mean(trajectories.map((t) => t.invalidActions)),
        searchFailures: trajectories.reduce((n, t) => n + t.searchFailures, 0),
        responseLength: mean(trajectories.map((t) => t.tokens.length - t.promptLength)),
        loss: report.loss,
        kl: report.kl,
        clipFraction: report.clipFraction,
        entropy: report.entropy,
        firstEpochRatio: report.firstEpochRatio,
        logprobConsistency: report.consistency,
        adapters: Object.fromEntries(report.slots.map((s) => [names[s.slot] ?? `slot${s.slot}`, { tokens: s.tokens, gradNorm: s.gradNorm, clipped: s.clipped, updated: s.updated }])),
        rolloutTokensPerSecond: generated / Math.max(rolloutSeconds, 1e-9),
        updateTokensPerSecond: (tokens * plan.passes.length * config.update.ppoEpochs) / Math.max(report.seconds, 1e-9),
        stepSeconds: (performance.now() - t0) / 1000,
        rolloutSeconds,
        updateSeconds: report.seconds,
        memory: memoryMb(),
        ...(probe === undefined ? {} : { gradientCosine: probe.cosine, gradientNorms: { reasoning: probe.normReasoning, tool: probe.normTool } })
      }
      appendFileSync(metricsFile, JSON.stringify(line) + "\n")
      yield* task.update(step, { reward: line.reward.toFixed(3), searches: line.searchesPerEpisode.toFixed(2), kl: line.kl.toExponential(1) })
      if (config.eval.every > 0 && step % config.eval.every === 0 && step < config.steps) {
        yield* validate(`validation at step ${step}`, `${Checkpoint.checkpointName(step)}.json`, step)
      }
      if (step % config.checkpointEvery === 0 || step === config.steps) yield* checkpoint(step)
    }
    yield* task.stop

    const emAfter = yield* validate("validation after training", "after.json", config.steps)
    for (let s = 0; s < names.length; s++) yield* engine.saveAdapter(s, join(runDir, "adapters", names[s]!))
    const seconds = priorSeconds + (performance.now() - started) / 1000
    const summary: TrainSummary = { runDir, mode: config.mode, steps: config.steps, emBefore, emAfter, seconds, resumedFrom: resumed?.state.step }
    Checkpoint.writeFileAtomic(
      join(runDir, "summary.json"),
      JSON.stringify({ ...summary, em_before: emBefore?.em, em_after: emAfter?.em }, null, 2) + "\n"
    )
    return summary
  })
