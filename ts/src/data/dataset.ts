/**
 * Reading datasets in the Search-R1 layout from JSONL and Parquet files, as
 * streams of `DatasetRecord`s, through effect's `FileSystem` (so a test or an
 * embedding app can supply its own). Both formats stream: JSONL line by line,
 * Parquet one row group at a time (hyparquet, pure JavaScript, with the
 * compressors of hyparquet-compressors). A bad line or row fails the stream
 * with a `DatasetError` naming the file, the 1-based line or row and the field.
 *
 * The record rules and the split are pure and live in record.ts; see
 * docs/datasets.md.
 */
import { Effect, FileSystem, Option, Stream } from "effect"
import { type AsyncBuffer, parquetMetadataAsync, parquetReadObjects } from "hyparquet"
import { compressors } from "hyparquet-compressors"
import {
  DatasetError,
  type DatasetRecord,
  type RecordSource,
  type Split,
  splitOf,
  type SplitOptions,
  toDatasetRecord
} from "./record.ts"

export {
  DatasetError,
  DatasetErrorReason,
  DatasetRecord,
  murmur3,
  plainValue,
  type RecordSource,
  type Split,
  splitKey,
  splitOf,
  SplitOptions,
  toDatasetRecord
} from "./record.ts"

const detailOf = (cause: unknown): string => (cause instanceof Error ? cause.message : String(cause))

const unreadable = (file: string) => (cause: unknown): DatasetError =>
  new DatasetError({ file, reason: { _tag: "UnreadableFile", detail: detailOf(cause) } })

const fromDecoded = (decoded: DatasetRecord | DatasetError): Effect.Effect<DatasetRecord, DatasetError> =>
  decoded instanceof DatasetError ? Effect.fail(decoded) : Effect.succeed(decoded)

// ---------------------------------------------------------------------------
// JSONL

/** One JSONL line (1-based `line`) as a record. */
export const parseJsonlLine = (file: string, text: string, line: number): DatasetRecord | DatasetError => {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch (cause) {
    return new DatasetError({ file, line, reason: { _tag: "MalformedJson", detail: detailOf(cause) } })
  }
  return toDatasetRecord(raw, { file, unit: "line", number: line })
}

/**
 * The records of a JSONL file, one JSON object per line, read as a stream
 * (constant memory). Blank lines are skipped but counted, so that line
 * numbers in errors are those of an editor; a UTF-8 byte-order mark is
 * dropped; CRLF line ends are fine.
 */
export const readJsonl = (file: string): Stream.Stream<DatasetRecord, DatasetError, FileSystem.FileSystem> =>
  Stream.unwrap(
    Effect.map(FileSystem.FileSystem, (fs) =>
      fs.stream(file).pipe(
        Stream.mapError(unreadable(file)),
        Stream.decodeText,
        Stream.splitLines,
        Stream.zipWithIndex,
        Stream.filter(([text]) => text.trim() !== ""),
        Stream.mapEffect(([text, index]) => fromDecoded(parseJsonlLine(file, text, index + 1)))
      )
    )
  )

// ---------------------------------------------------------------------------
// Parquet

/**
 * A hyparquet `AsyncBuffer` over an open file: positional reads, so the
 * concurrent slices hyparquet asks for do not share a cursor.
 */
const fileBuffer = (
  file: FileSystem.File,
  byteLength: number,
  run: <A>(effect: Effect.Effect<A, unknown>) => Promise<A>
): AsyncBuffer => ({
  byteLength,
  slice: (start, end = byteLength) =>
    run(
      Effect.gen(function*() {
        const out = new Uint8Array(Math.max(0, end - start))
        let filled = 0
        // A read may return fewer bytes than asked; loop until the range is full.
        while (filled < out.length) {
          const chunk = yield* file.readAlloc(out.length - filled, { position: BigInt(start + filled) })
          if (Option.isNone(chunk) || chunk.value.length === 0) {
            return yield* Effect.fail(new Error(`unexpected end of file at byte ${start + filled} of ${byteLength}`))
          }
          out.set(chunk.value, filled)
          filled += chunk.value.length
        }
        return out.buffer
      })
    )
})

/**
 * The records of a Parquet file (as Search-R1 writes them with pyarrow:
 * nested `prompt`, `reward_model`, `extra_info` columns are read as objects
 * and arrays), one row group at a time. Rows are numbered from 1 across the
 * whole file.
 */
export const readParquet = (file: string): Stream.Stream<DatasetRecord, DatasetError, FileSystem.FileSystem> =>
  Stream.unwrap(
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      const handle = yield* fs.open(file).pipe(Effect.mapError(unreadable(file)))
      const info = yield* handle.stat.pipe(Effect.mapError(unreadable(file)))
      const context = yield* Effect.context<never>()
      const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromiseWith(context)(effect)
      const buffer = fileBuffer(handle, Number(info.size), run)
      const metadata = yield* Effect.tryPromise({ try: () => parquetMetadataAsync(buffer), catch: unreadable(file) })

      const groups: Array<{ readonly start: number; readonly end: number }> = []
      let start = 0
      for (const group of metadata.row_groups) {
        const end = start + Number(group.num_rows)
        groups.push({ start, end })
        start = end
      }

      const readGroup = ({ end, start }: { readonly start: number; readonly end: number }) =>
        Effect.tryPromise({
          try: () => parquetReadObjects({ file: buffer, metadata, rowStart: start, rowEnd: end, compressors }),
          catch: unreadable(file)
        }).pipe(
          Effect.flatMap((rows) =>
            Effect.forEach(rows, (row, i) => {
              const source: RecordSource = { file, unit: "row", number: start + i + 1 }
              return fromDecoded(toDatasetRecord(row, source))
            })
          )
        )

      return Stream.fromIterable(groups).pipe(Stream.mapEffect(readGroup), Stream.flattenIterable)
    })
  )

// ---------------------------------------------------------------------------
// Any dataset file

export type DatasetFormat = "jsonl" | "parquet"

/** The format a file name says: `.jsonl`/`.ndjson` or `.parquet` (case-insensitive). */
export const formatOf = (file: string): DatasetFormat | undefined => {
  const lower = file.toLowerCase()
  if (lower.endsWith(".jsonl") || lower.endsWith(".ndjson")) return "jsonl"
  if (lower.endsWith(".parquet")) return "parquet"
  return undefined
}

/** The records of a dataset file, JSONL or Parquet by its extension. */
export const readDataset = (file: string): Stream.Stream<DatasetRecord, DatasetError, FileSystem.FileSystem> => {
  switch (formatOf(file)) {
    case "jsonl":
      return readJsonl(file)
    case "parquet":
      return readParquet(file)
    case undefined:
      return Stream.fail(
        new DatasetError({
          file,
          reason: { _tag: "UnsupportedFormat", detail: "a dataset file must end in .jsonl, .ndjson or .parquet" }
        })
      )
  }
}

/** The records of one split of a dataset file, streamed. */
export const readSplit = (
  file: string,
  split: Split,
  options: SplitOptions
): Stream.Stream<DatasetRecord, DatasetError, FileSystem.FileSystem> =>
  readDataset(file).pipe(Stream.filter((record) => splitOf(record, options) === split))

/** Both splits of a dataset file, in file order, in memory. */
export const loadSplits = (
  file: string,
  options: SplitOptions
): Effect.Effect<
  { readonly train: ReadonlyArray<DatasetRecord>; readonly validation: ReadonlyArray<DatasetRecord> },
  DatasetError,
  FileSystem.FileSystem
> =>
  Stream.runFold(
    readDataset(file),
    () => ({ train: [] as Array<DatasetRecord>, validation: [] as Array<DatasetRecord> }),
    (acc, record) => {
      acc[splitOf(record, options)].push(record)
      return acc
    }
  )
