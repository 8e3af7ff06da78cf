/**
 * The reward rules (ts/src/reward/rules.ts): every example of docs/reward.md,
 * parity with Python's SQuAD normalisation on a committed fixture, and
 * fast-check properties on random inputs (DART_PROPERTY_RUNS cases each,
 * 500 by default).
 */
import fc from "fast-check"
import { Schema } from "effect"
import { readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import {
  AGENT_TAGS,
  checkFormat,
  exactMatch,
  extractAnswer,
  FormatRules,
  normalizeAnswer,
  PYTHON_PUNCTUATION,
  RewardConfig,
  scoreResponse,
  substringExactMatch,
  tokenF1,
  tokenF1Against
} from "../src/reward/rules.ts"

const here = dirname(fileURLToPath(import.meta.url))
const repoRoot = join(here, "..", "..")

// ---------------------------------------------------------------------------
// docs/reward.md: every ```json example=KIND block, one JSON value per line

const EXAMPLE_KINDS = ["normalize", "match", "extract", "format", "reward"] as const
type ExampleKind = (typeof EXAMPLE_KINDS)[number]

interface DocExample {
  readonly kind: string
  readonly line: number
  readonly value: any
}

const readDocExamples = (markdown: string): ReadonlyArray<DocExample> => {
  const lines = markdown.split("\n")
  const examples: Array<DocExample> = []
  let kind: string | undefined
  lines.forEach((text, index) => {
    const fence = /^```json example=(\S+)\s*$/.exec(text)
    if (fence) kind = fence[1]
    else if (kind !== undefined && text.startsWith("```")) kind = undefined
    else if (kind !== undefined && text.trim() !== "") {
      examples.push({ kind, line: index + 1, value: JSON.parse(text) })
    }
  })
  return examples
}

const docExamples = readDocExamples(readFileSync(join(repoRoot, "docs", "reward.md"), "utf8"))
const examplesOf = (kind: ExampleKind) => docExamples.filter((e) => e.kind === kind)
const title = (e: DocExample) => `docs/reward.md:${e.line} ${JSON.stringify(e.value).slice(0, 90)}`
const decodeRules = (rules: unknown) => Schema.decodeUnknownSync(FormatRules)(rules ?? {})
const decodeConfig = Schema.decodeUnknownSync(RewardConfig)

describe("docs/reward.md examples", () => {
  it("has examples of every kind and no block of an unknown kind", () => {
    for (const kind of EXAMPLE_KINDS) expect(examplesOf(kind).length, kind).toBeGreaterThan(0)
    const unknown = docExamples.filter((e) => !(EXAMPLE_KINDS as ReadonlyArray<string>).includes(e.kind))
    expect(unknown.map(title)).toEqual([])
    console.log(`docs/reward.md: ${docExamples.length} examples`)
  })

  it.each(examplesOf("normalize").map((e) => [title(e), e] as const))("normalize %s", (_, e) => {
    const [input, expected] = e.value as [string, string]
    expect(normalizeAnswer(input)).toBe(expected)
  })

  it.each(examplesOf("match").map((e) => [title(e), e] as const))("match %s", (_, e) => {
    const { prediction, golds, em, subem, f1 } = e.value
    expect(exactMatch(prediction, golds)).toBe(em)
    expect(substringExactMatch(prediction, golds)).toBe(subem)
    expect(tokenF1(prediction, golds)).toBeCloseTo(f1, 4)
  })

  it.each(examplesOf("extract").map((e) => [title(e), e] as const))("extract %s", (_, e) => {
    expect(extractAnswer(e.value.response) ?? null).toBe(e.value.answer)
  })

  it.each(examplesOf("format").map((e) => [title(e), e] as const))("format %s", (_, e) => {
    const { response, rules, valid, violation, searches } = e.value
    const check = checkFormat(response, decodeRules(rules))
    expect(check.valid).toBe(valid)
    if (!check.valid) expect(check.violation._tag).toBe(violation)
    if (searches !== undefined) expect(check.searches).toBe(searches)
  })

  it.each(examplesOf("reward").map((e) => [title(e), e] as const))("reward %s", (_, e) => {
    const { response, golds, config, rules, reward } = e.value
    const score = scoreResponse({ response, goldenAnswers: golds }, decodeConfig(config), decodeRules(rules))
    expect(score.reward).toBeCloseTo(reward, 12)
  })
})

// ---------------------------------------------------------------------------
// Python parity

describe("parity with Python (ts/test/fixtures/reward-python.json)", () => {
  const fixture = JSON.parse(readFileSync(join(here, "fixtures", "reward-python.json"), "utf8")) as {
    readonly cases: ReadonlyArray<{ text: string; normalized: string; other: string; f1: number }>
  }

  it("normalizeAnswer and token F1 equal Python's on every case", () => {
    expect(fixture.cases.length).toBeGreaterThanOrEqual(500)
    const mismatches = fixture.cases.filter(
      (c) => normalizeAnswer(c.text) !== c.normalized || Math.abs(tokenF1Against(c.text, c.other) - c.f1) > 1e-12
    )
    expect(mismatches.slice(0, 5)).toEqual([])
    console.log(`python parity: ${fixture.cases.length} cases`)
  })

  it("the punctuation set is Python's string.punctuation", () => {
    expect(PYTHON_PUNCTUATION.length).toBe(32)
    const ascii = Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i))
    const isPunct = (c: string) => !/[A-Za-z0-9 ]/.test(c)
    expect([...PYTHON_PUNCTUATION].sort()).toEqual(ascii.filter(isPunct).sort())
  })
})

// ---------------------------------------------------------------------------
// Config schema

describe("RewardConfig and FormatRules schemas", () => {
  it("fill Search-R1's defaults and reject out-of-range values with a path", () => {
    expect(decodeConfig({ kind: "em" })).toEqual({ kind: "em" })
    expect(decodeConfig({ kind: "em_format" })).toEqual({
      kind: "em_format",
      structureFormatScore: 0.2,
      finalFormatScore: 0.1,
      retrievalScore: 0
    })
    expect(() => decodeConfig({ kind: "f1" })).toThrow()
    expect(() => decodeConfig({ kind: "em_format", structureFormatScore: 1.5 })).toThrow(/structureFormatScore/)
    expect(decodeRules(undefined)).toEqual({ requireThink: true })
    expect(() => decodeRules({ maxSearches: -1 })).toThrow(/maxSearches/)
    expect(() => decodeRules({ maxSearches: 1.5 })).toThrow(/maxSearches/)
  })
})

// ---------------------------------------------------------------------------
// Properties

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 500)

/** Runs a property, prints how many cases it ran (and how many were not vacuous). */
const checkProperty = <T>(
  name: string,
  arbitrary: fc.Arbitrary<T>,
  predicate: (value: T) => boolean | void,
  interesting?: (value: T) => boolean
) => {
  let ran = 0
  let notVacuous = 0
  fc.assert(
    fc.property(arbitrary, (value) => {
      ran++
      if (interesting?.(value)) notVacuous++
      return predicate(value)
    }),
    { numRuns: NUM_RUNS }
  )
  console.log(
    `property "${name}": ${NUM_RUNS} cases` + (interesting ? `, ${notVacuous} of the ${ran} runs interesting` : "")
  )
  if (interesting) expect(notVacuous, `${name}: too few interesting cases`).toBeGreaterThan(NUM_RUNS / 20)
}

// Words avoid the Greek capital sigma: its lower case depends on the next
// character (final sigma), so inserting punctuation after it may change the
// normalised text legitimately.
const word = fc.oneof(
  fc.constantFrom("a", "an", "the", "The", "paris", "Eiffel", "tower", "1984", "naïve", "東京", "straße", "x_y", "then"),
  fc.stringMatching(/^[a-zA-Z0-9]{1,8}$/)
)
const spacing = fc.constantFrom(" ", "  ", "\t", "\n", "\u00a0", "\u3000")
const answerText = fc
  .array(fc.tuple(word, spacing), { minLength: 0, maxLength: 6 })
  .map((parts) => parts.map(([w, s]) => w + s).join(""))
const anyText = fc.oneof(fc.string({ unit: "grapheme", maxLength: 30 }), fc.string({ unit: "binary", maxLength: 30 }), answerText)

/** The prediction rewritten by changes that normalisation must erase. */
const perturbed = (text: string) =>
  fc
    .record({
      caseFlips: fc.array(fc.boolean(), { minLength: text.length, maxLength: text.length }),
      punctuation: fc.array(fc.tuple(fc.nat({ max: text.length }), fc.constantFrom(...PYTHON_PUNCTUATION)), {
        maxLength: 4
      }),
      articles: fc.array(fc.tuple(fc.nat(), fc.constantFrom("a", "an", "the", "The", "AN")), { maxLength: 3 }),
      padding: fc.tuple(spacing, spacing)
    })
    .map(({ articles, caseFlips, padding, punctuation }) => {
      let out = [...text]
        .map((c, i) => (/[a-z]/i.test(c) && caseFlips[i] ? (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) : c))
        .join("")
      // punctuation anywhere (it is deleted before anything else looks at the text)
      for (const [at, p] of punctuation.sort((x, y) => y[0] - x[0])) out = out.slice(0, at) + p + out.slice(at)
      // articles as whole words, at the start, the end or in place of a space
      for (const [at, article] of articles) {
        const spaces = [...out.matchAll(/ /g)].map((m) => m.index)
        const slot = at % (spaces.length + 2)
        if (slot === 0) out = `${article} ${out}`
        else if (slot === 1) out = `${out} ${article}`
        else out = `${out.slice(0, spaces[slot - 2]!)} ${article} ${out.slice(spaces[slot - 2]! + 1)}`
      }
      return padding[0] + out + padding[1]
    })

describe("properties", () => {
  it("normalisation is idempotent", () => {
    checkProperty("normalisation is idempotent", anyText, (text) => {
      const once = normalizeAnswer(text)
      expect(normalizeAnswer(once)).toBe(once)
    })
  })

  it("the normalised text has no ASCII punctuation, no article, no upper case and single spaces", () => {
    checkProperty("normal form", anyText, (text) => {
      const n = normalizeAnswer(text)
      for (const c of n) expect(PYTHON_PUNCTUATION.includes(c)).toBe(false)
      for (const token of n.split(" ")) expect(["a", "an", "the"]).not.toContain(token)
      expect(n).toBe(n.trim())
      expect(n).not.toMatch(/ {2}/)
      expect(n).toBe(n.toLowerCase())
    })
  })

  it("EM implies F1 = 1 and subem = 1; subem >= EM; F1 in [0, 1]", () => {
    const arb = answerText.chain((gold) =>
      fc.record({
        prediction: fc.oneof(perturbed(gold), answerText),
        golds: fc.array(answerText, { maxLength: 3 }).map((others) => [gold, ...others])
      })
    )
    checkProperty(
      "EM implies F1 = 1 and subem",
      arb,
      ({ golds, prediction }) => {
        const em = exactMatch(prediction, golds)
        const f1 = tokenF1(prediction, golds)
        if (em === 1) {
          expect(f1).toBe(1)
          expect(substringExactMatch(prediction, golds)).toBe(1)
        }
        expect(substringExactMatch(prediction, golds)).toBeGreaterThanOrEqual(em)
        expect(f1).toBeGreaterThanOrEqual(0)
        expect(f1).toBeLessThanOrEqual(1)
      },
      ({ golds, prediction }) => exactMatch(prediction, golds) === 1
    )
  })

  it("EM is invariant under case, punctuation, article and white space changes of the prediction", () => {
    const arb = fc
      .record({ prediction: answerText, others: fc.array(answerText, { maxLength: 2 }), withSelf: fc.boolean() })
      .chain(({ others, prediction, withSelf }) =>
        fc.record({
          prediction: fc.constant(prediction),
          changed: perturbed(prediction),
          golds: fc.constant(withSelf ? [...others, prediction] : others)
        })
      )
    checkProperty(
      "EM is invariant under case/punctuation/article changes",
      arb,
      ({ changed, golds, prediction }) => {
        expect(exactMatch(changed, golds)).toBe(exactMatch(prediction, golds))
        expect(normalizeAnswer(changed)).toBe(normalizeAnswer(prediction))
      },
      ({ golds, prediction }) => exactMatch(prediction, golds) === 1
    )
  })

  it("token F1 against one gold is symmetric and 1 against itself", () => {
    checkProperty("F1 symmetric, F1(x, x) = 1", fc.tuple(anyText, anyText), ([x, y]) => {
      expect(tokenF1Against(x, y)).toBeCloseTo(tokenF1Against(y, x), 12)
      expect(tokenF1Against(x, x)).toBe(1)
    })
  })

  // Random responses: arbitrary text with agent tags (and near misses) mixed in.
  const tagPiece = fc.constantFrom(
    ...AGENT_TAGS.flatMap((t) => [`<${t}>`, `</${t}>`]),
    "<Answer>",
    "<answer",
    "</",
    "<"
  )
  const randomResponse = fc
    .array(fc.oneof(tagPiece, fc.string({ maxLength: 12 }), fc.string({ unit: "grapheme", maxLength: 6 })), {
      maxLength: 16
    })
    .map((parts) => parts.join(""))
  const tagFree = fc.oneof(fc.string({ maxLength: 20 }), answerText).filter((s) => !/<\/?(think|search|information|answer)>/.test(s))
  // ... and with complete answers and observations mixed in, so that earlier answers exist
  const responseWithAnswers = fc
    .array(
      fc.oneof(
        randomResponse,
        tagFree.map((a) => `<answer>${a}</answer>`),
        randomResponse.map((d) => `<information>${d}</information>`)
      ),
      { maxLength: 5 }
    )
    .map((parts) => parts.join(""))

  it("extraction returns a later appended answer", () => {
    checkProperty(
      "extractAnswer returns the appended later answer",
      fc.tuple(responseWithAnswers, tagFree, spacing),
      ([response, answer, after]) => {
        expect(extractAnswer(`${response}<answer>${answer}</answer>${after}`)).toBe(answer.trim())
      },
      ([response]) => extractAnswer(response) !== undefined
    )
  })

  const withoutAnswerCloses = (response: string): string => {
    let out = response
    while (out.includes("</answer>")) out = out.replaceAll("</answer>", "")
    return out
  }

  it("a response with no complete <answer>...</answer> outside observations has no answer", () => {
    checkProperty("no answer tags, no answer", randomResponse.map(withoutAnswerCloses), (response) => {
      expect(extractAnswer(response)).toBeUndefined()
    })
  })

  // Well-formed responses from the grammar: turns, then a final think + answer.
  const content = tagFree.filter((s) => s.trim() !== "")
  const wellFormed = fc
    .record({
      turns: fc.array(fc.tuple(content, content, content, spacing), { maxLength: 4 }),
      finalThought: content,
      answer: content,
      gap: spacing
    })
    .map(({ answer, finalThought, gap, turns }) => ({
      searches: turns.length,
      answer,
      text:
        turns.map(([t, q, d, s]) => `<think>${t}</think>${s}<search>${q}</search>${gap}<information>${d}</information>${s}`).join("") +
        `<think>${finalThought}</think>${gap}<answer>${answer}</answer>`
    }))

  it("a response built from the grammar is well formed, and the search limit is enforced", () => {
    checkProperty(
      "grammar responses are well formed",
      fc.tuple(wellFormed, fc.string({ minLength: 1, maxLength: 8 }).filter((s) => s.trim() !== "")),
      ([r, junk]) => {
        expect(checkFormat(r.text)).toEqual({ valid: true, searches: r.searches })
        expect(checkFormat(r.text, { maxSearches: r.searches }).valid).toBe(true)
        expect(extractAnswer(r.text)).toBe(r.answer.trim())
        if (r.searches > 0) {
          const over = checkFormat(r.text, { maxSearches: r.searches - 1 })
          expect(over.valid ? "valid" : over.violation._tag).toBe("TooManySearches")
        }
        // anything after the answer breaks the form (but not the answer)
        const trailing = checkFormat(`${r.text}${junk}`)
        expect(trailing.valid).toBe(false)
        // ... and the think before the answer is required by default
        const withoutThink = r.text.replace(/<think>[^]*?<\/think>(?=\s*<answer>)/, "")
        expect(checkFormat(withoutThink).valid).toBe(false)
        expect(checkFormat(withoutThink, { requireThink: false }).valid).toBe(true)
      },
      ([r]) => r.searches > 0
    )
  })

  it("a well-formed random response has exactly one answer, at its end", () => {
    // grammar responses with one random tag (or near miss) inserted somewhere, and random ones
    const mutated = fc
      .tuple(wellFormed, tagPiece, fc.nat())
      .map(([r, tag, at]) => r.text.slice(0, at % (r.text.length + 1)) + tag + r.text.slice(at % (r.text.length + 1)))
    checkProperty(
      "valid implies one final answer",
      fc.oneof(randomResponse, mutated, wellFormed.map((r) => r.text)),
      (response) => {
        const check = checkFormat(response)
        if (check.valid) {
          expect(response.trimEnd().endsWith("</answer>")).toBe(true)
          const answer = extractAnswer(response)
          expect(answer).toBeDefined()
          expect(response.trimEnd().slice(0, -"</answer>".length).trimEnd().endsWith(answer!)).toBe(true)
        }
      },
      (response) => checkFormat(response).valid
    )
  })

  it("the em reward is EM; the em_format reward is one of Search-R1's levels", () => {
    const config = decodeConfig({ kind: "em_format", retrievalScore: 0.05 })
    const levels = [0, 0.1, 0.2, 0.25, 0.8, 1]
    const arb = fc.record({
      response: fc.oneof(responseWithAnswers, wellFormed.map((r) => r.text)),
      golds: fc.array(answerText, { minLength: 1, maxLength: 3 })
    })
    checkProperty("reward levels", arb, ({ golds, response }) => {
      const input = { response, goldenAnswers: golds }
      const em = scoreResponse(input)
      expect(em.reward).toBe(em.em)
      const withFormat = scoreResponse(input, config)
      expect(levels.some((l) => Math.abs(l - withFormat.reward) < 1e-12)).toBe(true)
      if (withFormat.format.valid && withFormat.em === 1) expect(withFormat.reward).toBe(1)
      if (withFormat.answer === undefined) expect(withFormat.reward).toBe(0)
    })
  })
})
