/**
 * Generation sessions driven from TypeScript (docs/engine-api.md, "Generation"):
 * a multi-turn episode on a tiny model whose vocabulary has tag tokens.
 *
 * A random model will not write tags on cue, so the test first teaches one:
 * the base model is trained (setTrainBase + AdamW) to memorise a single
 * demonstration
 *
 *   prompt  think <search> q </search> <information> doc </information> <answer> a </answer>
 *   P P     R     R  R     A A         O            O   O              R        R R R
 *
 * (`<search>` and `</answer>` are two tokens each, so that the role rule and
 * the stop sequences are exercised on multi-token tags), after which greedy
 * decoding reproduces it. Then a caller runs the episode: generate, pause on
 * `</search>` ("tool_call"), run the "tool" on the query tokens, extend with
 * its output (role "observation"), generate again until `</answer>` ("stop").
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { type EngineShape, type GenerationSessionShape, type ModelConfig, random } from "../src/engine/Engine.ts"
import { type GenPlan, type Generated, loadNative, ROLE, type RoleRules } from "../src/engine/native.ts"

// ---------------------------------------------------------------------------
// Vocabulary (16 ids) and the demonstration

const PROMPT = [1, 2]
const THINK = 3
const SEARCH_OPEN = [4, 5]
const QUERY = 6
const SEARCH_CLOSE = [7]
const INFO_OPEN = 8
const DOC = 9
const INFO_CLOSE = 10
const ANSWER_OPEN = 11
const ANSWER = 12
const ANSWER_CLOSE = [13, 14]

const rules: RoleRules = { open: SEARCH_OPEN, close: SEARCH_CLOSE }
const observation = [INFO_OPEN, DOC, INFO_CLOSE]
const firstTurn = [THINK, ...SEARCH_OPEN, QUERY, ...SEARCH_CLOSE]
const secondTurn = [ANSWER_OPEN, ANSWER, ...ANSWER_CLOSE]
const demo = [...PROMPT, ...firstTurn, ...observation, ...secondTurn]
/** Who wrote each token of the demonstration: 0 prompt, 1 model, 2 tool. */
const sources = [...PROMPT.map(() => 0), ...firstTurn.map(() => 1), ...observation.map(() => 2), ...secondTurn.map(() => 1)]
const { A, O, P, R } = ROLE
const demoRoles = [P, P, R, R, R, A, A, O, O, O, R, R, R, R]

const config: ModelConfig = {
  model_type: "qwen2",
  architectures: ["Qwen2ForCausalLM"],
  vocab_size: 16,
  hidden_size: 32,
  intermediate_size: 64,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 10000,
  tie_word_embeddings: true,
  max_position_embeddings: 64,
  hidden_act: "silu"
}

/** dart: slot 0 (reason) for P, R, O; slot 1 (tool) for A. */
const dart: GenPlan = { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 }
/** two-agent: slot 0 reads everything and writes R, slot 1 reads everything and writes A. */
const twoAgent: GenPlan = { agents: [[0, 0, 0, 0], [1, 1, 1, 1]], writerR: 0, writerA: 1 }

// ---------------------------------------------------------------------------
// Teaching the base model the demonstration

/**
 * Trains the base model (no adapter routed) on the model-written tokens of the
 * demonstration until greedy decoding reproduces it: every model-written
 * token has logprob > log(0.9). Then adds two adapters with B = 0 (they leave
 * the outputs unchanged) so that plans can route to slots 0 and 1.
 */
const teach = Effect.gen(function*() {
  const engine = yield* random(config, 5, { threads: 2 })
  yield* engine.setTrainBase(true)
  const batch = {
    tokens: Int32Array.from(demo),
    seqLens: Int32Array.of(demo.length),
    routes: new Int32Array(demo.length).fill(-1)
  }
  // Loss = -(mean logprob of the model-written tokens).
  const modelTokens = sources.filter((s) => s === 1).length
  const dLdlogp = Float32Array.from(sources, (s) => (s === 1 ? -1 / modelTokens : 0))
  let steps = 0
  let worst = -Infinity
  for (; steps < 400; steps++) {
    yield* engine.zeroGrad
    const logprobs = yield* engine.forward(batch)
    worst = Math.min(...sources.flatMap((s, t) => (s === 1 ? [logprobs[t]!] : [])))
    if (worst > Math.log(0.9)) break
    yield* engine.backward(dLdlogp)
    yield* engine.step({ lr: 1e-2 })
  }
  assert.isAbove(worst, Math.log(0.9), `the model did not memorise the demonstration in ${steps} steps`)
  console.log(`session test: the base model memorised the demonstration in ${steps} AdamW steps`)
  yield* engine.setTrainBase(false)
  yield* engine.addAdapter({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj"], seed: 1 })
  yield* engine.addAdapter({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj"], seed: 2 })
  return { engine, steps }
})

// ---------------------------------------------------------------------------
// The caller: a multi-turn episode

/** The "search tool": answers a query (the A tokens before the close tag) with the observation. */
const searchTool = (query: ReadonlyArray<number>): Int32Array => {
  assert.deepStrictEqual([...query], [QUERY], "the tool receives the query the model wrote")
  return Int32Array.from(observation)
}

interface Episode {
  /** What each generate call returned for the sequence. */
  readonly turns: ReadonlyArray<Generated>
  readonly history: Generated
}

/**
 * Runs one sequence to the end: generate; on "tool_call" run the tool on the
 * query and extend with its output; stop on anything else or after `maxTurns`.
 */
const runEpisode = (session: GenerationSessionShape, maxTurns: number, maxNewTokens: number) =>
  Effect.gen(function*() {
    const seq = yield* session.addSequence(Int32Array.from(PROMPT))
    const turns: Array<Generated> = []
    for (let turn = 0; turn < maxTurns; turn++) {
      const out = yield* session.generate({ maxNewTokens, temperature: 0, stop: [ANSWER_CLOSE], eos: [0] })
      assert.strictEqual(out.length, 1)
      const g = out[0]!
      assert.strictEqual(g.seq, seq)
      turns.push(g)
      if (g.stop !== "tool_call") break
      // The query: the A tokens of this turn without the close tag.
      const action = [...g.tokens].filter((_, i) => g.roles[i] === A)
      yield* session.extend(seq, searchTool(action.slice(0, action.length - SEARCH_CLOSE.length)), "observation")
    }
    return { turns, history: yield* session.sequence(seq) } satisfies Episode
  })

const plainArray = (a: ArrayLike<number>): Array<number> => Array.from(a)

/** forward on the session's tokens and the given routes equals the recorded logprobs at the checked roles. */
const assertConsistent = (engine: EngineShape, h: Generated, routes: Int32Array, roles: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const lp = yield* engine.forward({ tokens: h.tokens, seqLens: Int32Array.of(h.tokens.length), routes })
    for (let t = 1; t < h.tokens.length; t++) {
      if (!roles.includes(h.roles[t]!)) continue
      assert.approximately(h.logprobs[t]!, lp[t]!, 1e-5, `token ${t} (role ${h.roles[t]})`)
    }
  })

describe("Session (generation driven from TypeScript)", () => {
  // One taught model for every test, trained on first use.
  let teaching: Promise<{ engine: EngineShape; steps: number }> | undefined
  const taught = () => (teaching ??= Effect.runPromise(teach))

  it.effect("a dart episode pauses on </search>, takes the tool output and stops on </answer>", () =>
    Effect.scoped(Effect.gen(function*() {
      const { engine } = yield* Effect.promise(taught)
      const session = yield* engine.session({ plan: dart, rules, seed: 7 })
      const { history, turns } = yield* runEpisode(session, 4, 32)

      assert.strictEqual(turns.length, 2)
      const [first, second] = turns as [Generated, Generated]
      // Turn 1: the model thinks, opens a call, writes the query and closes it; the session pauses.
      assert.strictEqual(first.stop, "tool_call")
      assert.deepStrictEqual(plainArray(first.tokens), firstTurn)
      assert.deepStrictEqual(plainArray(first.roles), [R, R, R, A, A])
      assert.deepStrictEqual(plainArray(first.routes), [0, 0, 0, 1, 1])
      // Turn 2: after the observation, the model answers and stops on the stop sequence.
      assert.strictEqual(second.stop, "stop")
      assert.deepStrictEqual(plainArray(second.tokens), secondTurn)
      assert.deepStrictEqual(plainArray(second.roles), [R, R, R, R])
      assert.deepStrictEqual(plainArray(second.routes), [0, 0, 0, 0])

      // The whole history: prompt, turn 1, observation, turn 2, with roles, routes and logprobs.
      assert.strictEqual(history.stop, "stop")
      assert.deepStrictEqual(plainArray(history.tokens), demo)
      assert.deepStrictEqual(plainArray(history.roles), demoRoles)
      assert.deepStrictEqual(plainArray(history.routes), demoRoles.map((r) => dart.agents[0]![r]!))
      for (let t = 0; t < demo.length; t++) {
        if (sources[t] === 1) {
          // Greedy picks the memorised token, whose probability is > 0.9.
          assert.isAbove(history.logprobs[t]!, Math.log(0.9), `logprob of token ${t}`)
          assert.isAtMost(history.logprobs[t]!, 0)
        } else {
          assert.strictEqual(history.logprobs[t], 0, `P/O token ${t} has no logprob`)
        }
      }
      // The tag rule as data: re-labelling from who wrote each token gives the same roles.
      const relabelled = loadNative().assignRoles(history.tokens, Uint8Array.from(sources), rules)
      assert.deepStrictEqual(plainArray(relabelled), demoRoles)
      // Recorded logprobs = what training recomputes (forward on the same tokens and routes).
      yield* assertConsistent(engine, history, history.routes, [R, A])
      // A finished sequence is not generated again.
      const again = yield* session.generate({ maxNewTokens: 4, temperature: 0 })
      assert.deepStrictEqual(again, [])
    })))

  it.effect("two-agent: the same episode, R tokens written through slot 0 and A tokens through slot 1", () =>
    Effect.scoped(Effect.gen(function*() {
      const { engine } = yield* Effect.promise(taught)
      const session = yield* engine.session({ plan: twoAgent, rules, seed: 7 })
      const { history, turns } = yield* runEpisode(session, 4, 32)
      assert.deepStrictEqual(turns.map((g) => g.stop), ["tool_call", "stop"])
      assert.deepStrictEqual(plainArray(history.tokens), demo)
      assert.deepStrictEqual(plainArray(history.roles), demoRoles)
      // Each token's route is its writer's: slot 1 for A, slot 0 for everything else.
      assert.deepStrictEqual(plainArray(history.routes), demoRoles.map((r) => (r === A ? 1 : 0)))
      // Each writer reads the whole history through its own slot.
      yield* assertConsistent(engine, history, new Int32Array(demo.length).fill(0), [R])
      yield* assertConsistent(engine, history, new Int32Array(demo.length).fill(1), [A])
    })))

  it.effect("the budget: maxNewTokens stops with \"length\" and the next call continues", () =>
    Effect.scoped(Effect.gen(function*() {
      const { engine } = yield* Effect.promise(taught)
      const session = yield* engine.session({ plan: dart, rules, seed: 7 })
      const seq = yield* session.addSequence(Int32Array.from(PROMPT))
      const opts = { maxNewTokens: 2, temperature: 0, stop: [ANSWER_CLOSE] }
      const a = yield* session.generate(opts)
      assert.strictEqual(a[0]!.stop, "length")
      assert.deepStrictEqual(plainArray(a[0]!.tokens), firstTurn.slice(0, 2))
      // Mid-tag: the second half of <search> is still R, the query after it is A.
      const b = yield* session.generate({ ...opts, maxNewTokens: 8 })
      assert.strictEqual(b[0]!.stop, "tool_call")
      assert.deepStrictEqual(plainArray(b[0]!.tokens), firstTurn.slice(2))
      assert.deepStrictEqual(plainArray(b[0]!.roles), [R, A, A])
      // Without extend, the paused sequence is not active.
      assert.deepStrictEqual(yield* session.generate(opts), [])
      yield* session.extend(seq, Int32Array.from(observation), "observation")
      const c = yield* session.generate({ ...opts, maxNewTokens: 3 })
      assert.strictEqual(c[0]!.stop, "length")
      yield* session.finish(seq)
      assert.deepStrictEqual(yield* session.generate(opts), [])
      const h = yield* session.sequence(seq)
      assert.deepStrictEqual(plainArray(h.tokens), demo.slice(0, demo.length - 1))
      assert.deepStrictEqual(plainArray(h.roles), demoRoles.slice(0, demo.length - 1))
      yield* assertConsistent(engine, h, h.routes, [R, A])
    })))

  it.effect("extend rejects model roles and unknown sequences with typed errors; a closed session refuses every call", () =>
    Effect.gen(function*() {
      const { engine } = yield* Effect.promise(taught)
      const closed = yield* Effect.scoped(Effect.gen(function*() {
        const session = yield* engine.session({ plan: dart, rules, seed: 7 })
        yield* session.addSequence(Int32Array.from(PROMPT))
        const code = <A>(e: Effect.Effect<A, { readonly code: string }>) => Effect.map(Effect.flip(e), (err) => err.code)
        assert.strictEqual(yield* code(session.extend(0, Int32Array.of(1), "reasoning" as "prompt")), "DART_INVALID_ARGUMENT")
        assert.strictEqual(yield* code(session.extend(3, Int32Array.of(1), "observation")), "DART_INVALID_ARGUMENT")
        assert.strictEqual(yield* code(session.extend(0, Int32Array.of(99), "observation")), "DART_INVALID_ARGUMENT")
        const unknownSlot = yield* Effect.flip(Effect.scoped(engine.session({ plan: { agents: [[0, 0, 5, 0]], writerR: 0, writerA: 0 }, rules })))
        assert.strictEqual(unknownSlot.code, "DART_UNKNOWN_SLOT")
        return session
      }))
      // The scope ended: the session is closed.
      const error = yield* Effect.flip(closed.generate({ maxNewTokens: 2 }))
      assert.strictEqual(error._tag, "EngineStateError")
      assert.include(error.message, "closed")
    }))

  it.effect("the engine lock: concurrent accumulate calls never interleave a forward/backward pair", () =>
    Effect.gen(function*() {
      const { engine } = yield* Effect.promise(taught)
      const batch = (n: number) => ({ tokens: Int32Array.from(demo.slice(0, n)), seqLens: Int32Array.of(n), routes: new Int32Array(n).fill(0) })
      // Sequential reference: the gradient of each batch alone.
      const gradOf = (n: number) =>
        Effect.gen(function*() {
          yield* engine.zeroGrad
          yield* engine.accumulate(batch(n), (lp) => Effect.succeed({ dLdlogp: lp.map((_, t) => (t > 0 ? -1 : 0)) }))
          return (yield* engine.adapterGrads(0))["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]!
        })
      const g8 = yield* gradOf(8)
      const g14 = yield* gradOf(14)
      yield* engine.zeroGrad
      // Concurrently, with the objective yielding in between forward and backward.
      let overlapped = 0
      let inside = 0
      yield* Effect.all([8, 14, 8, 14].map((n) =>
        engine.accumulate(batch(n), (lp) =>
          Effect.gen(function*() {
            inside++
            if (inside > 1) overlapped++
            yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 5)))
            inside--
            return { dLdlogp: lp.map((_, t) => (t > 0 ? -1 : 0)) }
          }))
      ), { concurrency: "unbounded" })
      assert.strictEqual(overlapped, 0, "two objectives ran between one forward and its backward")
      const sum = (yield* engine.adapterGrads(0))["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]!
      for (let i = 0; i < sum.length; i++) assert.approximately(sum[i]!, 2 * g8[i]! + 2 * g14[i]!, 1e-5 * (1 + Math.abs(sum[i]!)))
      yield* engine.zeroGrad
    }))
})
