/**
 * The LEAS service (ts/src/leas/Leas.ts) and its report (report.ts): the
 * committed scores file (ts/test/fixtures/leas/scores.json: draws,
 * { correct, n } and { mean } cells, a never-correct question, a question
 * text with <script>) read, analysed and written; bad scores files, each
 * with the message it must give; the HTML opens offline (nothing to load),
 * escapes the data and has one svg per chart.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll } from "vitest"
import { VARIANTS } from "../src/leas/algebra.ts"
import { Leas, LeasError, layer, readScores } from "../src/leas/Leas.ts"
import { escapeHtml, renderHtml } from "../src/leas/report.ts"

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "leas", "scores.json")
const dir = mkdtempSync(join(tmpdir(), "dart-leas-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const GRADIENTS = { within: [0.12, -0.3, 0.05, 0.2, -0.02], acrossReasoning: [0.6, 0.72, 0.55], acrossTool: [0.41, 0.5, 0.47] }

describe("readScores: the fixture", () => {
  it.effect("reads draws, { correct, n } and { mean } cells into N = 20 draws each, with the file's settings and meta", () =>
    Effect.gen(function*() {
      const scores = yield* readScores(FIXTURE)
      expect(scores.rows).toHaveLength(25)
      for (const row of scores.rows) for (const v of VARIANTS) expect(row.draws[v]).toHaveLength(20)
      expect(scores.settings).toEqual({ seed: 11, bootstrap: 500, sensitivity: [5, 10, 20], sensitivityRepeats: 3 })
      expect(scores.meta.title).toBe("LEAS fixture (synthetic scores)")
      const raw = JSON.parse(readFileSync(FIXTURE, "utf8"))
      // a { correct, n } cell and a { mean } cell keep their mean
      for (const [i, q] of (raw.questions as Array<any>).entries()) {
        for (const v of VARIANTS) {
          const cell = q.scores[v]
          const mean = scores.rows[i]!.draws[v].reduce((a, b) => a + b, 0) / 20
          if (Array.isArray(cell)) expect(scores.rows[i]!.draws[v]).toEqual(cell)
          else if ("correct" in cell) expect(mean).toBe(cell.correct / 20)
          else expect(mean).toBeCloseTo(cell.mean, 12)
        }
      }
    }))
})

describe("readScores: the example of docs/leas.md", () => {
  it.effect("decodes and analyses (counts, a mean and a count with the file's n)", () =>
    Effect.gen(function*() {
      const doc = readFileSync(join(dirname(fileURLToPath(import.meta.url)), "..", "..", "docs", "leas.md"), "utf8")
      const example = /```json scores-example\n([\s\S]*?)```/.exec(doc)?.[1]
      assert.isDefined(example)
      const file = join(dir, "doc-example.json")
      writeFileSync(file, example!)
      const scores = yield* readScores(file)
      expect(scores.rows.map((r) => r.id)).toEqual(["nq-1", "nq-2"])
      expect(scores.rows[0]!.draws.unified).toEqual([1, 0, 0, 0])
      expect(scores.rows[0]!.draws.hTool).toEqual([1, 1, 0, 0])
      expect(scores.settings).toEqual({ seed: 7, bootstrap: 1000, sensitivity: [2, 4] })
      const leas = yield* Leas
      const analysis = yield* leas.analyze(scores.rows, scores.settings)
      expect(analysis.counts).toMatchObject({ questions: 2, kept: 2 })
      expect(analysis.settings.sensitivity).toEqual([2, 4])
    }).pipe(Effect.provide(layer)))
})

/** Writes `content` (a value as JSON, or text as is) to a fresh file and returns the error message of reading it. */
const failureOf = (name: string, content: unknown) =>
  Effect.gen(function*() {
    const file = join(dir, name)
    if (content !== undefined) writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content))
    const error = yield* Effect.flip(readScores(file))
    assert.instanceOf(error, LeasError)
    expect(error.reason._tag).toBe("Scores")
    console.log(`refused ${name}: ${error.message.replace(/\n\s*/g, " | ")}`)
    return error.message
  })

const cells = (n: number) => Object.fromEntries(VARIANTS.map((v) => [v, Array.from({ length: n }, (_, i) => i % 2)]))
const file = (questions: ReadonlyArray<unknown>, extra: Record<string, unknown> = {}) => ({ ...extra, questions })
const q = (id: string, scores: Record<string, unknown>, more: Record<string, unknown> = {}) => ({ id, dataSource: "nq", scores, ...more })

describe("readScores: bad files", () => {
  const cases: ReadonlyArray<{ readonly name: string; readonly content: unknown; readonly expected: ReadonlyArray<string> }> = [
    { name: "missing.json", content: undefined, expected: ["missing.json", "no such file"] },
    { name: "not-json.json", content: "{ questions: [", expected: ["not-json.json", "not JSON"] },
    { name: "array.json", content: [1, 2], expected: ["(top level): expected an object with n, settings, meta, questions, got [1,2]"] },
    { name: "no-questions.json", content: { n: 4 }, expected: ["questions: missing"] },
    { name: "unknown-top-key.json", content: file([q("a", cells(4))], { sampels: 4 }), expected: ["sampels: unknown key (allowed here: n, settings, meta, questions)"] },
    {
      name: "draw-out-of-range.json",
      content: file([q("a", { ...cells(4), base: [0, 2, 0, 1] })]),
      expected: ["questions[0].scores.base[1]: expected a value less than or equal to 1, got 2"]
    },
    {
      name: "cell-of-no-form.json",
      content: file([q("a", { ...cells(4), reas: "x" })]),
      expected: [`questions[0].scores.reas: expected an array of draws in [0, 1], { correct, n? } or { mean, n? }, got "x"`]
    },
    {
      name: "wrong-variant-name.json",
      content: file([q("a", { ...Object.fromEntries(Object.entries(cells(4)).filter(([k]) => k !== "hTool")), h_tool: [0, 1, 0, 1] })]),
      expected: ["questions[0].scores.h_tool: unknown key (allowed here: base, reas, tool, unified, hTool, hReas)", "questions[0].scores.hTool: missing"]
    },
    {
      name: "count-not-integer.json",
      content: file([q("a", { ...cells(4), tool: { correct: 1.5, n: 4 }, unified: { correct: 1, n: 4, k: 2 } })]),
      expected: ["questions[0].scores.tool.correct: expected an integer, got 1.5", "questions[0].scores.unified.k: unknown key (allowed here: correct, n)"]
    },
    {
      name: "correct-above-n.json",
      content: file([q("a", { ...cells(4), tool: { correct: 5, n: 4 } })]),
      expected: ["questions[0].scores.tool.correct: expected at most n = 4, got 5"]
    },
    {
      name: "mean-not-a-count.json",
      content: file([q("a", { ...cells(4), hReas: { mean: 0.3 } })], { n: 4 }),
      expected: ["questions[0].scores.hReas.mean: expected a multiple of 1/n = 1/4", "got 0.3"]
    },
    {
      name: "mean-without-n.json",
      content: file([q("a", { ...cells(4), hReas: { mean: 0.5 } })]),
      expected: ["questions[0].scores.hReas.n: missing (give n in the cell or at the top level of the file)"]
    },
    {
      name: "unequal-n.json",
      content: file([q("a", cells(4)), q("b", { ...cells(4), reas: [0, 1, 1] })]),
      expected: ["questions[1].scores.reas: 3 samples, but questions[0].scores.base has 4 (every variant of every question needs the same N)"]
    },
    {
      name: "duplicate-id.json",
      content: file([q("a", cells(4)), q("a", cells(4))]),
      expected: [`questions[1].id: "a" is already the id of questions[0] (ids must be unique)`]
    },
    {
      name: "bad-settings-and-source.json",
      content: { questions: [{ id: "a", scores: cells(4) }], settings: { seed: -1, bootstrap: 0 } },
      expected: ["settings.seed: expected a value greater than or equal to 0, got -1", "settings.bootstrap: expected a value greater than or equal to 1, got 0", "questions[0].dataSource: missing"]
    }
  ]
  for (const c of cases) {
    it.effect(`${c.name}: ${c.expected.join("; ")}`, () =>
      Effect.gen(function*() {
        const message = yield* failureOf(c.name, c.content)
        for (const e of c.expected) expect(message).toContain(e)
      }))
  }
})

describe("the service", () => {
  it.effect("analyze through the layer: typed errors name the question and the variant", () =>
    Effect.gen(function*() {
      const leas = yield* Leas
      const draws = Object.fromEntries(VARIANTS.map((v) => [v, [1, 0]])) as any
      const error = yield* Effect.flip(leas.analyze([{ id: "ok", dataSource: "nq", draws }, { id: "short", dataSource: "nq", draws: { ...draws, unified: [1] } }], { seed: 0 }))
      expect(error.reason).toEqual({ _tag: "UnequalDraws", question: "short", variant: "unified", expected: 2, got: 1 })
      expect(error.message).toContain(`question "short", variant unified: 1 draws, expected 2`)
      const bad = yield* Effect.flip(leas.analyzeGradients({ within: [2], acrossReasoning: [], acrossTool: [] }))
      expect(bad.message).toBe("within[0]: expected a cosine in [-1, 1], got 2")
    }).pipe(Effect.provide(layer)))

  it.effect("fixture -> analyze -> writeReport: leas.json with meta, settings, summaries and rows; leas.html", () =>
    Effect.gen(function*() {
      const leas = yield* Leas
      const scores = yield* leas.readScores(FIXTURE)
      const analysis = yield* leas.analyze(scores.rows, scores.settings)
      const gradients = yield* leas.analyzeGradients(GRADIENTS)
      const out = join(dir, "report")
      const files = yield* leas.writeReport({ dir: out, analysis, gradients, meta: scores.meta })
      expect(files).toEqual({ json: join(out, "leas.json"), html: join(out, "leas.html") })
      const json = JSON.parse(readFileSync(files.json, "utf8"))
      expect(json.meta.title).toBe("LEAS fixture (synthetic scores)")
      expect(json.settings).toMatchObject({ n: 20, clip: { low: 0.025, high: 0.975 }, seed: 11, bootstrap: 500, sensitivity: [5, 10, 20] })
      expect(json.counts).toEqual({ questions: 25, kept: 24, dropped: 1, droppedIds: ["nq-never"] })
      expect(json.questions).toHaveLength(24)
      expect(Object.keys(json.questions[0].lambda)).toEqual(["l1", "l2", "l3", "l12", "l13", "l23"])
      expect(json.shares.interference.count + json.shares.synergy.count + json.shares.zero.count).toBe(24)
      expect(json.gradients.within.n).toBe(5)
      expect(readFileSync(files.html, "utf8")).toBe(renderHtml(analysis, gradients, scores.meta))
      const unwritable = yield* Effect.flip(leas.writeReport({ dir: join(FIXTURE, "cannot-be-a-dir"), analysis, meta: {} }))
      expect(unwritable.reason._tag).toBe("Write")
    }).pipe(Effect.provide(layer)))
})

describe("the HTML report", () => {
  const fixtureReport = Effect.gen(function*() {
    const leas = yield* Leas
    const scores = yield* leas.readScores(FIXTURE)
    const analysis = yield* leas.analyze(scores.rows, scores.settings)
    const gradients = yield* leas.analyzeGradients(GRADIENTS)
    return { analysis, gradients, meta: scores.meta }
  }).pipe(Effect.provide(layer))

  it.effect("opens offline: no http(s) URL, no src/href, no stylesheet link, no @import or url()", () =>
    Effect.gen(function*() {
      const { analysis, gradients, meta } = yield* fixtureReport
      const html = renderHtml(analysis, gradients, { ...meta, source: "scores.json" })
      expect(html).not.toMatch(/https?:\/\//i)
      expect(html).not.toMatch(/\s(src|href)\s*=/i)
      expect(html).not.toMatch(/<link\b/i)
      expect(html).not.toMatch(/@import|url\(/i)
      expect(html.match(/<script\b/g)).toHaveLength(1)
      expect(html.startsWith("<!doctype html>")).toBe(true)
    }))

  it.effect("escapes data: a question with <script>, & and quotes; a data source and meta with markup", () =>
    Effect.gen(function*() {
      const { analysis, gradients, meta } = yield* fixtureReport
      const renamed = { ...analysis, bySource: analysis.bySource.map((s, i) => (i === 0 ? { ...s, dataSource: `<img onerror="x">` } : s)) }
      const html = renderHtml(renamed, gradients, { ...meta, title: "<b>title</b>", note: `a "quoted" & <i>marked</i> note` })
      expect(html).not.toContain(`<script>alert`)
      expect(html).toContain(`&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; who founded &lt;b&gt;Orsk&lt;/b&gt;?`)
      expect(html).not.toContain(`<img`)
      expect(html).toContain(`&lt;img onerror=&quot;x&quot;&gt;`)
      expect(html).toContain(`<title>&lt;b&gt;title&lt;/b&gt;</title>`)
      expect(html).toContain(`a &quot;quoted&quot; &amp; &lt;i&gt;marked&lt;/i&gt; note`)
      expect(escapeHtml(`<a href='x'>&</a>`)).toBe("&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;")
    }))

  it.effect("one svg per chart: lambda_23 histogram, shares by source, sensitivity, and three gradient histograms when given", () =>
    Effect.gen(function*() {
      const { analysis, gradients, meta } = yield* fixtureReport
      const svgs = (html: string) => [...html.matchAll(/<svg\b[^>]*aria-label="([^"]*)"/g)].map((m) => m[1])
      const withGradients = renderHtml(analysis, gradients, meta)
      expect(svgs(withGradients)).toEqual([
        "histogram of lambda_23",
        "shares by data source",
        "shares against the number of samples",
        "within a trajectory: cos(g_reasoning, g_tool)",
        "across trajectories: cos(g_reasoning, g_reasoning&#39;)",
        "across trajectories: cos(g_tool, g_tool&#39;)"
      ])
      const without = renderHtml(analysis, undefined, meta)
      expect(svgs(without)).toHaveLength(3)
      expect(without).not.toContain(`id="gradients"`)
      // every chart has drawn marks
      for (const svg of withGradients.split("<svg").slice(1)) expect(svg.split("</svg>")[0]).toMatch(/<(rect|path)\b/)
      // the zero line of the lambda_23 histogram
      expect(withGradients.split("<svg")[1]).toContain(`class="mark"`)
    }))

  it.effect("states N, the clip rule, the dropped count, the bootstrap size and the seed; a sortable table of every kept question", () =>
    Effect.gen(function*() {
      const { analysis, meta } = yield* fixtureReport
      const html = renderHtml(analysis, undefined, meta)
      const settings = html.slice(html.indexOf(`<section id="settings">`))
      expect(settings).toContain("<dt>N</dt><dd>20 samples per (variant, question)</dd>")
      expect(settings).toContain("s clipped to [1/(2N), 1 − 1/(2N)] = [0.025, 0.975]")
      expect(settings).toContain("<dt>dropped</dt><dd>1 of 25 questions (no variant ever correct): nq-never</dd>")
      expect(settings).toContain("<dt>bootstrap</dt><dd>500 resamples")
      expect(settings).toContain("<dt>seed</dt><dd>11</dd>")
      const table = html.slice(html.indexOf(`<table class="sortable"`), html.indexOf("</table>", html.indexOf(`<table class="sortable"`)))
      expect(table.match(/<tr class=/g)).toHaveLength(24)
      expect(table.match(/data-type="number"/g)).toHaveLength(12)
      expect(html).toContain(`Interference (λ<sub>23</sub> &lt; 0): <strong>${(100 * analysis.shares.interference.share).toFixed(1)}%</strong>`)
    }))
})
