/**
 * The LEAS report in a real browser: Debian's chromium, headless, through
 * playwright-core. The report of the committed scores file is opened over
 * file:// with every non-file request recorded (there must be none); no
 * console or page errors; every chart has drawn data marks (rects, paths)
 * of non-zero size besides its axes and legend; a click on a numeric header
 * sorts the question table by number (rows move whole), a second click
 * reverses it.
 *
 * Chromium comes from scripts/setup.sh (apt-get install chromium). Without
 * it this test fails and says so; DART_SKIP_BROWSER=1 skips it instead.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { chromium, type Page } from "playwright-core"
import { afterAll } from "vitest"
import { Leas, layer } from "../src/leas/Leas.ts"
import { chromiumPath, SKIP_BROWSER } from "./support/browser.ts"

const FIXTURE = join(dirname(fileURLToPath(import.meta.url)), "fixtures", "leas", "scores.json")
const SKIP = SKIP_BROWSER
if (SKIP) console.log("leas-browser: skipped because DART_SKIP_BROWSER=1 (the report is not checked in a browser)")

const dir = mkdtempSync(join(tmpdir(), "dart-leas-browser-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** Writes the fixture's report (with gradient cosines) and returns leas.html. */
const writeFixtureReport = Effect.gen(function*() {
  const leas = yield* Leas
  const scores = yield* leas.readScores(FIXTURE)
  const analysis = yield* leas.analyze(scores.rows, scores.settings)
  const gradients = yield* leas.analyzeGradients({ within: [0.12, -0.3, 0.05, 0.2, -0.02], acrossReasoning: [0.6, 0.72, 0.55], acrossTool: [0.41, 0.5, 0.47] })
  return (yield* leas.writeReport({ dir, analysis, gradients, meta: scores.meta })).html
}).pipe(Effect.provide(layer))

/** The values (data-value) of column `key` and the row ids, in table order (the callback runs in the page; no DOM types here). */
const column = (page: Page, key: string): Promise<Array<{ id: string; value: number }>> =>
  page.$$eval(`#question-table tbody tr`, (rows: Array<any>, k: string) => {
    const heads: Array<any> = [...(globalThis as any).document.querySelectorAll("#question-table thead th")]
    const col = heads.findIndex((h) => h.getAttribute("data-key") === k)
    return rows.map((r) => ({ id: String(r.cells[0].textContent), value: Number(r.cells[col].getAttribute("data-value")) }))
  }, key)

describe.skipIf(SKIP)("the LEAS report in headless chromium", () => {
  it("renders offline without errors, every chart drawn, the table sorts numerically", async () => {
    const executablePath = chromiumPath()
    const html = await Effect.runPromise(writeFixtureReport)
    const browser = await chromium.launch({ executablePath, headless: true, args: ["--headless=new", "--no-sandbox"] })
    try {
      const page = await browser.newPage()
      const errors: Array<string> = []
      const requests: Array<string> = []
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()}`)
      })
      page.on("pageerror", (e) => errors.push(`page: ${e.message}`))
      page.on("request", (r) => {
        if (!r.url().startsWith("file:")) requests.push(r.url())
      })
      await page.goto(pathToFileURL(html).href, { waitUntil: "load" })
      expect(await page.title()).toBe("LEAS fixture (synthetic scores)")

      // every chart: a non-empty box with data marks of non-zero size (not the axes, grid lines, zero mark or legend
      // swatches): bars in the histograms and the shares chart, lines in the sensitivity chart
      const charts = await page.$$eval("svg", (svgs: Array<any>) =>
        svgs.map((svg) => {
          const box = svg.getBoundingClientRect()
          const sized = (selector: string, ok: (b: any) => boolean) => [...svg.querySelectorAll(selector)].map((m: any) => m.getBoundingClientRect()).filter(ok).length
          const data = [...svg.querySelectorAll("rect, path")].filter((m: any) => !["axis", "grid", "mark", "legend"].some((c) => m.classList.contains(c)))
          return {
            label: String(svg.getAttribute("aria-label")),
            width: box.width,
            height: box.height,
            marks: data.map((m: any) => m.getBoundingClientRect()).filter((b: any) => b.width > 0 && b.height > 0).length,
            bars: sized("rect.bar", (b) => b.width > 0 && b.height > 0),
            lines: sized("path.line", (b) => b.width > 0)
          }
        })
      )
      console.log(`leas-browser: ${charts.length} charts: ${charts.map((c) => `${c.label} (${c.bars} bars, ${c.lines} lines)`).join("; ")}`)
      expect(charts).toHaveLength(6)
      for (const c of charts) {
        expect(c.width, c.label).toBeGreaterThan(100)
        expect(c.height, c.label).toBeGreaterThan(50)
        expect(c.marks, c.label).toBeGreaterThan(0)
        if (c.label === "shares against the number of samples") expect(c.lines, c.label).toBe(3)
        else expect(c.bars, c.label).toBeGreaterThan(0)
      }

      // the escaped question text shows as text, not as markup
      const first = await page.$eval("#question-table tbody tr td.question", (td: any) => String(td.textContent))
      expect(first).toBe(`<script>alert("x")</script> & who founded <b>Orsk</b>?`)

      // sorting by lambda_23: ascending, then descending; the rows move whole
      const before = await column(page, "l23")
      expect(before).toHaveLength(24)
      const byNumber = [...before].sort((a, b) => a.value - b.value)
      expect(before.map((r) => r.value)).not.toEqual(byNumber.map((r) => r.value))
      await page.click(`#question-table th[data-key="l23"]`)
      const ascending = await column(page, "l23")
      expect(ascending.map((r) => r.value)).toEqual(byNumber.map((r) => r.value))
      expect(new Map(ascending.map((r) => [r.id, r.value]))).toEqual(new Map(before.map((r) => [r.id, r.value])))
      expect(await page.getAttribute(`#question-table th[data-key="l23"]`, "aria-sort")).toBe("ascending")
      await page.click(`#question-table th[data-key="l23"]`)
      const descending = await column(page, "l23")
      expect(descending.map((r) => r.value)).toEqual([...byNumber].reverse().map((r) => r.value))
      console.log(`leas-browser: lambda_23 sorted ${ascending[0]!.value.toFixed(3)} .. ${ascending[ascending.length - 1]!.value.toFixed(3)} and back`)

      expect(errors).toEqual([])
      expect(requests).toEqual([])
    } finally {
      await browser.close()
    }
  })
})
