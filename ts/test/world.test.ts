/**
 * The built-in world's generator (ts/src/world/world.ts) and its
 * demonstrations: deterministic from the seed; the test split only about
 * held-out people; no question shared between splits; every gold answer is
 * in the passages the question's search plan reads; the demonstrations'
 * quality mix as specified.
 */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { demonstrations } from "../src/world/demos.ts"
import { defaultWorldOptions, generateWorld, QUESTION_TYPES } from "../src/world/world.ts"

const small = { ...defaultWorldOptions, people: 60, cities: 8, orgs: 8, works: 30, validation: 30, test: 30 }

describe("world", () => {
  it("is the same for the same seed and different for another", () => {
    expect(JSON.stringify(generateWorld(small))).toBe(JSON.stringify(generateWorld(small)))
    expect(JSON.stringify(generateWorld({ ...small, seed: 7 }))).not.toBe(JSON.stringify(generateWorld(small)))
  })

  it("splits: held-out people only in test, no shared question, every type in every split; gold answers in the planned passages", () => {
    let cases = 0
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 31 - 1 }), (seed) => {
        cases++
        const w = generateWorld({ ...small, seed })
        const heldOut = new Set(w.people.filter((p) => p.heldOut).map((p) => p.name))
        expect(heldOut.size).toBeGreaterThan(0)
        const mentions = (q: { question: string }) => [...heldOut].some((n) => q.question.includes(n))
        for (const q of [...w.train, ...w.validation]) expect(mentions(q), q.question).toBe(false)
        for (const q of w.test) expect(q.about.some((n) => heldOut.has(n)), q.question).toBe(true)
        const texts = [w.train, w.validation, w.test].map((s) => new Set(s.map((q) => q.question)))
        for (const q of texts[1]!) expect(texts[0]!.has(q)).toBe(false)
        for (const q of texts[2]!) expect(texts[0]!.has(q) || texts[1]!.has(q)).toBe(false)
        // (Every type in every split is checked on the shipped world below: a small
        // world may hold out too few people for a comparison.)
        // Names are unique; each search finds its passage by title; the answer is in what the plan reads.
        const byTitle = new Map(w.passages.map((p) => [p.title, p]))
        expect(byTitle.size).toBe(w.passages.length)
        for (const q of [...w.train, ...w.validation, ...w.test]) {
          const read = q.searches.map((s) => byTitle.get(s)!.text).join(" ")
          expect(read, q.question).toContain(q.golden_answers[0]!)
          // Nothing answers it from the question alone.
          expect(q.question.includes(q.golden_answers[0]!) && q.data_source !== "comparison", q.question).toBe(false)
        }
      }),
      { numRuns: 20 }
    )
    console.log(`world property: ${cases} seeds`)
  })

  it("the default world (the shipped one) has every question type in every split", () => {
    const w = generateWorld()
    for (const split of [w.train, w.validation, w.test]) {
      for (const t of QUESTION_TYPES) expect(split.filter((q) => q.data_source === t).length, t).toBeGreaterThan(10)
    }
  })

  it("demonstrations follow the mix: 1-hop mostly good, 2-hop and comparison mostly not", () => {
    const w = generateWorld(small)
    const demos = demonstrations(w, w.train, (q) => `passages of ${q}`, "<|im_end|>")
    const share = (t: string, f: (d: (typeof demos)[number]) => boolean) => {
      const of = demos.filter((d) => d.question.data_source === t)
      return of.filter(f).length / of.length
    }
    const correct = (d: (typeof demos)[number]) => d.turns[d.turns.length - 1]![0].includes(`<answer> ${d.question.golden_answers[0]} </answer>`)
    const searches = (d: (typeof demos)[number]) => d.turns.filter(([t, who]) => who === "model" && t.includes("<search>")).length
    const hop1 = share("1-hop", correct)
    const hop2 = share("2-hop", correct)
    console.log(`demonstrations: correct 1-hop ${hop1.toFixed(2)}, 2-hop ${hop2.toFixed(2)}, comparison ${share("comparison", correct).toFixed(2)}; 2-hop with two searches ${share("2-hop", (d) => searches(d) === 2).toFixed(2)}`)
    expect(hop1).toBeGreaterThan(0.6)
    expect(hop2).toBeLessThan(0.5)
    expect(share("2-hop", (d) => searches(d) === 2)).toBeGreaterThan(0.1)
    for (const d of demos) {
      expect(d.turns[d.turns.length - 1]![0].endsWith("<|im_end|>")).toBe(true)
      for (const [text, who] of d.turns) if (who === "tool") expect(text.startsWith("\n\n<information>")).toBe(true)
    }
  })
})
