/**
 * The embedding example (examples/embedding.ts) runs as another program
 * would: its own Reward (F1) and Search (keyword overlap) replace the
 * built-in ones, and the rest of the pipeline runs unchanged.
 */
import { describe, expect, it } from "vitest"
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { ROOT } from "./support/cli.ts"
import { tmp } from "./support/pipeline.ts"

describe("embedding example", () => {
  it("runs with its own Reward and Search layers", () => {
    const runDir = join(tmp("embedding"), "run")
    const r = spawnSync(process.execPath, ["--import", "tsx", join(ROOT, "ts/examples/embedding.ts"), runDir], { cwd: ROOT, encoding: "utf8", timeout: 120_000 })
    expect(r.status, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/embedding example: 3 steps with an F1 reward and a keyword search/)
    const steps = readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { kind: string; reward: number; f1: number; em: number })
      .filter((m) => m.kind === "step")
    expect(steps.length).toBe(3)
    // The reward is its F1, not the built-in EM.
    for (const s of steps) expect(s.reward).toBe(s.f1)
    console.log(`embedding: per-step reward = F1: ${steps.map((s) => `${s.reward.toFixed(3)} (EM ${s.em.toFixed(3)})`).join(", ")}`)
    // Its search, not the built-in index: no index was built.
    expect(existsSync(join(runDir, "index"))).toBe(false)
    expect(existsSync(join(runDir, "summary.json"))).toBe(true)
  }, 180_000)
})
