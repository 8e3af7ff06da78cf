/**
 * The built-in search: an on-disk BM25 index (crates/dart-search, tantivy,
 * pyserini's k1 = 0.9, b = 0.4 by default) behind the `Search` service.
 * `buildIndex` indexes a Search-R1 corpus; `layerIndex` / `openIndex` serve
 * an index folder as `Search` (docs/search.md, "The built-in index").
 */
import { Effect, Layer } from "effect"
import type * as Addon from "@dart-rl/node"
import { loadNative, nativeErrorCode } from "../engine/native.ts"
import { make, Search, SearchError, type SearchShape } from "./Search.ts"

export type BuildIndexOptions = Addon.BuildIndexOptions
export type BuildIndexReport = Addon.BuildIndexReport

const codeOf = (cause: unknown): string => nativeErrorCode(cause) || "DART_UNKNOWN"

const backend = (what: string) => (cause: unknown): SearchError =>
  new SearchError({
    reason: { _tag: "Backend", detail: `${what} [${codeOf(cause)}]: ${cause instanceof Error ? cause.message : String(cause)}` }
  })

/** Indexes `corpus` (.jsonl or .jsonl.gz of {"id", "contents"}) into the new folder `out`. */
export const buildIndex = (corpus: string, out: string, options?: BuildIndexOptions): Effect.Effect<BuildIndexReport, SearchError> =>
  Effect.tryPromise({ try: () => loadNative().buildIndex(corpus, out, options), catch: backend("index build") })

/** The `Search` service over an open index, with the index itself. */
export interface IndexSearch extends SearchShape {
  readonly native: Addon.SearchIndex
  readonly passages: number
}

/** Opens an index folder (a missing, foreign or damaged folder fails with the reason). */
export const openIndex = (dir: string): Effect.Effect<IndexSearch, SearchError> =>
  Effect.map(
    Effect.try({ try: () => loadNative().SearchIndex.open(dir), catch: backend(`index ${dir}`) }),
    (native) => ({
      native,
      passages: native.passages(),
      ...make((queries, topk) =>
        Effect.tryPromise({ try: () => native.search([...queries], topk), catch: backend(`index ${dir}`) })
      )
    })
  )

export const layerIndex = (dir: string): Layer.Layer<Search, SearchError> => Layer.effect(Search, openIndex(dir))
