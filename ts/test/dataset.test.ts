/**
 * Datasets in the Search-R1 layout (ts/src/data): JSONL files written to a
 * temp dir (good and malformed), the committed Parquet fixtures of
 * scripts/make_dataset_fixture.py (nested columns, several row groups,
 * snappy/zstd/gzip/none), and the deterministic train/validation split.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { assert, describe, expect, it, layer } from "@effect/vitest"
import { Effect, Exit, FileSystem, Stream } from "effect"
import fc from "fast-check"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import {
  DatasetError,
  type DatasetRecord,
  loadSplits,
  murmur3,
  readDataset,
  readSplit,
  splitOf,
  toDatasetRecord
} from "../src/data/dataset.ts"

const fixtures = join(dirname(fileURLToPath(import.meta.url)), "fixtures")
const dir = mkdtempSync(join(tmpdir(), "dart-dataset-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
const writeJsonl = (content: string, name = `d${fileCount++}.jsonl`): string => {
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}
const line = (value: unknown) => JSON.stringify(value)
const good = { id: "q1", question: "who wrote it?", golden_answers: ["Ann"], data_source: "nq" }

const collect = (file: string) => Stream.runCollect(readDataset(file))

/** The DatasetError a read fails with (fails the test if it succeeds or dies). */
const failure = (file: string) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(collect(file))
    if (Exit.isSuccess(exit)) return assert.fail(`expected ${file} to fail, read ${exit.value.length} records`)
    const error = yield* Effect.flip(collect(file))
    assert.instanceOf(error, DatasetError)
    return error
  })

layer(NodeFileSystem.layer)("datasets", (it) => {
  describe("JSONL", () => {
    it.effect("reads the Search-R1 layout, keeps extra columns, skips blank lines", () =>
      Effect.gen(function*() {
        const file = writeJsonl(
          "\ufeff" +
            [
              line({ ...good, extra_info: { split: "train", index: 0 }, ability: "fact-reasoning" }),
              "",
              line({ id: 7, question: "how many?", golden_answers: "three", data_source: "nq" }),
              "   ",
              line({
                question: "where?",
                data_source: "hotpotqa",
                reward_model: { style: "rule", ground_truth: { target: ["Oslo", "Christiania"] } }
              })
            ].join("\r\n") + "\r\n"
        )
        const records = yield* collect(file)
        expect(records).toEqual([
          {
            id: "q1",
            question: "who wrote it?",
            goldenAnswers: ["Ann"],
            dataSource: "nq",
            position: 1,
            extra: { extra_info: { split: "train", index: 0 }, ability: "fact-reasoning" }
          },
          { id: "7", question: "how many?", goldenAnswers: ["three"], dataSource: "nq", position: 3, extra: {} },
          {
            question: "where?",
            goldenAnswers: ["Oslo", "Christiania"],
            dataSource: "hotpotqa",
            position: 5,
            extra: { reward_model: { style: "rule", ground_truth: { target: ["Oslo", "Christiania"] } } }
          }
        ])
        expect("id" in records[2]!).toBe(false)
      }))

    it.effect("streams a large file line by line, multi-byte characters across chunk boundaries intact", () =>
      Effect.gen(function*() {
        const n = 20_000
        const lines = Array.from({ length: n }, (_, i) =>
          line({ id: `q${i}`, question: `東京 ${"é".repeat(i % 7)} question ${i}?`, golden_answers: [`a${i}`], data_source: "nq" })
        )
        const file = writeJsonl(lines.join("\n"))
        const count = yield* Stream.runFold(readDataset(file), () => 0, (acc, record) => {
          expect(record.question).toBe(`東京 ${"é".repeat((record.position - 1) % 7)} question ${record.position - 1}?`)
          return acc + 1
        })
        expect(count).toBe(n)
      }))

    // Each malformed line comes after a good one, so that its line number is 2 (or as given).
    const malformed: ReadonlyArray<{
      readonly name: string
      readonly text: string
      readonly reason: DatasetError["reason"]["_tag"]
      readonly field?: string
      readonly message: RegExp
    }> = [
      { name: "bad JSON", text: `{"question": "x",`, reason: "MalformedJson", message: /:2: not valid JSON/ },
      { name: "not an object", text: `["who?", ["Ann"]]`, reason: "NotAnObject", message: /:2: expected a JSON object, got an array of 2/ },
      { name: "JSON null", text: `null`, reason: "NotAnObject", message: /got null/ },
      {
        name: "missing question",
        text: line({ golden_answers: ["Ann"], data_source: "nq" }),
        reason: "MissingField",
        field: "question",
        message: /:2: field "question": missing/
      },
      {
        name: "null question",
        text: line({ question: null, golden_answers: ["Ann"], data_source: "nq" }),
        reason: "MissingField",
        field: "question",
        message: /missing/
      },
      {
        name: "numeric question",
        text: line({ question: 42, golden_answers: ["Ann"], data_source: "nq" }),
        reason: "InvalidField",
        field: "question",
        message: /expected a string, got the number 42/
      },
      {
        name: "blank question",
        text: line({ question: "  ", golden_answers: ["Ann"], data_source: "nq" }),
        reason: "InvalidField",
        field: "question",
        message: /non-blank/
      },
      {
        name: "golden_answers not strings",
        text: line({ question: "q?", golden_answers: ["Ann", 3], data_source: "nq" }),
        reason: "InvalidField",
        field: "golden_answers[1]",
        message: /:2: field "golden_answers\[1\]": expected a string, got the number 3/
      },
      {
        name: "golden_answers an object",
        text: line({ question: "q?", golden_answers: { a: 1 }, data_source: "nq" }),
        reason: "InvalidField",
        field: "golden_answers",
        message: /expected an array of strings, got an object/
      },
      {
        name: "golden_answers empty",
        text: line({ question: "q?", golden_answers: [], data_source: "nq" }),
        reason: "InvalidField",
        field: "golden_answers",
        message: /at least one answer/
      },
      {
        name: "no answers anywhere",
        text: line({ question: "q?", data_source: "nq", reward_model: { style: "rule" } }),
        reason: "MissingField",
        field: "golden_answers",
        message: /field "golden_answers": missing/
      },
      {
        name: "bad reward_model target",
        text: line({ question: "q?", data_source: "nq", reward_model: { ground_truth: { target: [null] } } }),
        reason: "InvalidField",
        field: "reward_model.ground_truth.target[0]",
        message: /got null/
      },
      {
        name: "missing data_source",
        text: line({ question: "q?", golden_answers: ["a"] }),
        reason: "MissingField",
        field: "data_source",
        message: /field "data_source": missing/
      },
      {
        name: "id an object",
        text: line({ ...good, id: { n: 1 } }),
        reason: "InvalidField",
        field: "id",
        message: /expected a string or an integer/
      },
      {
        name: "id a fraction",
        text: line({ ...good, id: 1.5 }),
        reason: "InvalidField",
        field: "id",
        message: /got the number 1.5/
      }
    ]

    for (const c of malformed) {
      it.effect(`a malformed line (${c.name}) fails with file, line and field`, () =>
        Effect.gen(function*() {
          const file = writeJsonl([line(good), c.text, line(good)].join("\n") + "\n")
          const error = yield* failure(file)
          expect(error.reason._tag).toBe(c.reason)
          expect(error.file).toBe(file)
          expect(error.line).toBe(2)
          expect(error.row).toBeUndefined()
          expect(error.field).toBe(c.field)
          expect(error.message).toContain(file)
          expect(error.message).toMatch(c.message)
        }))
    }

    it.effect("line numbers count blank lines", () =>
      Effect.gen(function*() {
        const file = writeJsonl([line(good), "", "", `{oops`].join("\n"))
        const error = yield* failure(file)
        expect(error.line).toBe(4)
      }))
  })

  describe("files", () => {
    it.effect("a missing file, an unknown extension and a non-Parquet .parquet are typed errors", () =>
      Effect.gen(function*() {
        const missing = yield* failure(join(dir, "missing.jsonl"))
        expect(missing.reason._tag).toBe("UnreadableFile")
        expect(missing.message).toContain("missing.jsonl")

        const csv = yield* failure(writeJsonl("question,answer\n", "data.csv"))
        expect(csv.reason._tag).toBe("UnsupportedFormat")

        const fake = yield* failure(writeJsonl(line(good), "fake.parquet"))
        expect(fake.reason._tag).toBe("UnreadableFile")
        const missingParquet = yield* failure(join(dir, "missing.parquet"))
        expect(missingParquet.reason._tag).toBe("UnreadableFile")
      }))
  })

  describe("Parquet (fixtures of scripts/make_dataset_fixture.py)", () => {
    const expected = JSON.parse(readFileSync(join(fixtures, "search-r1-sample.expected.json"), "utf8")) as ReadonlyArray<
      Record<string, unknown>
    >

    it.effect("reads Search-R1's nested columns across row groups, equal to what pyarrow wrote", () =>
      Effect.gen(function*() {
        const records = yield* collect(join(fixtures, "search-r1-sample.parquet"))
        expect(records.length).toBe(expected.length)
        records.forEach((record, i) => {
          const { data_source, golden_answers, id, question, ...extra } = expected[i]!
          expect(record).toEqual({
            id,
            question,
            goldenAnswers: golden_answers,
            dataSource: data_source,
            position: i + 1,
            extra
          })
        })
        // INT64 arrives as a number, the nested prompt as [{ role, content }]
        expect(records[6]!.extra["extra_info"]).toEqual({ split: "train", index: 6 })
        expect((records[0]!.extra["prompt"] as any)[0].role).toBe("user")
      }))

    it.effect("takes the answers from reward_model.ground_truth.target when golden_answers is absent (zstd)", () =>
      Effect.gen(function*() {
        const records = yield* collect(join(fixtures, "search-r1-target-only.parquet"))
        expect(records.map((r) => r.goldenAnswers)).toEqual(expected.slice(0, 4).map((r) => r["golden_answers"]))
        expect(records.map((r) => r.position)).toEqual([1, 2, 3, 4])
      }))

    it.effect("reads correctly when the file system returns short reads (positional reads are looped)", () =>
      Effect.gen(function*() {
        const fs = yield* FileSystem.FileSystem
        // every read returns at most 777 bytes, as a network file system may
        const shortReads: FileSystem.FileSystem = {
          ...fs,
          open: (path, options) =>
            Effect.map(fs.open(path, options), (file) => {
              const short: FileSystem.File = Object.create(file)
              return Object.assign(short, {
                readAlloc: (size: number, readOptions?: FileSystem.File.ReadOptions) =>
                  file.readAlloc(Math.min(size, 777), readOptions)
              })
            })
        }
        const records = yield* collect(join(fixtures, "search-r1-sample.parquet")).pipe(
          Effect.provideService(FileSystem.FileSystem, shortReads)
        )
        expect(records.map((r) => r.id)).toEqual(expected.map((r) => r["id"]))
      }))

    it.effect("a bad row names the file, the 1-based row and the field (gzip, uncompressed)", () =>
      Effect.gen(function*() {
        const badAnswers = yield* failure(join(fixtures, "search-r1-bad-answers.parquet"))
        expect(badAnswers).toMatchObject({ row: 3, field: "golden_answers[1]", reason: { _tag: "InvalidField" } })
        expect(badAnswers.line).toBeUndefined()
        expect(badAnswers.message).toMatch(/search-r1-bad-answers\.parquet row 3: field "golden_answers\[1\]": expected a string, got null/)

        // row 5 is in the second row group (4 rows each)
        const nullQuestion = yield* failure(join(fixtures, "search-r1-null-question.parquet"))
        expect(nullQuestion).toMatchObject({ row: 5, field: "question", reason: { _tag: "MissingField" } })
      }))
  })

  describe("train/validation split", () => {
    const options = { validationFraction: 0.2, seed: 3 }
    const records = Array.from({ length: 400 }, (_, i) => ({ ...good, id: `q${i}`, question: `q${i}?` }))

    it.effect("does not depend on the file order of the rows", () =>
      Effect.gen(function*() {
        const inOrder = writeJsonl(records.map(line).join("\n"))
        const reversed = writeJsonl([...records].reverse().map(line).join("\n"))
        const a = yield* loadSplits(inOrder, options)
        const b = yield* loadSplits(reversed, options)
        const ids = (rs: ReadonlyArray<DatasetRecord>) => rs.map((r) => r.id).sort()
        expect(ids(a.validation)).toEqual(ids(b.validation))
        expect(ids(a.train)).toEqual(ids(b.train))
        expect(a.train.length + a.validation.length).toBe(records.length)
        expect(a.validation.length).toBeGreaterThan(40)
        expect(a.validation.length).toBeLessThan(120)
        const streamed = yield* Stream.runCollect(readSplit(inOrder, "validation", options))
        expect(streamed).toEqual(a.validation)
        // another seed, another split
        const other = yield* loadSplits(inOrder, { ...options, seed: 4 })
        expect(ids(other.validation)).not.toEqual(ids(a.validation))
      }))
  })
})

describe("split rules", () => {
  it("murmur3 equals Python's mmh3.hash(key, seed, signed=False)", () => {
    const vectors: ReadonlyArray<readonly [string, number, number]> = [
      ["", 0, 0],
      ["", 1, 1364076727],
      ["hello", 0, 613153351],
      ["train_0", 0, 1699637636],
      ["train_0", 42, 971312506],
      ["#17", 7, 1117760074],
      ["é東京", 3, 2023357993],
      ["abcd", 0, 1139631978],
      ["abcde", 123, 1233409349]
    ]
    for (const [key, seed, hash] of vectors) expect(murmur3(new TextEncoder().encode(key), seed), key).toBe(hash)
  })

  const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 500)
  const key = fc.record({
    id: fc.option(fc.string({ maxLength: 20 }), { nil: undefined }),
    position: fc.integer({ min: 1, max: 1_000_000 })
  })
  const asRecord = ({ id, position }: { id: string | undefined; position: number }) =>
    id === undefined ? { position } : { id, position }

  it("is monotone in the fraction, total at 0 and 1, and ignores the position when there is an id", () => {
    fc.assert(
      fc.property(key, fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.nat(), (k, f1, f2, pos) => {
        const seed = pos % 1000
        const record = asRecord(k)
        const [lo, hi] = f1 <= f2 ? [f1, f2] : [f2, f1]
        if (splitOf(record, { validationFraction: lo, seed }) === "validation") {
          expect(splitOf(record, { validationFraction: hi, seed })).toBe("validation")
        }
        expect(splitOf(record, { validationFraction: 0, seed })).toBe("train")
        expect(splitOf(record, { validationFraction: 1, seed })).toBe("validation")
        if (k.id !== undefined) {
          expect(splitOf({ id: k.id, position: pos + 1 }, { validationFraction: lo, seed })).toBe(
            splitOf(record, { validationFraction: lo, seed })
          )
        }
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "split monotone/total/id-only": ${NUM_RUNS} cases`)
  })

  it("puts about the given fraction in validation", () => {
    for (const validationFraction of [0.01, 0.1, 0.5, 0.9]) {
      const n = 20_000
      let validation = 0
      for (let i = 0; i < n; i++) if (splitOf({ id: `train_${i}`, position: i + 1 }, { validationFraction, seed: 0 }) === "validation") validation++
      // 5 binomial standard deviations
      const sd = Math.sqrt((validationFraction * (1 - validationFraction)) / n)
      expect(Math.abs(validation / n - validationFraction), `fraction ${validationFraction}`).toBeLessThan(5 * sd)
    }
  })

  it("toDatasetRecord keeps every non-core column of a random valid row", () => {
    const json = fc.jsonValue({ maxDepth: 2 })
    const extra = fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }).filter((k) => !["id", "question", "golden_answers", "data_source"].includes(k)), json, { maxKeys: 4 })
    fc.assert(
      fc.property(extra, fc.array(fc.string(), { minLength: 1, maxLength: 3 }), fc.nat(), (columns, answers, position) => {
        const row = { ...columns, question: "q?", golden_answers: answers, data_source: "nq" }
        const record = toDatasetRecord(JSON.parse(JSON.stringify(row)), { file: "f.jsonl", unit: "line", number: position + 1 })
        if (record instanceof DatasetError) throw record
        expect(record.goldenAnswers).toEqual(answers)
        expect(record.extra).toEqual(JSON.parse(JSON.stringify(columns)))
        expect(record.position).toBe(position + 1)
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "extra columns kept": ${NUM_RUNS} cases`)
  })
})
