/**
 * One question of a dataset in the Search-R1 layout, the rules that turn a raw
 * JSONL object or Parquet row into it, the dataset's error, and the
 * deterministic train/validation split. Pure: the file reading is in
 * dataset.ts. The rules are documented in docs/datasets.md.
 */
import { Schema } from "effect"

// ---------------------------------------------------------------------------
// The record

export const DatasetRecord = Schema.Struct({
  /** The row's `id` (numbers are written in decimal); absent when the row has none. */
  id: Schema.optionalKey(Schema.String),
  question: Schema.String,
  /** At least one gold answer. */
  goldenAnswers: Schema.Array(Schema.String),
  dataSource: Schema.String,
  /** 1-based line (JSONL) or row (Parquet) of the record in its file. */
  position: Schema.Int,
  /** Every other column, as read (see `plainValue`). */
  extra: Schema.Record(Schema.String, Schema.Unknown)
})
export type DatasetRecord = typeof DatasetRecord.Type

// ---------------------------------------------------------------------------
// The error

export const DatasetErrorReason = Schema.Union([
  /** The file cannot be opened or read, or is not a valid Parquet file. */
  Schema.TaggedStruct("UnreadableFile", { detail: Schema.String }),
  /** The file name ends neither in .jsonl/.ndjson nor in .parquet. */
  Schema.TaggedStruct("UnsupportedFormat", { detail: Schema.String }),
  /** A JSONL line is not valid JSON. */
  Schema.TaggedStruct("MalformedJson", { detail: Schema.String }),
  /** A JSONL line is valid JSON but not an object. */
  Schema.TaggedStruct("NotAnObject", { got: Schema.String }),
  /** A required field is absent or null. */
  Schema.TaggedStruct("MissingField", {}),
  /** A field has a value of the wrong kind. */
  Schema.TaggedStruct("InvalidField", { expected: Schema.String, got: Schema.String })
])
export type DatasetErrorReason = typeof DatasetErrorReason.Type

export class DatasetError extends Schema.TaggedError<DatasetError>()("DatasetError", {
  file: Schema.String,
  /** 1-based line of a JSONL file. */
  line: Schema.optionalKey(Schema.Int),
  /** 1-based row of a Parquet file. */
  row: Schema.optionalKey(Schema.Int),
  /** The field at fault, e.g. "golden_answers[1]". */
  field: Schema.optionalKey(Schema.String),
  reason: DatasetErrorReason
}) {
  override get message(): string {
    const where = this.line !== undefined ? `:${this.line}` : this.row !== undefined ? ` row ${this.row}` : ""
    const field = this.field !== undefined ? ` field "${this.field}":` : ""
    const reason = this.reason
    switch (reason._tag) {
      case "UnreadableFile":
        return `${this.file}: cannot read the file: ${reason.detail}`
      case "UnsupportedFormat":
        return `${this.file}: ${reason.detail}`
      case "MalformedJson":
        return `${this.file}${where}: not valid JSON: ${reason.detail}`
      case "NotAnObject":
        return `${this.file}${where}: expected a JSON object, got ${reason.got}`
      case "MissingField":
        return `${this.file}${where}:${field} missing`
      case "InvalidField":
        return `${this.file}${where}:${field} expected ${reason.expected}, got ${reason.got}`
    }
  }
}

/** Where a raw record came from: JSONL lines and Parquet rows are both numbered from 1. */
export interface RecordSource {
  readonly file: string
  readonly unit: "line" | "row"
  readonly number: number
}

const errorAt = (source: RecordSource, reason: DatasetErrorReason, field?: string): DatasetError =>
  new DatasetError({
    file: source.file,
    ...(source.unit === "line" ? { line: source.number } : { row: source.number }),
    ...(field === undefined ? {} : { field }),
    reason
  })

/** A short description of a value for error messages: its kind and a glimpse of it. */
export const describeValue = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return `an array of ${value.length}`
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`
    case "number":
    case "bigint":
    case "boolean":
      return `the ${typeof value} ${String(value)}`
    case "object":
      return "an object"
    default:
      return typeof value
  }
}

// ---------------------------------------------------------------------------
// Raw row -> record

/** The three columns a record is made of; `id` is optional, everything else is kept in `extra`. */
const CORE_COLUMNS = new Set(["id", "question", "golden_answers", "data_source"])

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) &&
  !(value instanceof Date)

/**
 * A column value made plain for JSON-minded consumers: Parquet INT64 values
 * (read as bigint) that a double holds exactly become numbers, typed arrays
 * become arrays; objects and arrays are converted deeply. Everything else
 * (larger bigints, dates, strings, ...) stays as read.
 */
export const plainValue = (value: unknown): unknown => {
  if (typeof value === "bigint") {
    return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value
  }
  if (Array.isArray(value)) return value.map(plainValue)
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) return Array.from(value as unknown as ArrayLike<unknown>, plainValue)
  if (isPlainObject(value)) {
    // fromEntries defines own properties, so a column named "__proto__"
    // is kept as data instead of setting the object's prototype.
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, plainValue(inner)]))
  }
  return value
}

const isAbsent = (value: unknown): value is null | undefined => value === undefined || value === null

/**
 * Gold answers from `value` (named `field` in errors): a non-empty array of
 * strings, or a single string (as Search-R1's em_check accepts), wrapped.
 */
const answersFrom = (
  value: unknown,
  field: string,
  source: RecordSource
): ReadonlyArray<string> | DatasetError => {
  if (typeof value === "string") return [value]
  const items = ArrayBuffer.isView(value) ? Array.from(value as unknown as ArrayLike<unknown>) : value
  if (!Array.isArray(items)) {
    return errorAt(source, { _tag: "InvalidField", expected: "an array of strings", got: describeValue(value) }, field)
  }
  if (items.length === 0) {
    return errorAt(source, { _tag: "InvalidField", expected: "at least one answer", got: "an empty array" }, field)
  }
  for (let i = 0; i < items.length; i++) {
    const item: unknown = items[i]
    if (typeof item !== "string") {
      return errorAt(source, { _tag: "InvalidField", expected: "a string", got: describeValue(item) }, `${field}[${i}]`)
    }
  }
  return items as ReadonlyArray<string>
}

/** `reward_model.ground_truth.target` of a Search-R1 row, if it is there. */
const groundTruthTarget = (row: Record<string, unknown>): unknown => {
  const rewardModel = row["reward_model"]
  if (!isPlainObject(rewardModel)) return undefined
  const groundTruth = rewardModel["ground_truth"]
  return isPlainObject(groundTruth) ? groundTruth["target"] : undefined
}

const requiredString = (
  row: Record<string, unknown>,
  field: string,
  source: RecordSource
): string | DatasetError => {
  const value = row[field]
  if (isAbsent(value)) return errorAt(source, { _tag: "MissingField" }, field)
  if (typeof value !== "string") {
    return errorAt(source, { _tag: "InvalidField", expected: "a string", got: describeValue(value) }, field)
  }
  if (value.trim() === "") {
    return errorAt(source, { _tag: "InvalidField", expected: "a non-blank string", got: describeValue(value) }, field)
  }
  return value
}

/**
 * The record of one raw JSONL object or Parquet row, or the error naming the
 * file, line/row and field at fault:
 *
 * - `question`, `data_source`: required non-blank strings;
 * - `golden_answers`: a non-empty array of strings or one string; when absent
 *   or null, `reward_model.ground_truth.target` (same rules) is used;
 * - `id`: optional (absent or null); a string, or an integer written in decimal;
 * - every other column goes to `extra`, made plain by `plainValue`.
 */
export const toDatasetRecord = (raw: unknown, source: RecordSource): DatasetRecord | DatasetError => {
  if (!isPlainObject(raw)) return errorAt(source, { _tag: "NotAnObject", got: describeValue(raw) })

  const question = requiredString(raw, "question", source)
  if (question instanceof DatasetError) return question

  let goldenAnswers: ReadonlyArray<string> | DatasetError
  if (!isAbsent(raw["golden_answers"])) goldenAnswers = answersFrom(raw["golden_answers"], "golden_answers", source)
  else {
    const target = groundTruthTarget(raw)
    goldenAnswers = isAbsent(target)
      ? errorAt(source, { _tag: "MissingField" }, "golden_answers")
      : answersFrom(target, "reward_model.ground_truth.target", source)
  }
  if (goldenAnswers instanceof DatasetError) return goldenAnswers

  const dataSource = requiredString(raw, "data_source", source)
  if (dataSource instanceof DatasetError) return dataSource

  const rawId = raw["id"]
  let id: string | undefined
  if (typeof rawId === "string") id = rawId
  else if ((typeof rawId === "number" && Number.isSafeInteger(rawId)) || typeof rawId === "bigint") id = String(rawId)
  else if (!isAbsent(rawId)) {
    return errorAt(source, { _tag: "InvalidField", expected: "a string or an integer", got: describeValue(rawId) }, "id")
  }

  const extra: Record<string, unknown> = Object.fromEntries(
    Object.entries(raw).filter(([key]) => !CORE_COLUMNS.has(key)).map(([key, value]) => [key, plainValue(value)])
  )

  return {
    ...(id === undefined ? {} : { id }),
    question,
    goldenAnswers,
    dataSource,
    position: source.number,
    extra
  }
}

// ---------------------------------------------------------------------------
// Train/validation split

export const SplitOptions = Schema.Struct({
  /** Expected share of records in the validation split, in [0, 1]. */
  validationFraction: Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })),
  /** Any unsigned 32-bit integer; another seed gives another (equally sized) split. */
  seed: Schema.Int.check(Schema.isBetween({ minimum: 0, maximum: 0xffff_ffff }))
})
export type SplitOptions = typeof SplitOptions.Type
export type Split = "train" | "validation"

/**
 * MurmurHash3 x86 32-bit of `bytes` (equal to Python's
 * `mmh3.hash(bytes, seed, signed=False)`): a fixed, documented hash, so that
 * another tool can reproduce the split.
 */
export const murmur3 = (bytes: Uint8Array, seed: number): number => {
  const c1 = 0xcc9e2d51
  const c2 = 0x1b873593
  const mixK = (block: number): number => {
    const k = Math.imul(block, c1)
    return Math.imul((k << 15) | (k >>> 17), c2)
  }
  let h = seed >>> 0
  const tail = bytes.length & ~3
  for (let i = 0; i < tail; i += 4) {
    h ^= mixK(bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24))
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  const rest = bytes.length & 3
  if (rest > 0) {
    let k = 0
    if (rest >= 3) k ^= bytes[tail + 2]! << 16
    if (rest >= 2) k ^= bytes[tail + 1]! << 8
    k ^= bytes[tail]!
    h ^= mixK(k)
  }
  h ^= bytes.length
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

const utf8 = new TextEncoder()

/**
 * What the split hashes: the record's id, or `#<position>` when it has none.
 * With ids the split of a record depends on nothing but its id (not on the
 * file order or on the other records); without, on its own position only.
 */
export const splitKey = (record: Pick<DatasetRecord, "id" | "position">): string =>
  record.id ?? `#${record.position}`

/**
 * A record is in validation when murmur3(utf8(key), seed) / 2^32 is below
 * `validationFraction`. Raising the fraction only moves records from train to
 * validation, never back.
 */
export const splitOf = (record: Pick<DatasetRecord, "id" | "position">, options: SplitOptions): Split =>
  murmur3(utf8.encode(splitKey(record)), options.seed) / 0x1_0000_0000 < options.validationFraction
    ? "validation"
    : "train"
