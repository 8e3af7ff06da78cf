/**
 * Search as an Effect service: batched queries in, the top hits of each
 * query out. Implementations: the remote one over the Search-R1 retrieval
 * protocol (client.ts) and, planned, a local BM25 index. `make` wraps any
 * implementation with the contract every caller may rely on (see below); the
 * server (server.ts) answers the protocol with any of them.
 */
import { Context, Effect, Layer, Schema } from "effect"

// ---------------------------------------------------------------------------
// Hit

export const Hit = Schema.Struct({
  /** The document's id in its corpus ("" when the server sent none). */
  id: Schema.String,
  /** From the document's `contents` (see `splitContents` in protocol.ts); "" when it has none. */
  title: Schema.String,
  text: Schema.String,
  /** Higher is better; 0 when the server sent no scores. */
  score: Schema.Finite
})
export type Hit = typeof Hit.Type

// ---------------------------------------------------------------------------
// The error

export const SearchErrorReason = Schema.Union([
  /** No complete answer within `ms` milliseconds (one attempt). */
  Schema.TaggedStruct("Timeout", { ms: Schema.Number }),
  /** The server answered with a status other than 2xx; `body` is the start of its body. */
  Schema.TaggedStruct("HttpStatus", { status: Schema.Int, body: Schema.String }),
  /** The server's answer is not JSON or not the protocol's shape; `detail` says what and where. */
  Schema.TaggedStruct("MalformedResponse", { detail: Schema.String }),
  /** No connection (refused, reset, DNS, ...). */
  Schema.TaggedStruct("Unreachable", { detail: Schema.String }),
  /** The request itself is wrong (topk, queries, options); never retried. */
  Schema.TaggedStruct("InvalidRequest", { detail: Schema.String }),
  /** A local implementation (e.g. an index) failed or broke its contract. */
  Schema.TaggedStruct("Backend", { detail: Schema.String })
])
export type SearchErrorReason = typeof SearchErrorReason.Type

export class SearchError extends Schema.TaggedError<SearchError>()("SearchError", {
  /** The endpoint searched, e.g. "http://127.0.0.1:8000/retrieve"; absent for a local implementation. */
  url: Schema.optionalKey(Schema.String),
  /** How many requests were made (the first try and the retries), when more than zero. */
  attempts: Schema.optionalKey(Schema.Int),
  reason: SearchErrorReason
}) {
  override get message(): string {
    const where = this.url ?? "search"
    const tries = this.attempts !== undefined && this.attempts > 1 ? ` (after ${this.attempts} attempts)` : ""
    const reason = this.reason
    switch (reason._tag) {
      case "Timeout":
        return `${where}: no answer within ${reason.ms} ms${tries}`
      case "HttpStatus":
        return `${where}: HTTP ${reason.status}${reason.body === "" ? "" : `: ${reason.body}`}${tries}`
      case "MalformedResponse":
        return `${where}: malformed response: ${reason.detail}${tries}`
      case "Unreachable":
        return `${where}: unreachable: ${reason.detail}${tries}`
      case "InvalidRequest":
        return `${where}: invalid request: ${reason.detail}`
      case "Backend":
        return `${where}: ${reason.detail}${tries}`
    }
  }
}

/** Whether a client should try again: timeouts, no connection and 5xx answers. */
export const isTransient = (error: SearchError): boolean =>
  error.reason._tag === "Timeout" || error.reason._tag === "Unreachable" ||
  (error.reason._tag === "HttpStatus" && error.reason.status >= 500)

// ---------------------------------------------------------------------------
// Service

export interface SearchShape {
  /**
   * The hits of each query, best first: one list per query, in the order of
   * the queries, each with at most `topk` hits (fewer when fewer match).
   * `topk` must be an integer >= 1.
   */
  readonly search: (
    queries: ReadonlyArray<string>,
    topk: number
  ) => Effect.Effect<ReadonlyArray<ReadonlyArray<Hit>>, SearchError>
}

export class Search extends Context.Service<Search, SearchShape>()("@dart-rl/ts/Search") {}

/** Checks the arguments of a search: `InvalidRequest` naming what is wrong, or undefined. */
export const checkArguments = (queries: ReadonlyArray<string>, topk: number): string | undefined => {
  if (!Array.isArray(queries)) return "queries must be an array of strings"
  for (let i = 0; i < queries.length; i++) {
    if (typeof queries[i] !== "string") return `queries[${i}] must be a string, got ${typeof queries[i]}`
  }
  if (!Number.isSafeInteger(topk) || topk < 1) return `topk must be an integer >= 1, got ${String(topk)}`
  return undefined
}

/**
 * A search service from an implementation, with the contract checked around
 * it: bad arguments fail with `InvalidRequest` before the implementation
 * runs; an answer with a wrong number of lists fails with `Backend`; lists
 * longer than `topk` are cut to `topk`.
 */
export const make = (
  search: SearchShape["search"],
  options?: { readonly url?: string }
): SearchShape => {
  const fail = (reason: SearchErrorReason) =>
    Effect.fail(new SearchError({ ...(options?.url === undefined ? {} : { url: options.url }), reason }))
  return {
    search: (queries, topk) => {
      const invalid = checkArguments(queries, topk)
      if (invalid !== undefined) return fail({ _tag: "InvalidRequest", detail: invalid })
      return Effect.flatMap(search(queries, topk), (results) =>
        results.length !== queries.length
          ? fail({ _tag: "Backend", detail: `returned ${results.length} lists for ${queries.length} queries` })
          : Effect.succeed(results.map((hits) => (hits.length > topk ? hits.slice(0, topk) : hits))))
    }
  }
}

/** Provides `Search` from an implementation (wrapped by `make`). */
export const layer = (
  search: SearchShape["search"],
  options?: { readonly url?: string }
): Layer.Layer<Search> => Layer.succeed(Search)(make(search, options))
