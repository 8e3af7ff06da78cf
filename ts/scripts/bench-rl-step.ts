/**
 * One full GRPO step of dart-rl against TRL's GRPOTrainer, timed in the same
 * run; writes bench/results/rl-step.json (`pnpm bench` runs it from
 * scripts/bench/run.sh; alone:
 *
 *   pnpm exec tsx ts/scripts/bench-rl-step.ts [--out FILE] [--threads N]
 *     [--warmup 1] [--steps 4] [--python scripts/.venv-ref/bin/python]
 *     [--trl-length mean|budget] [--trl-null "reason"]
 *
 * dart: the training loop itself (ts/src/train/Train.ts `train`) on the
 * built-in world with the default config (world/model, world/train.jsonl,
 * the corpus indexed into a temporary run directory, mode dart, 8 prompts x
 * 8 samples, multi-turn with searches), except: no validation (the timed
 * loop is the steps), one checkpoint after the last step (outside the
 * steps' time), `threads` engine threads. Rollout and Update are the
 * pipeline's own services, wrapped only to time each call and count its
 * tokens; a step's time is the loop's own `stepSeconds` (metrics.jsonl).
 * `warmup` steps are run first and not counted. With TRL, dart runs twice
 * (before and after it: the same trajectories, same seed) and its figures
 * are over both rounds' timed steps, so that a change of the machine's load
 * (2 cores shared with other work here) does not favour either side.
 *
 * TRL: scripts/bench/trl_grpo.py with the venv's python (torch,
 * transformers, peft, trl), same model folder, same prompts (the first
 * prompts dart's steps drew, chat template applied by TRL), same group size,
 * prompts per step, temperature, KL coefficient, lr and threads; one LoRA of
 * rank 16 / alpha 32 on the same 7 projections (dart trains two rank-8 ones,
 * 16 ranks in all), gradient checkpointing off (TRL's default is on) and
 * OMP_WAIT_POLICY=PASSIVE (with torch's default spinning its 2 threads are
 * 10-20x slower when the cores are shared). Single-turn: TRL generates one
 * completion per sample with no search (TRL 1.16's tool loop parses JSON tool
 * calls through the tokenizer's response schema; this model writes
 * Search-R1's `<search> q </search>`, so it would never fire), so its
 * completion length is capped at dart's mean response length
 * (`--trl-length mean`, default: the tokens dart's update sees per episode)
 * or at dart's whole budget, maxTurns x maxTurnTokens (`budget`).
 *
 * Ratios: `step` = TRL s/step / dart s/step (the headline, the issue's
 * target is 3), and `per_generated_token` = (TRL s per generated token) /
 * (dart s per model-written token) (dart's observation tokens, which it
 * also has to prefill, are not counted as generated), and
 * `per_sequence_token`, the same per prompt + response token (what each
 * update trains on).
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { availableParallelism, tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { parseArgs } from "node:util"
import { Rollout } from "../src/rollout/Rollout.ts"
import { promptText } from "../src/rollout/agent.ts"
import { decodeConfig, defaultTrainConfig, type TrainConfig } from "../src/train/config.ts"
import { pipelineLayer } from "../src/train/layers.ts"
import { layerSilent } from "../src/train/Progress.ts"
import { loadRecords, promptsAt, train } from "../src/train/Train.ts"
import { Update } from "../src/update/Update.ts"
import { benchHeader, loadavg } from "./bench-machine.ts"
import type { Trajectory } from "../src/rollout/Rollout.ts"

const ROOT = resolve(import.meta.dirname, "../..")

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: join(ROOT, "bench/results/rl-step.json") },
    threads: { type: "string" },
    warmup: { type: "string", default: "1" },
    steps: { type: "string", default: "4" },
    python: { type: "string", default: join(ROOT, "scripts/.venv-ref/bin/python") },
    "trl-length": { type: "string", default: "mean" },
    "trl-null": { type: "string" },
    "trl-timeout": { type: "string", default: "900" }
  }
})

const nproc = availableParallelism()
const threads = args.threads === undefined ? nproc : Number(args.threads)
const warmup = Number(args.warmup)
const timedSteps = Number(args.steps)
const trlLength = args["trl-length"]
if (!Number.isInteger(threads) || threads < 1) throw new Error(`--threads: expected a positive integer, got ${args.threads}`)
if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`--warmup: expected an integer >= 0, got ${args.warmup}`)
if (!Number.isInteger(timedSteps) || timedSteps < 1) throw new Error(`--steps: expected an integer >= 1, got ${args.steps}`)
if (trlLength !== "mean" && trlLength !== "budget") throw new Error(`--trl-length: expected mean or budget, got ${trlLength}`)

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
const round = (x: number, digits = 4) => (Number.isFinite(x) ? Number(x.toPrecision(digits + 2)) : null)

// ---------------------------------------------------------------------------
// dart

const totalSteps = warmup + timedSteps
const raw = {
  ...defaultTrainConfig,
  // No validation: the timed loop is the steps.
  data: { train: defaultTrainConfig.data.train },
  steps: totalSteps,
  checkpointEvery: totalSteps,
  keepCheckpoints: 1,
  threads,
  backend: "cpu" as const
}

interface StepTiming {
  rolloutSeconds: number
  updateSeconds: number
  episodes: number
  generatedTokens: number
  sequenceTokens: number
  promptTokens: number
  searches: number
  /** Training passes of the mode's plan (dart: one, routes per role). */
  passes: number
}

const runDart = (config: TrainConfig, runDir: string) =>
  Effect.gen(function*() {
    const rollout = yield* Rollout
    const update = yield* Update
    const timings: Array<StepTiming> = []
    let pending: Omit<StepTiming, "updateSeconds" | "passes"> | undefined
    const timedRollout = {
      ...rollout,
      run: (request: Parameters<typeof rollout.run>[0]) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          const trajectories: ReadonlyArray<Trajectory> = yield* rollout.run(request)
          const rolloutSeconds = (performance.now() - t0) / 1000
          pending = {
            rolloutSeconds,
            episodes: trajectories.length,
            generatedTokens: trajectories.reduce((n, t) => n + t.roles.filter((r) => r === 1 || r === 2).length, 0),
            sequenceTokens: trajectories.reduce((n, t) => n + t.tokens.length, 0),
            promptTokens: trajectories.reduce((n, t) => n + t.promptLength, 0),
            searches: trajectories.reduce((n, t) => n + t.searches, 0)
          }
          return trajectories
        })
    }
    const timedUpdate = {
      ...update,
      update: (request: Parameters<typeof update.update>[0]) =>
        Effect.gen(function*() {
          const t0 = performance.now()
          const report = yield* update.update(request)
          timings.push({ ...pending!, passes: request.plan.passes.length, updateSeconds: (performance.now() - t0) / 1000 })
          return report
        })
    }
    const summary = yield* train(config, { runDir, resume: false }).pipe(
      Effect.provideService(Rollout, timedRollout),
      Effect.provideService(Update, timedUpdate)
    )
    return { summary, timings }
  }).pipe(Effect.provide(Layer.mergeAll(pipelineLayer(config, runDir), layerSilent, NodeServices.layer)))

interface DartRound {
  readonly steps: ReadonlyArray<Record<string, unknown>>
  readonly timings: ReadonlyArray<StepTiming>
  readonly warmupStepS: ReadonlyArray<number>
  readonly wall: number
  readonly loadBefore: string | null
  readonly loadAfter: string | null
}

/** One run of `warmup + steps` steps in a fresh run directory (same seed: the same trajectories every round). */
const dartRound = async (config: TrainConfig): Promise<DartRound> => {
  const runDir = mkdtempSync(join(tmpdir(), "dart-bench-rl-step-"))
  try {
    const loadBefore = loadavg()
    const started = performance.now()
    const { timings } = await Effect.runPromise(runDart(config, runDir))
    const wall = (performance.now() - started) / 1000
    const loadAfter = loadavg()
    const metrics = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((m) => m.kind === "step")
    if (metrics.length !== totalSteps || timings.length !== totalSteps) throw new Error(`expected ${totalSteps} steps, got ${metrics.length} metrics lines and ${timings.length} timings`)
    return {
      steps: metrics.slice(warmup),
      timings: timings.slice(warmup),
      warmupStepS: metrics.slice(0, warmup).map((m) => m.stepSeconds as number),
      wall,
      loadBefore,
      loadAfter
    }
  } finally {
    rmSync(runDir, { recursive: true, force: true })
  }
}

const sum = (xs: ReadonlyArray<number>) => xs.reduce((a, b) => a + b, 0)

/** The timed steps of every round together. */
const summarizeDart = (rounds: ReadonlyArray<DartRound>) => {
  const timed = rounds.flatMap((r) => r.steps)
  const t = rounds.flatMap((r) => r.timings)
  const num = (m: Record<string, unknown>, k: string) => m[k] as number
  const stepS = timed.map((m) => num(m, "stepSeconds"))
  const rolloutS = t.map((x) => x.rolloutSeconds)
  const updateS = t.map((x) => x.updateSeconds)
  const generated = t.map((x) => x.generatedTokens)
  const sequence = t.map((x) => x.sequenceTokens)
  return {
    what: "ts/src/train/Train.ts train(): rollout (multi-turn, BM25 searches over the world corpus), EM reward, group advantages, update (two rank-8 adapters routed per role in one pass, PPO-clip + k3 KL to the base, AdamW); default config, no validation",
    rounds: rounds.length,
    rounds_definition: "independent runs of warm-up + timed steps (same seed, same trajectories); with TRL, one before and one after it, so that both sides see the machine's load of the same minutes",
    warmup_steps: warmup,
    timed_steps: timedSteps,
    median_step_s: round(median(stepS)),
    median_rollout_s: round(median(rolloutS)),
    median_update_s: round(median(updateS)),
    median_other_s: round(median(stepS.map((s, i) => s - rolloutS[i]! - updateS[i]!))),
    rollout_fraction: round(sum(rolloutS) / sum(stepS)),
    per_round_median_step_s: rounds.map((r) => round(median(r.steps.map((m) => num(m, "stepSeconds"))))),
    all_step_s: stepS.map((x) => round(x)),
    all_rollout_s: rolloutS.map((x) => round(x)),
    all_update_s: updateS.map((x) => round(x)),
    warmup_step_s: rounds.flatMap((r) => r.warmupStepS).map((x) => round(x)),
    episodes_per_step: t[0]!.episodes,
    generated_tokens_per_step: round(median(generated)),
    generated_tokens_definition: "tokens the model wrote (reasoning + tool-call roles); observations are extra prefilled tokens not counted",
    sequence_tokens_per_step: round(median(sequence)),
    sequence_tokens_definition: "prompt + response tokens of the step's 64 episodes (observations included): what the update trains on",
    prompt_tokens_per_step: round(median(t.map((x) => x.promptTokens))),
    response_length_mean: round(sum(timed.map((m) => num(m, "responseLength"))) / timed.length),
    searches_per_episode: round(sum(t.map((x) => x.searches)) / sum(t.map((x) => x.episodes))),
    answer_rate: round(sum(timed.map((m) => num(m, "answerRate"))) / timed.length),
    reward_mean: round(sum(timed.map((m) => num(m, "reward"))) / timed.length),
    rollout_tokens_per_s: round(sum(generated) / sum(rolloutS)),
    rollout_tokens_per_s_definition: "generated tokens / rollout seconds",
    update_tokens_per_s: round(sum(sequence) / sum(updateS)),
    update_tokens_per_s_definition: "sequence tokens / update seconds; the update is a reference (base) forward for the KL, then forward + backward with the adapters per training pass, and one AdamW step",
    update_passes: t[0]!.passes,
    step_generated_tokens_per_s: round(sum(generated) / sum(stepS)),
    metrics_rollout_tokens_per_s: round(median(timed.map((m) => num(m, "rolloutTokensPerSecond")))),
    metrics_update_tokens_per_s: round(median(timed.map((m) => num(m, "updateTokensPerSecond")))),
    wall_s: round(sum(rounds.map((r) => r.wall))),
    loadavg_before: rounds[0]!.loadBefore,
    loadavg_after: rounds.at(-1)!.loadAfter,
    per_round_loadavg: rounds.map((r) => ({ before: r.loadBefore, after: r.loadAfter }))
  }
}

// ---------------------------------------------------------------------------
// TRL

type TrlResult = { ok: true; json: Record<string, unknown> } | { ok: false; reason: string }

const trlPart = async (config: TrainConfig, maxCompletion: number): Promise<TrlResult> => {
  if (args["trl-null"] !== undefined) return { ok: false, reason: args["trl-null"] }
  const py = args.python
  if (!existsSync(py)) return { ok: false, reason: `no python at ${py} (create scripts/.venv-ref from scripts/requirements-ref.txt, or set DART_BENCH_PYTHON)` }
  const probe = spawnSync(py, ["-c", "import torch, transformers, peft, trl"], { encoding: "utf8" })
  if (probe.status !== 0) return { ok: false, reason: `${py} cannot import torch/transformers/peft/trl: ${(probe.stderr ?? "").trim().split("\n").at(-1)}` }
  // The prompts of dart's steps, in the order dart drew them.
  const records = await Effect.runPromise(loadRecords(config.data.train).pipe(Effect.provide(NodeServices.layer)))
  const indices = promptsAt(records.length, config.seed, 0, totalSteps * config.promptsPerStep)
  const dir = mkdtempSync(join(tmpdir(), "dart-bench-trl-"))
  try {
    const promptsFile = join(dir, "prompts.jsonl")
    writeFileSync(promptsFile, indices.map((i) => JSON.stringify({ prompt: promptText(config.rollout.promptTemplate, records[i]!.question), golden_answers: records[i]!.goldenAnswers })).join("\n") + "\n")
    const outFile = join(dir, "trl.json")
    const argv = [
      join(ROOT, "scripts/bench/trl_grpo.py"),
      "--model", config.model,
      "--prompts", promptsFile,
      "--out", outFile,
      "--threads", String(threads),
      "--warmup", String(warmup),
      "--steps", String(timedSteps),
      "--prompts-per-step", String(config.promptsPerStep),
      "--num-generations", String(config.rollout.groupSize),
      "--max-completion-length", String(maxCompletion),
      "--temperature", String(config.rollout.temperature),
      "--beta", String(config.update.objective.klBeta),
      "--epsilon", String(config.update.objective.clipLow),
      "--lr", String(config.schedule.lr),
      "--max-grad-norm", String(config.update.optimizer.maxGradNorm),
      "--lora-rank", String(config.adapters.sharedRank),
      "--lora-alpha", String(config.adapters.sharedAlpha),
      "--lora-targets", config.adapters.targets.join(","),
      "--seed", String(config.seed)
    ]
    console.error(`== TRL GRPOTrainer reference (${py}, ${threads} threads, max_completion_length ${maxCompletion})`)
    const run = spawnSync(py, argv, {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
      maxBuffer: 64 << 20,
      timeout: Number(args["trl-timeout"]) * 1000,
      env: { ...process.env, HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1", HF_DATASETS_OFFLINE: "1", TOKENIZERS_PARALLELISM: "false", OMP_NUM_THREADS: String(threads), OMP_WAIT_POLICY: process.env.OMP_WAIT_POLICY ?? "PASSIVE", WANDB_DISABLED: "true" }
    })
    // stdout: TRL's per-step logs, then the result as one JSON line (also written to outFile).
    const lastLine = (run.stdout ?? "").trim().split("\n").at(-1) ?? ""
    if (run.status !== 0 || !existsSync(outFile)) {
      process.stderr.write((run.stderr ?? "").split("\n").slice(-40).join("\n") + "\n")
      const why = run.error ? run.error.message : `exit status ${run.status}${run.signal ? ` (signal ${run.signal})` : ""}`
      return { ok: false, reason: `scripts/bench/trl_grpo.py failed: ${why}: ${(run.stderr ?? "").trim().split("\n").slice(-3).join(" | ")}` }
    }
    const json = JSON.parse(lastLine.startsWith("{\"available\"") ? lastLine : readFileSync(outFile, "utf8")) as Record<string, unknown>
    return { ok: true, json }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

// ---------------------------------------------------------------------------

const main = async () => {
  const started = performance.now()
  const loadBefore = loadavg()
  const config = await Effect.runPromise(decodeConfig(raw, "bench-rl-step"))
  const announce = (what: string) => console.error(`== dart-rl GRPO step, ${what} (built-in world, ${warmup} warm-up + ${timedSteps} timed steps, ${threads} threads)`)
  announce("round 1")
  const rounds = [await dartRound(config)]
  const first = summarizeDart(rounds)
  console.error(`dart: ${first.median_step_s} s/step (rollout ${first.median_rollout_s} s, update ${first.median_update_s} s), ${first.generated_tokens_per_step} generated tokens/step, ${first.searches_per_episode} searches/episode`)
  const budget = config.rollout.maxTurns * config.rollout.maxTurnTokens
  const maxCompletion = trlLength === "budget" ? budget : Math.max(1, Math.round(first.response_length_mean ?? budget))
  const trl = await trlPart(config, maxCompletion)
  if (trl.ok) {
    announce("round 2, after TRL")
    rounds.push(await dartRound(config))
  }
  const dart = summarizeDart(rounds)
  console.error(`dart (${rounds.length} rounds): ${dart.median_step_s} s/step (rollout ${dart.median_rollout_s} s, update ${dart.median_update_s} s)`)
  const trlJson = trl.ok ? trl.json : null
  const trlStep = trlJson === null ? null : (trlJson.median_step_s as number)
  const trlPerToken = trlJson === null ? null : trlStep! / (trlJson.generated_tokens_per_step as number)
  const dartPerToken = dart.median_step_s! / dart.generated_tokens_per_step!
  const stepRatio = trlStep === null ? null : round(trlStep / dart.median_step_s!)
  const tokenRatio = trlPerToken === null ? null : round(trlPerToken / dartPerToken)
  const seqRatio = trlJson === null ? null : round((trlStep! / (trlJson.sequence_tokens_per_step as number)) / (dart.median_step_s! / dart.sequence_tokens_per_step!))
  if (trlJson !== null) console.error(`TRL: ${trlStep} s/step, ${String(trlJson.generated_tokens_per_step)} generated tokens/step; ratio per step ${stepRatio}, per generated token ${tokenRatio}`)
  else console.error(`TRL skipped: ${(trl as { reason: string }).reason}`)
  const target = 3
  const header = benchHeader("dart-rl GRPO step vs TRL GRPOTrainer (cpu)", loadBefore)
  const result = {
    ...header,
    machine: {
      ...header.machine,
      threads_used: threads,
      trl_loadavg_before: trlJson?.loadavg_before ?? null,
      trl_loadavg_after: trlJson?.loadavg_after ?? null
    },
    settings: {
      model: "world/model",
      train: "world/train.jsonl",
      search: "world/corpus.jsonl (BM25, indexed into the run directory before the steps)",
      mode: config.mode,
      prompts_per_step: config.promptsPerStep,
      group_size: config.rollout.groupSize,
      max_turn_tokens: config.rollout.maxTurnTokens,
      max_turns: config.rollout.maxTurns,
      max_searches: config.rollout.maxSearches,
      max_observation_tokens: config.rollout.maxObservationTokens,
      topk: config.rollout.topk,
      temperature: config.rollout.temperature,
      kl_beta: config.update.objective.klBeta,
      clip: [config.update.objective.clipLow, config.update.objective.clipHigh],
      ppo_epochs: config.update.ppoEpochs,
      lr: config.schedule.lr,
      adapters: { dart: `2 x LoRA rank ${config.adapters.rank} alpha ${config.adapters.alpha}`, trl: `1 x LoRA rank ${config.adapters.sharedRank} alpha ${config.adapters.sharedAlpha} (peft)`, targets: config.adapters.targets },
      warmup_steps: warmup,
      timed_steps: timedSteps,
      threads,
      trl_length: trlLength,
      trl_max_completion_length: maxCompletion,
      trl_max_completion_length_definition: trlLength === "mean"
        ? "dart's mean response length (prompt excluded, observations included) over the timed steps, rounded"
        : "dart's token budget per episode, maxTurns x maxTurnTokens",
      trl_turns: "single-turn: one completion per sample, no search (TRL 1.16's tools= loop parses JSON tool calls with the tokenizer's response schema; this model writes <search> q </search>, so the loop would never fire)"
    },
    dart,
    trl: trlJson,
    trl_null_reason: trl.ok ? null : trl.reason,
    ratio_step: stepRatio,
    ratio_step_definition: "TRL median s/step / dart median s/step (the headline: the issue's target is per step, with each system doing its own full step at the same prompts, group size and length cap)",
    ratio_per_generated_token: tokenRatio,
    ratio_per_generated_token_definition: "(TRL s/step / TRL generated tokens/step) / (dart s/step / dart model-written tokens/step); TRL's single-turn completions write their own (invented) <information> blocks where dart prefills retrieved ones, so TRL generates more tokens per step and this ratio favours TRL",
    ratio_per_sequence_token: seqRatio,
    ratio_per_sequence_token_definition: "(TRL s/step / TRL prompt+completion tokens/step) / (dart s/step / dart prompt+response tokens/step, observations included)",
    target_ratio_step: target,
    target_met: stepRatio === null ? null : stepRatio >= target,
    wall_s: round((performance.now() - started) / 1000)
  }
  mkdirSync(dirname(args.out), { recursive: true })
  writeFileSync(args.out, JSON.stringify(result, null, 2) + "\n")
  console.error(`wrote ${args.out}`)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
