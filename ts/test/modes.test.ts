/**
 * Modes as plans (ts/src/routing/modes.ts), with fast-check alone: for
 * every mode and slot assignment, each training pass routes the context
 * exactly as the agent that generated its trained tokens did (so the
 * logprobs recorded at rollout are the ones the update recomputes); roles P
 * and O never carry loss; each model-written role is trained exactly once.
 */
import { describe, expect, it } from "@effect/vitest"
import fc from "fast-check"
import { ROLE } from "../src/domain/model.ts"
import { BASE, hybridPlan, lossMask, MODES, modePlan, type ModeSlots, tokenRoutes } from "../src/routing/modes.ts"

const NUM_RUNS = Number(process.env.DART_PROPERTY_RUNS ?? 100)

const slotsFor = (mode: (typeof MODES)[number]) =>
  mode === "dart" || mode === "two-agent"
    ? fc.tuple(fc.nat(7), fc.nat(7)).filter(([a, b]) => a !== b).map(([reason, tool]): ModeSlots => ({ reason, tool }))
    : fc.nat(7).map((shared): ModeSlots => ({ shared }))

const planArb = fc.constantFrom(...MODES).chain((mode) => slotsFor(mode).map((slots) => ({ mode, slots })))

describe("modes as plans", () => {
  it("each pass routes like the agent that wrote its trained tokens; P and O never trained; R and A trained once", () => {
    fc.assert(
      fc.property(planArb, ({ mode, slots }) => {
        const plan = modePlan(mode, slots)
        const trainedTimes = { R: 0, A: 0 }
        for (const pass of plan.passes) {
          expect(pass.loss[ROLE.P]).toBe(false)
          expect(pass.loss[ROLE.O]).toBe(false)
          for (const role of ["R", "A"] as const) {
            if (!pass.loss[ROLE[role]]) continue
            trainedTimes[role]++
            const writer = role === "R" ? plan.generation.writerR : plan.generation.writerA
            expect(pass.routes).toEqual(plan.generation.agents[writer])
          }
        }
        const expected = mode === "reas-only" ? { R: 1, A: 0 } : mode === "tool-only" ? { R: 0, A: 1 } : { R: 1, A: 1 }
        expect(trainedTimes).toEqual(expected)
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "a mode's passes agree with its generation plan": ${NUM_RUNS} cases`)
  })

  it("token routes and loss masks follow the roles", () => {
    fc.assert(
      fc.property(planArb, fc.array(fc.constantFrom(ROLE.P, ROLE.R, ROLE.A, ROLE.O), { maxLength: 40 }), ({ mode, slots }, roles) => {
        for (const pass of modePlan(mode, slots).passes) {
          const routes = tokenRoutes(pass, roles)
          const mask = lossMask(pass, roles)
          roles.forEach((r, t) => {
            expect(routes[t]).toBe(pass.routes[r])
            expect(mask[t]).toBe(pass.loss[r] ? 1 : 0)
          })
        }
      }),
      { numRuns: NUM_RUNS }
    )
    console.log(`property "token routes and masks follow roles": ${NUM_RUNS} cases`)
  })

  it("dart routes the tool call's tokens to tool and everything else to reason", () => {
    const plan = modePlan("dart", { reason: 0, tool: 1 })
    expect(plan.generation).toEqual({ agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 })
    expect(Array.from(tokenRoutes(plan.passes[0]!, [ROLE.P, ROLE.R, ROLE.A, ROLE.A, ROLE.O, ROLE.R]))).toEqual([0, 0, 1, 1, 0, 0])
    expect(Array.from(lossMask(plan.passes[0]!, [ROLE.P, ROLE.R, ROLE.A, ROLE.A, ROLE.O, ROLE.R]))).toEqual([0, 1, 1, 1, 0, 1])
    expect(hybridPlan(0, BASE)).toEqual({ mode: "hybrid", generation: { agents: [[0, 0, 0, 0], [-1, -1, -1, -1]], writerR: 0, writerA: 1 }, passes: [] })
  })

  it("bad modes and slots are refused with the reason", () => {
    expect(() => modePlan("dart", { shared: 0 })).toThrow("needs slots { reason, tool }")
    expect(() => modePlan("dart", { reason: 1, tool: 1 })).toThrow("two different slots")
    expect(() => modePlan("joint", { reason: 0, tool: 1 })).toThrow("needs slots { shared }")
    expect(() => modePlan("grpo" as never, { shared: 0 })).toThrow("unknown mode \"grpo\"")
    expect(() => modePlan("joint", { shared: -2 })).toThrow("slot shared = -2")
    expect(() => tokenRoutes(modePlan("joint", { shared: 0 }).passes[0]!, [0, 7])).toThrow("roles[1] = 7")
  })
})
