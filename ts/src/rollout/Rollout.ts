/**
 * The Rollout stage: for each prompt a group of G samples of multi-turn
 * search episodes, all sequences of a call decoding in one batch of one
 * generation session (docs/pipeline.md, "Rollout").
 *
 * A turn is one `generate` call: every active sequence decodes until it
 * closes `</search>` (the engine pauses it), closes `</answer>`, writes an
 * end-of-sequence token or reaches `maxTurnTokens`. Then the turn's action
 * is read (agent.ts): a search runs (the queries of all paused sequences in
 * one batched call of the Search service) and its passages are appended as
 * role O `<information> ... </information>` tokens; an answer ends the
 * episode; an invalid action is answered with Search-R1's message (role O)
 * and the episode goes on. A failed search becomes an observation too (the
 * step is never lost) and is counted. After `maxTurns` turns an episode
 * ends unanswered.
 *
 * Token in, token out: the trajectory is the session's own token history
 * with the roles, routes and logprobs it recorded, never re-tokenized text.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { boundedInt, boundedNumber } from "../domain/schema.ts"
import { type EngineError, Engine, type GenerationPlanInput, type Generated, type StopReason } from "../engine/Engine.ts"
import { Search, type SearchShape } from "../search/Search.ts"
import { formatPassages } from "../search/protocol.ts"
import { type TextError, Tokenizer, type TokenizerShape } from "../text/Tokenizer.ts"
import {
  INVALID_ACTION_MESSAGE,
  OBSERVATION_CLOSE,
  OBSERVATION_OPEN,
  parseAction,
  promptText,
  SEARCH_R1_TEMPLATE,
  searchFailedText,
  searchLimitText
} from "./agent.ts"

// ---------------------------------------------------------------------------
// Config


export const RolloutConfig = Schema.Struct({
  /** Samples per prompt, G (GRPO's group). */
  groupSize: boundedInt(1, 1024),
  /** Sampling temperature; 0 = greedy. */
  temperature: boundedNumber(0, 10),
  /** Nucleus sampling; 1 = off. */
  topP: boundedNumber(0.01, 1),
  /** Top-k sampling; 0 = off. */
  topK: boundedInt(0, 1_000_000),
  /** Tokens the model may write in one turn (Search-R1's max_response_length). */
  maxTurnTokens: boundedInt(1, 65_536),
  /** Searches per episode, B. */
  maxSearches: boundedInt(0, 64),
  /** Generation turns per episode (each ends in a search, an answer or an invalid action). */
  maxTurns: boundedInt(1, 128),
  /** Tokens of retrieved text per observation (Search-R1's max_obs_length); the tags are kept. */
  maxObservationTokens: boundedInt(1, 65_536),
  /** Passages per search. */
  topk: boundedInt(1, 100),
  /** The prompt: `{question}` is replaced (Search-R1's instruction by default). */
  promptTemplate: Schema.String,
  /** Wrap the prompt in the tokenizer's chat template (as a user turn) when it has one. */
  chatTemplate: Schema.Boolean,
  /** Tokens that end a sequence, by their text; those missing from the vocabulary are skipped. */
  eosTokens: Schema.Array(Schema.String)
})
export type RolloutConfig = typeof RolloutConfig.Type

export const defaultRolloutConfig: RolloutConfig = {
  groupSize: 5,
  temperature: 1,
  topP: 1,
  topK: 0,
  maxTurnTokens: 500,
  maxSearches: 4,
  maxTurns: 5,
  maxObservationTokens: 500,
  topk: 3,
  promptTemplate: SEARCH_R1_TEMPLATE,
  chatTemplate: true,
  eosTokens: ["<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>"]
}

// ---------------------------------------------------------------------------
// Input and output

export interface RolloutPrompt {
  readonly question: string
}

/** How an episode ended. */
export type Finish = "answer" | "eos" | "length" | "turns"

export interface Trajectory {
  /** Index of the prompt in the call's prompts. */
  readonly prompt: number
  /** Index of the sample in its group. */
  readonly sample: number
  /** The whole history: prompt then response (the session's tokens). */
  readonly tokens: Int32Array
  /** 0 P, 1 R, 2 A, 3 O per token. */
  readonly roles: Uint8Array
  /** The route that wrote each token (the generation plan's). */
  readonly routes: Int32Array
  /** The logprob each model-written token had when it was sampled (0 elsewhere). */
  readonly logprobs: Float32Array
  readonly promptLength: number
  /** The response as text (everything after the prompt, observations included). */
  readonly response: string
  readonly turns: number
  readonly searches: number
  readonly searchFailures: number
  readonly invalidActions: number
  readonly finish: Finish
}

export interface RolloutRequest {
  readonly prompts: ReadonlyArray<RolloutPrompt>
  readonly plan: GenerationPlanInput
  /** The session's seed: same seed, same trajectories (for a thread count). */
  readonly seed: number
  /** Overrides of the layer's config for this call (e.g. greedy validation). */
  readonly config?: Partial<RolloutConfig>
}

// ---------------------------------------------------------------------------
// Error

export const RolloutErrorReason = Schema.Union([
  /** The vocabulary lacks a tag the agent format needs (or it tokenizes unstably). */
  Schema.TaggedStruct("Tags", { detail: Schema.String }),
  /** The prompt template or an option is unusable. */
  Schema.TaggedStruct("Config", { detail: Schema.String }),
  /** The engine failed (its error's code and message). */
  Schema.TaggedStruct("Engine", { op: Schema.String, code: Schema.String, detail: Schema.String }),
  /** Encoding or decoding text failed. */
  Schema.TaggedStruct("Text", { op: Schema.String, code: Schema.String, detail: Schema.String })
])
export type RolloutErrorReason = typeof RolloutErrorReason.Type

export class RolloutError extends Schema.TaggedError<RolloutError>()("RolloutError", { reason: RolloutErrorReason }) {
  override get message(): string {
    const r = this.reason
    switch (r._tag) {
      case "Tags":
        return `the tokenizer cannot write the agent format: ${r.detail}`
      case "Config":
        return `rollout config: ${r.detail}`
      case "Engine":
      case "Text":
        return `${r.op} [${r.code}]: ${r.detail}`
    }
  }
}

const fromEngine = (e: EngineError) => new RolloutError({ reason: { _tag: "Engine", op: e.op, code: e.code, detail: e.message } })
const fromText = (e: TextError) => new RolloutError({ reason: { _tag: "Text", op: e.op, code: e.code, detail: e.message } })
const configError = (detail: string) => new RolloutError({ reason: { _tag: "Config", detail } })

// ---------------------------------------------------------------------------
// Service

export interface RolloutShape {
  /** G episodes per prompt, in order: trajectory `p * G + g` is sample g of prompt p. */
  readonly run: (request: RolloutRequest) => Effect.Effect<ReadonlyArray<Trajectory>, RolloutError>
  /** The prompt tokens of a question (what `run` starts each sequence with). */
  readonly encodePrompt: (question: string, config?: Partial<RolloutConfig>) => Effect.Effect<Int32Array, RolloutError>
}

export class Rollout extends Context.Service<Rollout, RolloutShape>()("@dart-rl/ts/Rollout") {}

/** The tag ids the loop needs, from the tokenizer (each a stable token sequence). */
const resolveAgentTags = (tokenizer: TokenizerShape, eosTokens: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const tags = yield* tokenizer.resolveTags(["<search>", "</search>", "</answer>"]).pipe(
      Effect.mapError((e) => new RolloutError({ reason: { _tag: "Tags", detail: e.message } }))
    )
    const [open, close, answerClose] = tags.map((t) => Array.from(t.ids))
    const eos = eosTokens.flatMap((t) => {
      const id = tokenizer.tokenToId(t)
      return id === undefined ? [] : [id]
    })
    return { rules: { open: open!, close: close! }, stop: [answerClose!], eos }
  })

interface Episode {
  turns: number
  searches: number
  searchFailures: number
  invalidActions: number
  finish: Finish | undefined
}

const finishOf = (stop: StopReason): Finish | undefined =>
  stop === "eos" ? "eos" : stop === "length" ? "length" : undefined

/** The Rollout service over an engine, a tokenizer and a search service. */
export const make = (
  engine: typeof Engine.Service,
  tokenizer: TokenizerShape,
  search: SearchShape,
  base: RolloutConfig = defaultRolloutConfig
): RolloutShape => {
  const resolveConfig = (overrides?: Partial<RolloutConfig>) =>
    Effect.try({
      try: () => Schema.decodeUnknownSync(RolloutConfig)({ ...base, ...overrides }),
      catch: (e) => configError(String(e))
    })

  const encodePrompt = (question: string, overrides?: Partial<RolloutConfig>) =>
    Effect.gen(function*() {
      const config = yield* resolveConfig(overrides)
      const text = yield* Effect.try({ try: () => promptText(config.promptTemplate, question), catch: (e) => configError((e as Error).message) })
      const chat = config.chatTemplate
        ? tokenizer.encodeChat([{ role: "user", content: text }], { addGenerationPrompt: true }).pipe(
          // No template (a base model): the plain text.
          Effect.catchIf((e) => e.code === "DART_TEMPLATE" && e.message.includes("no chat template"), () => tokenizer.encode(text))
        )
        : tokenizer.encode(text)
      const encoding = yield* Effect.mapError(chat, fromText)
      return encoding.ids
    })

  const observationIds = (passages: ReadonlyArray<string>, budget: number) =>
    Effect.gen(function*() {
      if (passages.length === 0) return []
      const [open, close] = yield* tokenizer.encodeBatch([OBSERVATION_OPEN, OBSERVATION_CLOSE])
      const bodies = yield* tokenizer.encodeBatch(passages)
      return bodies.map((b) => Int32Array.from([...open!.ids, ...b.ids.subarray(0, budget), ...close!.ids]))
    }).pipe(Effect.mapError(fromText))

  const run = (request: RolloutRequest): Effect.Effect<ReadonlyArray<Trajectory>, RolloutError> =>
    Effect.scoped(
      Effect.gen(function*() {
        const config = yield* resolveConfig(request.config)
        const { eos, rules, stop } = yield* resolveAgentTags(tokenizer, config.eosTokens)
        const session = yield* Effect.mapError(engine.session({ plan: request.plan, rules, seed: request.seed }), fromEngine)
        const invalidIds = (yield* Effect.mapError(tokenizer.encode(INVALID_ACTION_MESSAGE), fromText)).ids
        const G = config.groupSize
        const prompts: Array<Int32Array> = []
        for (const p of request.prompts) prompts.push(yield* encodePrompt(p.question, request.config))
        const episodes: Array<Episode> = []
        for (let p = 0; p < prompts.length; p++) {
          for (let g = 0; g < G; g++) {
            const seq = yield* Effect.mapError(session.addSequence(prompts[p]!), fromEngine)
            if (seq !== episodes.length) return yield* configError(`session numbered sequence ${seq}, expected ${episodes.length}`)
            episodes.push({ turns: 0, searches: 0, searchFailures: 0, invalidActions: 0, finish: undefined })
          }
        }
        const options = { maxNewTokens: config.maxTurnTokens, temperature: config.temperature, topP: config.topP, topK: config.topK, eos, stop }
        while (episodes.some((e) => e.finish === undefined)) {
          const gained = yield* Effect.mapError(session.generate(options), fromEngine)
          if (gained.length === 0) break
          const texts = yield* Effect.mapError(tokenizer.decodeBatch(gained.map((g) => g.tokens)), fromText)
          const searches: Array<{ seq: number; query: string }> = []
          const replies = new Map<number, Int32Array>()
          for (let i = 0; i < gained.length; i++) {
            const g: Generated = gained[i]!
            const episode = episodes[g.seq]!
            episode.turns++
            const action = parseAction(texts[i]!)
            if (action._tag === "Answer") {
              episode.finish = "answer"
              continue
            }
            if (episode.turns >= config.maxTurns) {
              episode.finish = finishOf(g.stop as StopReason) ?? "turns"
              continue
            }
            if (action._tag === "Search") {
              if (episode.searches >= config.maxSearches) searches.push({ seq: g.seq, query: "" })
              else {
                episode.searches++
                searches.push({ seq: g.seq, query: action.query })
              }
            } else {
              episode.invalidActions++
              replies.set(g.seq, invalidIds)
            }
          }
          // One batched search for every paused sequence of this turn.
          const real = searches.filter((s) => s.query !== "")
          const passages = new Map<number, string>()
          if (real.length > 0) {
            const result = yield* Effect.result(search.search(real.map((s) => s.query), config.topk))
            real.forEach((s, k) => {
              if (result._tag === "Success") passages.set(s.seq, formatPassages(result.success[k]!))
              else {
                episodes[s.seq]!.searchFailures++
                passages.set(s.seq, searchFailedText(result.failure.message))
              }
            })
          }
          for (const s of searches) if (s.query === "") passages.set(s.seq, searchLimitText(config.maxSearches))
          const order = [...passages.keys()]
          const ids = yield* observationIds(order.map((seq) => passages.get(seq)!), config.maxObservationTokens)
          order.forEach((seq, k) => replies.set(seq, ids[k]!))
          for (const [seq, tokens] of replies) yield* Effect.mapError(session.extend(seq, tokens, "observation"), fromEngine)
          for (let seq = 0; seq < episodes.length; seq++) {
            if (episodes[seq]!.finish !== undefined) continue
            if (!replies.has(seq)) {
              // Neither finished nor answered: cannot happen (every turn ends in one of the three).
              episodes[seq]!.finish = "turns"
              yield* Effect.mapError(session.finish(seq), fromEngine)
            }
          }
        }
        const out: Array<Trajectory> = []
        for (let seq = 0; seq < episodes.length; seq++) {
          const h = yield* Effect.mapError(session.sequence(seq), fromEngine)
          const promptLength = prompts[Math.floor(seq / G)]!.length
          const response = yield* Effect.mapError(tokenizer.decode(h.tokens.subarray(promptLength)), fromText)
          const e = episodes[seq]!
          out.push({
            prompt: Math.floor(seq / G),
            sample: seq % G,
            tokens: h.tokens,
            roles: h.roles,
            routes: h.routes,
            logprobs: h.logprobs,
            promptLength,
            response,
            turns: e.turns,
            searches: e.searches,
            searchFailures: e.searchFailures,
            invalidActions: e.invalidActions,
            finish: e.finish ?? "turns"
          })
        }
        return out
      })
    )

  return { run, encodePrompt }
}

/** Provides Rollout from the Engine, Tokenizer and Search services. */
export const layer = (config: RolloutConfig = defaultRolloutConfig): Layer.Layer<Rollout, never, Engine | Tokenizer | Search> =>
  Layer.effect(Rollout)(
    Effect.gen(function*() {
      return make(yield* Engine, yield* Tokenizer, yield* Search, config)
    })
  )

/**
 * A test layer: `run` answers from a script (the trajectories for each call,
 * in order) instead of decoding, so the loop around it can be tested
 * without a model that writes the agent format.
 */
export const layerScripted = (script: (request: RolloutRequest, call: number) => ReadonlyArray<Trajectory>): Layer.Layer<Rollout> => {
  let calls = 0
  return Layer.succeed(Rollout)({
    run: (request) => Effect.sync(() => script(request, calls++)),
    encodePrompt: (question) => Effect.succeed(Int32Array.from(question, (c) => c.charCodeAt(0) % 64))
  })
}
