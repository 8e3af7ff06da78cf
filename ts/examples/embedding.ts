/**
 * Embedding dart-rl in another Effect program: this program brings its own
 * Reward (token F1 against the gold answers instead of exact match) and its
 * own Search (a keyword-overlap search over an in-memory corpus instead of
 * the BM25 index), and runs the rest of the pipeline (engine, tokenizer,
 * rollout, update, the training loop) unchanged, from the package's public
 * entry. CI runs it (ts/test/embedding.test.ts):
 *
 *   node --import tsx ts/examples/embedding.ts [run-dir]
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { defaultTrainConfig, pipelineLayer, Progress, Reward, RewardRules, Search, train, WORLD_DIR } from "@dart-rl/ts"

// Our Reward: F1 is the reward; the other metrics as the built-in rules compute them.
const f1Reward = Layer.succeed(Reward.Reward)(
  Reward.make((input) => Effect.succeed({ ...RewardRules.scoreResponse(input), reward: RewardRules.tokenF1(RewardRules.extractAnswer(input.response) ?? "", input.goldenAnswers) }))
)

// Our Search: passages ranked by how many query words they contain.
const corpusFile = join(WORLD_DIR, "corpus.jsonl")
const passages = readFileSync(corpusFile, "utf8").trim().split("\n").map((line) => {
  const { contents, id } = JSON.parse(line) as { id: string; contents: string }
  return { id, ...Search.splitContents(contents) }
})
const words = (s: string) => new Set(s.toLowerCase().split(/\W+/).filter((w) => w.length > 0))
const keywordSearch = Search.layer((queries, topk) =>
  Effect.succeed(queries.map((q) => {
    const qw = words(q)
    return passages
      .map((p) => ({ ...p, score: [...words(`${p.title} ${p.text}`)].filter((w) => qw.has(w)).length }))
      .filter((p) => p.score > 0)
      .sort((a, b) => b.score - a.score)
      .slice(0, topk)
  }))
)

const runDir = process.argv[2] ?? mkdtempSync(join(tmpdir(), "dart-embedding-"))
// The built-in world, three short steps.
const config = { ...defaultTrainConfig, steps: 3, promptsPerStep: 2, threads: 2, rollout: { ...defaultTrainConfig.rollout, groupSize: 4 }, eval: { ...defaultTrainConfig.eval, limit: 8 } }

const program = Effect.gen(function*() {
  const summary = yield* train(config, { runDir, resume: false })
  console.log(`embedding example: ${summary.steps} steps with an F1 reward and a keyword search; validation EM ${summary.emBefore?.em} -> ${summary.emAfter?.em}; run ${runDir}`)
})

program.pipe(
  Effect.provide(Layer.mergeAll(pipelineLayer(config, runDir, { reward: f1Reward, search: keywordSearch }), Progress.layerPlain(), NodeServices.layer)),
  Effect.runPromise
).catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
