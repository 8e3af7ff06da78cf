/**
 * Text as the agent speaks it: a Hugging Face tokenizer (tokenizer.json, run
 * in Rust by the `tokenizers` crate through the addon), the model's chat
 * template (tokenizer_config.json, rendered by minijinja in Rust) and the
 * agent format's tags resolved to token ids from the vocabulary
 * (docs/text.md).
 *
 * A service module: `Tokenizer` (the tag), `make` (over the addon objects),
 * `layerFromFolder` (a model folder), `layerFromFiles`; one error type,
 * `TextError`, whose `code` says what went wrong.
 */
import { Context, Effect, Layer, Schema } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import type * as Addon from "@dart-rl/node"
import { loadNative, nativeErrorCode } from "../engine/native.ts"

export type Encoding = Addon.Encoding
export type AddedToken = Addon.AddedToken
export type ResolvedTag = Addon.ResolvedTag
export type TrainTokenizerOptions = Addon.TrainTokenizerOptions

/** The agent format's tags, in the order `resolveTags` returns them by default. */
export const AGENT_TAGS = [
  "<think>",
  "</think>",
  "<search>",
  "</search>",
  "<information>",
  "</information>",
  "<answer>",
  "</answer>"
] as const

export const TextErrorCode = Schema.Literals([
  /** A file is missing or unreadable. */
  "DART_IO",
  /** tokenizer.json does not parse, or encoding/decoding failed. */
  "DART_TOKENIZER",
  /** The chat template does not parse or fails to render (or there is none). */
  "DART_TEMPLATE",
  /** A tag does not tokenize to the same ids in every context. */
  "DART_TAG",
  /** A bad argument (named in the message). */
  "DART_INVALID_ARGUMENT",
  /** A bug: an internal panic or an error without a known code. */
  "DART_PANIC",
  "DART_UNKNOWN"
])
export type TextErrorCode = typeof TextErrorCode.Type

export class TextError extends Schema.TaggedError<TextError>()("TextError", {
  /** The operation that failed, e.g. "encode". */
  op: Schema.String,
  code: TextErrorCode,
  message: Schema.String
}) {}

const toTextError = (op: string) => (cause: unknown): TextError => {
  const raw = nativeErrorCode(cause)
  const message = cause instanceof Error ? cause.message : String(cause)
  const known = (TextErrorCode.literals as ReadonlyArray<string>).includes(raw)
  return new TextError({ op, code: known ? (raw as TextErrorCode) : "DART_UNKNOWN", message: known ? message : `${raw} ${message}`.trim() })
}

const attempt = <A>(op: string, f: () => A): Effect.Effect<A, TextError> => Effect.try({ try: f, catch: toTextError(op) })

/** A chat message as templates take it (extra fields such as tool_calls pass through). */
export interface ChatMessage {
  readonly role: string
  readonly content?: string | null
  readonly [key: string]: unknown
}

export interface RenderOptions {
  /** Append the assistant header so the model continues as the assistant. */
  readonly addGenerationPrompt: boolean
  /** Tool (function) specs, as transformers' `tools=`. */
  readonly tools?: ReadonlyArray<unknown>
  /** More template variables (e.g. `enable_thinking`). */
  readonly extra?: Record<string, unknown>
}

export interface TokenizerShape {
  /** The addon objects, for what this wrapper does not cover. */
  readonly native: Addon.Tokenizer
  readonly vocabSize: number
  readonly encode: (text: string, addSpecialTokens?: boolean) => Effect.Effect<Encoding, TextError>
  readonly encodeBatch: (texts: ReadonlyArray<string>, addSpecialTokens?: boolean) => Effect.Effect<ReadonlyArray<Encoding>, TextError>
  readonly decode: (ids: Int32Array, skipSpecialTokens?: boolean) => Effect.Effect<string, TextError>
  readonly decodeBatch: (ids: ReadonlyArray<Int32Array>, skipSpecialTokens?: boolean) => Effect.Effect<ReadonlyArray<string>, TextError>
  readonly tokenToId: (token: string) => number | undefined
  readonly addedTokens: ReadonlyArray<AddedToken>
  /** Token ids of each tag from this vocabulary (default: AGENT_TAGS); DART_TAG when one is unstable. */
  readonly resolveTags: (tags?: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<ResolvedTag>, TextError>
  /** Renders a conversation with the model's chat template (DART_TEMPLATE when it has none). */
  readonly renderChat: (messages: ReadonlyArray<ChatMessage>, options: RenderOptions) => Effect.Effect<string, TextError>
  /** renderChat, then encode (no special tokens added: the template writes them). */
  readonly encodeChat: (messages: ReadonlyArray<ChatMessage>, options: RenderOptions) => Effect.Effect<Encoding, TextError>
}

export class Tokenizer extends Context.Service<Tokenizer, TokenizerShape>()("@dart-rl/ts/Tokenizer") {}

/** The service over a native tokenizer and (optionally) a chat template. */
export const make = (native: Addon.Tokenizer, template?: Addon.ChatTemplate): TokenizerShape => {
  const renderChat = (messages: ReadonlyArray<ChatMessage>, options: RenderOptions) =>
    template === undefined
      ? Effect.fail(new TextError({ op: "renderChat", code: "DART_TEMPLATE", message: "this tokenizer has no chat template (tokenizer_config.json without chat_template)" }))
      : attempt("renderChat", () =>
        template.render(
          JSON.stringify(messages),
          options.addGenerationPrompt,
          options.tools === undefined ? undefined : JSON.stringify(options.tools),
          options.extra === undefined ? undefined : JSON.stringify(options.extra)
        ))
  return {
    native,
    vocabSize: native.vocabSize(),
    encode: (text, addSpecialTokens = false) => attempt("encode", () => native.encode(text, addSpecialTokens)),
    encodeBatch: (texts, addSpecialTokens = false) => attempt("encodeBatch", () => native.encodeBatch([...texts], addSpecialTokens)),
    decode: (ids, skip = false) => attempt("decode", () => native.decode(ids, skip)),
    decodeBatch: (ids, skip = false) => attempt("decodeBatch", () => native.decodeBatch([...ids], skip)),
    tokenToId: (token) => native.tokenToId(token) ?? undefined,
    addedTokens: native.addedTokens(),
    resolveTags: (tags) => attempt("resolveTags", () => native.resolveTags(tags === undefined ? undefined : [...tags])),
    renderChat,
    encodeChat: (messages, options) =>
      Effect.flatMap(renderChat(messages, options), (text) => attempt("encodeChat", () => native.encode(text, false)))
  }
}

/**
 * From a model folder: tokenizer.json, and the chat template of
 * tokenizer_config.json when the folder has one with a chat_template.
 */
export const fromFolder = (dir: string): Effect.Effect<TokenizerShape, TextError> =>
  Effect.gen(function*() {
    const native = yield* attempt("load", () => loadNative().Tokenizer.fromFile(join(dir, "tokenizer.json")))
    const config = join(dir, "tokenizer_config.json")
    const template = existsSync(config)
      ? yield* attempt("load", () => loadNative().ChatTemplate.fromTokenizerConfig(config)).pipe(
        // A base model's config has no template: the tokenizer still works.
        Effect.catchIf((e) => e.code === "DART_TEMPLATE" && e.message.includes("no chat_template"), () => Effect.succeed(undefined))
      )
      : undefined
    return make(native, template)
  })

export const layerFromFolder = (dir: string): Layer.Layer<Tokenizer, TextError> => Layer.effect(Tokenizer, fromFolder(dir))

/** Trains a byte-level BPE tokenizer (Qwen2 layout) on texts; no chat template. */
export const train = (texts: ReadonlyArray<string>, options?: TrainTokenizerOptions): Effect.Effect<TokenizerShape, TextError> =>
  Effect.map(attempt("train", () => loadNative().Tokenizer.train([...texts], options)), (native) => make(native))
