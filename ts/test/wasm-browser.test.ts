/**
 * The WASM page in a real browser (Debian's chromium, headless, through
 * playwright-core): the page built by ts/scripts/build-wasm-page.ts is served
 * on loopback; it must load with no request off the loopback server and no
 * console or page errors, and then its numbers must be the native addon's
 * for the same model, adapters and seed: the prompt's token ids, a forward's
 * logprobs (1e-5 relative) and a DART generation, greedy and sampled (same
 * tokens, roles and routes, logprobs within 1e-5). Clicking Generate shows
 * one span per generated token, coloured by the adapter of its route.
 *
 * Needs the WASM build and the addon (bash scripts/setup.sh);
 * DART_SKIP_BROWSER=1 skips it.
 */
import { describe, expect, it } from "@effect/vitest"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { chromium } from "playwright-core"
import { afterAll } from "vitest"
import { LORA_TARGETS, loadNative } from "../src/engine/native.ts"
import { promptText } from "../src/rollout/agent.ts"
import { buildWasmPage } from "../scripts/build-wasm-page.ts"
import { serveStatic } from "../scripts/serve-static.ts"
import { chromiumPath, SKIP_BROWSER } from "./support/browser.ts"

if (SKIP_BROWSER) console.log("wasm-browser: skipped because DART_SKIP_BROWSER=1 (the WASM page is not checked in a browser)")

const root = join(import.meta.dirname, "../..")
const dir = mkdtempSync(join(tmpdir(), "dart-wasm-page-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface PageGenerated {
  readonly prompt: Array<number>
  readonly tokens: Array<number>
  readonly roles: Array<number>
  readonly routes: Array<number>
  readonly logprobs: Array<number>
  readonly stop: string
}

const relError = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  expect(a.length).toBe(b.length)
  let diff = 0
  let scale = 0
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!))
    scale = Math.max(scale, Math.abs(b[i]!))
  }
  return scale === 0 ? diff : diff / scale
}

describe.skipIf(SKIP_BROWSER)("the WASM page in headless chromium", () => {
  it("loads offline, and its prompt ids, forward and generation equal the native addon's", async () => {
    const out = buildWasmPage(join(dir, "page"))
    const demo = JSON.parse(readFileSync(join(out, "demo.json"), "utf8")) as { promptTemplate: string; exampleQuestion: string; eosToken: string; adapterInitStd: number }
    const server = await serveStatic(out)
    const browser = await chromium.launch({
      executablePath: chromiumPath(),
      headless: true,
      args: ["--headless=new", "--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    })
    try {
      const page = await browser.newPage()
      const errors: Array<string> = []
      const offServer: Array<string> = []
      page.on("console", (m) => {
        if (m.type() === "error") errors.push(`console: ${m.text()}`)
      })
      page.on("pageerror", (e) => errors.push(`page: ${e.message}`))
      page.on("response", (r) => {
        if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`)
      })
      page.on("request", (r) => {
        if (!r.url().startsWith(server.url)) offServer.push(r.url())
      })
      await page.goto(server.url, { waitUntil: "load" })
      await page.evaluate(() => (globalThis as any).dartDemo.ready)
      await page.waitForFunction(() => String((globalThis as any).document.getElementById("status").textContent).startsWith("ready"))

      // The native side: the same model, adapters, tokenizer and prompt.
      const addon = loadNative()
      const model = join(root, "world/model")
      const engine = await addon.Engine.load(model, { threads: 1 })
      for (const seed of [1, 2]) engine.addAdapter({ rank: 8, alpha: 16, targets: [...LORA_TARGETS], seed, bInitStd: demo.adapterInitStd })
      const tokenizer = addon.Tokenizer.fromFile(join(model, "tokenizer.json"))
      const template = addon.ChatTemplate.fromTokenizerConfig(join(model, "tokenizer_config.json"))
      const question = demo.exampleQuestion
      const nativePrompt = [
        ...tokenizer.encode(template.render(JSON.stringify([{ role: "user", content: promptText(demo.promptTemplate, question) }]), true), false).ids
      ]
      const pagePrompt = (await page.evaluate((q) => (globalThis as any).dartDemo.promptIds(q), question)) as Array<number>
      expect(pagePrompt).toEqual(nativePrompt)
      expect(pagePrompt.length).toBeGreaterThan(20)

      // forward on a two-sequence batch, routes to base, reason and tool
      const n = nativePrompt.length
      const batch = {
        tokens: [...nativePrompt, ...nativePrompt.slice(0, 10)],
        seqLens: [n, 10],
        routes: Array.from({ length: n + 10 }, (_, t) => (t % 5 === 0 ? -1 : t % 3 === 0 ? 1 : 0))
      }
      const pageLogprobs = (await page.evaluate((b) => (globalThis as any).dartDemo.forward(b), batch)) as Array<number>
      const nativeLogprobs = await engine.forward(Int32Array.from(batch.tokens), Int32Array.from(batch.seqLens), Int32Array.from(batch.routes))
      const forwardError = relError(pageLogprobs, nativeLogprobs)
      expect(forwardError).toBeLessThanOrEqual(1e-5)

      // DART generation, greedy and sampled
      const tags = new Map(tokenizer.resolveTags(["<search>", "</search>"]).map((t) => [t.tag, [...t.ids]]))
      const rules = { open: tags.get("<search>")!, close: tags.get("</search>")! }
      const eos = [tokenizer.tokenToId(demo.eosToken)!]
      const settings = [{ seed: 0, temperature: 0 }, { seed: 5, temperature: 1 }]
      for (const { seed, temperature } of settings) {
        const opts = { question, seed, temperature, maxNewTokens: 48 }
        const fromPage = (await page.evaluate((o) => (globalThis as any).dartDemo.generate(o), opts)) as PageGenerated
        const session = engine.session({ plan: { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 }, rules, seed })
        session.addSequence(Int32Array.from(nativePrompt))
        const [native] = await session.generate({ maxNewTokens: 48, temperature, eos, pauseOnToolCall: false })
        expect(fromPage.tokens, `temperature ${temperature}`).toEqual([...native!.tokens])
        expect(fromPage.roles).toEqual([...native!.roles])
        expect(fromPage.routes).toEqual([...native!.routes])
        expect(fromPage.stop).toBe(native!.stop)
        expect(relError(fromPage.logprobs, native!.logprobs)).toBeLessThanOrEqual(1e-5)
        expect(fromPage.tokens.length).toBeGreaterThan(0)
        console.log(
          `wasm-browser: temperature ${temperature}: ${fromPage.tokens.length} tokens (stop ${fromPage.stop}), ` +
            `routes ${JSON.stringify(Object.fromEntries([-1, 0, 1].map((r) => [r, fromPage.routes.filter((x) => x === r).length])))}, equal to native`
        )
      }

      // the page itself: Generate shows one coloured span per token, its class the adapter of its route
      await page.click("#go")
      await page.waitForFunction(() => /tokens, stop/.test(String((globalThis as any).document.getElementById("status").textContent)))
      const spans = await page.$$eval("#out span.tok", (xs: Array<any>) => xs.map((x) => ({ cls: String(x.className), route: Number(x.dataset.route) })))
      const greedy = (await page.evaluate((o) => (globalThis as any).dartDemo.generate(o), { question, seed: 0, temperature: 0, maxNewTokens: 96 })) as PageGenerated
      expect(spans.map((s) => s.route)).toEqual(greedy.routes)
      const cls = new Map([[-1, "base"], [0, "reason"], [1, "tool"]])
      for (const s of spans) expect(s.cls).toBe(`tok ${cls.get(s.route)}`)
      console.log(`wasm-browser: forward rel error ${forwardError.toExponential(1)}; the page shows ${spans.length} coloured tokens`)

      expect(errors).toEqual([])
      expect(offServer).toEqual([])
    } finally {
      await browser.close()
      await server.close()
    }
  })
})
