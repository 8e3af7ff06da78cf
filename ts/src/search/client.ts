/**
 * `Search` over HTTP: the client side of the Search-R1 retrieval protocol
 * (protocol.ts), for our server (server.ts) or Search-R1's own
 * `retrieval_server.py`. All the queries of one call go in one request.
 *
 * Each request has its own timeout (connecting, the headers and the whole
 * body); timeouts, connection failures and 5xx answers are retried with
 * exponential back-off, 4xx answers and malformed responses are not. Every
 * failure is a `SearchError` naming the URL (docs/search.md, "Client").
 */
import { Duration, Effect, Layer, Result, Schedule } from "effect"
import * as FetchHttpClient from "effect/http/FetchHttpClient"
import * as HttpClient from "effect/http/HttpClient"
import * as HttpClientRequest from "effect/http/HttpClientRequest"
import { decodeResponse, encodeRequest } from "./protocol.ts"
import { checkArguments, type Hit, Search, SearchError, type SearchErrorReason, type SearchShape, isTransient } from "./Search.ts"

export interface RemoteOptions {
  /** The endpoint, e.g. "http://127.0.0.1:8000/retrieve" (Search-R1's `retriever.url`). */
  readonly url: string
  /** Per request (one attempt): connecting, the headers and the whole body. Default 10000. */
  readonly timeoutMs?: number
  /** Further attempts after the first, on timeouts, connection failures and 5xx. Default 3. */
  readonly retries?: number
  /** Wait before the first retry; doubled before each next one. Default 200. */
  readonly backoffMs?: number
}

/** The options with their defaults, checked. */
export interface ResolvedRemoteOptions {
  readonly url: string
  readonly timeoutMs: number
  readonly retries: number
  readonly backoffMs: number
}

/** How many characters of an error body an `HttpStatus` reason keeps. */
export const BODY_EXCERPT = 200

const excerpt = (text: string, max = BODY_EXCERPT): string => {
  const flat = text.replace(/\s+/g, " ").trim()
  return flat.length > max ? `${flat.slice(0, max)}...` : flat
}

/** The messages of an error and its causes, e.g. "fetch failed: connect ECONNREFUSED 127.0.0.1:9". */
export const causeDetail = (cause: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = cause
  for (let depth = 0; depth < 5 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) {
      if (current.message !== "" && !parts.includes(current.message)) parts.push(current.message)
      else if ("code" in current && typeof current.code === "string") parts.push(current.code)
      current = current.cause
    } else {
      parts.push(String(current))
      break
    }
  }
  return parts.length === 0 ? "unknown error" : parts.join(": ")
}

/** The options with their defaults, or the `InvalidRequest` reason's detail. */
export const resolveOptions = (options: RemoteOptions): ResolvedRemoteOptions | string => {
  const { backoffMs = 200, retries = 3, timeoutMs = 10_000, url } = options
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return `url must be an absolute http(s) URL, got ${JSON.stringify(url)}`
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    return `url must be an http(s) URL, got ${JSON.stringify(url)}`
  }
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) return `timeoutMs must be a positive number, got ${timeoutMs}`
  if (!Number.isSafeInteger(retries) || retries < 0) return `retries must be an integer >= 0, got ${retries}`
  if (!Number.isFinite(backoffMs) || backoffMs < 0) return `backoffMs must be a number >= 0, got ${backoffMs}`
  return { url, timeoutMs, retries, backoffMs }
}

/**
 * The remote search over the given HTTP client. Fails with `InvalidRequest`
 * when the options are wrong (a bad URL, a timeout <= 0, ...).
 */
export const makeRemote = (
  options: RemoteOptions
): Effect.Effect<SearchShape, SearchError, HttpClient.HttpClient> =>
  Effect.gen(function*() {
    const resolved = resolveOptions(options)
    if (typeof resolved === "string") {
      return yield* Effect.fail(new SearchError({ url: options.url, reason: { _tag: "InvalidRequest", detail: resolved } }))
    }
    const { backoffMs, retries, timeoutMs, url } = resolved
    const client = yield* HttpClient.HttpClient
    const error = (reason: SearchErrorReason) => new SearchError({ url, reason })

    const once = (
      queries: ReadonlyArray<string>,
      topk: number
    ): Effect.Effect<ReadonlyArray<ReadonlyArray<Hit>>, SearchError> =>
      Effect.gen(function*() {
        const request = HttpClientRequest.post(url).pipe(
          HttpClientRequest.acceptJson,
          HttpClientRequest.bodyText(JSON.stringify(encodeRequest(queries, topk)), "application/json")
        )
        const response = yield* client.execute(request).pipe(
          Effect.mapError((cause) => error({ _tag: "Unreachable", detail: causeDetail(cause.reason.cause ?? cause) }))
        )
        const text = yield* response.text.pipe(
          Effect.mapError((cause) =>
            error({ _tag: "Unreachable", detail: `connection lost while reading the answer: ${causeDetail(cause.reason.cause ?? cause)}` })
          )
        )
        if (response.status < 200 || response.status >= 300) {
          return yield* Effect.fail(error({ _tag: "HttpStatus", status: response.status, body: excerpt(text) }))
        }
        let body: unknown
        try {
          body = JSON.parse(text)
        } catch (cause) {
          return yield* Effect.fail(
            error({ _tag: "MalformedResponse", detail: `not JSON (${causeDetail(cause)}): ${JSON.stringify(excerpt(text, 80))}` })
          )
        }
        const decoded = decodeResponse(body, queries.length, topk)
        if (Result.isFailure(decoded)) return yield* Effect.fail(error({ _tag: "MalformedResponse", detail: decoded.failure }))
        return decoded.success
      }).pipe(
        Effect.timeoutOrElse({
          duration: Duration.millis(timeoutMs),
          orElse: () => Effect.fail(error({ _tag: "Timeout", ms: timeoutMs }))
        })
      )

    const search: SearchShape["search"] = (queries, topk) =>
      Effect.suspend(() => {
        const invalid = checkArguments(queries, topk)
        if (invalid !== undefined) return Effect.fail(error({ _tag: "InvalidRequest", detail: invalid }))
        if (queries.length === 0) return Effect.succeed([])
        let attempts = 0
        return Effect.suspend(() => {
          attempts++
          return once(queries, topk)
        }).pipe(
          Effect.retry({
            schedule: Schedule.exponential(Duration.millis(backoffMs)),
            times: retries,
            while: isTransient
          }),
          Effect.mapError((e) => new SearchError({ url, attempts, reason: e.reason }))
        )
      })

    return { search }
  })

/**
 * Provides `Search` over HTTP with the fetch client. Options: the endpoint
 * `url`; `timeoutMs` = 10000 per request; `retries` = 3 after the first
 * attempt; `backoffMs` = 200, doubled before each next retry.
 */
export const layerRemote = (options: RemoteOptions): Layer.Layer<Search, SearchError> =>
  Layer.effect(Search)(makeRemote(options)).pipe(Layer.provide(FetchHttpClient.layer))
