/**
 * The services a training run needs, built from its config: Engine (the
 * model folder), Tokenizer (the same folder), Search (an index, a corpus
 * indexed into the run directory, or a retrieval server, probed once so a
 * server that is down is reported before any work), and the stages Rollout,
 * Reward and Update. Another program swaps any of them by passing its own
 * layer (`overrides`), e.g. its own Reward or Search, and runs the rest
 * unchanged.
 */
import { Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { join } from "node:path"
import * as Engine from "../engine/Engine.ts"
import * as Reward from "../reward/Reward.ts"
import * as Rollout from "../rollout/Rollout.ts"
import { buildIndex, openIndex } from "../search/bm25.ts"
import { layerRemote } from "../search/client.ts"
import { Search, SearchError } from "../search/Search.ts"
import * as Tokenizer from "../text/Tokenizer.ts"
import * as Update from "../update/Update.ts"
import type { SearchConfig, TrainConfig } from "./config.ts"

/** Search from the config; a corpus is indexed once into `<runDir>/index`. */
export const searchLayer = (config: SearchConfig, runDir: string): Layer.Layer<Search, SearchError> => {
  if ("index" in config) return Layer.effect(Search)(openIndex(config.index))
  if ("corpus" in config) {
    const dir = join(runDir, "index")
    return Layer.effect(Search)(
      Effect.gen(function*() {
        if (existsSync(join(dir, "dart-index.json"))) return yield* openIndex(dir)
        if (!existsSync(config.corpus)) {
          return yield* new SearchError({ reason: { _tag: "Backend", detail: `corpus ${config.corpus} does not exist (expected a Search-R1 .jsonl or .jsonl.gz of {"id", "contents"})` } })
        }
        // One indexing thread: with several, the documents' order across
        // segments depends on timing, and so does the order of passages with
        // equal scores, which would make two runs of the same seed differ.
        yield* buildIndex(config.corpus, dir, { progress: false, threads: 1 })
        return yield* openIndex(dir)
      })
    )
  }
  const remote = layerRemote({
    url: config.url,
    ...(config.timeoutMs === undefined ? {} : { timeoutMs: config.timeoutMs }),
    ...(config.retries === undefined ? {} : { retries: config.retries })
  })
  // One probe query: a server that is down fails the run now, with its address.
  return Layer.effect(Search)(
    Effect.gen(function*() {
      const search = yield* Search
      yield* search.search(["probe"], 1)
      return search
    })
  ).pipe(Layer.provide(remote))
}

export const engineLayer = (config: Pick<TrainConfig, "model" | "backend" | "threads" | "seed">): Layer.Layer<Engine.Engine, Engine.EngineError> =>
  Engine.layerLoad(config.model, { backend: config.backend, seed: config.seed, ...(config.threads > 0 ? { threads: config.threads } : {}) })

export interface Overrides {
  readonly reward?: Layer.Layer<Reward.Reward>
  readonly search?: Layer.Layer<Search, SearchError>
}

/** Every service of a run (Engine, Tokenizer, Search, Rollout, Reward, Update). */
export const pipelineLayer = (config: TrainConfig, runDir: string, overrides: Overrides = {}) => {
  const base = Layer.mergeAll(
    engineLayer(config),
    Tokenizer.layerFromFolder(config.model),
    overrides.search ?? searchLayer(config.search, runDir)
  )
  const stages = Layer.mergeAll(
    Rollout.layer(config.rollout),
    Update.layer(config.update),
    overrides.reward ?? Reward.layer(config.reward)
  )
  return Layer.provideMerge(stages, base)
}

/**
 * The files a config names, checked before any work: the model folder
 * (config.json, tokenizer.json), the datasets, the index or corpus. Each
 * problem names the path and what is expected there.
 */
export const checkPaths = (config: Pick<TrainConfig, "model" | "data" | "search">): ReadonlyArray<string> => {
  const problems: Array<string> = []
  if (!existsSync(config.model)) problems.push(`model: ${config.model} does not exist (expected a Hugging Face model folder: config.json, *.safetensors, tokenizer.json)`)
  else {
    for (const f of ["config.json", "tokenizer.json"]) {
      if (!existsSync(join(config.model, f))) problems.push(`model: ${config.model} has no ${f} (expected a Hugging Face model folder: config.json, *.safetensors, tokenizer.json)`)
    }
  }
  for (const [k, f] of Object.entries(config.data)) if (f !== undefined && !existsSync(f)) problems.push(`data.${k}: ${f} does not exist (expected a Search-R1 dataset, .jsonl or .parquet)`)
  if ("index" in config.search && !existsSync(config.search.index)) problems.push(`search.index: ${config.search.index} does not exist (expected a folder made by \`pipeline index\`)`)
  if ("corpus" in config.search && !existsSync(config.search.corpus)) problems.push(`search.corpus: ${config.search.corpus} does not exist (expected a Search-R1 corpus, .jsonl or .jsonl.gz of {"id", "contents"})`)
  return problems
}
