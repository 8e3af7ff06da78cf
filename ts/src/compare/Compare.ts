/**
 * `pipeline compare`: several modes trained with several seeds under the
 * same budget (the config's steps, prompts, group size, learning rate),
 * each evaluated greedily on a held-out split, summarised as means with 95%
 * t intervals over seeds and as per-step learning curves.
 *
 * Output folder:
 *   index/                  the corpus's index, built once for every run
 *   runs/<mode>-seed<s>/    ordinary training runs (config.json, metrics.jsonl, checkpoints/, adapters/, test.json)
 *   base-test.json          the untrained model on the same split
 *   compare.json            per-run results, the table, the curves, the settings
 *   compare.md, compare.html  the table (Markdown) and the report with the learning curves (self-contained)
 *
 * A stopped comparison continues where it stopped: finished runs and
 * evaluations are read back, a stopped run resumes from its checkpoint.
 * The runs train without validation (the test split is evaluated once at
 * the end), so a comparison costs its runs' training steps and one
 * evaluation each.
 */
import { Effect } from "effect"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import type { TrainMode } from "../routing/modes.ts"
import type { TrainConfig } from "../train/config.ts"
import type { EvalSummary } from "../train/evaluate.ts"
import { Progress } from "../train/Progress.ts"
import { ensureRun, evaluateOnce, sharedSearch } from "../train/runs.ts"
import { loadRecords } from "../train/Train.ts"
import { renderCompareHtml, renderCompareMarkdown } from "./report.ts"
import { type CurvePoint, type MeanInterval, meanInterval, seedCurve } from "./stats.ts"

export const DEFAULT_COMPARE_MODES: ReadonlyArray<TrainMode> = ["dart", "joint", "two-agent"]

export interface CompareOptions {
  readonly modes: ReadonlyArray<TrainMode>
  readonly seeds: ReadonlyArray<number>
  /** The held-out questions every run is evaluated on (Search-R1 layout). */
  readonly test: string
  readonly outDir: string
  /** Steps of the trailing moving average of the learning curves. */
  readonly smoothing: number
}

export interface RunRow {
  readonly mode: TrainMode
  readonly seed: number
  readonly runDir: string
  readonly seconds: number
  readonly test: EvalSummary
  /** Mean reward of the step's rollouts, per step. */
  readonly rewardPerStep: ReadonlyArray<number>
  readonly searchesPerStep: ReadonlyArray<number>
}

export interface ModeRow {
  readonly mode: TrainMode
  /** What the mode trains: its adapters and their ranks. */
  readonly adapters: string
  readonly em: MeanInterval
  readonly byDataSource: Readonly<Record<string, MeanInterval>>
  readonly searchesPerQuestion: MeanInterval
  readonly seconds: MeanInterval
  readonly rewardCurve: ReadonlyArray<CurvePoint>
}

export interface CompareResult {
  readonly settings: {
    readonly modes: ReadonlyArray<TrainMode>
    readonly seeds: ReadonlyArray<number>
    readonly test: string
    readonly questions: number
    readonly steps: number
    readonly promptsPerStep: number
    readonly groupSize: number
    readonly lr: number
    readonly smoothing: number
    readonly interval: string
  }
  readonly base: EvalSummary
  readonly modes: ReadonlyArray<ModeRow>
  readonly runs: ReadonlyArray<RunRow>
}

export const adapterDescription = (mode: TrainMode, config: TrainConfig): string =>
  mode === "dart" || mode === "two-agent"
    ? `2 x rank ${config.adapters.rank} (reason, tool)`
    : `1 x rank ${config.adapters.sharedRank} (shared)`

const stepLines = (runDir: string): Array<{ reward: number; searchesPerEpisode: number }> =>
  readFileSync(join(runDir, "metrics.jsonl"), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as { kind: string; reward: number; searchesPerEpisode: number })
    .filter((m) => m.kind === "step")

/** The table and curves of finished runs (pure). */
export const summarizeRuns = (
  runs: ReadonlyArray<RunRow>,
  modes: ReadonlyArray<TrainMode>,
  config: TrainConfig,
  smoothing: number
): ReadonlyArray<ModeRow> =>
  modes.map((mode) => {
    const rows = runs.filter((r) => r.mode === mode)
    const sources = [...new Set(rows.flatMap((r) => Object.keys(r.test.byDataSource)))].sort()
    return {
      mode,
      adapters: adapterDescription(mode, config),
      em: meanInterval(rows.map((r) => r.test.em)),
      byDataSource: Object.fromEntries(sources.map((s) => [s, meanInterval(rows.map((r) => r.test.byDataSource[s]?.em ?? 0))])),
      searchesPerQuestion: meanInterval(rows.map((r) => r.test.searchesPerQuestion)),
      seconds: meanInterval(rows.map((r) => r.seconds)),
      rewardCurve: seedCurve(rows.map((r) => r.rewardPerStep), smoothing)
    }
  })

export const compare = (config: TrainConfig, options: CompareOptions) =>
  Effect.gen(function*() {
    const progress = yield* Progress
    mkdirSync(options.outDir, { recursive: true })
    if (config.data.validation !== undefined) {
      yield* progress.log(`compare: the runs train without validation (data.validation ${config.data.validation} is not used); each is evaluated on ${options.test}`)
    }
    const search = yield* sharedSearch(config.search, options.outDir)
    const records = yield* loadRecords(options.test)
    const total = options.modes.length * options.seeds.length
    const runs: Array<RunRow> = []
    for (const mode of options.modes) {
      for (const seed of options.seeds) {
        const runDir = join(options.outDir, "runs", `${mode}-seed${seed}`)
        const runConfig: TrainConfig = { ...config, mode, seed, search, data: { train: config.data.train } }
        yield* progress.log(`compare: run ${runs.length + 1}/${total}: ${mode}, seed ${seed} (${runDir})`)
        const summary = yield* ensureRun(runConfig, runDir)
        const test = yield* evaluateOnce(runConfig, { choice: mode, runDir }, records, join(runDir, "test.json"), `test ${mode} seed ${seed}`)
        yield* progress.log(`compare: ${mode} seed ${seed}: test EM ${test.summary.em.toFixed(3)} (${summary.seconds.toFixed(0)} s of training)`)
        const steps = stepLines(runDir)
        runs.push({
          mode,
          seed,
          runDir,
          seconds: summary.seconds,
          test: test.summary,
          rewardPerStep: steps.map((s) => s.reward),
          searchesPerStep: steps.map((s) => s.searchesPerEpisode)
        })
      }
    }
    const baseConfig: TrainConfig = { ...config, search, data: { train: config.data.train } }
    const base = yield* evaluateOnce(baseConfig, { choice: "base" }, records, join(options.outDir, "base-test.json"), "test base")
    const result: CompareResult = {
      settings: {
        modes: options.modes,
        seeds: options.seeds,
        test: options.test,
        questions: records.length,
        steps: config.steps,
        promptsPerStep: config.promptsPerStep,
        groupSize: config.rollout.groupSize,
        lr: config.schedule.lr,
        smoothing: options.smoothing,
        interval: `mean over seeds +- the half-width of a two-sided 95% Student-t interval (n - 1 degrees of freedom); greedy decoding on the test split`
      },
      base: base.summary,
      modes: summarizeRuns(runs, options.modes, config, options.smoothing),
      runs
    }
    writeFileSync(join(options.outDir, "compare.json"), JSON.stringify(result, null, 2) + "\n")
    writeFileSync(join(options.outDir, "compare.md"), renderCompareMarkdown(result))
    writeFileSync(join(options.outDir, "compare.html"), renderCompareHtml(result))
    return result
  })
