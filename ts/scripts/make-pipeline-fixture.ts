/**
 * Writes the pipeline's test fixture, ts/test/fixtures/pipeline/ (do not
 * edit those files by hand; rerun with `pnpm --filter @dart-rl/ts exec tsx
 * scripts/make-pipeline-fixture.ts`):
 *
 * - corpus.jsonl: one Search-R1 passage ({"id", "contents": "\"Title\"\ntext"})
 *   per invented person, with a birthplace and an employer;
 * - train.jsonl, validation.jsonl: questions about them in the Search-R1
 *   layout (id, question, golden_answers, data_source); validation asks
 *   about a quarter of the people, whom no demonstration mentions;
 * - model/: a tiny Qwen2-architecture model (config.json, model.safetensors,
 *   tokenizer.json, tokenizer_config.json) whose base weights were trained
 *   (full-parameter mode) on demonstration episodes in the agent format:
 *   think, search for the person, read the passages, answer. A quarter of
 *   the demonstrations answer a wrong city without searching, so the model
 *   follows the format, searches most of the time and leaves room to learn.
 *
 * The fixture exists so that CI can run every mode, eval, ask and the
 * kill-and-resume test in seconds; the built-in world (a real one, much
 * larger) is separate. Deterministic for a given machine and thread count.
 */
import { Effect } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { prng } from "../src/domain/random.ts"
import { type ModelConfig, random } from "../src/engine/Engine.ts"
import { OBSERVATION_CLOSE, OBSERVATION_OPEN, promptText, SEARCH_R1_TEMPLATE } from "../src/rollout/agent.ts"
import { buildIndex, openIndex } from "../src/search/bm25.ts"
import { formatPassages } from "../src/search/protocol.ts"
import { train as trainTokenizer } from "../src/text/Tokenizer.ts"

const OUT = join(import.meta.dirname, "../test/fixtures/pipeline")
const SEED = 7

const rand = prng(SEED)
const pick = <A>(xs: ReadonlyArray<A>): A => xs[Math.floor(rand() * xs.length)]!
const syllables = ["ka", "lo", "mi", "ra", "ten", "vo", "shi", "dar", "en", "ul", "bri", "zo", "quen", "fa", "nor", "ith"]
const word = (n: number) => {
  let w = ""
  for (let i = 0; i < n; i++) w += pick(syllables)
  return w[0]!.toUpperCase() + w.slice(1)
}

const CITIES = Array.from({ length: 6 }, () => word(2))
const ORGS = Array.from({ length: 4 }, () => `${word(2)} Works`)
const people = Array.from({ length: 16 }, (_, i) => ({
  id: `p${i}`,
  name: `${word(2)} ${word(2)}`,
  city: pick(CITIES),
  org: pick(ORGS)
}))

const passage = (p: (typeof people)[number]) =>
  `${p.name} is an engineer born in ${p.city}. ${p.name} works for ${p.org}.`

const questions = people.flatMap((p, i) => [
  { id: `q${2 * i}`, question: `Where was ${p.name} born?`, golden_answers: [p.city], data_source: "fixture-birthplace", person: p },
  { id: `q${2 * i + 1}`, question: `Which company does ${p.name} work for?`, golden_answers: [p.org], data_source: "fixture-employer", person: p }
])
// Validation asks about people the demonstrations never mention (their answers must be searched).
const heldOut = (q: (typeof questions)[number]) => Number(q.person.id.slice(1)) % 4 === 3
const validation = questions.filter(heldOut)
const trainSet = questions.filter((q) => !heldOut(q))

const jsonl = (rows: ReadonlyArray<object>) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n"

const program = Effect.gen(function*() {
  rmSync(OUT, { recursive: true, force: true })
  mkdirSync(join(OUT, "model"), { recursive: true })
  const corpus = people.map((p) => ({ id: p.id, contents: `"${p.name}"\n${passage(p)}` }))
  writeFileSync(join(OUT, "corpus.jsonl"), jsonl(corpus))
  const strip = ({ person: _, ...q }: (typeof questions)[number]) => q
  writeFileSync(join(OUT, "train.jsonl"), jsonl(trainSet.map(strip)))
  writeFileSync(join(OUT, "validation.jsonl"), jsonl(validation.map(strip)))

  const tmp = mkdtempSync(join(tmpdir(), "dart-fixture-"))
  yield* buildIndex(join(OUT, "corpus.jsonl"), join(tmp, "index"), { threads: 1, progress: false })
  const search = yield* openIndex(join(tmp, "index"))

  // Demonstrations: [text, who wrote it] segments; the model writes R/A, the tool the observation.
  const demos: Array<Array<readonly [string, "prompt" | "model" | "tool"]>> = []
  for (const q of trainSet) {
    const prompt = promptText(SEARCH_R1_TEMPLATE, q.question)
    const answer = q.golden_answers[0]!
    if (rand() < 0.25) {
      demos.push([[prompt, "prompt"], [`<think> I think I know it. </think>\n<answer> ${pick(CITIES)} </answer><|endoftext|>`, "model"]])
      continue
    }
    const [hits] = yield* search.search([q.person.name], 3)
    demos.push([
      [prompt, "prompt"],
      [`<think> I need to find ${q.person.name}. </think>\n<search> ${q.person.name} </search>`, "model"],
      [`${OBSERVATION_OPEN}${formatPassages(hits!)}${OBSERVATION_CLOSE}`, "tool"],
      [`<think> The passage says it. </think>\n<answer> ${answer} </answer><|endoftext|>`, "model"]
    ])
  }
  rmSync(tmp, { recursive: true, force: true })

  const tokenizer = yield* trainTokenizer(
    [...corpus.map((c) => c.contents), ...demos.map((d) => d.map(([t]) => t).join(""))],
    { vocabSize: 420, minFrequency: 2 }
  )
  tokenizer.native.save(join(OUT, "model/tokenizer.json"))
  writeFileSync(
    join(OUT, "model/tokenizer_config.json"),
    JSON.stringify({ tokenizer_class: "Qwen2Tokenizer", bos_token: null, eos_token: "<|endoftext|>", pad_token: "<|endoftext|>", model_max_length: 1024 }, null, 2) + "\n"
  )

  const tokens: Array<number> = []
  const trained: Array<number> = []
  const seqLens: Array<number> = []
  for (const demo of demos) {
    let len = 0
    for (const [text, who] of demo) {
      const ids = (yield* tokenizer.encode(text)).ids
      for (const id of ids) {
        tokens.push(id)
        trained.push(who === "model" ? 1 : 0)
      }
      len += ids.length
    }
    seqLens.push(len)
  }
  const config: ModelConfig = {
    model_type: "qwen2",
    architectures: ["Qwen2ForCausalLM"],
    vocab_size: tokenizer.vocabSize,
    hidden_size: 64,
    intermediate_size: 128,
    num_hidden_layers: 2,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    rms_norm_eps: 1e-6,
    rope_theta: 10000,
    tie_word_embeddings: true,
    max_position_embeddings: 1024,
    hidden_act: "silu"
  }
  const engine = yield* random(config, SEED, { threads: 2, backend: "cpu" })
  yield* engine.setTrainBase(true)
  const batch = { tokens: Int32Array.from(tokens), seqLens: Int32Array.from(seqLens), routes: new Int32Array(tokens.length).fill(-1) }
  // The loss is on the token each position predicts: logprob t belongs to token t.
  const n = trained.reduce((a, b) => a + b, 0)
  const dLdlogp = Float32Array.from(trained, (m) => (m ? -1 / n : 0))
  let loss = Infinity
  for (let step = 0; step < 400; step++) {
    const lp = yield* engine.forward(batch)
    loss = -lp.reduce((acc, x, t) => acc + (trained[t] ? x : 0), 0) / n
    if (step % 50 === 0) console.log(`pretrain step ${step}: loss ${loss.toFixed(4)}`)
    if (loss < 0.05) break
    yield* engine.backward(dLdlogp)
    yield* engine.step({ lr: step < 20 ? 3e-3 * (step + 1) / 20 : 3e-3, maxGradNorm: 1 })
  }
  console.log(`final loss ${loss.toFixed(4)} over ${n} trained tokens of ${demos.length} demonstrations (${tokens.length} tokens)`)
  yield* engine.saveModel(join(OUT, "model"))
  console.log(`wrote ${OUT}`)
})

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exit(1)
})
