/**
 * Property 8. Consistency: the logprobs recorded while generating (KV cache
 * per agent, routes switching by role, tool output inserted between turns)
 * equal `forward`'s logprobs on the same tokens and routes within
 * 1e-5 * max(1, |logp|) at every model-written position (roles R and A):
 * 1e-5 absolute for likely tokens, relative for unlikely ones. Decoding runs
 * the same f32 ops on fewer rows, and the GEMM crate blocks a 3-row product
 * differently from a 30-row one, so the last bits differ (seen: 1.6e-5 on a
 * logprob of -1.7 once in ~10^4 cases).
 *
 * Random tiny models with a small vocabulary (6..12) so that one-token tags
 * come up by chance (tags are 1- or 2-token sequences of random ids), two
 * adapters with B != 0 (slot 0 = reason, slot 1 = tool), 1..3 prompts, a
 * random plan (dart, joint, two-agent, hybrid H_Tool / H_Reas, or a random
 * single- or two-agent plan), random temperature (0 = greedy included),
 * sometimes top-p / top-k / eos / stop sequences, and up to 3 turns where a
 * sequence that paused on "tool_call" is extended with random observation
 * tokens (and sometimes one that stopped on "length", mid-reasoning or
 * mid-call, with observation or prompt tokens).
 *
 * Forward routes of agent a: routes_a[t] = plan.agents[a][roles[t]] (the
 * agent's route for the role of the token that position t-1 writes). R tokens
 * are compared against forward under routes_{writerR}, A tokens under
 * routes_{writerA}. For a single-agent plan that is the sequence's own
 * `routes`; for two-agent / hybrid plans with uniform agents it is "every
 * route = that agent's route".
 *
 * Also: routes[t] == plan route of roles[t] (via the writer of that role),
 * logprobs are 0 at P/O tokens, roles follow the tag rule (assignRoles on the
 * sources derived from the roles reproduces them), and each stop reason is
 * justified by the tokens it ends on.
 */
import fc from "fast-check"
import { expect, it } from "vitest"
import { ROLE } from "@dart-rl/ts/domain"
import {
  adapterSpecArb,
  assignRoles,
  checkProperty,
  configArb,
  makeEngine,
  numRuns,
  seedArb,
  sequences
} from "./support.ts"


type GenPlan = { agents: number[][]; writerR: number; writerA: number }


/** The modes of docs/design.md "Roles and routing" as generation plans (slot 0 = reason, 1 = tool). */
const MODES: Record<string, GenPlan> = {
  dart: { agents: [[0, 0, 1, 0]], writerR: 0, writerA: 0 },
  joint: { agents: [[0, 0, 0, 0]], writerR: 0, writerA: 0 },
  "two-agent": { agents: [[0, 0, 0, 0], [1, 1, 1, 1]], writerR: 0, writerA: 1 },
  H_Tool: { agents: [[-1, -1, -1, -1], [1, 1, 1, 1]], writerR: 0, writerA: 1 },
  H_Reas: { agents: [[0, 0, 0, 0], [-1, -1, -1, -1]], writerR: 0, writerA: 1 }
}

const routeArb = fc.integer({ min: -1, max: 1 })
const agentArb = fc.array(routeArb, { minLength: 4, maxLength: 4 })

/** A named mode, or a random plan of one or two agents (each with its own route per role). */
const planArb: fc.Arbitrary<{ mode: string; plan: GenPlan }> = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...Object.keys(MODES)).map((mode) => ({ mode, plan: MODES[mode]! })) },
  { weight: 1, arbitrary: agentArb.map((a) => ({ mode: "random-1", plan: { agents: [a], writerR: 0, writerA: 0 } })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ agents: fc.array(agentArb, { minLength: 2, maxLength: 2 }), writerR: fc.nat(1), writerA: fc.nat(1) })
      .map((plan) => ({ mode: "random-2", plan }))
  }
)

/** A tag: mostly one token (so that a random model writes it by chance), sometimes two. */
const tagArb = (vocab: number) =>
  fc.oneof(
    { weight: 4, arbitrary: fc.array(fc.integer({ min: 0, max: vocab - 1 }), { minLength: 1, maxLength: 1 }) },
    { weight: 1, arbitrary: fc.array(fc.integer({ min: 0, max: vocab - 1 }), { minLength: 2, maxLength: 2 }) }
  )

/** `arb` in one case out of three, null otherwise. */
const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | null> =>
  fc.oneof({ weight: 2, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: arb })

/** Adapter specs as `adapterSpecArb`, but alpha <= 2 * rank and bInitStd in 0.05..0.3 (see the conditioning note). */
const moderateAdapterArb = adapterSpecArb.chain((spec) =>
  fc
    .record({ alpha: fc.integer({ min: 1, max: 2 * spec.rank }), bInitStd: fc.double({ min: 0.05, max: 0.3, noNaN: true }) })
    .map((m) => ({ ...spec, ...m }))
)

const arb = fc
  .record({
    // Conditioning: 1e-5 absolute is close to the f32 noise floor of these tiny models. With hidden 2, or with
    // adapters of scale 16-32 and B ~ N(0, 0.5), some positions are so ill-conditioned that a 1e-6 relative
    // change of one weight moves a logprob by 3e-5, and `forward` itself differs by 1.2e-5 between a sequence
    // alone and the same sequence packed with others. Hence hidden >= 4 and moderate adapters (scale <= 2 *
    // sqrt(rank), B ~ N(0, 0.05..0.3)), which still move logprobs by ~1e-2, far above the tolerance.
    cfg: configArb
      .filter((cfg) => cfg.hidden_size >= 8)
      .chain((cfg) => fc.integer({ min: 6, max: 12 }).map((vocab_size) => ({ ...cfg, vocab_size, max_position_embeddings: 128 }))),
    seed: seedArb,
    reason: moderateAdapterArb,
    tool: moderateAdapterArb,
    plan: planArb
  })
  .chain((c) => {
    const v = c.cfg.vocab_size
    const tok = fc.integer({ min: 0, max: v - 1 })
    return fc.record({
      c: fc.constant(c),
      rules: fc
        .tuple(tagArb(v), tagArb(v))
        .filter(([o, cl]) => o.join() !== cl.join())
        .map(([open, close]) => ({ open, close })),
      prompts: fc.array(fc.array(tok, { minLength: 1, maxLength: 5 }), { minLength: 1, maxLength: 3 }),
      sessionSeed: seedArb,
      temperature: fc.oneof(fc.constant(0), fc.constant(1), fc.double({ min: 0.2, max: 2, noNaN: true })),
      topP: sometimes(fc.double({ min: 0.2, max: 1, noNaN: true })),
      topK: sometimes(fc.integer({ min: 1, max: v })),
      eos: sometimes(fc.array(tok, { minLength: 1, maxLength: 1 })),
      stop: sometimes(fc.array(tagArb(v), { minLength: 1, maxLength: 2 })),
      pauseOnToolCall: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
      turns: fc.array(
        fc.record({
          maxNewTokens: fc.integer({ min: 1, max: 24 }),
          observations: fc.array(fc.array(tok, { minLength: 1, maxLength: 4 }), { minLength: 3, maxLength: 3 }),
          /** Also insert tokens into sequences that stopped on "length" (mid-reasoning or mid-call), as this role. */
          onLength: fc.constantFrom(null, null, "observation" as const, "prompt" as const)
        }),
        { minLength: 1, maxLength: 3 }
      )
    })
  })

/** Coverage over the whole run (printed at the end). */
const seen = { cases: 0, calls: 0, insertions: 0, rTokens: 0, aTokens: 0, observations: 0, greedy: 0, multiAgent: 0, stops: {} as Record<string, number> }

it("property 8: generate's logprobs equal forward's on the same tokens and routes", async () => {
  await checkProperty("property 8", arb, async (x) => {
    const { c, rules } = x
    const { plan } = c.plan
    const engine = makeEngine(c.cfg, c.seed)
    expect(engine.addAdapter(c.reason)).toBe(0)
    expect(engine.addAdapter(c.tool)).toBe(1)
    const session = engine.session({ plan, rules, seed: x.sessionSeed })
    for (const p of x.prompts) session.addSequence(Int32Array.from(p))
    expect(session.numSequences()).toBe(x.prompts.length)

    const n = x.prompts.length
    const opts = {
      temperature: x.temperature,
      ...(x.topP === null ? {} : { topP: x.topP }),
      ...(x.topK === null ? {} : { topK: x.topK }),
      ...(x.eos === null ? {} : { eos: x.eos }),
      ...(x.stop === null ? {} : { stop: x.stop }),
      pauseOnToolCall: x.pauseOnToolCall
    }
    const endsWith = (a: ArrayLike<number>, tail: number[]) =>
      a.length >= tail.length && tail.every((t, i) => a[a.length - tail.length + i] === t)

    for (const turn of x.turns) {
      const out = await session.generate({ maxNewTokens: turn.maxNewTokens, ...opts })
      for (const g of out) {
        expect(g.tokens.length).toBeGreaterThan(0)
        expect(g.tokens.length).toBeLessThanOrEqual(turn.maxNewTokens)
        const all = session.sequence(g.seq)
        // What a call returns is the tail of the sequence's history.
        expect(Array.from(all.tokens.subarray(all.tokens.length - g.tokens.length))).toEqual(Array.from(g.tokens))
        expect(Array.from(all.logprobs.subarray(all.logprobs.length - g.logprobs.length))).toEqual(Array.from(g.logprobs))
        seen.stops[g.stop] = (seen.stops[g.stop] ?? 0) + 1
        switch (g.stop) {
          case "tool_call":
            expect(x.pauseOnToolCall).toBe(true)
            expect(endsWith(g.tokens, rules.close) || endsWith(all.tokens, rules.close)).toBe(true)
            expect(all.roles[all.roles.length - 1]).toBe(ROLE.A)
            break
          case "eos":
            expect(x.eos).not.toBeNull()
            expect(x.eos).toContain(g.tokens[g.tokens.length - 1])
            break
          case "stop":
            expect(x.stop?.some((s) => endsWith(all.tokens, s))).toBe(true)
            break
          case "length":
            expect(g.tokens.length).toBe(turn.maxNewTokens)
            break
          default:
            throw new Error(`unexpected stop reason ${g.stop}`)
        }
        if (g.stop === "tool_call") {
          session.extend(g.seq, Int32Array.from(turn.observations[g.seq]!), "observation")
          seen.calls++
        } else if (g.stop === "length" && turn.onLength !== null) {
          session.extend(g.seq, Int32Array.from(turn.observations[g.seq]!), turn.onLength)
          seen.insertions++
        }
      }
    }

    // Whole histories, packed into one batch.
    const hist = Array.from({ length: n }, (_, i) => session.sequence(i))
    const tokens = Int32Array.from(hist.flatMap((h) => Array.from(h.tokens)))
    const roles = Uint8Array.from(hist.flatMap((h) => Array.from(h.roles)))
    const routes = Int32Array.from(hist.flatMap((h) => Array.from(h.routes)))
    const logprobs = Float32Array.from(hist.flatMap((h) => Array.from(h.logprobs)))
    const seqLens = Int32Array.from(hist.map((h) => h.tokens.length))
    const writer = (role: number) => (role === ROLE.A ? plan.writerA : plan.writerR)

    for (const [i, h] of hist.entries()) {
      expect(h.seq).toBe(i)
      // The prompt comes first, unchanged.
      expect(Array.from(h.tokens.subarray(0, x.prompts[i]!.length))).toEqual(x.prompts[i])
      // Roles follow the tag rule: re-labelling from who wrote each token gives the same roles.
      const sources = h.roles.map((r) => (r === ROLE.P ? 0 : r === ROLE.O ? 2 : 1))
      expect(Array.from(assignRoles(h.tokens, sources, rules)), `roles of sequence ${i}`).toEqual(Array.from(h.roles))
    }
    for (let t = 0; t < tokens.length; t++) {
      const r = roles[t]!
      // The recorded route is the writer's route for the token's role (single agent: plan route of the role).
      expect(routes[t], `route of token ${t} (role ${r})`).toBe(plan.agents[writer(r)]![r])
      if (plan.agents.length === 1) expect(routes[t]).toBe(plan.agents[0]![r])
      if (r === ROLE.P || r === ROLE.O) expect(logprobs[t]).toBe(0)
      else {
        expect(Number.isFinite(logprobs[t]!) && logprobs[t]! <= 0).toBe(true)
        if (r === ROLE.R) seen.rTokens++
        else seen.aTokens++
      }
      if (r === ROLE.O) seen.observations++
    }

    // Forward under each agent's view; compare the roles that agent writes.
    for (const [a, agent] of plan.agents.entries()) {
      const mine = [ROLE.R, ROLE.A].filter((r) => writer(r) === a)
      if (mine.length === 0) continue
      const agentRoutes = Int32Array.from(roles, (r) => agent[r]!)
      if (plan.agents.length === 1) expect(Array.from(agentRoutes)).toEqual(Array.from(routes))
      const lp = await engine.forward(tokens, seqLens, agentRoutes)
      for (const [s, len] of sequences(seqLens)) {
        for (let t = s + 1; t < s + len; t++) {
          if (!mine.includes(roles[t] as 1 | 2)) continue
          const d = Math.abs(lp[t]! - logprobs[t]!)
          if (!(d <= 1e-5 * Math.max(1, Math.abs(lp[t]!)))) {
            throw new Error(
              `${c.plan.mode} agent ${a}: token ${t} (role ${roles[t]}) forward ${lp[t]} vs generate ${logprobs[t]} (|diff| ${d})`
            )
          }
        }
      }
    }
    seen.cases++
    if (plan.agents.length > 1) seen.multiAgent++
    if (x.temperature === 0) seen.greedy++
  })
  console.log(`property 8 coverage: ${JSON.stringify(seen)}`)
  // The run must exercise what the property is about: tool calls and both writer roles.
  if (numRuns >= 50) {
    expect(seen.calls).toBeGreaterThan(0)
    expect(seen.aTokens).toBeGreaterThan(0)
    expect(seen.multiAgent).toBeGreaterThan(0)
  }
})
