/**
 * The reward's rules: answer normalisation, exact match, substring match,
 * token F1, extraction of the model's final answer, the format check and the
 * reward itself. Pure functions over strings; no engine, no IO.
 *
 * Every rule is documented, with examples that are also tests, in
 * docs/reward.md. The conventions are Search-R1's
 * (verl/utils/reward_score/qa_em.py and qa_em_format.py), with the deviations
 * that docs/reward.md lists and explains.
 */
import { Effect, Schema } from "effect"

// ---------------------------------------------------------------------------
// Normalisation (SQuAD, as Search-R1's `normalize_answer`)

/** Python's `string.punctuation`: the 32 ASCII punctuation characters. */
export const PYTHON_PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
const punctuation = new Set(PYTHON_PUNCTUATION)

// Python's `re` `\b` is Unicode-aware (a word character is a letter, a number
// or `_`), while JavaScript's `\b` only knows ASCII: with it "éthe" would lose
// its "the". Hence explicit look-arounds over Unicode classes.
const articles = /(?<![\p{L}\p{N}_])(?:a|an|the)(?![\p{L}\p{N}_])/gu

// The characters Python's `str.split()` splits on (`str.isspace()`): JavaScript's
// `\s` lacks U+001C..U+001F and U+0085 and adds U+FEFF, which Python keeps.
const pythonWhitespace = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/

/**
 * Lower-case, delete Python's ASCII punctuation, replace the whole words
 * a/an/the by a space, collapse white space runs to one space and trim, in
 * that order (so "the-end" becomes "theend", not "end").
 */
export const normalizeAnswer = (text: string): string => {
  const lowered = text.toLowerCase()
  let withoutPunctuation = ""
  for (const ch of lowered) if (!punctuation.has(ch)) withoutPunctuation += ch
  const withoutArticles = withoutPunctuation.replace(articles, " ")
  return withoutArticles.split(pythonWhitespace).filter((word) => word.length > 0).join(" ")
}

/** The normalised answer as SQuAD tokens (split on spaces; "" has none). */
export const answerTokens = (text: string): ReadonlyArray<string> => {
  const normalized = normalizeAnswer(text)
  return normalized === "" ? [] : normalized.split(" ")
}

// ---------------------------------------------------------------------------
// Matching against the gold answers

/** 1 when the normalised prediction equals some normalised gold answer. */
export const exactMatch = (prediction: string, goldenAnswers: ReadonlyArray<string>): 0 | 1 => {
  const predicted = normalizeAnswer(prediction)
  return goldenAnswers.some((gold) => normalizeAnswer(gold) === predicted) ? 1 : 0
}

/** 1 when some normalised gold answer is a substring of the normalised prediction. */
export const substringExactMatch = (prediction: string, goldenAnswers: ReadonlyArray<string>): 0 | 1 => {
  const predicted = normalizeAnswer(prediction)
  return goldenAnswers.some((gold) => predicted.includes(normalizeAnswer(gold))) ? 1 : 0
}

/**
 * SQuAD token F1 against one gold answer: overlap counted with multiplicity.
 * Two answers with no tokens (e.g. "the" and "?") score 1, as in SQuAD v2, so
 * that an exact match always has F1 = 1.
 */
export const tokenF1Against = (prediction: string, gold: string): number => {
  const predicted = answerTokens(prediction)
  const expected = answerTokens(gold)
  if (predicted.length === 0 || expected.length === 0) return predicted.length === expected.length ? 1 : 0
  const remaining = new Map<string, number>()
  for (const token of expected) remaining.set(token, (remaining.get(token) ?? 0) + 1)
  let common = 0
  for (const token of predicted) {
    const left = remaining.get(token) ?? 0
    if (left > 0) {
      common++
      remaining.set(token, left - 1)
    }
  }
  if (common === 0) return 0
  const precision = common / predicted.length
  const recall = common / expected.length
  return (2 * precision * recall) / (precision + recall)
}

/** The best token F1 over the gold answers (0 when there are none). */
export const tokenF1 = (prediction: string, goldenAnswers: ReadonlyArray<string>): number =>
  goldenAnswers.reduce((best, gold) => Math.max(best, tokenF1Against(prediction, gold)), 0)

// ---------------------------------------------------------------------------
// The agent format's tags, scanned

export const AGENT_TAGS = ["think", "search", "information", "answer"] as const
export type AgentTag = (typeof AGENT_TAGS)[number]

/** One tag occurrence in a response: `<name>` (open) or `</name>` (close) at `at`. */
interface TagToken {
  readonly name: AgentTag
  readonly open: boolean
  readonly at: number
  readonly end: number
}

const tagPattern = /<(\/?)(think|search|information|answer)>/g

/**
 * The tags of a response in order, with observations made opaque: from an
 * `<information>` to the next `</information>` nothing is a tag, because that
 * text comes from the search tool, not from the model (a passage may well
 * contain "<answer>"). An `<information>` that is never closed is reported as
 * an ordinary tag and hides nothing.
 */
const scanTags = (response: string): ReadonlyArray<TagToken> => {
  const tokens: Array<TagToken> = []
  tagPattern.lastIndex = 0
  let match: RegExpExecArray | null
  while ((match = tagPattern.exec(response)) !== null) {
    const name = match[2] as AgentTag
    const open = match[1] === ""
    const at = match.index
    const end = at + match[0].length
    tokens.push({ name, open, at, end })
    if (name === "information" && open) {
      const close = response.indexOf("</information>", end)
      if (close >= 0) {
        const closeEnd = close + "</information>".length
        tokens.push({ name, open: false, at: close, end: closeEnd })
        tagPattern.lastIndex = closeEnd
      }
    }
  }
  return tokens
}

// ---------------------------------------------------------------------------
// The model's final answer

/**
 * The content (trimmed) of the last complete `<answer>...</answer>` of a
 * response, or undefined when there is none. Pass the model's response only,
 * never the prompt: Search-R1 runs its regex over prompt + response and skips
 * the prompt's example answer by needing two matches; here the caller's split
 * does that. Pairing: an `<answer>` opens (a later `<answer>` before any
 * `</answer>` re-opens, so the innermost wins), a `</answer>` closes the open
 * one, a `</answer>` with none open is ignored; text inside observations
 * (`<information>` blocks) never counts.
 */
export const extractAnswer = (response: string): string | undefined => {
  let openEnd: number | undefined
  let last: string | undefined
  for (const tag of scanTags(response)) {
    if (tag.name !== "answer") continue
    if (tag.open) openEnd = tag.end
    else if (openEnd !== undefined) {
      last = response.slice(openEnd, tag.at)
      openEnd = undefined
    }
  }
  return last?.trim()
}

/** The contents of the closed `<information>` blocks (the observations) of a response. */
export const observations = (response: string): ReadonlyArray<string> => {
  const blocks: Array<string> = []
  let openEnd: number | undefined
  for (const tag of scanTags(response)) {
    if (tag.name !== "information") continue
    if (tag.open) openEnd = tag.end
    else if (openEnd !== undefined) {
      blocks.push(response.slice(openEnd, tag.at))
      openEnd = undefined
    }
  }
  return blocks
}

/**
 * Search-R1's `is_retrieval_correct`: some normalised gold answer is a
 * substring of some normalised observation.
 */
export const retrievalHit = (response: string, goldenAnswers: ReadonlyArray<string>): boolean =>
  observations(response).some((block) => substringExactMatch(block, goldenAnswers) === 1)

// ---------------------------------------------------------------------------
// Format check

export const FormatRules = Schema.Struct({
  /** At most this many `<search>` blocks; absent = no limit. */
  maxSearches: Schema.optionalKey(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  /** A `<think>` block must come first and after every observation (Search-R1's rule). */
  requireThink: Schema.Boolean.pipe(Schema.withDecodingDefaultKey(Effect.succeed(true)))
})
export type FormatRules = typeof FormatRules.Type
export const defaultFormatRules: FormatRules = { requireThink: true }

/** Why a response is not well formed (the first violation found, left to right). */
export type FormatViolation =
  /** Non-white-space text outside every block (before, between or after them). */
  | { readonly _tag: "TextOutsideTags"; readonly at: number }
  /** A tag where the grammar does not allow it: nesting, a stray close, wrong order, a second answer. */
  | { readonly _tag: "UnexpectedTag"; readonly tag: string; readonly at: number }
  /** The response ends inside a block. */
  | { readonly _tag: "UnclosedTag"; readonly tag: AgentTag; readonly at: number }
  /** A `<search>` or `<answer>` block holding only white space. */
  | { readonly _tag: "EmptyBlock"; readonly tag: "search" | "answer"; readonly at: number }
  /** A `<search>` beyond `maxSearches`. */
  | { readonly _tag: "TooManySearches"; readonly maxSearches: number; readonly at: number }
  /** The response ends without an answer (and without any other violation). */
  | { readonly _tag: "NoAnswer" }

export type FormatCheck =
  | { readonly valid: true; readonly searches: number }
  | { readonly valid: false; readonly searches: number; readonly violation: FormatViolation }

/**
 * Where the grammar stands between blocks:
 * - start:       nothing yet
 * - thought:     after `</think>`, an action (search or answer) must follow
 * - searched:    after `</search>`, the observation must follow
 * - observed:    after `</information>`, a new turn begins
 * - answered:    after `</answer>`, only white space may follow
 */
type Between = "start" | "thought" | "searched" | "observed" | "answered"

const allowedOpen = (state: Between, tag: AgentTag, requireThink: boolean): boolean => {
  switch (state) {
    case "start":
    case "observed":
      return tag === "think" || (!requireThink && (tag === "search" || tag === "answer"))
    case "thought":
      return tag === "search" || tag === "answer"
    case "searched":
      return tag === "information"
    case "answered":
      return false
  }
}

const showTag = (tag: TagToken): string => (tag.open ? `<${tag.name}>` : `</${tag.name}>`)

/**
 * Checks a response against the agent format:
 *
 *   response := turn* final          (white space allowed between blocks)
 *   turn     := think search information
 *   final    := think answer
 *
 * where every block is `<tag>content</tag>`; think, search and answer contents
 * hold no agent tag; search and answer contents are not blank; observations
 * are opaque; at most `maxSearches` searches. With `requireThink: false` each
 * `think` is optional (at most one before each action).
 */
export const checkFormat = (response: string, rules: Partial<FormatRules> = {}): FormatCheck => {
  const requireThink = rules.requireThink ?? true
  const maxSearches = rules.maxSearches
  let state: Between = "start"
  let searches = 0
  let cursor = 0
  const invalid = (violation: FormatViolation): FormatCheck => ({ valid: false, searches, violation })
  const textBetween = (from: number, to: number): number | undefined => {
    const text = response.slice(from, to)
    const offset = text.search(/\S/)
    return offset < 0 ? undefined : from + offset
  }

  const tags = scanTags(response)
  for (let i = 0; i < tags.length; i++) {
    const open = tags[i]!
    const stray = textBetween(cursor, open.at)
    if (stray !== undefined) return invalid({ _tag: "TextOutsideTags", at: stray })
    if (!open.open || !allowedOpen(state, open.name, requireThink)) {
      return invalid({ _tag: "UnexpectedTag", tag: showTag(open), at: open.at })
    }
    if (open.name === "search" && maxSearches !== undefined && searches >= maxSearches) {
      return invalid({ _tag: "TooManySearches", maxSearches, at: open.at })
    }
    const close = tags[i + 1]
    // scanTags pairs every closed observation, so an `<information>` not
    // followed by its `</information>` is never closed.
    if (close === undefined || (open.name === "information" && (close.name !== "information" || close.open))) {
      return invalid({ _tag: "UnclosedTag", tag: open.name, at: open.at })
    }
    if (close.name !== open.name || close.open) {
      return invalid({ _tag: "UnexpectedTag", tag: showTag(close), at: close.at })
    }
    if ((open.name === "search" || open.name === "answer") && response.slice(open.end, close.at).trim() === "") {
      return invalid({ _tag: "EmptyBlock", tag: open.name, at: open.at })
    }
    i++
    cursor = close.end
    switch (open.name) {
      case "think":
        state = "thought"
        break
      case "search":
        searches++
        state = "searched"
        break
      case "information":
        state = "observed"
        break
      case "answer":
        state = "answered"
        break
    }
  }
  const trailing = textBetween(cursor, response.length)
  if (trailing !== undefined) return invalid({ _tag: "TextOutsideTags", at: trailing })
  return state === "answered" ? { valid: true, searches } : invalid({ _tag: "NoAnswer" })
}

// ---------------------------------------------------------------------------
// Reward

/** Search-R1's v0.3 scripts: structure 0.2, final format 0.1, retrieval 0. */
const score = (fallback: number) =>
  Schema.Finite.check(Schema.isBetween({ minimum: 0, maximum: 1 })).pipe(
    Schema.withDecodingDefaultKey(Effect.succeed(fallback))
  )

export const EmReward = Schema.Struct({ kind: Schema.Literal("em") })

/**
 * Search-R1's qa_em_format (`compute_score_em` there), with its names:
 * `structureFormatScore` is what a well-formed response earns without the
 * right answer and what a right answer loses for bad form,
 * `finalFormatScore` what an answer earns in a badly formed response,
 * `retrievalScore` the bonus of a well-formed response whose observations
 * contain a gold answer.
 */
export const EmFormatReward = Schema.Struct({
  kind: Schema.Literal("em_format"),
  structureFormatScore: score(0.2),
  finalFormatScore: score(0.1),
  retrievalScore: score(0)
})

/** The reward's configuration; `{ kind: "em" }` (the paper's setting) by default. */
export const RewardConfig = Schema.Union([EmReward, EmFormatReward])
export type RewardConfig = typeof RewardConfig.Type
export const defaultRewardConfig: RewardConfig = { kind: "em" }

/** What the reward sees of one rollout. */
export interface ScoredResponse {
  /** The model's response (all turns, observations included), without the prompt. */
  readonly response: string
  readonly goldenAnswers: ReadonlyArray<string>
}

/** The reward and the metrics it was computed from. */
export interface ResponseScore {
  readonly reward: number
  /** The extracted final answer; undefined when the response has none. */
  readonly answer: string | undefined
  readonly em: 0 | 1
  readonly subem: 0 | 1
  readonly f1: number
  readonly format: FormatCheck
  /** Some observation contains a gold answer (normalised substring). */
  readonly retrievalHit: boolean
}

/**
 * Scores one response. `em`: 1 for an exact match, else 0. `em_format`:
 *
 * | answer | exact match | well formed | reward                                  |
 * |--------|-------------|-------------|-----------------------------------------|
 * | none   |             |             | 0                                       |
 * | yes    | yes         | yes         | 1                                       |
 * | yes    | yes         | no          | 1 - structureFormatScore                |
 * | yes    | no          | yes         | structureFormatScore (+ retrievalScore) |
 * | yes    | no          | no          | finalFormatScore                        |
 *
 * (A well-formed response always has an answer, so "none" is never well formed.)
 */
export const scoreResponse = (
  input: ScoredResponse,
  config: RewardConfig = defaultRewardConfig,
  rules: Partial<FormatRules> = {}
): ResponseScore => {
  const answer = extractAnswer(input.response)
  const golds = input.goldenAnswers
  const em = answer === undefined ? 0 : exactMatch(answer, golds)
  const subem = answer === undefined ? 0 : substringExactMatch(answer, golds)
  const f1 = answer === undefined ? 0 : tokenF1(answer, golds)
  const format = checkFormat(input.response, rules)
  const hit = retrievalHit(input.response, golds)
  const metrics = { answer, em, subem, f1, format, retrievalHit: hit }
  if (config.kind === "em") return { reward: em, ...metrics }
  let reward: number
  if (answer === undefined) reward = 0
  else if (em === 1) reward = format.valid ? 1 : 1 - config.structureFormatScore
  else if (format.valid) reward = config.structureFormatScore + (hit ? config.retrievalScore : 0)
  else reward = config.finalFormatScore
  return { reward, ...metrics }
}
