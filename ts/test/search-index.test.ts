/**
 * The built-in BM25 index through the addon: built from a Search-R1 corpus,
 * served with the Search-R1 protocol by our server and queried by our
 * client over loopback; the `pipeline index` and `serve` commands run as a
 * user runs them; a missing or foreign index is a typed error.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { buildIndex, layerRemote, openIndex, Search, serve } from "../src/search/index.ts"

const PASSAGES = [
  ["p1", "Paris", "Paris is the capital and largest city of France, on the Seine."],
  ["p2", "Berlin", "Berlin is the capital of Germany."],
  ["p3", "Faust", "Faust is a tragic play by Johann Wolfgang von Goethe."],
  ["p4", "Seine", "The Seine is a river in northern France that flows through Paris."],
  ["p5", "Whale", "The blue whale is the largest animal known to have lived."]
] as const

const makeCorpus = () => {
  const dir = mkdtempSync(join(tmpdir(), "dart-index-"))
  const corpus = join(dir, "corpus.jsonl")
  writeFileSync(corpus, PASSAGES.map(([id, title, text]) => JSON.stringify({ id, contents: `"${title}"\n${text}` })).join("\n") + "\n")
  return { dir, corpus }
}

describe("built-in index", () => {
  it.effect("build, open, search; served over loopback and queried by the client", () =>
    Effect.gen(function*() {
      const { dir, corpus } = makeCorpus()
      try {
        const report = yield* buildIndex(corpus, join(dir, "index"), { threads: 1, heapMb: 20, progress: false })
        assert.strictEqual(report.passages, PASSAGES.length)
        const index = yield* openIndex(join(dir, "index"))
        assert.deepStrictEqual(index.native.bm25(), { k1: Math.fround(0.9), b: Math.fround(0.4) })
        const [capital, faust] = (yield* index.search(["capital of France", "who wrote Faust"], 2)) as unknown as [Array<{ id: string; title: string; score: number }>, Array<{ id: string }>]
        assert.strictEqual(capital[0]!.id, "p1")
        assert.strictEqual(capital[0]!.title, "Paris")
        assert.isAbove(capital[0]!.score, capital[1]!.score)
        assert.strictEqual(faust[0]!.id, "p3")
        const queries = ["capital of France", "river through Paris"]
        const remote = yield* Effect.scoped(
          Effect.gen(function*() {
            const address = yield* serve({ search: index })
            return yield* Effect.gen(function*() {
              const client = yield* Search
              return yield* client.search(queries, 3)
            }).pipe(Effect.provide(layerRemote({ url: address.url, timeoutMs: 5000 })))
          })
        )
        const local = yield* index.search(queries, 3)
        assert.deepStrictEqual(remote.map((l) => l.map((h) => [h.id, h.title, h.text])), local.map((l) => l.map((h) => [h.id, h.title, h.text])))
        remote.flat().forEach((h, i) => assert.closeTo(h.score, local.flat()[i]!.score, 1e-5))
        assert.strictEqual(remote[1]![0]!.id, "p4")
        assert.strictEqual(remote[1]![0]!.title, "Seine")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))

  it.effect("a missing or foreign index folder is a SearchError naming the folder", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(join(tmpdir(), "dart-index-bad-"))
      try {
        const missing = yield* Effect.flip(openIndex(join(dir, "nope")))
        assert.strictEqual(missing.reason._tag, "Backend")
        assert.include(missing.message, "DART_IO")
        assert.include(missing.message, "nope")
        mkdirSync(join(dir, "foreign"))
        writeFileSync(join(dir, "foreign", "meta.json"), "{}")
        const foreign = yield* Effect.flip(openIndex(join(dir, "foreign")))
        assert.include(foreign.message, "DART_INDEX")
        assert.include(foreign.message, "not a dart-rl index")
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    }))
})

const root = join(import.meta.dirname, "../..")
const cli = (args: ReadonlyArray<string>) =>
  execFileSync("pnpm", ["--silent", "pipeline", ...args], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })

describe("pipeline index / serve (the commands)", () => {
  it("--help lists every option", () => {
    const index = cli(["index", "--help"])
    for (const f of ["--corpus", "--out", "--threads", "--heap-mb", "--k1", "--b"]) assert.include(index, f)
    const served = cli(["serve", "--help"])
    for (const f of ["--index", "--host", "--port", "--topk"]) assert.include(served, f)
  })

  it("index builds a folder; serve answers POST /retrieve on loopback", async () => {
    const { dir, corpus } = makeCorpus()
    try {
      cli(["index", "--corpus", corpus, "--out", join(dir, "idx"), "--threads", "1", "--heap-mb", "20"])
      const port = 20000 + Math.floor(Math.random() * 20000)
      // Its own process group, so the whole tree (pnpm, tsx, node) is stopped.
      const child = spawn("pnpm", ["--silent", "pipeline", "serve", "--index", join(dir, "idx"), "--port", String(port)], { cwd: root, detached: true, stdio: "ignore" })
      const exited = new Promise((resolve) => child.once("exit", resolve))
      try {
        let body: { result: Array<Array<{ document: { id: string; contents: string }; score: number }>> } | undefined
        for (let i = 0; i < 100 && body === undefined; i++) {
          await new Promise((r) => setTimeout(r, 200))
          try {
            const res = await fetch(`http://127.0.0.1:${port}/retrieve`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ queries: ["Goethe play"], topk: 1, return_scores: true })
            })
            body = (await res.json()) as typeof body
          } catch {
            // not listening yet
          }
        }
        assert.isDefined(body, "the server answered")
        assert.strictEqual(body!.result[0]![0]!.document.id, "p3")
        assert.strictEqual(body!.result[0]![0]!.document.contents.split("\n")[0], "\"Faust\"")
      } finally {
        process.kill(-child.pid!, "SIGINT")
        await exited
      }
      // An existing output folder is refused, naming it.
      try {
        cli(["index", "--corpus", corpus, "--out", join(dir, "idx")])
        assert.fail("a second build into the same folder must fail")
      } catch (e) {
        assert.include(String((e as { stderr?: string }).stderr ?? e), "already exists")
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
