/**
 * The LEAS stage as a service (docs/leas.md): per-question draws of the six
 * variants in, the statistics of stats.ts and a report (leas.json +
 * leas.html) out. An Effect app embeds it to analyse scores of models
 * trained elsewhere: `readScores(file)` decodes a scores file
 * (`LeasScoresFile`), `analyze` fits lambda per question, `writeReport`
 * writes the files. `pnpm pipeline leas` uses the same service after
 * training and sampling the variants itself.
 */
import { Context, Effect, Layer, Result, Schema, SchemaIssue } from "effect"
import { mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { boundedInt, boundedNumber } from "../domain/schema.ts"
import { type Variant, VARIANTS } from "./algebra.ts"
import { renderHtml, type ReportMeta } from "./report.ts"
import {
  analyze as analyzeDraws,
  type AnalyzeSettings,
  analyzeGradients as analyzeCosines,
  type GradientAnalysis,
  type GradientSamples,
  inputIssueMessage,
  type LeasAnalysis,
  LeasInputIssue,
  type QuestionDraws
} from "./stats.ts"

export type { ReportMeta } from "./report.ts"

// ---------------------------------------------------------------------------
// Errors

export const LeasErrorReason = Schema.Union([
  /** The draws, settings or cosines given to `analyze` / `analyzeGradients` (stats.ts). */
  LeasInputIssue,
  /** A scores file that cannot be read or decoded: one line per problem, each naming the path of the bad value. */
  Schema.TaggedStruct("Scores", { file: Schema.String, issues: Schema.Array(Schema.String) }),
  /** A report file that could not be written. */
  Schema.TaggedStruct("Write", { path: Schema.String, detail: Schema.String })
])
export type LeasErrorReason = typeof LeasErrorReason.Type

export class LeasError extends Schema.TaggedError<LeasError>()("LeasError", { reason: LeasErrorReason }) {
  override get message(): string {
    const r = this.reason
    if (r._tag === "Scores") return `${r.file}:\n${r.issues.map((l) => `  ${l}`).join("\n")}`
    if (r._tag === "Write") return `cannot write ${r.path}: ${r.detail}`
    return inputIssueMessage(r)
  }
}

// ---------------------------------------------------------------------------
// The scores file

const Draw = boundedNumber(0, 1)
const Count = boundedInt(0, 1_000_000_000)
const SampleCount = boundedInt(1, 1_000_000_000)

/** The draws of one (variant, question) cell. */
export const ScoreCell = Schema.Union([
  /** The exact-match score of each sample, in [0, 1] (EM: 0 or 1). */
  Schema.Array(Draw),
  /** `correct` of `n` samples (n defaults to the file's `n`). */
  Schema.Struct({ correct: Count, n: Schema.optionalKey(SampleCount) }),
  /** The mean EM of `n` samples; `mean * n` must be a whole number (n defaults to the file's `n`). */
  Schema.Struct({ mean: Draw, n: Schema.optionalKey(SampleCount) })
])
export type ScoreCell = typeof ScoreCell.Type

export const ScoresQuestion = Schema.Struct({
  id: Schema.String.check(Schema.isMinLength(1)),
  dataSource: Schema.String.check(Schema.isMinLength(1)),
  question: Schema.optionalKey(Schema.String),
  scores: Schema.Struct({
    base: ScoreCell,
    reas: ScoreCell,
    tool: ScoreCell,
    unified: ScoreCell,
    hTool: ScoreCell,
    hReas: ScoreCell
  })
})

export const ScoresSettings = Schema.Struct({
  seed: Schema.optionalKey(boundedInt(0, 2 ** 32 - 1)),
  bootstrap: Schema.optionalKey(boundedInt(1, 1_000_000)),
  sensitivity: Schema.optionalKey(Schema.Array(SampleCount)),
  sensitivityRepeats: Schema.optionalKey(boundedInt(1, 1000))
})

/**
 * A scores file (JSON): the six variants' draws per question, from
 * anywhere. Keys not listed here are refused.
 */
export const LeasScoresFile = Schema.Struct({
  /** Samples per cell, for cells given as { correct } or { mean }. */
  n: Schema.optionalKey(SampleCount),
  settings: Schema.optionalKey(ScoresSettings),
  /** Free-form description (models, data, who made it); copied into leas.json and shown in the report. */
  meta: Schema.optionalKey(Schema.Record(Schema.String, Schema.Unknown)),
  questions: Schema.Array(ScoresQuestion).check(Schema.isMinLength(1))
})
export type LeasScoresFile = typeof LeasScoresFile.Type

/** A decoded scores file: draws per question, the analysis settings (seed 0 unless given) and the meta. */
export interface LeasScores {
  readonly file: string
  readonly rows: ReadonlyArray<QuestionDraws>
  readonly settings: AnalyzeSettings
  readonly meta: Record<string, unknown>
}

const KEYS = {
  top: ["n", "settings", "meta", "questions"],
  settings: ["seed", "bootstrap", "sensitivity", "sensitivityRepeats"],
  question: ["id", "dataSource", "question", "scores"],
  scores: [...VARIANTS],
  draws: [],
  count: ["correct", "n"],
  mean: ["mean", "n"]
} as const

const CELL_FORMS = "an array of draws in [0, 1], { correct, n? } or { mean, n? }"

const show = (value: unknown): string => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 77)}...` : text
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x)

const at = (value: unknown, path: ReadonlyArray<string | number>): unknown =>
  path.reduce<unknown>((v, k) => (isObject(v) || Array.isArray(v) ? (v as Record<string | number, unknown>)[k] : undefined), value)

const formatKeys = (path: ReadonlyArray<string | number>): string =>
  path.reduce<string>((out, k) => (typeof k === "number" ? `${out}[${k}]` : out === "" ? k : `${out}.${k}`), "")

/** Which form a cell's raw value was meant to be, by its shape. */
const cellForm = (raw: unknown): "draws" | "count" | "mean" | undefined =>
  Array.isArray(raw) ? "draws" : isObject(raw) ? ("correct" in raw ? "count" : "mean" in raw ? "mean" : undefined) : undefined

const CELL_SCHEMAS = {
  draws: ScoreCell.members[0],
  count: ScoreCell.members[1],
  mean: ScoreCell.members[2]
} as const

const allowedKeys = (raw: unknown, parent: ReadonlyArray<string | number>): ReadonlyArray<string> => {
  if (parent.length === 0) return KEYS.top
  if (parent.length === 1 && parent[0] === "settings") return KEYS.settings
  if (parent.length === 2 && parent[0] === "questions") return KEYS.question
  if (parent.length === 3 && parent[2] === "scores") return KEYS.scores
  if (parent.length === 4 && parent[2] === "scores") return KEYS[cellForm(at(raw, parent)) ?? "draws"]
  return []
}

interface Leaf {
  readonly keys: ReadonlyArray<string | number>
  readonly message: string
}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Every leaf issue of a failed decode with its path. */
const leavesOf = (issue: SchemaIssue.Issue): ReadonlyArray<Leaf> =>
  formatter(issue).issues.map((leaf) => ({
    keys: (leaf.path ?? []).map((segment) => {
      const key = typeof segment === "object" && segment !== null ? segment.key : segment
      return typeof key === "number" ? key : String(key)
    }),
    message: leaf.message
  }))

/** One schema leaf as `path: what is allowed, got value`. */
const describeLeaf = (raw: unknown, { keys, message }: Leaf): string => {
  const where = formatKeys(keys)
  if (message === "Expected no excess property") {
    const allowed = allowedKeys(raw, keys.slice(0, -1))
    return `${where}: unknown key (allowed here: ${allowed.length === 0 ? "none" : allowed.join(", ")})`
  }
  if (message === "Missing key") return `${where}: missing`
  return `${where === "" ? "(top level)" : where}: ${message.replace(/^Expected/, "expected")}, got ${show(at(raw, keys))}`
}

/**
 * Every issue of a failed decode, one line each. A cell (a union of three
 * forms) is re-decoded against the form its shape asks for, so that the
 * lines speak of that form only; a cell of no form says which are allowed.
 */
const describeScoresIssues = (raw: unknown, leaves: ReadonlyArray<Leaf>): ReadonlyArray<string> => {
  const lines = new Set<string>()
  for (const leaf of leaves) {
    const keys = leaf.keys
    const isCell = keys.length >= 4 && keys[0] === "questions" && keys[2] === "scores" && (VARIANTS as ReadonlyArray<unknown>).includes(keys[3])
    if (!isCell || at(raw, keys.slice(0, 4)) === undefined) {
      lines.add(describeLeaf(raw, leaf))
      continue
    }
    const cellPath = keys.slice(0, 4)
    const value = at(raw, cellPath)
    const form = cellForm(value)
    const decoded = form === undefined ? undefined : Schema.decodeUnknownResult(CELL_SCHEMAS[form])(value, { onExcessProperty: "error", errors: "all" })
    if (decoded === undefined || Result.isSuccess(decoded)) {
      lines.add(`${formatKeys(cellPath)}: expected ${CELL_FORMS}, got ${show(value)}`)
      continue
    }
    for (const l of leavesOf(decoded.failure.issue)) lines.add(describeLeaf(raw, { keys: [...cellPath, ...l.keys], message: l.message }))
  }
  return [...lines]
}

const expand = (cell: ScoreCell, fileN: number | undefined, where: string, problems: Array<string>): ReadonlyArray<number> => {
  if (Array.isArray(cell)) return cell
  const c = cell as { readonly correct?: number; readonly mean?: number; readonly n?: number }
  const n = c.n ?? fileN
  if (n === undefined) {
    problems.push(`${where}.n: missing (give n in the cell or at the top level of the file)`)
    return []
  }
  let k: number
  if (c.correct !== undefined) {
    if (c.correct > n) {
      problems.push(`${where}.correct: expected at most n = ${n}, got ${c.correct}`)
      return []
    }
    k = c.correct
  } else {
    const m = c.mean!
    k = Math.round(m * n)
    if (Math.abs(m * n - k) > 1e-6) {
      problems.push(`${where}.mean: expected a multiple of 1/n = 1/${n} (a mean of n EM draws of 0 or 1; give the draws or { correct, n } otherwise), got ${m}`)
      return []
    }
  }
  return Array.from({ length: n }, (_, i) => (i < k ? 1 : 0))
}

/** A decoded file as per-question draws; every cell expanded, the same N everywhere, ids unique. */
export const scoresToRows = (file: LeasScoresFile): { readonly rows: ReadonlyArray<QuestionDraws>; readonly problems: ReadonlyArray<string> } => {
  const problems: Array<string> = []
  const firstOf = new Map<string, number>()
  let reference: { readonly n: number; readonly where: string } | undefined
  const rows = file.questions.map((q, i) => {
    const previous = firstOf.get(q.id)
    if (previous !== undefined) problems.push(`questions[${i}].id: ${JSON.stringify(q.id)} is already the id of questions[${previous}] (ids must be unique)`)
    else firstOf.set(q.id, i)
    const draws = {} as Record<Variant, ReadonlyArray<number>>
    for (const v of VARIANTS) {
      const where = `questions[${i}].scores.${v}`
      const before = problems.length
      draws[v] = expand(q.scores[v], file.n, where, problems)
      if (problems.length > before) continue
      if (draws[v].length === 0) problems.push(`${where}: expected at least one draw, got []`)
      else if (reference === undefined) reference = { n: draws[v].length, where }
      else if (draws[v].length !== reference.n) {
        problems.push(`${where}: ${draws[v].length} samples, but ${reference.where} has ${reference.n} (every variant of every question needs the same N)`)
      }
    }
    return { id: q.id, dataSource: q.dataSource, ...(q.question === undefined ? {} : { question: q.question }), draws }
  })
  return { rows, problems }
}

const scoresError = (file: string, issues: ReadonlyArray<string>) => new LeasError({ reason: { _tag: "Scores", file, issues } })

/** Reads and decodes a scores file (JSON); every problem with its path, what is allowed and what was given. */
export const readScores = (file: string): Effect.Effect<LeasScores, LeasError> =>
  Effect.gen(function*() {
    const raw = yield* Effect.try({
      try: () => JSON.parse(readFileSync(file, "utf8")) as unknown,
      catch: (e) => scoresError(file, [e instanceof SyntaxError ? `not JSON: ${e.message}` : `cannot read it: ${e instanceof Error ? e.message : String(e)}`])
    })
    if (!isObject(raw)) return yield* scoresError(file, [`(top level): expected an object with ${KEYS.top.join(", ")}, got ${show(raw)}`])
    const decoded = yield* Schema.decodeUnknownEffect(LeasScoresFile)(raw, { onExcessProperty: "error", errors: "all" }).pipe(
      Effect.mapError((e) => scoresError(file, describeScoresIssues(raw, leavesOf(e.issue))))
    )
    const { problems, rows } = scoresToRows(decoded)
    if (problems.length > 0) return yield* scoresError(file, problems)
    const s = decoded.settings ?? {}
    const settings: AnalyzeSettings = {
      seed: s.seed ?? 0,
      ...(s.bootstrap === undefined ? {} : { bootstrap: s.bootstrap }),
      ...(s.sensitivity === undefined ? {} : { sensitivity: s.sensitivity }),
      ...(s.sensitivityRepeats === undefined ? {} : { sensitivityRepeats: s.sensitivityRepeats })
    }
    return { file, rows, settings, meta: decoded.meta ?? {} }
  })

// ---------------------------------------------------------------------------
// The service

export interface WriteReportInput {
  /** The folder to write leas.json and leas.html into (created if missing). */
  readonly dir: string
  readonly analysis: LeasAnalysis
  readonly gradients?: GradientAnalysis
  readonly meta: ReportMeta
}

export interface ReportFiles {
  readonly json: string
  readonly html: string
}

export interface LeasShape {
  readonly analyze: (rows: ReadonlyArray<QuestionDraws>, settings: AnalyzeSettings) => Effect.Effect<LeasAnalysis, LeasError>
  readonly analyzeGradients: (samples: GradientSamples) => Effect.Effect<GradientAnalysis, LeasError>
  /** Writes `leas.json` (meta, settings, counts, summaries, per-question rows, gradients) and `leas.html`. */
  readonly writeReport: (input: WriteReportInput) => Effect.Effect<ReportFiles, LeasError>
  readonly readScores: (file: string) => Effect.Effect<LeasScores, LeasError>
}

export class Leas extends Context.Service<Leas, LeasShape>()("@dart-rl/ts/Leas") {}

const fromIssue = <A>(result: Result.Result<A, LeasInputIssue>): Effect.Effect<A, LeasError> =>
  Effect.mapError(Effect.fromResult(result), (reason) => new LeasError({ reason }))

/** Writes `text` to `path` through a temporary file and a rename, so a reader never sees half a file. */
const writeFile = (path: string, text: string): Effect.Effect<void, LeasError> =>
  Effect.try({
    try: () => {
      writeFileSync(`${path}.tmp`, text)
      renameSync(`${path}.tmp`, path)
    },
    catch: (e) => new LeasError({ reason: { _tag: "Write", path, detail: e instanceof Error ? e.message : String(e) } })
  })

export const writeReport = (input: WriteReportInput): Effect.Effect<ReportFiles, LeasError> =>
  Effect.gen(function*() {
    const json = join(input.dir, "leas.json")
    const html = join(input.dir, "leas.html")
    yield* Effect.try({
      try: () => mkdirSync(input.dir, { recursive: true }),
      catch: (e) => new LeasError({ reason: { _tag: "Write", path: input.dir, detail: e instanceof Error ? e.message : String(e) } })
    })
    const { questions, ...summary } = input.analysis
    const document = { meta: input.meta, ...summary, gradients: input.gradients ?? null, questions }
    yield* writeFile(json, `${JSON.stringify(document, null, 2)}\n`)
    yield* writeFile(html, renderHtml(input.analysis, input.gradients, input.meta))
    return { json, html }
  })

/** The LEAS service: the pure statistics of stats.ts, the report of report.ts, files through node:fs. */
export const make = (): LeasShape => ({
  analyze: (rows, settings) => fromIssue(analyzeDraws(rows, settings)),
  analyzeGradients: (samples) => fromIssue(analyzeCosines(samples)),
  writeReport,
  readScores
})

export const layer: Layer.Layer<Leas> = Layer.succeed(Leas)(make())
