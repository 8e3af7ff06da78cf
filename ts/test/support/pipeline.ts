/** The pipeline fixture (ts/test/fixtures/pipeline) as services, for the pipeline tests. */
import { Effect } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Engine from "../../src/engine/Engine.ts"
import { buildIndex, openIndex } from "../../src/search/bm25.ts"
import { defaultTrainConfig, FIXTURE_DIR, type TrainConfig } from "../../src/train/config.ts"
import * as Tokenizer from "../../src/text/Tokenizer.ts"

export const FIXTURE = FIXTURE_DIR
export const MODEL = join(FIXTURE, "model")

export const tmp = (prefix: string) => mkdtempSync(join(tmpdir(), `dart-${prefix}-`))

/** The fixture's corpus indexed into a temp folder. */
export const fixtureSearch = Effect.gen(function*() {
  const dir = tmp("index")
  yield* buildIndex(join(FIXTURE, "corpus.jsonl"), join(dir, "index"), { threads: 1, progress: false })
  return yield* openIndex(join(dir, "index"))
})

export const fixtureEngine = Engine.load(MODEL, { threads: 2, backend: "cpu" })
export const fixtureTokenizer = Tokenizer.fromFolder(MODEL)

/** A small, quick training config on the fixture (2 threads: deterministic across processes). */
export const quickConfig = (overrides: Partial<TrainConfig> = {}): TrainConfig => ({
  ...defaultTrainConfig,
  model: MODEL,
  data: { train: join(FIXTURE, "train.jsonl"), validation: join(FIXTURE, "validation.jsonl") },
  search: { corpus: join(FIXTURE, "corpus.jsonl") },
  rollout: { ...defaultTrainConfig.rollout, maxTurnTokens: 64, maxSearches: 2, maxTurns: 3, maxObservationTokens: 200, groupSize: 3 },
  // The fixture tests' own learning rate, not the built-in world's tuned one:
  // at 3e-3 the fixture's reas-only adapters grow enough in two steps that the
  // decode-vs-forward f32 rounding reached 1.17e-5 (bound 1e-5, measured).
  schedule: { lr: 2e-3, minLr: 2e-4, warmupSteps: 5, schedule: "cosine" },
  steps: 3,
  promptsPerStep: 2,
  threads: 2,
  checkpointEvery: 1,
  ...overrides
})
