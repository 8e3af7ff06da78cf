/**
 * The server side of the Search-R1 retrieval protocol: `POST /retrieve` over
 * any `Search` implementation, so that Search-R1, verl-tool or our own client
 * can search through it (docs/search.md, "Server").
 *
 * Answers: 200 `{"result": ...}` (topk and return_scores honoured); 400
 * `{"error": "..."}` naming the bad field of an invalid request; 404 on any
 * other path; 405 (with `Allow: POST`) on other methods at /retrieve; 500,
 * 502 or 504 `{"error": ...}` when the search itself fails. The server
 * listens while its scope is open and is closed with it.
 */
import { NodeHttpServer } from "@effect/platform-node"
import { Context, Effect, Layer, Result, Schema, type Scope } from "effect"
import { HttpServerRequest } from "effect/http/HttpServerRequest"
import * as HttpServerResponse from "effect/http/HttpServerResponse"
import { createServer } from "node:http"
import type { AddressInfo } from "node:net"
import { decodeRequest, encodeResponse } from "./protocol.ts"
import { make, Search, type SearchError, type SearchShape } from "./Search.ts"

// ---------------------------------------------------------------------------
// The error

export const SearchServerErrorReason = Schema.Union([
  /** The server cannot listen on the address (port in use, bad host, ...). */
  Schema.TaggedStruct("Listen", { detail: Schema.String })
])
export type SearchServerErrorReason = typeof SearchServerErrorReason.Type

export class SearchServerError extends Schema.TaggedError<SearchServerError>()("SearchServerError", {
  host: Schema.String,
  port: Schema.Int,
  reason: SearchServerErrorReason
}) {
  override get message(): string {
    return `cannot serve search on ${this.host}:${this.port}: ${this.reason.detail}`
  }
}

// ---------------------------------------------------------------------------
// Options and address

export interface ServeOptions<E = never> {
  /** Default "127.0.0.1" (loopback only); "0.0.0.0" to serve other machines. */
  readonly host?: string
  /** Default 0: any free port (see the returned address). */
  readonly port?: number
  /** The search to serve: a service, or a layer built in the server's scope. */
  readonly search: SearchShape | Layer.Layer<Search, E>
  /** The topk of a request without one (Search-R1's server default: 3). */
  readonly defaultTopk?: number
}

export interface ServerAddress {
  readonly host: string
  readonly port: number
  /** The endpoint, e.g. "http://127.0.0.1:8000/retrieve": the `url` of `layerRemote`. */
  readonly url: string
}

/** The path the protocol answers on. */
export const RETRIEVE_PATH = "/retrieve"

const jsonResponse = (status: number, body: unknown, headers?: Record<string, string>) =>
  HttpServerResponse.jsonUnsafe(body, { status, ...(headers === undefined ? {} : { headers }) })

const errorResponse = (status: number, error: string, headers?: Record<string, string>) =>
  jsonResponse(status, { error }, headers)

/** The HTTP status a failed search is answered with. */
const statusOf = (error: SearchError): number => {
  switch (error.reason._tag) {
    case "InvalidRequest":
      return 400
    case "Timeout":
      return 504
    case "HttpStatus":
    case "MalformedResponse":
    case "Unreachable":
      return 502
    case "Backend":
      return 500
  }
}

const pathOf = (url: string): string => {
  try {
    return new URL(url, "http://localhost").pathname
  } catch {
    return url
  }
}

/** The request handler over `search` (exported for embedding in another effect HTTP app). */
export const handler = (search: SearchShape, defaultTopk = 3) =>
  Effect.gen(function*() {
    const request = yield* HttpServerRequest
    const path = pathOf(request.url)
    if (path !== RETRIEVE_PATH) {
      return errorResponse(404, `no such path ${JSON.stringify(path)}: the endpoint is POST ${RETRIEVE_PATH}`)
    }
    if (request.method !== "POST") {
      return errorResponse(405, `method ${request.method} not allowed on ${RETRIEVE_PATH}: use POST`, { allow: "POST" })
    }
    const text = yield* Effect.result(request.text)
    if (Result.isFailure(text)) return errorResponse(400, `cannot read the request body: ${text.failure.message}`)
    let body: unknown
    try {
      body = JSON.parse(text.success)
    } catch (cause) {
      return errorResponse(400, `the body is not valid JSON: ${cause instanceof Error ? cause.message : String(cause)}`)
    }
    const decoded = decodeRequest(body)
    if (Result.isFailure(decoded)) return errorResponse(400, `invalid request: ${decoded.failure}`)
    const { queries, return_scores: returnScores = false, topk } = decoded.success
    const results = yield* Effect.result(search.search(queries, topk ?? defaultTopk))
    if (Result.isFailure(results)) return errorResponse(statusOf(results.failure), results.failure.message)
    return jsonResponse(200, encodeResponse(results.success, returnScores))
  }).pipe(
    Effect.catchDefect((defect) =>
      Effect.succeed(errorResponse(500, `search failed: ${defect instanceof Error ? defect.message : String(defect)}`))
    )
  )

/**
 * Starts an HTTP server answering the protocol with `search` and returns
 * its address; it listens until the enclosing scope closes. A `search` given
 * as a layer is built in the same scope (and released after the server).
 */
export const serve = <E = never>(
  options: ServeOptions<E>
): Effect.Effect<ServerAddress, SearchServerError | E, Scope.Scope> =>
  Effect.gen(function*() {
    const host = options.host ?? "127.0.0.1"
    const port = options.port ?? 0
    const search: SearchShape = Layer.isLayer(options.search)
      ? yield* Layer.build(options.search as Layer.Layer<Search, E>).pipe(Effect.map(Context.get(Search)))
      : options.search as SearchShape
    const node = createServer()
    const server = yield* NodeHttpServer.make(() => node, { host, port }).pipe(
      Effect.mapError((error) =>
        new SearchServerError({ host, port, reason: { _tag: "Listen", detail: error.cause instanceof Error ? error.cause.message : String(error.cause) } })
      )
    )
    yield* server.serve(handler(make(search.search), options.defaultTopk))
    const bound = node.address() as AddressInfo
    const urlHost = bound.family === "IPv6" || bound.address.includes(":") ? `[${bound.address}]` : bound.address
    return { host: bound.address, port: bound.port, url: `http://${urlHost}:${bound.port}${RETRIEVE_PATH}` }
  })
