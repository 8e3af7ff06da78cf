/**
 * The Update stage: GRPO/PPO on a batch of trajectories (docs/objective.md).
 *
 * For each PPO epoch, each training pass of the mode (one for dart, joint,
 * reas-only and tool-only, two for two-agent: each adapter reads the whole
 * context through its own routes and carries loss on the role it writes)
 * and each micro-batch (sequences packed in order up to a token budget),
 * one `accumulate`: forward on the pass's routes, the pure objective
 * (objective/ppo.ts) with the aggregation weights of the whole batch (so
 * accumulating the micro-batches equals one big batch), backward. Then one
 * AdamW step per epoch at the given learning rate. The reference logprobs
 * of the k3 KL come from the same engine with every token routed to base.
 * Every forward asks for the logprobs of the tokens that carry loss only
 * (`logprobMask`: the LM head skips prompts and retrieved passages).
 *
 * Logprob consistency: the first epoch recomputes, on the rollout's routes,
 * the logprobs the rollout recorded; the report gives the largest and mean
 * difference, and the importance ratio of that epoch (1 up to it).
 */
import { Context, Effect, Layer, Schema } from "effect"
import { boundedInt, boundedNumber } from "../domain/schema.ts"
import { type Batch, Engine, type EngineError, type SlotReport } from "../engine/Engine.ts"
import { aggregationWeights, ObjectiveConfig, policyObjective } from "../objective/ppo.ts"
import { ROLE } from "../domain/model.ts"
import { lossMask, type ModePlan, tokenRoutes, type TrainingPass } from "../routing/modes.ts"
import { microBatches } from "./schedule.ts"


export const OptimizerConfig = Schema.Struct({
  weightDecay: boundedNumber(0, 10),
  /** Global gradient-norm clip per adapter; 0 = off. */
  maxGradNorm: boundedNumber(0, 1e6),
  beta1: boundedNumber(0, 0.999999),
  beta2: boundedNumber(0, 0.999999),
  eps: boundedNumber(1e-30, 1)
})
export type OptimizerConfig = typeof OptimizerConfig.Type

export const UpdateConfig = Schema.Struct({
  /** PPO epochs over each batch (one AdamW step each). */
  ppoEpochs: boundedInt(1, 64),
  /** Tokens per micro-batch (a longer sequence goes alone). */
  microBatchTokens: boundedInt(16, 1 << 24),
  objective: ObjectiveConfig,
  optimizer: OptimizerConfig
})
export type UpdateConfig = typeof UpdateConfig.Type

export const defaultUpdateConfig: UpdateConfig = {
  ppoEpochs: 1,
  microBatchTokens: 8192,
  objective: { clipLow: 0.2, clipHigh: 0.2, klBeta: 0.001, aggregation: "token-mean" },
  optimizer: { weightDecay: 0, maxGradNorm: 1, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
}

/** What the update reads of a trajectory. */
export interface UpdateSequence {
  readonly tokens: Int32Array
  readonly roles: Uint8Array
  /** The logprobs recorded at rollout (the behaviour policy). */
  readonly logprobs: Float32Array
}

export interface UpdateRequest {
  readonly sequences: ReadonlyArray<UpdateSequence>
  /** One advantage per sequence. */
  readonly advantages: ArrayLike<number>
  readonly plan: ModePlan
  readonly lr: number
}

export interface UpdateReport {
  /** Loss of the first epoch (summed over passes). */
  readonly loss: number
  readonly kl: number
  readonly clipFraction: number
  /** Mean importance ratio of the first epoch over trained tokens (1 on policy). */
  readonly firstEpochRatio: number
  /**
   * |recomputed - recorded| logprob over trained tokens in the first epoch;
   * `maxRel` divides by max(1, |logprob|) (property 8's measure).
   */
  readonly consistency: { readonly maxAbs: number; readonly meanAbs: number; readonly maxRel: number }
  /** Mean -logprob of the sampled trained tokens (an estimate of the policy's entropy). */
  readonly entropy: number
  readonly trainedTokens: number
  /** The last epoch's AdamW report per adapter slot. */
  readonly slots: ReadonlyArray<SlotReport>
  readonly seconds: number
}

export const UpdateErrorReason = Schema.Union([
  /** The loss or its gradient is not finite (`where` names the epoch, pass and micro-batch). */
  Schema.TaggedStruct("NonFinite", { where: Schema.String }),
  /** The request is malformed (lengths, advantages, plan). */
  Schema.TaggedStruct("Input", { detail: Schema.String }),
  Schema.TaggedStruct("Engine", { op: Schema.String, code: Schema.String, detail: Schema.String })
])
export type UpdateErrorReason = typeof UpdateErrorReason.Type

export class UpdateError extends Schema.TaggedError<UpdateError>()("UpdateError", { reason: UpdateErrorReason }) {
  override get message(): string {
    const r = this.reason
    if (r._tag === "NonFinite") return `non-finite loss or gradient at ${r.where}; nothing was stepped and no checkpoint is written`
    if (r._tag === "Input") return `update input: ${r.detail}`
    return `${r.op} [${r.code}]: ${r.detail}`
  }
}

const fromEngine = (e: EngineError) =>
  e.code === "DART_NON_FINITE"
    ? new UpdateError({ reason: { _tag: "NonFinite", where: `${e.op}: ${e.message}` } })
    : new UpdateError({ reason: { _tag: "Engine", op: e.op, code: e.code, detail: e.message } })
const inputError = (detail: string) => new UpdateError({ reason: { _tag: "Input", detail } })

export interface GradientProbe {
  /** cosine(g_reasoning, g_tool) on the shared adapter: the gradients of the objective on R tokens only and on A tokens only. */
  readonly cosine: number
  readonly normReasoning: number
  readonly normTool: number
}

export interface UpdateShape {
  readonly update: (request: UpdateRequest) => Effect.Effect<UpdateReport, UpdateError>
  /**
   * The gradient-angle probe: two separate backward passes on the batch,
   * one with loss on reasoning tokens, one on tool-call tokens, through
   * the mode's one shared adapter; nothing is stepped and the gradients
   * are cleared afterwards. Fails for modes with two adapters.
   */
  readonly gradientCosine: (request: UpdateRequest) => Effect.Effect<GradientProbe, UpdateError>
  /**
   * The same two backward passes for each sequence on its own: the
   * per-trajectory reasoning and tool gradients (LEAS's gradient angles).
   */
  readonly roleGradients: (request: UpdateRequest) => Effect.Effect<ReadonlyArray<RoleGradients>, UpdateError>
}

/** One trajectory's gradients on the shared adapter: of its objective on R tokens only, and on A tokens only. */
export interface RoleGradients {
  readonly reasoning: Float64Array
  readonly tool: Float64Array
}

export const norm = (v: ArrayLike<number>): number => {
  let s = 0
  for (let i = 0; i < v.length; i++) s += v[i]! ** 2
  return Math.sqrt(s)
}

/** cosine(a, b); 0 when either is zero. */
export const cosine = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let dot = 0
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!
  const n = norm(a) * norm(b)
  return n === 0 ? 0 : dot / n
}

export class Update extends Context.Service<Update, UpdateShape>()("@dart-rl/ts/Update") {}

/** Packs sequences end to end; `routes` per token from `route`; logprobs wanted where `logprobMask` is 1. */
const pack = (seqs: ReadonlyArray<UpdateSequence>, route: (s: UpdateSequence) => Int32Array, logprobMask: Uint8Array): Batch => {
  const total = seqs.reduce((n, s) => n + s.tokens.length, 0)
  const tokens = new Int32Array(total)
  const routes = new Int32Array(total)
  let at = 0
  for (const s of seqs) {
    tokens.set(s.tokens, at)
    routes.set(route(s), at)
    at += s.tokens.length
  }
  return { tokens, routes, seqLens: Int32Array.from(seqs, (s) => s.tokens.length), logprobMask }
}

/** 1 where any of the masks is 1. */
const union = (masks: ReadonlyArray<Uint8Array>, length: number): Uint8Array => {
  const out = new Uint8Array(length)
  for (const m of masks) for (let t = 0; t < length; t++) out[t] = out[t]! | m[t]!
  return out
}

const concat = <T extends Float32Array | Uint8Array | Int32Array | Float64Array>(make: (n: number) => T, parts: ReadonlyArray<ArrayLike<number>>): T => {
  const out = make(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** First-epoch statistics of one accumulation over the batch. */
interface EpochStats {
  loss: number
  kl: number
  clipped: number
  ratioSum: number
  trained: number
  maxAbs: number
  maxRel: number
  sumAbs: number
  negLogp: number
}

const emptyStats = (): EpochStats => ({ loss: 0, kl: 0, clipped: 0, ratioSum: 0, trained: 0, maxAbs: 0, maxRel: 0, sumAbs: 0, negLogp: 0 })

const checkRequest = ({ advantages, plan, sequences }: UpdateRequest) => {
  if (plan.passes.length === 0) return inputError(`mode ${plan.mode} has no training passes (evaluation only)`)
  if (advantages.length !== sequences.length) return inputError(`${advantages.length} advantages for ${sequences.length} sequences`)
  for (let i = 0; i < sequences.length; i++) {
    const s = sequences[i]!
    if (s.roles.length !== s.tokens.length || s.logprobs.length !== s.tokens.length) {
      return inputError(`sequence ${i}: ${s.tokens.length} tokens, ${s.roles.length} roles, ${s.logprobs.length} logprobs`)
    }
  }
  return undefined
}

export const make = (engine: typeof Engine.Service, config: UpdateConfig = defaultUpdateConfig): UpdateShape => {
  const objective = config.objective

  /**
   * A prepared batch: micro-batches, and `accumulate(passes, stats)` that
   * runs forward / objective / backward of every pass over every
   * micro-batch, with each pass's aggregation weights over the whole batch.
   */
  const prepare = ({ advantages, plan, sequences }: UpdateRequest) =>
    Effect.gen(function*() {
      const groups = microBatches(sequences.map((s) => s.tokens.length), config.microBatchTokens)
      const seqOf = concat((n) => new Int32Array(n), sequences.map((s, i) => new Int32Array(s.tokens.length).fill(i)))
      const offsets: Array<number> = []
      sequences.reduce((at, s) => (offsets.push(at), at + s.tokens.length), 0)
      // Reference logprobs (frozen base), once per micro-batch, on the tokens
      // some pass of the plan carries loss on.
      const refMasks = sequences.map((s) => union(plan.passes.map((p) => lossMask(p, s.roles)), s.tokens.length))
      const ref: Array<Float32Array | undefined> = []
      for (const g of groups) {
        const mask = concat((n) => new Uint8Array(n), g.map((i) => refMasks[i]!))
        ref.push(objective.klBeta > 0
          ? yield* Effect.mapError(engine.forward(pack(g.map((i) => sequences[i]!), (s) => new Int32Array(s.tokens.length).fill(-1), mask)), fromEngine)
          : undefined)
      }
      const accumulate = (passes: ReadonlyArray<TrainingPass>, stats: EpochStats | undefined, label: string) =>
        Effect.gen(function*() {
          for (let p = 0; p < passes.length; p++) {
            const pass = passes[p]!
            const masks = sequences.map((s) => lossMask(pass, s.roles))
            if (objective.klBeta > 0 && masks.some((m, i) => m.some((x, t) => x === 1 && refMasks[i]![t] !== 1))) {
              return yield* inputError(`${label}, pass ${p}: loss on tokens the plan's passes carry no loss on (no reference logprob there)`)
            }
            const weights = aggregationWeights(concat((n) => new Uint8Array(n), masks), seqOf, objective.aggregation)
            for (let m = 0; m < groups.length; m++) {
              const ids = groups[m]!
              const seqs = ids.map((i) => sequences[i]!)
              const mask = concat((n) => new Uint8Array(n), ids.map((i) => masks[i]!))
              const batch = pack(seqs, (s) => tokenRoutes(pass, s.roles), mask)
              const seq = concat((n) => new Int32Array(n), ids.map((i, k) => new Int32Array(sequences[i]!.tokens.length).fill(k)))
              const oldLogp = concat((n) => new Float32Array(n), seqs.map((s) => s.logprobs))
              const w = concat((n) => new Float64Array(n), ids.map((i) => weights.subarray(offsets[i]!, offsets[i]! + sequences[i]!.tokens.length)))
              const where = `${label}, pass ${p}, micro-batch ${m}`
              const result = yield* engine.accumulate(batch, (logp) =>
                Effect.suspend(() => {
                  for (let t = 0; t < mask.length; t++) {
                    if (mask[t] === 1 && !Number.isFinite(logp[t]!)) {
                      return Effect.fail(new UpdateError({ reason: { _tag: "NonFinite", where: `${where}: the forward pass gave logprob ${logp[t]} at token ${t} (diverged adapters or learning rate)` } }))
                    }
                  }
                  const refLogp = ref[m]
                  const out = policyObjective({
                    logp,
                    oldLogp,
                    ...(refLogp === undefined ? {} : { refLogp }),
                    mask,
                    seq,
                    advantages: Float64Array.from(ids, (i) => advantages[i]!),
                    weights: w
                  }, objective)
                  const dLdlogp = Float32Array.from(out.dLdlogp)
                  if (!Number.isFinite(out.loss) || dLdlogp.some((x) => !Number.isFinite(x))) {
                    return Effect.fail(new UpdateError({ reason: { _tag: "NonFinite", where } }))
                  }
                  return Effect.succeed({ ...out, dLdlogp, logp })
                }).pipe(Effect.catchDefect((d) => Effect.fail(inputError(`${where}: ${d instanceof Error ? d.message : String(d)}`))))
              ).pipe(Effect.mapError((e) => (e._tag === "UpdateError" ? e : fromEngine(e))))
              if (stats !== undefined) {
                stats.loss += result.loss
                stats.kl += result.kl
                stats.clipped += result.clipFraction * result.trainedTokens
                stats.ratioSum += result.meanRatio * result.trainedTokens
                stats.trained += result.trainedTokens
                for (let t = 0; t < mask.length; t++) {
                  if (mask[t] !== 1) continue
                  const d = Math.abs(result.logp[t]! - oldLogp[t]!)
                  if (d > stats.maxAbs) stats.maxAbs = d
                  const rel = d / Math.max(1, Math.abs(oldLogp[t]!))
                  if (rel > stats.maxRel) stats.maxRel = rel
                  stats.sumAbs += d
                  stats.negLogp -= oldLogp[t]!
                }
              }
            }
          }
        })
      return { accumulate }
    })

  const update = (request: UpdateRequest) =>
    Effect.gen(function*() {
      const started = performance.now()
      const bad = checkRequest(request)
      if (bad !== undefined) return yield* bad
      const { accumulate } = yield* prepare(request)
      const stats = emptyStats()
      let slots: ReadonlyArray<SlotReport> = []
      yield* Effect.mapError(engine.zeroGrad, fromEngine)
      for (let epoch = 0; epoch < config.ppoEpochs; epoch++) {
        yield* accumulate(request.plan.passes, epoch === 0 ? stats : undefined, `epoch ${epoch}`)
        const o = config.optimizer
        const report = yield* Effect.mapError(
          engine.step({ lr: request.lr, weightDecay: o.weightDecay, maxGradNorm: o.maxGradNorm, beta1: o.beta1, beta2: o.beta2, eps: o.eps }),
          fromEngine
        )
        if (report.slots.some((s) => !Number.isFinite(s.gradNorm))) {
          return yield* new UpdateError({ reason: { _tag: "NonFinite", where: `epoch ${epoch}: gradient norm` } })
        }
        slots = report.slots
      }
      const mean = (x: number) => (stats.trained === 0 ? 0 : x / stats.trained)
      return {
        loss: stats.loss,
        kl: stats.kl,
        clipFraction: mean(stats.clipped),
        firstEpochRatio: stats.trained === 0 ? 1 : stats.ratioSum / stats.trained,
        consistency: { maxAbs: stats.maxAbs, meanAbs: mean(stats.sumAbs), maxRel: stats.maxRel },
        entropy: mean(stats.negLogp),
        trainedTokens: stats.trained,
        slots,
        seconds: (performance.now() - started) / 1000
      } satisfies UpdateReport
    })

  /** The one shared adapter slot of a probe's plan, or an error for plans with two adapters. */
  const sharedSlot = (request: UpdateRequest) => {
    const pass = request.plan.passes[0]!
    const slot = pass.routes[ROLE.R]
    if (request.plan.passes.length !== 1 || pass.routes.some((r) => r !== slot) || slot < 0) {
      return Effect.fail(inputError(`the gradient probe needs one shared adapter (joint, reas-only, tool-only); mode ${request.plan.mode} routes reasoning and tool calls to different adapters`))
    }
    return Effect.succeed({ pass, slot })
  }

  /** The gradients of the request's objective on R tokens only and on A tokens only (flattened, parameters in name order); cleared after. */
  const roleGradientsOf = (request: UpdateRequest) =>
    Effect.gen(function*() {
      const { pass, slot } = yield* sharedSlot(request)
      const { accumulate } = yield* prepare(request)
      const gradientOf = (role: "R" | "A") =>
        Effect.gen(function*() {
          yield* Effect.mapError(engine.zeroGrad, fromEngine)
          yield* accumulate([{ routes: pass.routes, loss: [false, role === "R", role === "A", false] }], undefined, `gradient probe ${role}`)
          const grads = yield* Effect.mapError(engine.adapterGrads(slot), fromEngine)
          return concat((n) => new Float64Array(n), Object.keys(grads).sort().map((k) => grads[k]!))
        })
      const reasoning = yield* gradientOf("R")
      const tool = yield* gradientOf("A")
      yield* Effect.mapError(engine.zeroGrad, fromEngine)
      return { reasoning, tool }
    })

  const gradientCosine = (request: UpdateRequest) =>
    Effect.gen(function*() {
      const bad = checkRequest(request)
      if (bad !== undefined) return yield* bad
      const { reasoning: gR, tool: gA } = yield* roleGradientsOf(request)
      return { cosine: cosine(gR, gA), normReasoning: norm(gR), normTool: norm(gA) }
    })

  const roleGradients = (request: UpdateRequest) =>
    Effect.gen(function*() {
      const bad = checkRequest(request)
      if (bad !== undefined) return yield* bad
      yield* sharedSlot(request)
      const out: Array<RoleGradients> = []
      for (let i = 0; i < request.sequences.length; i++) {
        out.push(yield* roleGradientsOf({ ...request, sequences: [request.sequences[i]!], advantages: [request.advantages[i]!] }))
      }
      return out
    })

  return { update, gradientCosine, roleGradients }
}

export const layer = (config: UpdateConfig = defaultUpdateConfig): Layer.Layer<Update, never, Engine> =>
  Layer.effect(Update)(Effect.map(Engine, (engine) => make(engine, config)))

/** A test layer: records every request and reports a fixed, on-policy update without touching an engine. */
export const layerRecording = (requests: Array<UpdateRequest>): Layer.Layer<Update> =>
  Layer.succeed(Update)({
    update: (request) =>
      Effect.sync(() => {
        requests.push(request)
        return { loss: 0, kl: 0, clipFraction: 0, firstEpochRatio: 1, consistency: { maxAbs: 0, meanAbs: 0, maxRel: 0 }, entropy: 0, trainedTokens: 0, slots: [], seconds: 0 }
      }),
    gradientCosine: () => Effect.succeed({ cosine: 0, normReasoning: 0, normTool: 0 }),
    roleGradients: () => Effect.succeed([])
  })
