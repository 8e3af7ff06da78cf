/**
 * The Search-R1 retrieval server protocol (`POST /retrieve`), the corpus
 * layout of a document's `contents` ("Title" on the first line) and the
 * passage text Search-R1 shows the model. Pure: the HTTP client is in
 * client.ts, the server in server.ts. Documented in docs/search.md.
 *
 * The protocol, as Search-R1's `retrieval_server.py` speaks it:
 *
 * - request `{"queries": [string], "topk": int, "return_scores": bool}`;
 * - response `{"result": [[{"document": {"id", "contents"}, "score"}, ...], ...]}`,
 *   one list per query in the order of the queries; when `return_scores` is
 *   false the documents come without the wrapper: `{"result": [[{"id", "contents"}]]}`.
 */
import { Result, Schema, SchemaIssue } from "effect"
import type { Hit } from "./Search.ts"

// ---------------------------------------------------------------------------
// Wire schemas

/**
 * The body of `POST /retrieve`. Our client always sends all three fields; the
 * server also accepts what Search-R1's FastAPI model accepts: `topk` absent or
 * null (the server's default is used) and `return_scores` absent (false).
 */
export const RetrieveRequest = Schema.Struct({
  queries: Schema.Array(Schema.String),
  topk: Schema.optionalKey(Schema.NullOr(Schema.Int.check(Schema.isGreaterThanOrEqualTo(1)))),
  return_scores: Schema.optionalKey(Schema.Boolean)
})
export type RetrieveRequest = typeof RetrieveRequest.Type

/**
 * One corpus row as the server returns it. `id` is optional when decoding
 * (Search-R1's BM25 retriever returns `{title, text, contents}` without one)
 * and may be an integer; other keys (`title`, `text`, ...) are ignored.
 */
export const RetrievedDocument = Schema.Struct({
  id: Schema.optionalKey(Schema.Union([Schema.String, Schema.Int])),
  contents: Schema.String
})
export type RetrievedDocument = typeof RetrievedDocument.Type

/** A document with its score: the form of `return_scores: true`. */
export const ScoredDocument = Schema.Struct({
  document: RetrievedDocument,
  score: Schema.Finite
})
export type ScoredDocument = typeof ScoredDocument.Type

/** The response body: one list per query; each item scored or plain. */
export const RetrieveResponse = Schema.Struct({
  result: Schema.Array(Schema.Array(Schema.Union([ScoredDocument, RetrievedDocument])))
})
export type RetrieveResponse = typeof RetrieveResponse.Type

/** The body of every error answer of our server (400, 404, 405, 5xx). */
export const ErrorBody = Schema.Struct({ error: Schema.String })
export type ErrorBody = typeof ErrorBody.Type

// ---------------------------------------------------------------------------
// Schema issues as one line naming the path

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** `["result", 0, 1, "document"]` -> `result[0][1].document`. */
export const formatPath = (path: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }>): string => {
  let out = ""
  for (const segment of path) {
    const key = typeof segment === "object" && segment !== null ? segment.key : segment
    if (typeof key === "number") out += `[${key}]`
    else out += out === "" ? String(key) : `.${String(key)}`
  }
  return out
}

/** Every leaf issue of a failed decode as `path: message`. */
export const issueLines = (issue: SchemaIssue.Issue, prefix: ReadonlyArray<PropertyKey> = []): ReadonlyArray<string> =>
  formatter(issue).issues.map((leaf) => {
    const where = formatPath([...prefix, ...(leaf.path ?? [])])
    return where === "" ? leaf.message : `${where}: ${leaf.message}`
  })

/** Every leaf issue of a failed decode as `path: message`, joined by "; ". */
export const describeIssue = (issue: SchemaIssue.Issue, prefix: ReadonlyArray<PropertyKey> = []): string =>
  issueLines(issue, prefix).join("; ")

// ---------------------------------------------------------------------------
// Request

/**
 * The request our client sends. `return_scores` is always true: the client
 * wants the scores, and it decodes either form anyway.
 */
export const encodeRequest = (queries: ReadonlyArray<string>, topk: number): RetrieveRequest => ({
  queries,
  topk,
  return_scores: true
})

/**
 * A request body (parsed JSON) decoded for the server, or a one-line detail
 * naming the field at fault (e.g. `queries[1]: Expected string, got 3`).
 */
export const decodeRequest = (body: unknown): Result.Result<RetrieveRequest, string> => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return Result.fail(`the body must be a JSON object, got ${describeJson(body)}`)
  }
  const decoded = Schema.decodeUnknownResult(RetrieveRequest)(body, { errors: "all" })
  return Result.isSuccess(decoded) ? Result.succeed(decoded.success) : Result.fail(describeIssue(decoded.failure.issue))
}

// ---------------------------------------------------------------------------
// Response

/** The response body for hits: scored documents, or plain ones when `returnScores` is false. */
export const encodeResponse = (
  results: ReadonlyArray<ReadonlyArray<Hit>>,
  returnScores: boolean
): RetrieveResponse => ({
  result: results.map((hits) =>
    hits.map((hit) => {
      const document = { id: hit.id, contents: joinContents(hit.title, hit.text) }
      return returnScores ? { document, score: hit.score } : document
    })
  )
})

const decodeScored = Schema.decodeUnknownResult(ScoredDocument)
const decodePlain = Schema.decodeUnknownResult(RetrievedDocument)
const decodeOuter = Schema.decodeUnknownResult(Schema.Struct({ result: Schema.Array(Schema.Array(Schema.Unknown)) }))

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A short description of a JSON value for error messages. */
export const describeJson = (value: unknown): string => {
  if (value === null) return "null"
  if (Array.isArray(value)) return `an array of ${value.length}`
  if (typeof value === "string") return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`
  if (typeof value === "object") return "an object"
  return `the ${typeof value} ${String(value)}`
}

/**
 * The hits of a response body (parsed JSON) to a request of `queries`
 * queries, or a one-line detail of what is wrong and where: the shape
 * (`result[0][1].document.contents: Missing key`), the number of lists (one
 * per query) and the number of documents in each (at most `topk`).
 *
 * Each item is decoded as a scored document when it has a `document` key and
 * as a plain one otherwise (score 0, as the server sent none). A document
 * without `id` gets the id "" and an integer id is written in decimal; the
 * title and text come from `splitContents`.
 */
export const decodeResponse = (
  body: unknown,
  queries: number,
  topk: number
): Result.Result<ReadonlyArray<ReadonlyArray<Hit>>, string> => {
  if (!isObject(body)) return Result.fail(`expected a JSON object with "result", got ${describeJson(body)}`)
  const outer = decodeOuter(body, { errors: "all" })
  if (Result.isFailure(outer)) return Result.fail(describeIssue(outer.failure.issue))
  const lists = outer.success.result
  if (lists.length !== queries) {
    return Result.fail(`result has ${lists.length} lists for ${queries} ${queries === 1 ? "query" : "queries"} (one per query)`)
  }
  const results: Array<ReadonlyArray<Hit>> = []
  for (let q = 0; q < lists.length; q++) {
    const items = lists[q]!
    if (items.length > topk) return Result.fail(`result[${q}] has ${items.length} documents, more than topk ${topk}`)
    const hits: Array<Hit> = []
    for (let i = 0; i < items.length; i++) {
      const item = items[i]
      const path = ["result", q, i]
      let document: RetrievedDocument
      let score = 0
      if (isObject(item) && "document" in item) {
        const scored = decodeScored(item, { errors: "all" })
        if (Result.isFailure(scored)) return Result.fail(describeIssue(scored.failure.issue, path))
        document = scored.success.document
        score = scored.success.score
      } else {
        if (!isObject(item)) return Result.fail(`${formatPath(path)}: expected a document object, got ${describeJson(item)}`)
        const plain = decodePlain(item, { errors: "all" })
        if (Result.isFailure(plain)) return Result.fail(describeIssue(plain.failure.issue, path))
        document = plain.success
      }
      const { text, title } = splitContents(document.contents)
      hits.push({ id: document.id === undefined ? "" : String(document.id), title, text, score })
    }
    results.push(hits)
  }
  return Result.succeed(results)
}

// ---------------------------------------------------------------------------
// The corpus layout: `"Title"\ntext`

/** The first line of `contents` when it is a quoted title (`"..."`), else undefined. */
const quotedTitleLine = (contents: string): string | undefined => {
  const newline = contents.indexOf("\n")
  if (newline < 0) return undefined
  const first = contents.slice(0, newline)
  return first.length >= 2 && first.startsWith("\"") && first.endsWith("\"") ? first : undefined
}

/**
 * The title and text of a document's `contents` in Search-R1's corpus layout
 * (wiki-18: `"Title"\ntext`): when the first line is in double quotes, the
 * title is inside them and the text is everything after the first newline.
 * Otherwise the document has no title: `{title: "", text: contents}`.
 */
export const splitContents = (contents: string): { readonly title: string; readonly text: string } => {
  const first = quotedTitleLine(contents)
  return first === undefined
    ? { title: "", text: contents }
    : { title: first.slice(1, -1), text: contents.slice(first.length + 1) }
}

/**
 * `contents` in Search-R1's layout: `"title"\ntext`; newlines in the title
 * become spaces. A document without a title (`""`) is its text alone, unless
 * the text itself starts with a quoted line (then `""\ntext`, so that
 * `splitContents` gives the text back). For every title without a newline,
 * `splitContents(joinContents(title, text))` is `{title, text}`.
 */
export const joinContents = (title: string, text: string): string => {
  const oneLine = title.replace(/\r?\n/g, " ")
  return oneLine === "" && quotedTitleLine(text) === undefined ? text : `"${oneLine}"\n${text}`
}

// ---------------------------------------------------------------------------
// What the model sees

/**
 * The passages of one query as Search-R1's `_passages2string` writes them
 * from the documents' `contents`: for i = 1..k, `Doc {i}(Title: {first line})
 * {the rest}\n`. The "title" is the raw first line, quotes included.
 */
export const formatContents = (contents: ReadonlyArray<string>): string =>
  contents
    .map((content, i) => {
      const newline = content.indexOf("\n")
      const title = newline < 0 ? content : content.slice(0, newline)
      const text = newline < 0 ? "" : content.slice(newline + 1)
      return `Doc ${i + 1}(Title: ${title}) ${text}\n`
    })
    .join("")

/**
 * The passages of one query's hits, byte for byte what Search-R1 shows the
 * model for the same documents: `formatContents` of each hit's
 * `joinContents(title, text)`. For wiki-18 that is `Doc 1(Title: "Paris") Paris is ...\n`.
 */
export const formatPassages = (hits: ReadonlyArray<Pick<Hit, "title" | "text">>): string =>
  formatContents(hits.map((hit) => joinContents(hit.title, hit.text)))
