/**
 * The training run's configuration: one Schema, the defaults, and the rules
 * that make the resolved config from a file (JSON or YAML) and flags.
 *
 * A file gives any subset of the fields; objects merge with the defaults
 * key by key (arrays and `search` are replaced whole, so that choosing
 * `{ index }` drops the default `{ corpus }`). Keys that the schema does not
 * know are refused, and every bad value is reported with its path and the
 * allowed range. The resolved config is written to the run directory and is
 * what `--resume` reads back.
 */
import { Effect, Schema } from "effect"
import { boundedInt, boundedNumber } from "../domain/schema.ts"
import { readFileSync } from "node:fs"
import { extname, isAbsolute, join, resolve } from "node:path"
import YAML from "yaml"
import { LORA_TARGETS } from "../domain/model.ts"
import { AdvantageConfig } from "../objective/advantages.ts"
import { RewardConfig } from "../reward/rules.ts"
import { RolloutConfig, defaultRolloutConfig } from "../rollout/Rollout.ts"
import { MODES } from "../routing/modes.ts"
import { issueLines } from "../search/protocol.ts"
import { defaultUpdateConfig, UpdateConfig } from "../update/Update.ts"

const path = Schema.String.check(Schema.isMinLength(1))

export const SearchConfig = Schema.Union([
  /** An index folder made by `pipeline index`. */
  Schema.Struct({ index: path }),
  /** A Search-R1 corpus (.jsonl / .jsonl.gz), indexed into the run directory at the start. */
  Schema.Struct({ corpus: path }),
  /** A Search-R1 retrieval server (POST /retrieve). */
  Schema.Struct({ url: path, timeoutMs: Schema.optionalKey(boundedInt(1, 3_600_000)), retries: Schema.optionalKey(boundedInt(0, 100)) })
])
export type SearchConfig = typeof SearchConfig.Type

export const AdaptersConfig = Schema.Struct({
  /** Rank of each of dart's and two-agent's two adapters. */
  rank: boundedInt(1, 1024),
  alpha: boundedNumber(0.001, 1e6),
  /** Rank of the single adapter of joint, reas-only and tool-only (the paper's control: 2 x rank). */
  sharedRank: boundedInt(1, 2048),
  sharedAlpha: boundedNumber(0.001, 1e6),
  targets: Schema.Array(Schema.Literals(LORA_TARGETS)).check(Schema.isMinLength(1)),
  /** Std of the initial B; 0 = B starts at zero (the adapters start as the base model). */
  bInitStd: boundedNumber(0, 1)
})

export const ScheduleConfig = Schema.Struct({
  lr: Schema.Finite.check(Schema.isGreaterThan(0), Schema.isLessThanOrEqualTo(1)),
  minLr: boundedNumber(0, 1),
  warmupSteps: boundedInt(0, 1_000_000),
  schedule: Schema.Literals(["cosine", "constant"])
})

export const EvalConfig = Schema.Struct({
  /** Validate every this many steps (0 = only before and after training). */
  every: boundedInt(0, 1_000_000),
  /** Validation questions (0 = all). */
  limit: boundedInt(0, 10_000_000),
  /** Sampling temperature of validation (0 = greedy, as Search-R1). */
  temperature: boundedNumber(0, 10),
  /** Prompts decoded together. */
  batchSize: boundedInt(1, 100_000)
})

export const DataConfig = Schema.Struct({
  /** Training questions: Search-R1 layout, .jsonl or .parquet. */
  train: path,
  /** Validation questions (same layout); absent = no validation. */
  validation: Schema.optionalKey(path)
})

export const TrainConfig = Schema.Struct({
  /** A Hugging Face model folder (config.json, safetensors, tokenizer.json). */
  model: path,
  data: DataConfig,
  search: SearchConfig,
  mode: Schema.Literals(MODES),
  adapters: AdaptersConfig,
  rollout: RolloutConfig,
  reward: RewardConfig,
  advantage: AdvantageConfig,
  update: UpdateConfig,
  schedule: ScheduleConfig,
  eval: EvalConfig,
  /** Optimizer steps (RL steps). */
  steps: boundedInt(1, 10_000_000),
  /** Prompts per step (each sampled `rollout.groupSize` times). */
  promptsPerStep: boundedInt(1, 100_000),
  seed: boundedInt(0, 2 ** 31 - 1),
  /** Write a checkpoint every this many steps (and after the last). */
  checkpointEvery: boundedInt(1, 10_000_000),
  /** Complete checkpoints kept (older ones are deleted). */
  keepCheckpoints: boundedInt(1, 1000),
  /** Every this many steps, the cosine between the reasoning and tool gradients on the shared adapter (0 = off). */
  gradientProbeEvery: boundedInt(0, 10_000_000),
  backend: Schema.Literals(["cpu", "wgpu", "auto"]),
  /** Engine threads (0 = all cores). */
  threads: boundedInt(0, 1024)
})
export type TrainConfig = typeof TrainConfig.Type

/** The tiny pipeline test fixture (ts/test/fixtures/pipeline). */
export const FIXTURE_DIR = resolve(import.meta.dirname, "../../test/fixtures/pipeline")

/** The built-in world the defaults train on (docs/world.md; `pnpm pipeline pretrain` rebuilds it). */
export const WORLD_DIR = resolve(import.meta.dirname, "../../../world")

export const defaultTrainConfig: TrainConfig = {
  model: join(WORLD_DIR, "model"),
  data: { train: join(WORLD_DIR, "train.jsonl"), validation: join(WORLD_DIR, "validation.jsonl") },
  search: { corpus: join(WORLD_DIR, "corpus.jsonl") },
  mode: "dart",
  adapters: { rank: 8, alpha: 16, sharedRank: 16, sharedAlpha: 32, targets: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], bInitStd: 0 },
  rollout: { ...defaultRolloutConfig, groupSize: 8, maxTurnTokens: 64, maxSearches: 3, maxTurns: 4, maxObservationTokens: 300 },
  reward: { kind: "em" },
  advantage: { scaleByStd: true, eps: 1e-6 },
  update: defaultUpdateConfig,
  schedule: { lr: 3e-3, minLr: 3e-4, warmupSteps: 5, schedule: "cosine" },
  eval: { every: 25, limit: 0, temperature: 0, batchSize: 64 },
  steps: 150,
  promptsPerStep: 8,
  seed: 0,
  checkpointEvery: 10,
  keepCheckpoints: 2,
  gradientProbeEvery: 0,
  backend: "cpu",
  threads: 0
}

/** Keys whose value replaces the default whole instead of merging into it. */
const REPLACED = new Set(["search", "reward"])

const isPlainObject = (x: unknown): x is Record<string, unknown> =>
  typeof x === "object" && x !== null && !Array.isArray(x)

/** `over` merged into `base` (see the module comment). */
export const mergeConfig = (base: unknown, over: unknown, key = ""): unknown => {
  if (!isPlainObject(base) || !isPlainObject(over) || REPLACED.has(key)) return over === undefined ? base : over
  const out: Record<string, unknown> = { ...base }
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? mergeConfig(base[k], v, k) : v
  return out
}

export class ConfigError extends Schema.TaggedError<ConfigError>()("ConfigError", {
  /** The file, or "flags". */
  source: Schema.String,
  message: Schema.String
}) {}

const at = (value: unknown, path: ReadonlyArray<string | number>): unknown =>
  path.reduce<unknown>((v, k) => (isPlainObject(v) || Array.isArray(v) ? (v as Record<string | number, unknown>)[k] : undefined), value)

const show = (value: unknown): string => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 77)}...` : text
}

const parsePath = (path: string): Array<string | number> =>
  [...path.matchAll(/([^.[\]]+)|\[(\d+)\]/g)].map((m) => (m[2] !== undefined ? Number(m[2]) : m[1]!))

/**
 * Every issue of a failed decode as `path: what is allowed, got value`,
 * one per line; an unknown key names the keys allowed there; the search
 * union is one line.
 */
export const describeConfigIssues = (raw: unknown, leaves: ReadonlyArray<string>): string => {
  const lines = new Set<string>()
  for (const leaf of leaves) {
    const colon = leaf.indexOf(": ")
    const where = colon < 0 ? "" : leaf.slice(0, colon)
    const message = colon < 0 ? leaf : leaf.slice(colon + 2)
    const keys = parsePath(where)
    if (keys[0] === "search") {
      lines.add(`search: expected one of { index }, { corpus }, { url, timeoutMs?, retries? } (non-empty paths), got ${show(at(raw, ["search"]))}`)
    } else if (message === "Expected no excess property") {
      const parent = at(defaultTrainConfig, keys.slice(0, -1))
      const allowed = isPlainObject(parent) ? Object.keys(parent).join(", ") : "none"
      lines.add(`${where}: unknown key (allowed here: ${allowed})`)
    } else if (message === "Missing key") {
      lines.add(`${where}: missing`)
    } else {
      lines.add(`${where}: ${message.replace(/^Expected/, "expected")}, got ${show(at(raw, keys))}`)
    }
  }
  return [...lines].join("\n")
}

/** Decodes a merged config; every issue with its path, the allowed values and the value given. */
export const decodeConfig = (raw: unknown, source: string): Effect.Effect<TrainConfig, ConfigError> =>
  Schema.decodeUnknownEffect(TrainConfig)(raw, { onExcessProperty: "error", errors: "all" }).pipe(
    Effect.mapError((e) =>
      new ConfigError({ source, message: `${source}:\n${describeConfigIssues(raw, issueLines(e.issue)).split("\n").map((l) => `  ${l}`).join("\n")}` })
    )
  )

/** Reads a config file (.json, .yaml or .yml) as plain data; relative paths in it are made relative to the file. */
export const readConfigFile = (file: string): Effect.Effect<unknown, ConfigError> =>
  Effect.try({
    try: () => {
      const text = readFileSync(file, "utf8")
      const ext = extname(file).toLowerCase()
      if (ext === ".json") return JSON.parse(text) as unknown
      if (ext === ".yaml" || ext === ".yml") return YAML.parse(text) as unknown
      throw new Error(`unknown config format ${JSON.stringify(ext)}: expected .json, .yaml or .yml`)
    },
    catch: (e) => new ConfigError({ source: file, message: `${file}: ${e instanceof Error ? e.message : String(e)}` })
  }).pipe(Effect.map((raw) => relativeTo(raw, resolve(file, ".."))))

/** The file paths of a config (model, data, search) made absolute against `dir`. */
const relativeTo = (raw: unknown, dir: string): unknown => {
  if (!isPlainObject(raw)) return raw
  const abs = (p: unknown) => (typeof p === "string" && p !== "" && !isAbsolute(p) ? join(dir, p) : p)
  const out: Record<string, unknown> = { ...raw }
  if ("model" in out) out.model = abs(out.model)
  if (isPlainObject(out.data)) out.data = Object.fromEntries(Object.entries(out.data).map(([k, v]) => [k, abs(v)]))
  if (isPlainObject(out.search)) {
    const s = { ...out.search }
    if ("index" in s) s.index = abs(s.index)
    if ("corpus" in s) s.corpus = abs(s.corpus)
    out.search = s
  }
  return out
}

/** defaults <- file <- flags, decoded. */
export const resolveConfig = (file: string | undefined, flags: Record<string, unknown>): Effect.Effect<TrainConfig, ConfigError> =>
  Effect.gen(function*() {
    const fromFile = file === undefined ? {} : yield* readConfigFile(file)
    if (!isPlainObject(fromFile)) return yield* new ConfigError({ source: file!, message: `${file}: expected an object (a mapping of config keys) at the top level` })
    const merged = mergeConfig(mergeConfig(defaultTrainConfig, fromFile), flags)
    return yield* decodeConfig(merged, file === undefined ? "flags" : `${file} (with flags)`)
  })
