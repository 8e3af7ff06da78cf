/**
 * Training modes as routing plans (docs/design.md, "Roles and routing"): a
 * mode is one value that yields both the generation plan (which adapter
 * each agent runs for each role while decoding) and the training passes
 * (routes per role, which roles carry loss), so rollout and update cannot
 * disagree. Pure: no addon, no Effect services.
 *
 * | mode       | generation agents (routes P, R, A, O)   | training passes (routes; loss)          |
 * |------------|------------------------------------------|-----------------------------------------|
 * | dart       | one: reason, reason, tool, reason        | one: same routes; loss R, A             |
 * | joint      | one: shared x4                           | one: shared x4; loss R, A               |
 * | reas-only  | one: shared x4                           | one: shared x4; loss R                  |
 * | tool-only  | one: shared x4                           | one: shared x4; loss A                  |
 * | two-agent  | two: reason x4 (writes R), tool x4 (A)   | two: reason x4, loss R; tool x4, loss A |
 * | hybrid     | two: X x4 (writes R), Y x4 (writes A)    | none (evaluation only)                  |
 */
import { ROLE } from "../domain/model.ts"

export const MODES = ["dart", "joint", "reas-only", "tool-only", "two-agent"] as const
export type TrainMode = (typeof MODES)[number]

/** A route: an adapter slot, or -1 for the frozen base. */
export type Route = number
export const BASE: Route = -1

/** Routes for the roles [P, R, A, O], indexed by ROLE codes. */
export type RoleRoutes = readonly [Route, Route, Route, Route]
/** Whether each role [P, R, A, O] carries loss. */
export type RoleLoss = readonly [boolean, boolean, boolean, boolean]

/** The generation plan of the engine's sessions (the addon's GenPlan). */
export interface GenerationPlan {
  readonly agents: ReadonlyArray<RoleRoutes>
  /** The agent that writes reasoning tokens (R). */
  readonly writerR: number
  /** The agent that writes tool-call tokens (A). */
  readonly writerA: number
}

export interface TrainingPass {
  readonly routes: RoleRoutes
  readonly loss: RoleLoss
}

export interface ModePlan {
  readonly mode: TrainMode | "hybrid"
  readonly generation: GenerationPlan
  /** Empty for the evaluation-only hybrid plans. */
  readonly passes: ReadonlyArray<TrainingPass>
}

/** The adapter slots a mode uses: `reason` and `tool` (dart, two-agent) or `shared`. */
export type ModeSlots =
  | { readonly reason: number; readonly tool: number }
  | { readonly shared: number }

const all = (r: Route): RoleRoutes => [r, r, r, r]
const loss = (roles: ReadonlyArray<"R" | "A">): RoleLoss => [false, roles.includes("R"), roles.includes("A"), false]

const slot = (name: string, value: unknown): number => {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new RangeError(`slot ${name} = ${String(value)}, expected an adapter slot index >= 0`)
  }
  return value
}

/** The plan of a training mode; throws a RangeError naming a missing or bad slot. */
export const modePlan = (mode: TrainMode, slots: ModeSlots): ModePlan => {
  if (!(MODES as ReadonlyArray<string>).includes(mode)) {
    throw new RangeError(`unknown mode ${JSON.stringify(mode)}, expected one of ${MODES.join(", ")}`)
  }
  if (mode === "dart" || mode === "two-agent") {
    if (!("reason" in slots) || !("tool" in slots)) throw new RangeError(`mode ${mode} needs slots { reason, tool }`)
    const r = slot("reason", slots.reason)
    const t = slot("tool", slots.tool)
    if (r === t) throw new RangeError(`mode ${mode} needs two different slots, got reason = tool = ${r} (that is joint)`)
    if (mode === "dart") {
      const routes: RoleRoutes = [r, r, t, r]
      return { mode, generation: { agents: [routes], writerR: 0, writerA: 0 }, passes: [{ routes, loss: loss(["R", "A"]) }] }
    }
    return {
      mode,
      generation: { agents: [all(r), all(t)], writerR: 0, writerA: 1 },
      passes: [{ routes: all(r), loss: loss(["R"]) }, { routes: all(t), loss: loss(["A"]) }]
    }
  }
  if (!("shared" in slots)) throw new RangeError(`mode ${mode} needs slots { shared }`)
  const s = slot("shared", slots.shared)
  const trained = mode === "joint" ? loss(["R", "A"]) : mode === "reas-only" ? loss(["R"]) : loss(["A"])
  return { mode, generation: { agents: [all(s)], writerR: 0, writerA: 0 }, passes: [{ routes: all(s), loss: trained }] }
}

/**
 * A hybrid evaluation plan (the paper's H_Tool / H_Reas): the writer of R
 * tokens reads the whole context through `reason` (a slot or BASE), the
 * writer of A tokens through `tool`.
 */
export const hybridPlan = (reason: Route, tool: Route): ModePlan => {
  for (const [name, r] of [["reason", reason], ["tool", tool]] as const) {
    if (!Number.isInteger(r) || r < BASE) throw new RangeError(`${name} = ${r}, expected a slot >= 0 or -1 (base)`)
  }
  return { mode: "hybrid", generation: { agents: [all(reason), all(tool)], writerR: 0, writerA: 1 }, passes: [] }
}

/** Per-token routes of a pass from per-token role codes (ROLE.P .. ROLE.O). */
export const tokenRoutes = (pass: TrainingPass, roles: ArrayLike<number>): Int32Array =>
  Int32Array.from({ length: roles.length }, (_, t) => pass.routes[checkRole(roles, t)]!)

/** Per-token loss mask (1 where the token's role carries loss in this pass). */
export const lossMask = (pass: TrainingPass, roles: ArrayLike<number>): Uint8Array =>
  Uint8Array.from({ length: roles.length }, (_, t) => (pass.loss[checkRole(roles, t)] ? 1 : 0))

const checkRole = (roles: ArrayLike<number>, t: number): number => {
  const r = roles[t]!
  if (r !== ROLE.P && r !== ROLE.R && r !== ROLE.A && r !== ROLE.O) throw new RangeError(`roles[${t}] = ${r}, expected a role code 0..3 (P, R, A, O)`)
  return r
}

/** The untrained model: every token written through the frozen base (LEAS's Base; evaluation only). */
export const basePlan = (): ModePlan => ({
  mode: "hybrid",
  generation: { agents: [all(BASE)], writerR: 0, writerA: 0 },
  passes: []
})
