/**
 * The Search-R1 retrieval protocol (ts/src/search), both ways, over real
 * loopback servers: our client against our server (over a tiny in-memory
 * search), the server's 400/404/405 answers, and the client against hostile
 * node:http servers started here (5xx, garbage, wrong shapes, hangs, a
 * closed port). Plus the corpus layout and passage format (fast-check).
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Layer, Result, Scope } from "effect"
import fc from "fast-check"
import { createServer, type IncomingMessage, type ServerResponse } from "node:http"
import type { AddressInfo } from "node:net"
import {
  decodeResponse,
  encodeResponse,
  formatContents,
  formatPassages,
  type Hit,
  joinContents,
  layer as searchLayer,
  layerRemote,
  make,
  type RemoteOptions,
  Search,
  SearchError,
  type SearchShape,
  serve,
  SearchServerError,
  splitContents
} from "../src/search/index.ts"

// ---------------------------------------------------------------------------
// A tiny in-memory search: score = number of distinct lower-case words shared
// with the query; best first, ties by id; documents sharing no word are left out.

interface Doc {
  readonly id: string
  readonly contents: string
}

const corpus: ReadonlyArray<Doc> = [
  { id: "d1", contents: "\"Paris\"\nParis is the capital of France." },
  { id: "d2", contents: "\"Eiffel Tower\"\nThe Eiffel Tower is a tower in Paris, France." },
  { id: "d3", contents: "\"Berlin\"\nBerlin is the capital of Germany." },
  { id: "d4", contents: "\"Oslo\"\nOslo, once named Christiania, is the capital of Norway." },
  { id: "d5", contents: "no title line here: the tower of London" }
]

const words = (text: string): Set<string> => new Set(text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((w) => w !== ""))

const rank = (docs: ReadonlyArray<Doc>, query: string): ReadonlyArray<Hit> => {
  const q = words(query)
  return docs
    .map((doc) => {
      let score = 0
      for (const w of words(doc.contents)) if (q.has(w)) score++
      return { id: doc.id, ...splitContents(doc.contents), score }
    })
    .filter((hit) => hit.score > 0)
    .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
}

/** The in-memory search, recording the batch size of each call. */
const memorySearch = (docs: ReadonlyArray<Doc> = corpus) => {
  const calls: Array<number> = []
  const service = make((queries, topk) =>
    Effect.sync(() => {
      calls.push(queries.length)
      return queries.map((query) => rank(docs, query).slice(0, topk))
    })
  )
  return { calls, service }
}

// ---------------------------------------------------------------------------
// Helpers

/** Searches through `layerRemote(options)`; the SearchError is in the Exit. */
const remoteSearch = (options: RemoteOptions, queries: ReadonlyArray<string>, topk: number) =>
  Effect.gen(function*() {
    const search = yield* Search
    return yield* search.search(queries, topk)
  }).pipe(Effect.provide(layerRemote(options)))

/** The SearchError an effect fails with (fails the test if it succeeds or dies). */
const searchFailure = <A>(effect: Effect.Effect<A, SearchError>) =>
  Effect.gen(function*() {
    const exit = yield* Effect.exit(effect)
    if (Exit.isSuccess(exit)) return assert.fail(`expected a SearchError, got ${JSON.stringify(exit.value)}`)
    const result = yield* Effect.result(effect)
    if (Result.isSuccess(result)) return assert.fail("expected a SearchError on the second run")
    assert.instanceOf(result.failure, SearchError)
    return result.failure
  })

/** A raw request to a URL with the real fetch: status, headers and the parsed JSON body. */
const raw = (url: string, init?: RequestInit) =>
  Effect.promise(async () => {
    const response = await fetch(url, init)
    const text = await response.text()
    let json: unknown
    try {
      json = JSON.parse(text)
    } catch {
      json = undefined
    }
    return { status: response.status, headers: response.headers, text, json }
  })

const post = (url: string, body: unknown) =>
  raw(url, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) })

/** Our server over the in-memory search, in the test's scope. */
const ourServer = (docs: ReadonlyArray<Doc> = corpus) =>
  Effect.gen(function*() {
    const memory = memorySearch(docs)
    const address = yield* serve({ search: memory.service })
    return { ...address, calls: memory.calls }
  })

interface Hostile {
  readonly url: string
  /** Requests received so far. */
  readonly attempts: () => number
  /** Milliseconds (performance.now) at which each request arrived. */
  readonly times: ReadonlyArray<number>
  /** The parsed JSON bodies received. */
  readonly bodies: ReadonlyArray<unknown>
}

/**
 * A node:http server on 127.0.0.1 answering each request with `answer(attempt,
 * res)` (attempt counts from 1), closed (connections included) with the
 * test's scope.
 */
const hostile = (answer: (attempt: number, res: ServerResponse, req: IncomingMessage) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ server: ReturnType<typeof createServer>; hostile: Hostile }>((resume) => {
      let attempts = 0
      const times: Array<number> = []
      const bodies: Array<unknown> = []
      const server = createServer((req, res) => {
        attempts++
        const attempt = attempts
        times.push(performance.now())
        let body = ""
        req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")))
        req.on("end", () => {
          try {
            bodies.push(JSON.parse(body))
          } catch {
            bodies.push(body)
          }
          answer(attempt, res, req)
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ server, hostile: { url: `http://127.0.0.1:${port}/retrieve`, attempts: () => attempts, times, bodies } }))
      })
    }),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  ).pipe(Effect.map(({ hostile }) => hostile))

const sendJson = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" })
  res.end(typeof body === "string" ? body : JSON.stringify(body))
}

/** A good Search-R1 answer for `queries` queries: one scored document each. */
const goodAnswer = (queries: number) => ({
  result: Array.from({ length: queries }, (_, q) => [{ document: { id: `q${q}`, contents: `"T${q}"\nbody ${q}` }, score: 1.5 }])
})

/** A port nothing listens on: bound to 0, then closed. */
const closedPort = Effect.callback<number>((resume) => {
  const server = createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

const fast = { timeoutMs: 2000, retries: 3, backoffMs: 5 }

// ---------------------------------------------------------------------------
// Our client against our server

describe("our client against our server", () => {
  it.live("batches the queries in one request; topk, scores, titles and texts survive the round trip", () =>
    Effect.gen(function*() {
      const server = yield* ourServer()
      const queries = ["capital of France", "eiffel tower", "Christiania", "nothing matches zzz"]
      const results = yield* remoteSearch({ url: server.url }, queries, 2)
      // One request (one call of the search) for the four queries.
      expect(server.calls).toEqual([4])
      expect(results.length).toBe(4)
      // Exactly what the in-memory search gives directly, top 2.
      expect(results).toEqual(queries.map((q) => rank(corpus, q).slice(0, 2)))
      expect(results[0]).toEqual([
        { id: "d1", title: "Paris", text: "Paris is the capital of France.", score: 3 },
        { id: "d3", title: "Berlin", text: "Berlin is the capital of Germany.", score: 2 }
      ])
      expect(results[1]!.map((h) => h.id)).toEqual(["d2", "d5"])
      // A document without a quoted title line has title "" and its contents as text.
      expect(results[1]![1]).toEqual({ id: "d5", title: "", text: "no title line here: the tower of London", score: 1 })
      expect(results[2]).toEqual([{ id: "d4", title: "Oslo", text: "Oslo, once named Christiania, is the capital of Norway.", score: 1 }])
      expect(results[3]).toEqual([])
      // topk is honoured: 1 and 10.
      const one = yield* remoteSearch({ url: server.url }, ["capital"], 1)
      expect(one).toEqual([[rank(corpus, "capital")[0]]])
      const many = yield* remoteSearch({ url: server.url }, ["capital"], 10)
      expect(many[0]!.length).toBe(3)
      expect(server.calls).toEqual([4, 1, 1])
    }))

  it.live("answers in Search-R1's exact JSON, with and without scores", () =>
    Effect.gen(function*() {
      const server = yield* ourServer()
      const scored = yield* post(server.url, { queries: ["Berlin Germany"], topk: 3, return_scores: true })
      expect(scored.status).toBe(200)
      expect(scored.headers.get("content-type")).toContain("application/json")
      expect(scored.json).toEqual({
        result: [[{ document: { id: "d3", contents: "\"Berlin\"\nBerlin is the capital of Germany." }, score: 2 }]]
      })
      const plain = yield* post(server.url, { queries: ["Berlin Germany", "tower"], topk: 2, return_scores: false })
      expect(plain.status).toBe(200)
      expect(plain.json).toEqual({
        result: [
          [{ id: "d3", contents: "\"Berlin\"\nBerlin is the capital of Germany." }],
          [
            { id: "d2", contents: "\"Eiffel Tower\"\nThe Eiffel Tower is a tower in Paris, France." },
            { id: "d5", contents: "no title line here: the tower of London" }
          ]
        ]
      })
      // Our decoder reads the unwrapped form too (score 0: none was sent).
      const decoded = decodeResponse(plain.json, 2, 2)
      assert.isTrue(Result.isSuccess(decoded))
      if (Result.isSuccess(decoded)) {
        expect(decoded.success[0]).toEqual([{ id: "d3", title: "Berlin", text: "Berlin is the capital of Germany.", score: 0 }])
      }
      // As Search-R1's FastAPI model: topk and return_scores may be left out (defaults 3 and false).
      const defaults = yield* post(server.url, { queries: ["capital"] })
      expect(defaults.status).toBe(200)
      expect(defaults.json).toEqual({ result: [rank(corpus, "capital").slice(0, 3).map((h) => ({ id: h.id, contents: joinContents(h.title, h.text) }))] })
      const nullTopk = yield* post(server.url, { queries: ["capital"], topk: null, return_scores: true })
      expect((nullTopk.json as { result: Array<Array<unknown>> }).result[0]!.length).toBe(3)
    }))

  it.live("an empty batch is answered without a request; the client checks topk and queries first", () =>
    Effect.gen(function*() {
      const server = yield* ourServer()
      expect(yield* remoteSearch({ url: server.url }, [], 3)).toEqual([])
      for (const topk of [0, -1, 1.5, Number.NaN]) {
        const error = yield* searchFailure(remoteSearch({ url: server.url }, ["x"], topk))
        expect(error.reason._tag).toBe("InvalidRequest")
        expect(error.message).toContain(server.url)
        expect(error.message).toContain("topk must be an integer >= 1")
      }
      const badQuery = yield* searchFailure(remoteSearch({ url: server.url }, ["ok", 3 as unknown as string], 3))
      expect(badQuery.message).toContain("queries[1] must be a string")
      expect(server.calls).toEqual([])
    }))

  it.live("bad options fail the layer with InvalidRequest", () =>
    Effect.gen(function*() {
      const cases: ReadonlyArray<[RemoteOptions, string]> = [
        [{ url: "not a url" }, "url must be an absolute http(s) URL"],
        [{ url: "ftp://127.0.0.1/retrieve" }, "url must be an http(s) URL"],
        [{ url: "http://127.0.0.1:1/retrieve", timeoutMs: 0 }, "timeoutMs must be a positive number"],
        [{ url: "http://127.0.0.1:1/retrieve", retries: -1 }, "retries must be an integer >= 0"],
        [{ url: "http://127.0.0.1:1/retrieve", retries: 1.5 }, "retries must be an integer >= 0"],
        [{ url: "http://127.0.0.1:1/retrieve", backoffMs: -5 }, "backoffMs must be a number >= 0"]
      ]
      for (const [options, expected] of cases) {
        const error = yield* searchFailure(remoteSearch(options, ["q"], 1))
        expect(error.reason._tag).toBe("InvalidRequest")
        expect(error.message).toContain(expected)
        expect(error.message).toContain(options.url)
      }
    }))
})

// ---------------------------------------------------------------------------
// The server's answers

describe("the server", () => {
  it.live("answers an invalid request with 400 and a JSON error naming the field", () =>
    Effect.gen(function*() {
      const server = yield* ourServer()
      const cases: ReadonlyArray<[string, unknown, string]> = [
        ["not JSON", "{queries: [", "the body is not valid JSON"],
        ["an array", ["q"], "the body must be a JSON object, got an array of 1"],
        ["no queries", { topk: 3 }, "queries: Missing key"],
        ["queries a string", { queries: "q", topk: 3, return_scores: true }, "queries: Expected array"],
        ["a query not a string", { queries: ["a", 3], topk: 3, return_scores: true }, "queries[1]: Expected string"],
        ["topk 0", { queries: ["a"], topk: 0, return_scores: true }, "topk: Expected a value greater than or equal to 1"],
        ["topk 1.5", { queries: ["a"], topk: 1.5, return_scores: true }, "topk: Expected an integer"],
        ["topk a string", { queries: ["a"], topk: "3", return_scores: true }, "topk:"],
        ["return_scores a string", { queries: ["a"], topk: 3, return_scores: "yes" }, "return_scores: Expected boolean"]
      ]
      for (const [name, body, expected] of cases) {
        const answer = yield* post(server.url, body)
        expect(answer.status, name).toBe(400)
        const error = (answer.json as { error?: unknown } | undefined)?.error
        assert.isString(error, `${name}: ${answer.text}`)
        expect(error, name).toContain(expected)
      }
      // Every field at fault is named, not only the first.
      const both = yield* post(server.url, { queries: [1], topk: 0, return_scores: 1 })
      const error = (both.json as { error: string }).error
      for (const field of ["queries[0]", "topk", "return_scores"]) expect(error).toContain(field)
      expect(server.calls).toEqual([])
    }))

  it.live("404 on other paths, 405 with Allow: POST on other methods", () =>
    Effect.gen(function*() {
      const server = yield* ourServer()
      const base = server.url.replace(/\/retrieve$/, "")
      for (const path of ["/", "/search", "/retrieve/x", "/Retrieve"]) {
        const answer = yield* post(`${base}${path}`, { queries: ["a"], topk: 1, return_scores: true })
        expect(answer.status, path).toBe(404)
        expect((answer.json as { error: string }).error).toContain(JSON.stringify(path))
      }
      for (const method of ["GET", "PUT", "DELETE"]) {
        const answer = yield* raw(server.url, { method })
        expect(answer.status, method).toBe(405)
        expect(answer.headers.get("allow")).toBe("POST")
        expect((answer.json as { error: string }).error).toContain(method)
      }
      // A query string does not change the path.
      const query = yield* post(`${server.url}?x=1`, { queries: ["Oslo"], topk: 1, return_scores: true })
      expect(query.status).toBe(200)
      expect(server.calls).toEqual([1])
    }))

  it.live("a failing search is a JSON 5xx; InvalidRequest from the search is a 400", () =>
    Effect.gen(function*() {
      const failing: SearchShape = {
        search: (queries) =>
          queries[0] === "invalid"
            ? Effect.fail(new SearchError({ reason: { _tag: "InvalidRequest", detail: "topk too large for this index" } }))
            : queries[0] === "defect"
            ? Effect.die(new Error("index file vanished"))
            : queries[0] === "short"
            ? Effect.succeed([])
            : Effect.fail(new SearchError({ reason: { _tag: "Backend", detail: "index is locked" } }))
      }
      const server = yield* serve({ search: failing })
      const backend = yield* post(server.url, { queries: ["x"], topk: 1, return_scores: true })
      expect(backend.status).toBe(500)
      expect((backend.json as { error: string }).error).toContain("index is locked")
      const invalid = yield* post(server.url, { queries: ["invalid"], topk: 1, return_scores: true })
      expect(invalid.status).toBe(400)
      expect((invalid.json as { error: string }).error).toContain("topk too large")
      const defect = yield* post(server.url, { queries: ["defect"], topk: 1, return_scores: true })
      expect(defect.status).toBe(500)
      expect((defect.json as { error: string }).error).toContain("index file vanished")
      // A search that breaks the contract (no list for the query) is caught by make.
      const short = yield* post(server.url, { queries: ["short"], topk: 1, return_scores: true })
      expect(short.status).toBe(500)
      expect((short.json as { error: string }).error).toContain("returned 0 lists for 1 queries")
      // Through our client: a 500 is retried, then HttpStatus with the server's message.
      const error = yield* searchFailure(remoteSearch({ url: server.url, retries: 1, backoffMs: 1 }, ["x"], 1))
      assert.deepStrictEqual(error.reason._tag, "HttpStatus")
      expect(error.attempts).toBe(2)
      expect(error.message).toContain("HTTP 500")
      expect(error.message).toContain("index is locked")
    }))

  it.live("a remote search behind the server: its timeout is a 504, its unreachable server a 502", () =>
    Effect.gen(function*() {
      const hang = yield* hostile(() => {
        // never answers
      })
      const slow = yield* serve({ search: layerRemote({ url: hang.url, timeoutMs: 100, retries: 0 }) })
      const timeout = yield* post(slow.url, { queries: ["a"], topk: 1, return_scores: true })
      expect(timeout.status).toBe(504)
      expect((timeout.json as { error: string }).error).toBe(`${hang.url}: no answer within 100 ms`)
      const port = yield* closedPort
      const gone = yield* serve({ search: layerRemote({ url: `http://127.0.0.1:${port}/retrieve`, retries: 0 }) })
      const unreachable = yield* post(gone.url, { queries: ["a"], topk: 1, return_scores: true })
      expect(unreachable.status).toBe(502)
      expect((unreachable.json as { error: string }).error).toContain("ECONNREFUSED")
      // A layer that fails to build fails serve with its error.
      const bad = yield* Effect.flip(serve({ search: layerRemote({ url: "nope" }) }))
      assert.instanceOf(bad, SearchError)
      expect(bad.reason._tag).toBe("InvalidRequest")
    }), 15_000)

  it.live("serves a layer; stops listening when its scope closes", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      let released = false
      const memory = memorySearch()
      const layer = Layer.effect(Search)(
        Effect.acquireRelease(Effect.succeed(memory.service), () => Effect.sync(() => (released = true)))
      )
      const server = yield* serve({ search: layer }).pipe(Scope.provide(scope))
      const hits = yield* remoteSearch({ url: server.url }, ["Oslo"], 1)
      expect(hits[0]![0]!.id).toBe("d4")
      expect(server.host).toBe("127.0.0.1")
      expect(server.port).toBeGreaterThan(0)
      yield* Scope.close(scope, Exit.void)
      expect(released).toBe(true)
      const error = yield* searchFailure(remoteSearch({ url: server.url, retries: 0 }, ["Oslo"], 1))
      expect(error.reason._tag).toBe("Unreachable")
    }))

  it.live("a port in use is a SearchServerError naming host and port", () =>
    Effect.gen(function*() {
      const first = yield* ourServer()
      const exit = yield* Effect.exit(serve({ search: memorySearch().service, port: first.port }))
      assert.isTrue(Exit.isFailure(exit))
      const error = yield* Effect.flip(serve({ search: memorySearch().service, port: first.port }))
      assert.instanceOf(error, SearchServerError)
      expect(error.message).toContain(`127.0.0.1:${first.port}`)
      expect(error.message).toContain("EADDRINUSE")
    }))
})

// ---------------------------------------------------------------------------
// Our client against hostile servers

describe("the client against hostile servers", () => {
  it.live("a server that always answers 500: retried, then HttpStatus after retries + 1 attempts", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => sendJson(res, 500, { detail: "Internal Server Error: CUDA out of memory" }))
      const error = yield* searchFailure(remoteSearch({ url: server.url, retries: 3, backoffMs: 5 }, ["a", "b"], 3))
      // searchFailure runs the search twice.
      expect(server.attempts()).toBe(8)
      expect(error.attempts).toBe(4)
      assert.deepStrictEqual(error.reason, { _tag: "HttpStatus", status: 500, body: "{\"detail\":\"Internal Server Error: CUDA out of memory\"}" })
      expect(error.message).toBe(`${server.url}: HTTP 500: {"detail":"Internal Server Error: CUDA out of memory"} (after 4 attempts)`)
      // Each attempt sent the same batched request.
      for (const body of server.bodies) expect(body).toEqual({ queries: ["a", "b"], topk: 3, return_scores: true })
    }))

  it.live("retries = 0 makes exactly one attempt; a 503 is retried like a 500", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => sendJson(res, 503, "busy"))
      const error = yield* Effect.flip(remoteSearch({ url: server.url, retries: 0, backoffMs: 5 }, ["a"], 1))
      expect(server.attempts()).toBe(1)
      expect(error.attempts).toBe(1)
      expect(error.reason).toEqual({ _tag: "HttpStatus", status: 503, body: "busy" })
      const again = yield* Effect.flip(remoteSearch({ url: server.url, retries: 2, backoffMs: 5 }, ["a"], 1))
      expect(server.attempts()).toBe(4)
      expect(again.attempts).toBe(3)
    }))

  it.live("a server that answers 500 twice and then succeeds: the client succeeds", () =>
    Effect.gen(function*() {
      const server = yield* hostile((attempt, res) =>
        attempt <= 2 ? sendJson(res, 500, "try again") : sendJson(res, 200, goodAnswer(2))
      )
      const results = yield* remoteSearch({ url: server.url, retries: 3, backoffMs: 5 }, ["x", "y"], 3)
      expect(server.attempts()).toBe(3)
      expect(results).toEqual([
        [{ id: "q0", title: "T0", text: "body 0", score: 1.5 }],
        [{ id: "q1", title: "T1", text: "body 1", score: 1.5 }]
      ])
    }))

  it.live("the back-off doubles between attempts", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => sendJson(res, 502, "bad gateway"))
      const backoffMs = 60
      yield* Effect.flip(remoteSearch({ url: server.url, retries: 3, backoffMs }, ["a"], 1))
      expect(server.times.length).toBe(4)
      const gaps = server.times.slice(1).map((t, i) => t - server.times[i]!)
      // Waits of 60, 120 and 240 ms (timers may fire a little early or late).
      // (Late timers only lengthen the gaps, so the lower bounds are safe under load.)
      gaps.forEach((gap, i) => expect(gap, `gap ${i}: ${gaps.join(", ")}`).toBeGreaterThanOrEqual(backoffMs * 2 ** i - 5))
    }))

  it.live("4xx answers are not retried", () =>
    Effect.gen(function*() {
      for (const status of [400, 404, 422]) {
        const server = yield* hostile((_, res) => sendJson(res, status, { detail: [{ loc: ["body", "queries"], msg: "field required" }] }))
        const error = yield* Effect.flip(remoteSearch({ url: server.url, ...fast }, ["a"], 1))
        expect(server.attempts(), String(status)).toBe(1)
        expect(error.reason._tag).toBe("HttpStatus")
        expect(error.message).toContain(`${server.url}: HTTP ${status}: {"detail":[{"loc":["body","queries"],"msg":"field required"}]}`)
        expect(error.message).not.toContain("attempts")
      }
    }))

  it.live("the body excerpt of an HttpStatus is cut to 200 characters", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => sendJson(res, 418, "x".repeat(5000)))
      const error = yield* Effect.flip(remoteSearch({ url: server.url, ...fast }, ["a"], 1))
      assert.strictEqual(error.reason._tag, "HttpStatus")
      if (error.reason._tag === "HttpStatus") expect(error.reason.body).toBe(`${"x".repeat(200)}...`)
    }))

  it.live("garbage JSON is a MalformedResponse, not retried", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => sendJson(res, 200, "<html>502 Bad Gateway</html>"))
      const error = yield* Effect.flip(remoteSearch({ url: server.url, ...fast }, ["a"], 1))
      expect(server.attempts()).toBe(1)
      expect(error.reason._tag).toBe("MalformedResponse")
      expect(error.message).toContain(`${server.url}: malformed response: not JSON`)
      expect(error.message).toContain("<html>502 Bad Gateway</html>")
    }))

  it.live("a wrong shape is a MalformedResponse naming what and where, not retried", () =>
    Effect.gen(function*() {
      const doc = (id: string) => ({ document: { id, contents: `"T"\n${id}` }, score: 1 })
      const cases: ReadonlyArray<[string, unknown, string]> = [
        ["a list, not an object", [[doc("a")]], "expected a JSON object with \"result\", got an array of 1"],
        ["no result", { results: [[doc("a")]] }, "result: Missing key"],
        ["result not a list", { result: { a: [doc("a")] } }, "result: Expected array"],
        ["a list of objects", { result: [doc("a"), doc("b")] }, "result[0]: Expected array"],
        ["too few lists", { result: [[doc("a")]] }, "result has 1 lists for 2 queries (one per query)"],
        ["too many lists", { result: [[doc("a")], [doc("b")], []] }, "result has 3 lists for 2 queries"],
        ["a document without contents", { result: [[doc("a")], [{ document: { id: "b" }, score: 1 }]] }, "result[1][0].document.contents: Missing key"],
        ["contents not a string", { result: [[doc("a")], [{ id: "b", contents: 7 }]] }, "result[1][0].contents: Expected string"],
        ["a string score", { result: [[{ document: { id: "a", contents: "x" }, score: "0.9" }], []] }, "result[0][0].score: Expected number"],
        ["a null item", { result: [[doc("a"), null], []] }, "result[0][1]: expected a document object, got null"],
        ["more than topk", { result: [[doc("a"), doc("b"), doc("c")], []] }, "result[0] has 3 documents, more than topk 2"]
      ]
      for (const [name, body, expected] of cases) {
        const server = yield* hostile((_, res) => sendJson(res, 200, body))
        const error = yield* Effect.flip(remoteSearch({ url: server.url, ...fast }, ["a", "b"], 2))
        expect(server.attempts(), name).toBe(1)
        expect(error.reason._tag, name).toBe("MalformedResponse")
        expect(error.message, name).toContain(`${server.url}: malformed response: `)
        expect(error.message, name).toContain(expected)
      }
    }))

  it.live("Search-R1's BM25 documents (title/text/contents, no id) and integer ids decode", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) =>
        sendJson(res, 200, {
          result: [
            [{ document: { title: "Paris", text: "Paris is big.", contents: "\"Paris\"\nParis is big." }, score: 7.25 }],
            [{ id: 12, contents: "\"Oslo\"\nOslo." }]
          ]
        })
      )
      const results = yield* remoteSearch({ url: server.url, ...fast }, ["a", "b"], 3)
      expect(results).toEqual([
        [{ id: "", title: "Paris", text: "Paris is big.", score: 7.25 }],
        [{ id: "12", title: "Oslo", text: "Oslo.", score: 0 }]
      ])
    }))

  it.live("a server that hangs: Timeout within the configured ms, retried", () =>
    Effect.gen(function*() {
      const server = yield* hostile(() => {
        // never answers
      })
      const started = performance.now()
      const error = yield* Effect.flip(remoteSearch({ url: server.url, timeoutMs: 150, retries: 1, backoffMs: 10 }, ["a"], 1))
      const elapsed = performance.now() - started
      expect(error.reason).toEqual({ _tag: "Timeout", ms: 150 })
      expect(error.attempts).toBe(2)
      expect(server.attempts()).toBe(2)
      expect(error.message).toBe(`${server.url}: no answer within 150 ms (after 2 attempts)`)
      // Two attempts of 150 ms and a 10 ms wait: at least 300 ms, far from a hang.
      expect(elapsed).toBeGreaterThanOrEqual(295)
      expect(elapsed).toBeLessThan(3000)
    }), 15_000)

  it.live("a server that sends the headers and then stalls the body: Timeout", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => {
        res.writeHead(200, { "content-type": "application/json" })
        res.write("{\"result\": [")
      })
      const error = yield* Effect.flip(remoteSearch({ url: server.url, timeoutMs: 100, retries: 0 }, ["a"], 1))
      expect(error.reason).toEqual({ _tag: "Timeout", ms: 100 })
      expect(server.attempts()).toBe(1)
    }), 15_000)

  it.live("a server that drops the connection: Unreachable, retried", () =>
    Effect.gen(function*() {
      const server = yield* hostile((_, res) => res.socket?.destroy())
      const error = yield* Effect.flip(remoteSearch({ url: server.url, retries: 2, backoffMs: 5 }, ["a"], 1))
      expect(error.reason._tag).toBe("Unreachable")
      expect(server.attempts()).toBe(3)
      expect(error.message).toContain(`${server.url}: unreachable: `)
    }))

  it.live("a closed port: Unreachable after retries + 1 attempts, naming the refusal", () =>
    Effect.gen(function*() {
      const port = yield* closedPort
      const url = `http://127.0.0.1:${port}/retrieve`
      const error = yield* Effect.flip(remoteSearch({ url, retries: 2, backoffMs: 5 }, ["a"], 1))
      expect(error.reason._tag).toBe("Unreachable")
      expect(error.attempts).toBe(3)
      expect(error.url).toBe(url)
      expect(error.message).toContain(`${url}: unreachable: `)
      expect(error.message).toContain("ECONNREFUSED")
      expect(error.message).toContain("(after 3 attempts)")
    }))
})

// ---------------------------------------------------------------------------
// The corpus layout and the passage format

const NUM_RUNS = 500

/** A title: any string without a newline. */
const title = fc.string({ maxLength: 30 }).map((s) => s.replace(/\n/g, " "))
const text = fc.oneof(
  fc.string({ maxLength: 60 }),
  fc.constantFrom("", "\n", "\"quoted\"\nline", "\"\"\n", "a\nb\nc", "\"x\""),
  fc.tuple(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 })).map(([a, b]) => `"${a}"\n${b}`)
)

describe("the corpus layout", () => {
  it("splitContents(joinContents(title, text)) round-trips (titles without newline)", () => {
    fc.assert(
      fc.property(title, text, (t, x) => {
        expect(splitContents(joinContents(t, x))).toEqual({ title: t, text: x })
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "split(join(title, text)) round-trips": ${NUM_RUNS} cases`)
  })

  it("joinContents(splitContents(contents)) gives the contents back, but for an empty quoted title before untitled text", () => {
    let checked = 0
    fc.assert(
      fc.property(fc.oneof(text, fc.tuple(title, text).map(([t, x]) => `"${t}"\n${x}`)), (contents) => {
        const { text: rest, title: t } = splitContents(contents)
        // `""\nrest` with an untitled rest joins back to rest alone (both read as "no title").
        fc.pre(!(t === "" && contents.startsWith("\"\"\n") && splitContents(rest).title === "" && !rest.startsWith("\"\"\n")))
        checked++
        expect(joinContents(t, rest)).toBe(contents)
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "join(split(contents)) round-trips": ${checked} cases`)
    expect(checked).toBeGreaterThan(NUM_RUNS / 2)
  })

  it("examples: wiki-18 rows, untitled contents, newlines in titles", () => {
    expect(splitContents("\"Aaron\"\nAaron is a prophet.")).toEqual({ title: "Aaron", text: "Aaron is a prophet." })
    expect(splitContents("\"Aaron\"\nline 1\nline 2")).toEqual({ title: "Aaron", text: "line 1\nline 2" })
    expect(splitContents("\"Aaron\"\n")).toEqual({ title: "Aaron", text: "" })
    expect(splitContents("\"\"\nno title")).toEqual({ title: "", text: "no title" })
    expect(splitContents("plain text\nmore")).toEqual({ title: "", text: "plain text\nmore" })
    expect(splitContents("\"only a title\"")).toEqual({ title: "", text: "\"only a title\"" })
    expect(splitContents("\"half\nopen")).toEqual({ title: "", text: "\"half\nopen" })
    expect(splitContents("\"Say \"hi\"\"\nbody")).toEqual({ title: "Say \"hi\"", text: "body" })
    expect(joinContents("Aaron", "Aaron is a prophet.")).toBe("\"Aaron\"\nAaron is a prophet.")
    expect(joinContents("", "untitled")).toBe("untitled")
    expect(joinContents("", "\"Q\"\nlooks titled")).toBe("\"\"\n\"Q\"\nlooks titled")
    expect(joinContents("two\nlines", "x")).toBe("\"two lines\"\nx")
  })
})

describe("the passage format", () => {
  it("is Search-R1's _passages2string: Doc i(Title: first line) rest, one per line", () => {
    const hits = [
      { title: "Paris", text: "Paris is the capital of France." },
      { title: "Eiffel Tower", text: "A tower.\nSecond line." },
      { title: "", text: "untitled first line\nand the rest" }
    ]
    expect(formatPassages(hits)).toBe(
      "Doc 1(Title: \"Paris\") Paris is the capital of France.\n" +
        "Doc 2(Title: \"Eiffel Tower\") A tower.\nSecond line.\n" +
        "Doc 3(Title: untitled first line) and the rest\n"
    )
    expect(formatPassages([])).toBe("")
    expect(formatContents(["no newline at all"])).toBe("Doc 1(Title: no newline at all) \n")
    expect(formatContents(["\"A\"\nx", "\"B\"\ny"])).toBe("Doc 1(Title: \"A\") x\nDoc 2(Title: \"B\") y\n")
  })

  it("formatPassages of decoded hits equals formatContents of the contents sent (property)", () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(title, text), { maxLength: 5 }), (docs) => {
        const contents = docs.map(([t, x]) => joinContents(t, x))
        const body = { result: [contents.map((c, i) => ({ document: { id: String(i), contents: c }, score: i }))] }
        const decoded = decodeResponse(body, 1, Math.max(1, docs.length))
        assert.isTrue(Result.isSuccess(decoded))
        if (Result.isSuccess(decoded)) expect(formatPassages(decoded.success[0]!)).toBe(formatContents(contents))
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "formatPassages(decoded) = formatContents(sent)": ${NUM_RUNS} cases`)
  })

  it("encodeResponse then decodeResponse gives the hits back (property)", () => {
    const hit = fc.record({
      id: fc.string({ maxLength: 8 }),
      title,
      text,
      score: fc.double({ noNaN: true, noDefaultInfinity: true })
    })
    fc.assert(
      fc.property(fc.array(fc.array(hit, { maxLength: 4 }), { maxLength: 4 }), (results) => {
        const wire = JSON.parse(JSON.stringify(encodeResponse(results, true))) as unknown
        const decoded = decodeResponse(wire, results.length, 4)
        assert.isTrue(Result.isSuccess(decoded))
        // JSON has no -0: compare through JSON.
        if (Result.isSuccess(decoded)) expect(JSON.stringify(decoded.success)).toBe(JSON.stringify(results))
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "decodeResponse(encodeResponse(hits)) = hits": ${NUM_RUNS} cases`)
  })
})

describe("the Search service contract (make)", () => {
  it.effect("cuts lists to topk, refuses a wrong number of lists and bad arguments", () =>
    Effect.gen(function*() {
      const greedy = make((queries) => Effect.succeed(queries.map(() => rank(corpus, "capital tower"))))
      const results = yield* greedy.search(["a", "b"], 2)
      expect(results.map((r) => r.length)).toEqual([2, 2])
      const broken = make(() => Effect.succeed([[]]))
      const error = yield* Effect.flip(broken.search(["a", "b"], 2))
      expect(error.reason).toEqual({ _tag: "Backend", detail: "returned 1 lists for 2 queries" })
      expect(error.message).toBe("search: returned 1 lists for 2 queries")
      const invalid = yield* Effect.flip(greedy.search(["a"], 0))
      expect(invalid.message).toBe("search: invalid request: topk must be an integer >= 1, got 0")
      // The layer provides the same wrapped service.
      const viaLayer = yield* Effect.flip(
        Effect.gen(function*() {
          const search = yield* Search
          return yield* search.search(["a"], -2)
        }).pipe(Effect.provide(searchLayer(() => Effect.succeed([]))))
      )
      expect(viaLayer.reason._tag).toBe("InvalidRequest")
    }))
})
