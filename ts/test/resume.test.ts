/**
 * Kill and resume: `pipeline train` killed with SIGKILL at random moments
 * and resumed with `--resume` each time ends with adapters bit-identical to
 * an uninterrupted run of the same seed (cpu backend, fixed thread count),
 * and with the same per-step metrics.
 */
import { describe, expect, it } from "vitest"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { quickConfig, tmp } from "./support/pipeline.ts"
import { cli, cliSpawn } from "./support/cli.ts"

const config = quickConfig({ mode: "dart", steps: 12, promptsPerStep: 2, checkpointEvery: 1, keepCheckpoints: 2, eval: { every: 4, limit: 2, temperature: 0, batchSize: 8 } })

const adapterBytes = (runDir: string) =>
  ["reason", "tool"].map((n) => readFileSync(join(runDir, "adapters", n, "adapter_model.safetensors")))

/** The per-step metrics without the timing fields (which differ between runs). */
const stepMetrics = (runDir: string) =>
  readFileSync(join(runDir, "metrics.jsonl"), "utf8").trim().split("\n").map((l) => {
    const m = JSON.parse(l) as Record<string, unknown>
    for (const k of ["rolloutTokensPerSecond", "updateTokensPerSecond", "stepSeconds", "rolloutSeconds", "updateSeconds", "memory"]) delete m[k]
    return m
  })

/**
 * Runs the CLI and kills it `ms` after its stderr first matches `after`
 * (from the start when `after` is undefined); resolves whether the kill
 * landed before the process ended.
 */
const killAfter = (args: ReadonlyArray<string>, ms: number, after?: RegExp) =>
  new Promise<{ killed: boolean; stderr: string }>((resolve) => {
    const child = cliSpawn(args)
    let stderr = ""
    let timer: NodeJS.Timeout | undefined
    const arm = () => (timer ??= setTimeout(() => child.kill("SIGKILL"), ms))
    if (after === undefined) arm()
    child.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString()
      if (after !== undefined && after.test(stderr)) arm()
    })
    child.on("exit", (_code, signal) => {
      clearTimeout(timer)
      resolve({ killed: signal === "SIGKILL", stderr })
    })
  })

describe("kill and resume", () => {
  it("SIGKILL at random moments, resumed each time: adapters bit-identical to an uninterrupted run", async () => {
    const dir = tmp("resume")
    const file = join(dir, "config.json")
    writeFileSync(file, JSON.stringify(config))
    const reference = join(dir, "reference")
    const t0 = Date.now()
    const r = cli(["train", "--config", file, "--run-dir", reference])
    const duration = Date.now() - t0
    expect(r.status, r.stderr).toBe(0)

    const killed = join(dir, "killed")
    const seed = Number(process.env.DART_RESUME_SEED ?? Date.now() % 100_000)
    let state = seed
    const random = () => ((state = (state * 48271) % 2147483647) / 2147483647)
    const moments: Array<string> = []
    let kills = 0
    const fresh = ["train", "--config", file, "--run-dir", killed]
    // Killed before it wrote config.json, the run does not exist yet: start it again, as a user would.
    const next = () => (existsSync(join(killed, "config.json")) ? ["train", "--resume", killed] : fresh)
    let args: ReadonlyArray<string> = fresh
    // The first kill lands anywhere in start-up (loading, indexing, validation), the
    // next ones while steps run and checkpoints are being written.
    for (let k = 0; k < 4; k++) {
      const ms = Math.round(k === 0 ? 300 + random() * 1500 : random() * 1200)
      const out = await killAfter(args, ms, k === 0 ? undefined : /steps \d+\/\d+/)
      const resumedAt = /resuming .* \(step (\d+) of/.exec(out.stderr)?.[1]
      kills += out.killed ? 1 : 0
      moments.push(`${ms} ms${k === 0 ? "" : " into the steps"}${out.killed ? "" : " (finished first)"}${resumedAt === undefined ? "" : `, after resuming at step ${resumedAt}`}`)
      args = next()
    }
    const last = cli(args)
    expect(last.status, last.stderr).toBe(0)
    console.log(`kill-and-resume (seed ${seed}; DART_RESUME_SEED reruns it): uninterrupted run ${duration} ms; kills after ${moments.join("; ")}; then ${/resuming .* \(step (\d+) of/.exec(last.stderr)?.[0] ?? (/is complete/.test(last.stderr) ? "the run was complete" : "no checkpoint, restarted")}`)
    expect(kills, "at least one kill landed before the run finished").toBeGreaterThan(0)
    const [a, b] = [adapterBytes(reference), adapterBytes(killed)]
    for (let i = 0; i < a.length; i++) expect(Buffer.compare(a[i]!, b[i]!), `adapter ${i} bytes`).toBe(0)
    expect(stepMetrics(killed)).toEqual(stepMetrics(reference))
  }, 300_000)
})
