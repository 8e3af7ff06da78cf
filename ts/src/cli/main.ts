/**
 * `pnpm pipeline <command>`: the dart-rl command line (effect/cli on Node),
 * the only reader of flags and environment.
 *
 *   train   GRPO training of a search agent in a mode (dart by default), resumable
 *   eval    a trained run, checkpoint or adapters (or base, or a hybrid plan) on a dataset
 *   ask     one question in, the agent's trajectory out
 *   pretrain  build the built-in world and its base model from a seed
 *   index   build the built-in BM25 index of a corpus
 *   serve   serve an index with the Search-R1 retrieval protocol
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect, Layer, Option } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, resolve } from "node:path"
import { Engine } from "../engine/Engine.ts"
import { Rollout } from "../rollout/Rollout.ts"
import { compare, DEFAULT_COMPARE_MODES } from "../compare/Compare.ts"
import { renderCompareMarkdown } from "../compare/report.ts"
import * as Leas from "../leas/Leas.ts"
import { defaultLeasOptions, runLeas } from "../leas/run.ts"
import { MODES, type TrainMode } from "../routing/modes.ts"
import { buildIndex, openIndex } from "../search/bm25.ts"
import { serve as serveSearch } from "../search/server.ts"
import { Tokenizer } from "../text/Tokenizer.ts"
import { decodeConfig, defaultTrainConfig, readConfigFile, resolveConfig, type TrainConfig, WORLD_DIR } from "../train/config.ts"
import { evaluate } from "../train/evaluate.ts"
import { checkPaths, pipelineLayer } from "../train/layers.ts"
import { PLANS, type PlanChoice, runAdapters, setupPlan } from "../train/plans.ts"
import { layerAuto, Progress } from "../train/Progress.ts"
import { loadRecords, train as runTraining } from "../train/Train.ts"
import { defaultPretrainOptions, pretrain as buildWorld } from "../world/pretrain.ts"
import { defaultWorldOptions } from "../world/world.ts"
import { LEGEND_COLOR, LEGEND_PLAIN, renderSpans, roleSpans } from "./render.ts"

const VERSION = "0.1.0"
const MAX_SEED = 2 ** 31 - 1

const intFlag = (name: string, min: number, max: number, description: string) =>
  Flag.Int(name).pipe(
    Flag.withDescription(`${description} (integer in [${min}, ${max}])`),
    Flag.filter(
      (n) => n >= min && n <= max,
      (n) => `--${name} must be an integer in [${min}, ${max}], got ${n}`
    )
  )

const optional = <A>(flag: Flag.Flag<A>) => flag.pipe(Flag.optional)
const some = <A>(o: Option.Option<A>): A | undefined => Option.getOrUndefined(o)

const toUserError = (error: { readonly _tag: string; readonly message: string; readonly code?: string }) =>
  new CliError.UserError({
    cause: error,
    userMessage: `${error._tag}${error.code ? ` [${error.code}]` : ""}: ${error.message}`
  })

const choice = <const C extends ReadonlyArray<string>>(name: string, choices: C, description: string) =>
  Flag.ChoiceWithValue(name, choices.map((c) => [c, c] as const) as unknown as ReadonlyArray<readonly [C[number], C[number]]>).pipe(
    Flag.withDescription(description)
  )

const BACKENDS = ["cpu", "wgpu", "auto"] as const

// Flags shared by train, eval and ask.
const configFlag = optional(Flag.String("config").pipe(Flag.withDescription("a config file, .json or .yaml (see docs/pipeline.md, \"Config\"); flags override it")))
const backendFlag = optional(choice("backend", BACKENDS, "engine backend: cpu (reference), wgpu (WGSL compute), auto (a real GPU, else cpu); default cpu"))
const threadsFlag = optional(intFlag("threads", 0, 1024, "engine threads; 0 = all cores (default 0)"))
const seedFlag = optional(intFlag("seed", 0, MAX_SEED, "seed of the adapters, the data order and the rollouts (default 0)"))
const modelFlag = optional(Flag.String("model").pipe(Flag.withDescription("a Hugging Face model folder (config.json, safetensors, tokenizer.json); default: the config's")))

/** The flags that override config keys (only those given). */
const overrides = (flags: {
  readonly backend: Option.Option<string>
  readonly threads: Option.Option<number>
  readonly seed: Option.Option<number>
  readonly model: Option.Option<string>
}): Record<string, unknown> => ({
  ...(Option.isSome(flags.backend) ? { backend: flags.backend.value } : {}),
  ...(Option.isSome(flags.threads) ? { threads: flags.threads.value } : {}),
  ...(Option.isSome(flags.seed) ? { seed: flags.seed.value } : {}),
  ...(Option.isSome(flags.model) ? { model: resolve(flags.model.value) } : {})
})

const readRunConfig = (runDir: string) =>
  Effect.gen(function*() {
    const file = join(runDir, "config.json")
    if (!existsSync(file)) return yield* Effect.fail(toUserError({ _tag: "ConfigError", message: `${runDir} is not a run directory (no config.json)` }))
    const raw: unknown = yield* Effect.try({
      try: () => JSON.parse(readFileSync(file, "utf8")) as unknown,
      catch: (e) => toUserError({ _tag: "ConfigError", message: `${file}: ${String(e)}` })
    })
    return yield* Effect.mapError(decodeConfig(raw, file), toUserError)
  })

/** Refuses a config whose files are missing, naming each. */
const requirePaths = (config: TrainConfig, data?: string) =>
  Effect.gen(function*() {
    const problems = [...checkPaths(config), ...(data !== undefined && !existsSync(data) ? [`--data: ${data} does not exist (expected a Search-R1 dataset, .jsonl or .parquet)`] : [])]
    if (problems.length > 0) return yield* Effect.fail(toUserError({ _tag: "ConfigError", message: problems.join("\n") }))
  })

const stamp = () => new Date().toISOString().replace(/[-:]/g, "").replace(/\..*$/, "").replace("T", "-")

const percent = (x: number | undefined) => (x === undefined ? "-" : x.toFixed(3))

// ---------------------------------------------------------------------------
// train

const train = Command.make(
  "train",
  {
    config: configFlag,
    mode: optional(choice("mode", MODES, "training mode; default dart")),
    resume: optional(Flag.String("resume").pipe(Flag.withDescription("continue the run in this directory from its newest complete checkpoint, with its own config"))),
    runDir: optional(Flag.String("run-dir").pipe(Flag.withDescription("where the run writes its files (must not hold a run); default runs/<date>-<mode>"))),
    steps: optional(intFlag("steps", 1, 10_000_000, `RL steps (default: the config's; ${defaultTrainConfig.steps})`)),
    backend: backendFlag,
    threads: threadsFlag,
    seed: seedFlag,
    model: modelFlag
  },
  (flags) =>
    Effect.gen(function*() {
      let config: TrainConfig
      let runDir: string
      const resume = some(flags.resume)
      if (resume !== undefined) {
        const given = ["config", "mode", "runDir", "steps", "backend", "threads", "seed", "model"].filter((k) => Option.isSome(flags[k as keyof typeof flags] as Option.Option<unknown>))
        if (given.length > 0) {
          return yield* Effect.fail(toUserError({
            _tag: "ConfigError",
            message: `--resume continues a run with its own config (${resume}/config.json); drop ${given.map((k) => `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(", ")}`
          }))
        }
        runDir = resolve(resume)
        config = yield* readRunConfig(runDir)
      } else {
        config = yield* Effect.mapError(
          resolveConfig(some(flags.config), {
            ...overrides(flags),
            ...(Option.isSome(flags.mode) ? { mode: flags.mode.value } : {}),
            ...(Option.isSome(flags.steps) ? { steps: flags.steps.value } : {})
          }),
          toUserError
        )
        yield* requirePaths(config)
        runDir = resolve(some(flags.runDir) ?? join("runs", `${stamp()}-${config.mode}`))
        mkdirSync(runDir, { recursive: true })
      }
      const progress = yield* Progress
      if (config.model === defaultTrainConfig.model) {
        yield* progress.log("the built-in world (docs/world.md): invented people, places and works; 1-hop, 2-hop and comparison questions; a 1M-parameter model cold-started on imperfect demonstrations")
      }
      yield* progress.log(`train: mode ${config.mode}, ${config.steps} steps of ${config.promptsPerStep} prompts x ${config.rollout.groupSize} samples, backend ${config.backend}, run ${runDir}`)
      const summary = yield* runTraining(config, { runDir, resume: resume !== undefined }).pipe(
        Effect.provide(pipelineLayer(config, runDir)),
        Effect.mapError(toUserError)
      )
      yield* progress.log(
        [
          `done: ${summary.steps} steps in ${summary.seconds.toFixed(1)} s (mode ${summary.mode})`,
          `validation EM: before ${percent(summary.emBefore?.em)}, after ${percent(summary.emAfter?.em)}`,
          ...Object.entries(summary.emAfter?.byDataSource ?? {}).map(([s, g]) =>
            `  ${s}: before ${percent(summary.emBefore?.byDataSource[s]?.em)}, after ${percent(g.em)} (${g.questions} questions, ${g.searchesPerQuestion.toFixed(2)} searches/question)`),
          `run directory: ${runDir}`,
          `  config.json, metrics.jsonl, summary.json, eval/, checkpoints/, adapters/ (PEFT); resume with: pnpm pipeline train --resume ${runDir}`
        ].join("\n")
      )
    })
).pipe(Command.withDescription("Train a search agent by GRPO over multi-turn search rollouts (DART or a baseline), resumably"))

// ---------------------------------------------------------------------------
// eval and ask: a model, a plan and its adapters

const planFlags = {
  run: optional(Flag.String("run").pipe(Flag.withDescription("a run directory: its config (model, search, rollout), its mode and its final adapters (else its newest checkpoint's)"))),
  adapters: optional(Flag.String("adapters").pipe(Flag.withDescription("a folder with one PEFT folder per adapter (reason/ and tool/, or shared/): a run's adapters/ or a checkpoint's"))),
  plan: optional(choice("plan", PLANS, "what writes the tokens: a training mode with its adapters, base, or hybrid (default: the run's mode, else base)")),
  reasonAdapter: optional(Flag.String("reason-adapter").pipe(Flag.withDescription("hybrid: the reasoning writer, a PEFT folder or \"base\""))),
  toolAdapter: optional(Flag.String("tool-adapter").pipe(Flag.withDescription("hybrid: the tool-call writer, a PEFT folder or \"base\""))),
  temperature: optional(Flag.Finite("temperature").pipe(
    Flag.withDescription("sampling temperature, 0 = greedy (number in [0, 10]; default 0)"),
    Flag.filter((x) => x >= 0 && x <= 10, (x) => `--temperature must be a number in [0, 10], got ${x}`)
  )),
  config: configFlag,
  backend: backendFlag,
  threads: threadsFlag,
  seed: seedFlag,
  model: modelFlag
}

type PlanFlags = {
  readonly [K in keyof typeof planFlags]: (typeof planFlags)[K] extends Flag.Flag<infer A> ? A : never
}

/** The config (a run's, a file's or the defaults, with flags) and the plan choice. */
const resolvePlanInputs = (flags: PlanFlags) =>
  Effect.gen(function*() {
    const run = some(flags.run)
    const config = run !== undefined
      ? { ...(yield* readRunConfig(resolve(run))), ...overrides(flags) }
      : yield* Effect.mapError(resolveConfig(some(flags.config), overrides(flags)), toUserError)
    const adapters = some(flags.adapters) ?? (run === undefined ? undefined : runAdapters(resolve(run)))
    const plan: PlanChoice = some(flags.plan) ?? (run !== undefined ? config.mode : "base")
    const source = {
      ...(adapters === undefined ? {} : { adapters }),
      ...(Option.isSome(flags.reasonAdapter) ? { reason: flags.reasonAdapter.value } : {}),
      ...(Option.isSome(flags.toolAdapter) ? { tool: flags.toolAdapter.value } : {})
    }
    return { config, plan, source, temperature: some(flags.temperature) ?? 0 }
  })

const evalCommand = Command.make(
  "eval",
  {
    ...planFlags,
    data: optional(Flag.String("data").pipe(Flag.withDescription("questions to answer (Search-R1 layout, .jsonl or .parquet); default: the config's validation set"))),
    limit: optional(intFlag("limit", 1, 10_000_000, "only the first N questions")),
    out: optional(Flag.String("out").pipe(Flag.withDescription("folder for results.jsonl and summary.json; default evals/<date>-<plan>")))
  },
  (flags) =>
    Effect.gen(function*() {
      const { config, plan, source, temperature } = yield* resolvePlanInputs(flags)
      const data = some(flags.data) ?? config.data.validation
      if (data === undefined) return yield* Effect.fail(toUserError({ _tag: "ConfigError", message: "no questions: give --data (the config has no validation set)" }))
      yield* requirePaths(config, resolve(data))
      const out = resolve(some(flags.out) ?? join("evals", `${stamp()}-${plan}`))
      mkdirSync(out, { recursive: true })
      const progress = yield* Progress
      const { summary } = yield* Effect.gen(function*() {
        const all = yield* loadRecords(resolve(data))
        const records = Option.isSome(flags.limit) ? all.slice(0, flags.limit.value) : all
        const modePlan = yield* setupPlan(plan, source)
        const result = yield* evaluate(records, { plan: modePlan.generation, seed: config.seed, temperature, batchSize: config.eval.batchSize, label: `eval ${plan}` })
        writeFileSync(join(out, "results.jsonl"), result.results.map((r) => JSON.stringify(r)).join("\n") + "\n")
        writeFileSync(join(out, "summary.json"), JSON.stringify({ plan, data, temperature, ...result.summary }, null, 2) + "\n")
        return result
      }).pipe(Effect.provide(pipelineLayer(config, out)), Effect.mapError(toUserError))
      yield* progress.log(
        [
          `eval ${plan}: EM ${summary.em.toFixed(3)}, F1 ${summary.f1.toFixed(3)}, ${summary.searchesPerQuestion.toFixed(2)} searches/question over ${summary.questions} questions`,
          ...Object.entries(summary.byDataSource).map(([s, g]) => `  ${s}: EM ${g.em.toFixed(3)} (${g.questions} questions)`),
          `results: ${join(out, "results.jsonl")}, summary: ${join(out, "summary.json")}`
        ].join("\n")
      )
    })
).pipe(Command.withDescription("Evaluate a run, a checkpoint, adapters, the base model or a hybrid plan on a dataset (per-question results and a summary)"))

const ask = Command.make(
  "ask",
  {
    ...planFlags,
    question: Flag.String("question").pipe(Flag.withDescription("the question to answer"))
  },
  (flags) =>
    Effect.gen(function*() {
      const { config, plan, source, temperature } = yield* resolvePlanInputs(flags)
      yield* requirePaths(config)
      const color = process.stdout.isTTY === true && process.env.NO_COLOR === undefined
      const text = yield* Effect.gen(function*() {
        const modePlan = yield* setupPlan(plan, source)
        const rollout = yield* Rollout
        const tokenizer = yield* Tokenizer
        yield* Engine
        const [t] = yield* rollout.run({ prompts: [{ question: flags.question }], plan: modePlan.generation, seed: config.seed, config: { groupSize: 1, temperature } })
        const spans = roleSpans(t!.roles)
        const texts = yield* tokenizer.decodeBatch(spans.map((s) => t!.tokens.subarray(s.start, s.end)))
        return [
          renderSpans(spans.map((s, i) => ({ role: s.role, text: texts[i]! })), color),
          "",
          color ? LEGEND_COLOR : LEGEND_PLAIN,
          `plan ${plan}: ${t!.searches} searches, ${t!.invalidActions} invalid actions, ended by ${t!.finish}`
        ].join("\n")
      }).pipe(Effect.provide(pipelineLayer(config, resolve("runs", "ask"))), Effect.mapError(toUserError))
      process.stdout.write(`${text}\n`)
    })
).pipe(Command.withDescription("Answer one question: the agent's trajectory with its searches and answer, roles in colour on a terminal"))

// ---------------------------------------------------------------------------
// pretrain: the built-in world

const pretrainCommand = Command.make(
  "pretrain",
  {
    out: Flag.String("out").pipe(Flag.withDescription("the folder to write the world and its model into (default: a new folder under worlds/)"), Flag.optional),
    worldSeed: intFlag("world-seed", 0, MAX_SEED, `seed of the world (default ${defaultWorldOptions.seed}, the shipped world's)`).pipe(Flag.withDefault(defaultWorldOptions.seed)),
    epochs: intFlag("epochs", 1, 1000, `pretraining epochs over passages and demonstrations (default ${defaultPretrainOptions.epochs})`).pipe(Flag.withDefault(defaultPretrainOptions.epochs)),
    seed: intFlag("seed", 0, MAX_SEED, `seed of the model's initialisation and the data order (default ${defaultPretrainOptions.seed})`).pipe(Flag.withDefault(defaultPretrainOptions.seed)),
    threads: threadsFlag
  },
  (flags) =>
    Effect.gen(function*() {
      const out = resolve(some(flags.out) ?? join("worlds", `${stamp()}-seed${flags.worldSeed}`))
      if (existsSync(join(out, "model", "model.safetensors"))) {
        return yield* Effect.fail(toUserError({ _tag: "ConfigError", message: `${out} already holds a world (model/model.safetensors); choose another --out` }))
      }
      const progress = yield* Progress
      const report = yield* buildWorld(out, { ...defaultWorldOptions, seed: flags.worldSeed }, {
        ...defaultPretrainOptions,
        epochs: flags.epochs,
        seed: flags.seed,
        threads: some(flags.threads) ?? 0
      }).pipe(Effect.mapError(toUserError))
      yield* progress.log(
        `pretrained ${report.parameters} parameters in ${report.steps} steps (${report.tokens} tokens, ${report.seconds.toFixed(0)} s): loss ${report.firstLoss.toFixed(3)} -> ${report.lastLoss.toFixed(3)}\n` +
          `world: ${out} (corpus.jsonl, train/validation/test.jsonl, world.json, model/); train on it with --model ${join(out, "model")} or a config`
      )
    })
).pipe(Command.withDescription("Build the built-in world from its seed: corpus, questions, tokenizer, and a small base model cold-started on demonstrations"))

// ---------------------------------------------------------------------------
// compare: modes x seeds under one budget, on the test split

/** "dart,joint" -> the modes, each checked. */
const parseModes = (text: string): Array<TrainMode> | string => {
  const modes = text.split(",").map((m) => m.trim()).filter((m) => m !== "")
  const bad = modes.filter((m) => !(MODES as ReadonlyArray<string>).includes(m))
  if (modes.length === 0) return `--modes: expected a comma-separated list of ${MODES.join(", ")}, got ${JSON.stringify(text)}`
  if (bad.length > 0) return `--modes: unknown mode ${bad.map((m) => JSON.stringify(m)).join(", ")}; expected a comma-separated list of ${MODES.join(", ")}`
  if (new Set(modes).size !== modes.length) return `--modes: a mode is listed twice in ${JSON.stringify(text)}`
  return modes as Array<TrainMode>
}

const compareCommand = Command.make(
  "compare",
  {
    config: configFlag,
    modes: Flag.String("modes").pipe(
      Flag.withDescription(`modes to compare, comma-separated, from ${MODES.join(", ")} (default ${DEFAULT_COMPARE_MODES.join(",")})`),
      Flag.withDefault(DEFAULT_COMPARE_MODES.join(","))
    ),
    seeds: intFlag("seeds", 1, 100, "seeds per mode: 0, 1, ... (default 3)").pipe(Flag.withDefault(3)),
    steps: optional(intFlag("steps", 1, 10_000_000, `RL steps of every run (default: the config's; ${defaultTrainConfig.steps})`)),
    test: optional(Flag.String("test").pipe(Flag.withDescription("held-out questions every run is evaluated on (Search-R1 layout); default the built-in world's test split"))),
    out: optional(Flag.String("out").pipe(Flag.withDescription("output folder (default runs/compare-<date>); give an existing one to continue a stopped comparison"))),
    smoothing: intFlag("smoothing", 1, 1000, "steps of the moving average of the learning curves (default 10)").pipe(Flag.withDefault(10)),
    backend: backendFlag,
    threads: threadsFlag,
    model: modelFlag
  },
  (flags) =>
    Effect.gen(function*() {
      const modes = parseModes(flags.modes)
      if (typeof modes === "string") return yield* Effect.fail(toUserError({ _tag: "ConfigError", message: modes }))
      const config = yield* Effect.mapError(
        resolveConfig(some(flags.config), { ...overrides({ ...flags, seed: Option.none() }), ...(Option.isSome(flags.steps) ? { steps: flags.steps.value } : {}) }),
        toUserError
      )
      const test = resolve(some(flags.test) ?? join(WORLD_DIR, "test.jsonl"))
      yield* requirePaths(config, test)
      const outDir = resolve(some(flags.out) ?? join("runs", `compare-${stamp()}`))
      const seeds = Array.from({ length: flags.seeds }, (_, i) => i)
      const progress = yield* Progress
      yield* progress.log(`compare: ${modes.join(", ")} x seeds ${seeds.join(", ")}: ${modes.length * seeds.length} runs of ${config.steps} steps, evaluated on ${test}; output ${outDir}`)
      const result = yield* compare(config, { modes, seeds, test, outDir, smoothing: flags.smoothing }).pipe(Effect.mapError(toUserError))
      yield* progress.log(
        [
          renderCompareMarkdown(result).trimEnd(),
          `report: ${join(outDir, "compare.html")}, table: ${join(outDir, "compare.md")}, data: ${join(outDir, "compare.json")}`
        ].join("\n")
      )
    })
).pipe(Command.withDescription("Train several modes with several seeds under the same budget and compare them on a held-out split (table with 95% intervals, learning curves)"))

// ---------------------------------------------------------------------------
// leas: the interference analysis

const leasCommand = Command.make(
  "leas",
  {
    config: configFlag,
    steps: optional(intFlag("steps", 1, 10_000_000, `RL steps of each trained variant (Reas, Tool, Unified) (default: the config file's steps, else ${defaultLeasOptions.steps})`)),
    questions: optional(Flag.String("questions").pipe(Flag.withDescription("the evaluation set (Search-R1 layout); default the built-in world's test split"))),
    limit: intFlag("limit", 0, 10_000_000, "only the first N questions; 0 = all (default 0)").pipe(Flag.withDefault(defaultLeasOptions.limit)),
    samples: intFlag("samples", 1, 100_000, `N: samples per variant and question (default ${defaultLeasOptions.samples})`).pipe(Flag.withDefault(defaultLeasOptions.samples)),
    temperature: Flag.Finite("temperature").pipe(
      Flag.withDescription(`sampling temperature (number in (0, 10]; default ${defaultLeasOptions.temperature})`),
      Flag.filter((x) => x > 0 && x <= 10, (x) => `--temperature must be a number in (0, 10], got ${x}`),
      Flag.withDefault(defaultLeasOptions.temperature)
    ),
    batchSize: intFlag("batch-size", 1, 100_000, `episodes per decode batch (default ${defaultLeasOptions.batchSize})`).pipe(Flag.withDefault(defaultLeasOptions.batchSize)),
    gradientQuestions: intFlag("gradient-questions", 0, 100_000, `questions of the gradient-angle analysis, 0 = skip it (default ${defaultLeasOptions.gradientQuestions})`).pipe(Flag.withDefault(defaultLeasOptions.gradientQuestions)),
    gradientRollouts: intFlag("gradient-rollouts", 2, 10_000, `rollouts per question of the gradient-angle analysis (default ${defaultLeasOptions.gradientRollouts})`).pipe(Flag.withDefault(defaultLeasOptions.gradientRollouts)),
    bootstrap: intFlag("bootstrap", 1, 1_000_000, `bootstrap resamples of the questions (default ${defaultLeasOptions.bootstrap})`).pipe(Flag.withDefault(defaultLeasOptions.bootstrap)),
    scores: optional(Flag.String("scores").pipe(Flag.withDescription("analyse a scores file instead (six variants' per-question draws from models trained elsewhere; docs/leas.md): no training, no sampling"))),
    out: optional(Flag.String("out").pipe(Flag.withDescription("output folder (default runs/leas-<date>); give an existing one to continue a stopped analysis"))),
    backend: backendFlag,
    threads: threadsFlag,
    seed: seedFlag,
    model: modelFlag
  },
  (flags) =>
    Effect.gen(function*() {
      const progress = yield* Progress
      const outDir = resolve(some(flags.out) ?? join("runs", `leas-${stamp()}`))
      const scores = some(flags.scores)
      const analysis = scores !== undefined
        ? yield* Effect.gen(function*() {
          const leas = Leas.make()
          const read = yield* leas.readScores(resolve(scores))
          const result = yield* leas.analyze(read.rows, read.settings)
          const files = yield* leas.writeReport({ dir: outDir, analysis: result, meta: { title: "LEAS: interference between reasoning and tool use", scores: read.file, ...read.meta } })
          return { analysis: result, files }
        }).pipe(Effect.mapError(toUserError))
        : yield* Effect.gen(function*() {
          const config = yield* Effect.mapError(
            Effect.gen(function*() {
              // --steps, else a config file's steps, else LEAS's own default (not train's).
              const file = some(flags.config)
              const fromFile: unknown = file === undefined ? undefined : yield* readConfigFile(file)
              const fileSteps = typeof fromFile === "object" && fromFile !== null && "steps" in fromFile ? (fromFile as { steps: unknown }).steps : undefined
              return yield* resolveConfig(file, { ...overrides(flags), ...(fileSteps === undefined || Option.isSome(flags.steps) ? { steps: some(flags.steps) ?? defaultLeasOptions.steps } : {}) })
            }),
            toUserError
          )
          const questions = resolve(some(flags.questions) ?? join(WORLD_DIR, "test.jsonl"))
          yield* requirePaths(config, questions)
          yield* progress.log(`leas: Reas, Tool, Unified (${config.steps} steps each) then ${flags.samples} samples per variant and question of ${questions}; output ${outDir}`)
          return yield* runLeas(config, {
            outDir,
            questions,
            limit: flags.limit,
            samples: flags.samples,
            temperature: flags.temperature,
            batchSize: flags.batchSize,
            gradientQuestions: flags.gradientQuestions,
            gradientRollouts: flags.gradientRollouts,
            bootstrap: flags.bootstrap,
            sensitivity: defaultLeasOptions.sensitivity
          }).pipe(Effect.mapError(toUserError))
        })
      const a = analysis.analysis
      const pct = (x: number) => `${(100 * x).toFixed(1)}%`
      yield* progress.log(
        [
          `leas: ${a.counts.kept} questions kept, ${a.counts.dropped} dropped (no variant ever correct), N = ${a.settings.n}`,
          `  interference (lambda_23 < 0): ${pct(a.shares.interference.share)} [${pct(a.shares.interference.ci[0])}, ${pct(a.shares.interference.ci[1])}] (95% bootstrap)`,
          `  synergy (lambda_23 > 0): ${pct(a.shares.synergy.share)} [${pct(a.shares.synergy.ci[0])}, ${pct(a.shares.synergy.ci[1])}]`,
          `report: ${analysis.files.html}, data: ${analysis.files.json}`
        ].join("\n")
      )
    })
).pipe(Command.withDescription("LEAS: train Reas, Tool and Unified, sample all six variants per question, fit the interaction lambda_23 and report the interference (leas.json, leas.html)"))

// ---------------------------------------------------------------------------
// index and serve

const bm25Flag = (name: "k1" | "b", fallback: number, max: number, description: string) =>
  Flag.Finite(name).pipe(
    Flag.withDescription(`${description} (number in [0, ${max}]; default ${fallback}, pyserini's)`),
    Flag.filter(
      (x) => x >= 0 && x <= max,
      (x) => `--${name} must be a number in [0, ${max}], got ${x}`
    ),
    Flag.withDefault(fallback)
  )

const index = Command.make(
  "index",
  {
    corpus: Flag.String("corpus").pipe(
      Flag.withDescription("the corpus: .jsonl or .jsonl.gz with one {\"id\", \"contents\"} object per line (Search-R1's layout)")
    ),
    out: Flag.String("out").pipe(Flag.withDescription("the index folder to create (must not exist)")),
    threads: intFlag("threads", 1, 8, "indexing threads (default: the cores, at most 8)").pipe(Flag.optional),
    heapMb: intFlag("heap-mb", 15, 64_000, "indexing memory of all threads together, MB (default 256 per thread)").pipe(Flag.optional),
    k1: bm25Flag("k1", 0.9, 10, "BM25 k1, term-frequency saturation"),
    b: bm25Flag("b", 0.4, 1, "BM25 b, length normalisation")
  },
  (flags) =>
    buildIndex(flags.corpus, flags.out, {
      k1: flags.k1,
      b: flags.b,
      progress: true,
      ...Option.match(flags.threads, { onNone: () => ({}), onSome: (threads) => ({ threads }) }),
      ...Option.match(flags.heapMb, { onNone: () => ({}), onSome: (heapMb) => ({ heapMb }) })
    }).pipe(
      Effect.flatMap((r) =>
        Effect.log(`index ${flags.out}: ${r.passages} passages in ${r.seconds.toFixed(1)} s, ${(r.bytes / 1e6).toFixed(1)} MB`)
      ),
      Effect.mapError((e) => toUserError({ _tag: e._tag, message: e.message }))
    )
).pipe(Command.withDescription("Build the built-in BM25 index (tantivy) of a Search-R1 corpus"))

const serve = Command.make(
  "serve",
  {
    index: Flag.String("index").pipe(Flag.withDescription("an index folder made by `pipeline index`")),
    host: Flag.String("host").pipe(
      Flag.withDescription("address to listen on (default 127.0.0.1, this machine only; 0.0.0.0 for every interface)"),
      Flag.withDefault("127.0.0.1")
    ),
    port: intFlag("port", 0, 65_535, "port to listen on (0: any free port)").pipe(Flag.withDefault(8000)),
    topk: intFlag("topk", 1, 1000, "topk of a request that gives none").pipe(Flag.withDefault(3))
  },
  (flags) =>
    Effect.scoped(
      Effect.gen(function*() {
        const search = yield* openIndex(flags.index)
        const address = yield* serveSearch({ host: flags.host, port: flags.port, search, defaultTopk: flags.topk })
        yield* Effect.log(`serving ${flags.index} (${search.passages} passages) at ${address.url} (POST {"queries", "topk", "return_scores"}); Ctrl-C stops`)
        return yield* Effect.never
      })
    ).pipe(Effect.mapError((e) => toUserError({ _tag: e._tag, message: e.message })))
).pipe(Command.withDescription("Serve an index with the Search-R1 retrieval protocol (POST /retrieve)"))

const pipeline = Command.make("pipeline").pipe(
  Command.withDescription("dart-rl: DART/LEAS agentic-RL training pipeline"),
  Command.withSubcommands([train, evalCommand, ask, pretrainCommand, compareCommand, leasCommand, index, serve])
)

Command.run(pipeline, { version: VERSION }).pipe(
  Effect.provide(Layer.mergeAll(NodeServices.layer, layerAuto())),
  NodeRuntime.runMain
)
