/**
 * The Reward stage as a service: one rollout's response and gold answers
 * in, its reward and metrics out. The default layer applies the rules of
 * rules.ts (`em` or Search-R1's `em_format`); another program provides its
 * own layer (e.g. F1) and runs the rest of the pipeline unchanged
 * (examples/embedding.ts).
 */
import { Context, Effect, Layer, Schema } from "effect"
import { defaultRewardConfig, type FormatRules, type ResponseScore, type RewardConfig, scoreResponse, type ScoredResponse } from "./rules.ts"

export const RewardErrorReason = Schema.Union([
  /** A custom reward failed on a response (`detail` says why). */
  Schema.TaggedStruct("Failed", { detail: Schema.String }),
  /** A reward that is not a finite number. */
  Schema.TaggedStruct("NonFinite", { value: Schema.String })
])
export type RewardErrorReason = typeof RewardErrorReason.Type

export class RewardError extends Schema.TaggedError<RewardError>()("RewardError", { reason: RewardErrorReason }) {
  override get message(): string {
    return this.reason._tag === "Failed" ? `reward failed: ${this.reason.detail}` : `reward is ${this.reason.value}, expected a finite number`
  }
}

export interface RewardShape {
  readonly score: (input: ScoredResponse) => Effect.Effect<ResponseScore, RewardError>
}

export class Reward extends Context.Service<Reward, RewardShape>()("@dart-rl/ts/Reward") {}

/** A reward service from a scoring function; non-finite rewards are refused. */
export const make = (score: RewardShape["score"]): RewardShape => ({
  score: (input) =>
    Effect.flatMap(score(input), (s) =>
      Number.isFinite(s.reward) ? Effect.succeed(s) : Effect.fail(new RewardError({ reason: { _tag: "NonFinite", value: String(s.reward) } })))
})

/** The rules of rules.ts under a reward config. */
export const fromRules = (config: RewardConfig = defaultRewardConfig, format: Partial<FormatRules> = {}): RewardShape =>
  make((input) => Effect.succeed(scoreResponse(input, config, format)))

export const layer = (config: RewardConfig = defaultRewardConfig, format: Partial<FormatRules> = {}): Layer.Layer<Reward> =>
  Layer.succeed(Reward)(fromRules(config, format))

/** A test layer: the reward of a response is `value(response)`; the other metrics as the rules compute them. */
export const layerConstant = (value: (response: string) => number): Layer.Layer<Reward> =>
  Layer.succeed(Reward)(make((input) => Effect.succeed({ ...scoreResponse(input), reward: value(input.response) })))
