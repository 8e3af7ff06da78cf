/**
 * `pnpm pipeline pretrain`: builds the built-in world into a folder, from
 * its seed (docs/world.md):
 *
 *   corpus.jsonl, train.jsonl, validation.jsonl, test.jsonl   Search-R1 layouts
 *   world.json                                                the options and the counts
 *   model/   config.json, model.safetensors (Qwen2 architecture, f32),
 *            tokenizer.json (byte-level BPE trained on the world, the agent tags whole),
 *            tokenizer_config.json (ChatML chat template, eos <|im_end|>)
 *
 * The base model is trained with the engine's full-parameter mode on the
 * world's passages (language) and on the demonstrations (demos.ts), with
 * loss on the model-written tokens only; the prompts are encoded exactly
 * as the Rollout stage encodes them.
 */
import { Effect, Schema } from "effect"
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type EngineError, type ModelConfig, random } from "../engine/Engine.ts"
import * as Rollout from "../rollout/Rollout.ts"
import { buildIndex, openIndex } from "../search/bm25.ts"
import { formatPassages } from "../search/protocol.ts"
import type { SearchError } from "../search/Search.ts"
import { fromFolder, type TextError, train as trainTokenizer } from "../text/Tokenizer.ts"
import { learningRate } from "../update/schedule.ts"
import { Progress } from "../train/Progress.ts"
import { demonstrations } from "./demos.ts"
import { corpusRow, datasetRow, defaultWorldOptions, generateWorld, prng, type WorldOptions } from "./world.ts"

export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

export const PretrainOptions = Schema.Struct({
  vocabSize: Schema.Int,
  hiddenSize: Schema.Int,
  layers: Schema.Int,
  heads: Schema.Int,
  kvHeads: Schema.Int,
  intermediateSize: Schema.Int,
  epochs: Schema.Int,
  batchSequences: Schema.Int,
  lr: Schema.Finite,
  warmupSteps: Schema.Int,
  threads: Schema.Int,
  seed: Schema.Int,
  /**
   * Further worlds (other seeds, same generator) whose demonstrations join
   * the cold start: their facts differ from the built-in world's, so the
   * model cannot answer from memory and learns to read the observations.
   */
  auxiliaryWorlds: Schema.Int
})
export type PretrainOptions = typeof PretrainOptions.Type

export const defaultPretrainOptions: PretrainOptions = {
  vocabSize: 1536,
  hiddenSize: 128,
  layers: 4,
  heads: 4,
  kvHeads: 2,
  intermediateSize: 384,
  epochs: 4,
  batchSequences: 16,
  lr: 2e-3,
  warmupSteps: 40,
  threads: 0,
  seed: 1,
  auxiliaryWorlds: 4
}

const jsonl = (rows: ReadonlyArray<object>) => rows.map((r) => JSON.stringify(r)).join("\n") + "\n"

export interface PretrainReport {
  readonly steps: number
  readonly firstLoss: number
  readonly lastLoss: number
  readonly seconds: number
  readonly tokens: number
  readonly parameters: number
}

export const pretrain = (
  out: string,
  world: WorldOptions = defaultWorldOptions,
  options: PretrainOptions = defaultPretrainOptions
): Effect.Effect<PretrainReport, EngineError | TextError | SearchError | Rollout.RolloutError, Progress> =>
  Effect.gen(function*() {
    const started = performance.now()
    const progress = yield* Progress
    const w = generateWorld(world)
    mkdirSync(join(out, "model"), { recursive: true })
    writeFileSync(join(out, "corpus.jsonl"), jsonl(w.passages.map(corpusRow)))
    for (const split of ["train", "validation", "test"] as const) writeFileSync(join(out, `${split}.jsonl`), jsonl(w[split].map(datasetRow)))
    const count = (qs: typeof w.train) => Object.fromEntries(["1-hop", "2-hop", "comparison"].map((t) => [t, qs.filter((q) => q.data_source === t).length]))
    writeFileSync(join(out, "world.json"), JSON.stringify({
      world,
      pretrain: options,
      entities: { people: w.people.length, heldOutPeople: w.people.filter((p) => p.heldOut).length, cities: w.cities.length, organisations: w.orgs.length, works: w.works.length },
      passages: w.passages.length,
      questions: { train: count(w.train), validation: count(w.validation), test: count(w.test) }
    }, null, 2) + "\n")
    yield* progress.log(`world: ${w.passages.length} passages, ${w.train.length} train / ${w.validation.length} validation / ${w.test.length} test questions`)

    // Demonstrations of the world's training questions and of every question
    // of the auxiliary worlds, with observations exactly as the rollout builds them.
    const demosOf = (world_: typeof w, questions: typeof w.train, seed: number) =>
      Effect.gen(function*() {
        const tmp = mkdtempSync(join(tmpdir(), "dart-world-"))
        writeFileSync(join(tmp, "corpus.jsonl"), jsonl(world_.passages.map(corpusRow)))
        yield* buildIndex(join(tmp, "corpus.jsonl"), join(tmp, "index"), { threads: 1, progress: false })
        const index = yield* openIndex(join(tmp, "index"))
        const queries = [...new Set(questions.flatMap((q) => q.searches))]
        const hits = yield* index.search(queries, Rollout.defaultRolloutConfig.topk)
        const observed = new Map(queries.map((q, i) => [q, formatPassages(hits[i]!)]))
        rmSync(tmp, { recursive: true, force: true })
        return demonstrations(world_, questions, (q) => observed.get(q)!, "<|im_end|>", undefined, seed)
      })
    const demos = yield* demosOf(w, w.train, options.seed)
    for (let k = 1; k <= options.auxiliaryWorlds; k++) {
      const aux = generateWorld({ ...world, seed: world.seed + 1000 * k })
      demos.push(...(yield* demosOf(aux, [...aux.train, ...aux.validation, ...aux.test], options.seed + k)))
    }
    yield* progress.log(`demonstrations: ${demos.length} (${w.train.length} of the world, the rest from ${options.auxiliaryWorlds} auxiliary worlds)`)
    const index = yield* (() => {
      const tmp = mkdtempSync(join(tmpdir(), "dart-world-"))
      return Effect.map(buildIndex(join(out, "corpus.jsonl"), join(tmp, "index"), { threads: 1, progress: false }), () => join(tmp, "index"))
    })().pipe(Effect.flatMap(openIndex))

    // The tokenizer, trained on everything the model will read.
    const prompts = demos.map((d) => Rollout.defaultRolloutConfig.promptTemplate.replaceAll("{question}", d.question.question))
    const tokenizer = yield* trainTokenizer(
      [...w.passages.map((p) => `"${p.title}"\n${p.text}`), ...prompts, ...demos.map((d) => d.turns.map(([t]) => t).join(""))],
      { vocabSize: options.vocabSize, minFrequency: 2 }
    )
    tokenizer.native.save(join(out, "model/tokenizer.json"))
    writeFileSync(join(out, "model/tokenizer_config.json"), JSON.stringify({
      tokenizer_class: "Qwen2Tokenizer",
      bos_token: null,
      eos_token: "<|im_end|>",
      pad_token: "<|endoftext|>",
      model_max_length: 2048,
      chat_template: CHATML_TEMPLATE
    }, null, 2) + "\n")
    const tok = yield* fromFolder(join(out, "model"))

    const config: ModelConfig = {
      model_type: "qwen2",
      architectures: ["Qwen2ForCausalLM"],
      vocab_size: tok.vocabSize,
      hidden_size: options.hiddenSize,
      intermediate_size: options.intermediateSize,
      num_hidden_layers: options.layers,
      num_attention_heads: options.heads,
      num_key_value_heads: options.kvHeads,
      rms_norm_eps: 1e-6,
      rope_theta: 10000,
      tie_word_embeddings: true,
      max_position_embeddings: 2048,
      hidden_act: "silu"
    }
    const engine = yield* random(config, options.seed, { backend: "cpu", seed: options.seed, ...(options.threads > 0 ? { threads: options.threads } : {}) })
    const rollout = Rollout.make(engine, tok, index)
    // Sequences: (tokens, trained mask). Demonstrations: loss on model-written tokens; passages: on every token.
    const sequences: Array<{ tokens: Int32Array; mask: Uint8Array }> = []
    for (const d of demos) {
      const ids: Array<number> = [...(yield* rollout.encodePrompt(d.question.question))]
      const mask: Array<number> = ids.map(() => 0)
      for (const [text, writer] of d.turns) {
        const e = (yield* tok.encode(text)).ids
        for (const id of e) {
          ids.push(id)
          mask.push(writer === "model" ? 1 : 0)
        }
      }
      sequences.push({ tokens: Int32Array.from(ids), mask: Uint8Array.from(mask) })
    }
    for (const p of w.passages) {
      const e = (yield* tok.encode(`"${p.title}"\n${p.text}`)).ids
      sequences.push({ tokens: e, mask: Uint8Array.from(e, (_, i) => (i === 0 ? 0 : 1)) })
    }
    yield* engine.setTrainBase(true)
    const rand = prng(options.seed + 17)
    const perEpoch = Math.ceil(sequences.length / options.batchSequences)
    const total = perEpoch * options.epochs
    const schedule = { lr: options.lr, minLr: options.lr / 10, warmupSteps: options.warmupSteps, totalSteps: total, schedule: "cosine" as const }
    const task = yield* progress.start("pretrain", total)
    let step = 0
    let firstLoss = NaN
    let lastLoss = NaN
    let tokens = 0
    let window: Array<number> = []
    for (let epoch = 0; epoch < options.epochs; epoch++) {
      const order = sequences.map((_, i) => ({ i, r: rand() })).sort((a, b) => a.r - b.r).map(({ i }) => i)
      for (let b = 0; b < perEpoch; b++) {
        const batch = order.slice(b * options.batchSequences, (b + 1) * options.batchSequences).map((i) => sequences[i]!)
        const n = batch.reduce((s, x) => s + x.tokens.length, 0)
        const packed = { tokens: new Int32Array(n), seqLens: Int32Array.from(batch, (x) => x.tokens.length), routes: new Int32Array(n).fill(-1) }
        const mask = new Uint8Array(n)
        let at = 0
        for (const x of batch) {
          packed.tokens.set(x.tokens, at)
          mask.set(x.mask, at)
          at += x.tokens.length
        }
        const trained = mask.reduce((s, m) => s + m, 0)
        const result = yield* engine.accumulate(packed, (lp) =>
          Effect.succeed({
            dLdlogp: Float32Array.from(mask, (m) => (m ? -1 / trained : 0)),
            loss: -lp.reduce((s, x, t) => s + (mask[t] ? x : 0), 0) / trained
          }))
        yield* engine.step({ lr: learningRate(schedule, step), maxGradNorm: 1, weightDecay: 0.01 })
        if (step === 0) firstLoss = result.loss
        window = [...window.slice(-19), result.loss]
        lastLoss = window.reduce((s, x) => s + x, 0) / window.length
        tokens += n
        step++
        yield* task.update(step, { epoch: `${epoch + 1}/${options.epochs}`, loss: lastLoss.toFixed(3) })
      }
    }
    yield* task.stop
    yield* engine.setTrainBase(false)
    yield* engine.saveModel(join(out, "model"))
    const parameters = JSON.parse(yield* engine.configJson) as ModelConfig
    const h = parameters.hidden_size
    const count_ = parameters.vocab_size * h + parameters.num_hidden_layers * (h * h * 2 + 2 * h * (h / options.heads) * options.kvHeads + 3 * h * parameters.intermediate_size + 2 * h) + h
    return { steps: step, firstLoss, lastLoss, seconds: (performance.now() - started) / 1000, tokens, parameters: count_ }
  })
