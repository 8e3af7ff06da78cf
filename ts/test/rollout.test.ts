/**
 * The Rollout stage on the pipeline fixture: real multi-turn episodes with
 * searches through the built-in index, and the consistency of the loop:
 * the logprobs recorded at rollout equal those the Update stage recomputes
 * on the same routes (property 8 in the loop, cpu: 1e-5 * max(1, |logp|)),
 * so the first PPO epoch's importance ratio is 1, in every mode.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { ROLE } from "../src/domain/model.ts"
import { INVALID_ACTION_MESSAGE, parseAction, promptText, SEARCH_R1_TEMPLATE } from "../src/rollout/agent.ts"
import * as Rollout from "../src/rollout/Rollout.ts"
import { MODES, modePlan, type TrainMode } from "../src/routing/modes.ts"
import { modeSlots, slotNames } from "../src/train/Train.ts"
import * as Update from "../src/update/Update.ts"
import { FIXTURE, fixtureEngine, fixtureSearch, fixtureTokenizer } from "./support/pipeline.ts"

const questions = readFileSync(join(FIXTURE, "validation.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { question: string })

describe("agent format", () => {
  it("reads the first complete action of a turn, as Search-R1's regex does", () => {
    assert.deepStrictEqual(parseAction("<think> x </think>\n<search> Ranor Rami </search>"), { _tag: "Search", query: "Ranor Rami" })
    assert.deepStrictEqual(parseAction("<answer> Kaka </answer> <search> q </search>"), { _tag: "Answer", answer: "Kaka" })
    assert.deepStrictEqual(parseAction("<search>  </search>"), { _tag: "Invalid", reason: "empty query" })
    assert.deepStrictEqual(parseAction("<search> q </answer>"), { _tag: "Invalid", reason: "unclosed <search>" })
    assert.deepStrictEqual(parseAction("<answer> Kaka"), { _tag: "Invalid", reason: "unclosed <answer>" })
    assert.deepStrictEqual(parseAction("I think"), { _tag: "Invalid", reason: "no <search> or <answer>" })
    assert.strictEqual(promptText("Q: {question}", "Who"), "Q: Who?")
    assert.strictEqual(promptText("Q: {question}", " Who? "), "Q: Who?")
    assert.throws(() => promptText("no placeholder", "x"), /no \{question\} placeholder/)
  })
})

const episodeChecks = (trajectories: ReadonlyArray<Rollout.Trajectory>, config: Rollout.RolloutConfig) => {
  for (const t of trajectories) {
    assert.isAtMost(t.searches, config.maxSearches)
    assert.isAtMost(t.turns, config.maxTurns)
    assert.strictEqual(t.tokens.length, t.roles.length)
    for (let i = 0; i < t.promptLength; i++) assert.strictEqual(t.roles[i], ROLE.P)
    for (let i = t.promptLength; i < t.roles.length; i++) assert.notStrictEqual(t.roles[i], ROLE.P, `response token ${i} is role P`)
    // Observations carry no logprob; model-written tokens do.
    for (let i = 0; i < t.roles.length; i++) {
      if (t.roles[i] === ROLE.O || t.roles[i] === ROLE.P) assert.strictEqual(t.logprobs[i], 0)
      else assert.isBelow(t.logprobs[i]!, 0.0000001)
    }
    if (t.invalidActions > 0) assert.include(t.response, INVALID_ACTION_MESSAGE.trim())
  }
}

describe("rollout", () => {
  it.effect("multi-turn episodes with searches; every mode's update recomputes the recorded logprobs (1e-5) with ratio 1", () =>
    Effect.gen(function*() {
      const search = yield* fixtureSearch
      const tokenizer = yield* fixtureTokenizer
      let searched = 0
      let episodes = 0
      for (const mode of MODES satisfies ReadonlyArray<TrainMode>) {
        const engine = yield* fixtureEngine
        for (let i = 0; i < slotNames(mode).length; i++) {
          // B != 0 so every adapter changes the logprobs (a routing mistake would show).
          yield* engine.addAdapter({ rank: 4, alpha: 8, targets: ["q_proj", "v_proj", "down_proj"], seed: 10 + i, bInitStd: 0.05 })
        }
        const plan = modePlan(mode, modeSlots(mode))
        const config = { ...Rollout.defaultRolloutConfig, groupSize: 3, maxTurnTokens: 64, maxSearches: 2, maxTurns: 3 }
        const rollout = Rollout.make(engine, tokenizer, search, config)
        const trajectories = yield* rollout.run({ prompts: questions.slice(0, 4), plan: plan.generation, seed: 11 })
        assert.strictEqual(trajectories.length, 12)
        trajectories.forEach((t, i) => {
          assert.strictEqual(t.prompt, Math.floor(i / 3))
          assert.strictEqual(t.sample, i % 3)
        })
        episodeChecks(trajectories, config)
        searched += trajectories.reduce((n, t) => n + t.searches, 0)
        episodes += trajectories.length
        // Searches ran: some observation holds a passage of the corpus.
        if (trajectories.some((t) => t.searches > 0)) assert.isTrue(trajectories.some((t) => t.response.includes("Doc 1(Title:")))
        const update = Update.make(engine, { ...Update.defaultUpdateConfig, microBatchTokens: 600 })
        const report = yield* update.update({
          sequences: trajectories,
          advantages: trajectories.map((_, i) => (i % 3) - 1),
          plan,
          lr: 1e-3
        })
        console.log(
          `rollout consistency, mode ${mode}: ${report.trainedTokens} trained tokens, max |d logp| ${report.consistency.maxAbs.toExponential(2)} ` +
            `(relative ${report.consistency.maxRel.toExponential(2)}), mean ${report.consistency.meanAbs.toExponential(2)}, first-epoch ratio ${report.firstEpochRatio}`
        )
        assert.isAbove(report.trainedTokens, 0)
        assert.isAtMost(report.consistency.maxRel, 1e-5)
        assert.approximately(report.firstEpochRatio, 1, 1e-5)
        assert.strictEqual(report.slots.filter((s) => s.updated).length, slotNames(mode).length, "every adapter of the mode stepped")
      }
      console.log(`rollout: ${searched} searches in ${episodes} episodes over the five modes`)
      assert.isAbove(searched, 5, "the fixture model searches")
    }))

  it.effect("prompts are the template with the question, through the chat template when there is one", () =>
    Effect.gen(function*() {
      const engine = yield* fixtureEngine
      const tokenizer = yield* fixtureTokenizer
      const search = yield* fixtureSearch
      const rollout = Rollout.make(engine, tokenizer, search)
      const ids = yield* rollout.encodePrompt("Who is Ranor Rami")
      // The fixture has no chat template: the plain text.
      assert.strictEqual(yield* tokenizer.decode(ids), promptText(SEARCH_R1_TEMPLATE, "Who is Ranor Rami"))
      const bad = yield* Effect.flip(rollout.encodePrompt("x", { promptTemplate: "no placeholder" }))
      assert.include(bad.message, "{question}")
      const badConfig = yield* Effect.flip(rollout.encodePrompt("x", { groupSize: 0 }))
      assert.include(badConfig.message, "groupSize")
    }))
})
