/**
 * `pnpm pipeline` as a user runs it (a child process): the commands and
 * their --help, train then eval and ask on the pipeline fixture, and each
 * bad input answered by an error that names the input and what is allowed.
 */
import { describe, expect, it } from "vitest"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { cli, type CliResult } from "./support/cli.ts"
import { FIXTURE, tmp } from "./support/pipeline.ts"

const ok = (r: CliResult) => {
  expect(r.status, `stderr: ${r.stderr}`).toBe(0)
  return r
}
/** Fails with a message on stderr; prints it so the test log shows what users see. */
const refused = (r: CliResult, ...expected: ReadonlyArray<string | RegExp>) => {
  expect(r.status, `stdout: ${r.stdout}`).not.toBe(0)
  const text = r.stderr + r.stdout
  console.log(`refused: ${text.trim().split("\n").filter((l) => l.trim() !== "" && l.trim() !== "ERROR").join(" | ")}`)
  for (const e of expected) expect(text).toMatch(e)
}

describe("pipeline --help", () => {
  it("lists the commands, and each command every option with its default", () => {
    const top = ok(cli(["--help"])).stdout
    for (const c of ["train", "eval", "ask", "pretrain", "compare", "index", "serve"]) expect(top).toMatch(new RegExp(`\\n\\s+${c}\\s`))
    const train = ok(cli(["train", "--help"])).stdout
    for (const f of ["--config", "--mode", "--resume", "--backend", "--run-dir", "--steps", "--threads", "--seed", "--model"]) expect(train).toContain(f)
    expect(train).toMatch(/default dart/)
    const evalHelp = ok(cli(["eval", "--help"])).stdout
    for (const f of ["--run", "--adapters", "--plan", "--reason-adapter", "--tool-adapter", "--data", "--limit", "--out", "--temperature"]) expect(evalHelp).toContain(f)
    expect(evalHelp).toMatch(/hybrid/)
    const ask = ok(cli(["ask", "--help"])).stdout
    for (const f of ["--question", "--run", "--plan"]) expect(ask).toContain(f)
    const compareHelp = ok(cli(["compare", "--help"])).stdout
    for (const f of ["--config", "--modes", "--seeds", "--steps", "--test", "--out", "--smoothing", "--backend", "--threads", "--model"]) expect(compareHelp).toContain(f)
    expect(compareHelp).toMatch(/default dart,joint,two-agent/)
    const leasHelp = ok(cli(["leas", "--help"])).stdout
    for (const f of ["--config", "--steps", "--questions", "--limit", "--samples", "--temperature", "--batch-size", "--gradient-questions", "--gradient-rollouts", "--bootstrap", "--scores", "--out", "--backend", "--threads", "--seed", "--model"]) expect(leasHelp).toContain(f)
    expect(leasHelp).toMatch(/default 50\)/)
    expect(leasHelp).toMatch(/else 50/)
  }, 60_000)
})

describe("train, eval, ask", () => {
  it("train writes a run; eval (its mode, base, a hybrid plan) and ask read it", () => {
    const dir = tmp("cli")
    const file = join(dir, "config.yaml")
    // YAML.
    writeFileSync(
      file,
      `model: ${join(FIXTURE, "model")}\ndata:\n  train: ${join(FIXTURE, "train.jsonl")}\n  validation: ${join(FIXTURE, "validation.jsonl")}\n` +
        `search:\n  corpus: ${join(FIXTURE, "corpus.jsonl")}\n` +
        `mode: two-agent\nsteps: 2\npromptsPerStep: 2\nthreads: 2\nrollout:\n  groupSize: 2\n  maxTurnTokens: 48\neval:\n  limit: 3\n`
    )
    const run = join(dir, "run")
    const t = ok(cli(["train", "--config", file, "--run-dir", run, "--seed", "3"]))
    expect(t.stderr).toMatch(/validation EM: before [\d.]+, after [\d.]+/)
    expect(t.stderr).toContain(`run directory: ${run}`)
    const config = JSON.parse(readFileSync(join(run, "config.json"), "utf8")) as { mode: string; seed: number; steps: number }
    expect([config.mode, config.seed, config.steps]).toEqual(["two-agent", 3, 2])

    const out = join(dir, "eval")
    const e = ok(cli(["eval", "--run", run, "--limit", "4", "--out", out]))
    expect(e.stderr).toMatch(/eval two-agent: EM [\d.]+/)
    const results = readFileSync(join(out, "results.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l) as { em: number; response: string })
    expect(results.length).toBe(4)
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as { em: number; questions: number; plan: string }
    expect(summary.questions).toBe(4)
    expect(summary.plan).toBe("two-agent")
    expect(summary.em).toBe(results.reduce((s, r) => s + r.em, 0) / 4)

    ok(cli(["eval", "--config", file, "--plan", "base", "--limit", "2", "--out", join(dir, "eval-base")]))
    expect(existsSync(join(dir, "eval-base", "summary.json"))).toBe(true)
    const hybrid = ok(cli(["eval", "--config", file, "--plan", "hybrid", "--reason-adapter", "base", "--tool-adapter", join(run, "adapters", "tool"), "--limit", "2", "--out", join(dir, "eval-h")]))
    expect(hybrid.stderr).toMatch(/eval hybrid: EM/)

    const a = ok(cli(["ask", "--run", run, "--question", "Where was Ranor Rami born?"]))
    expect(a.stdout).toContain("[P]Answer the given question.")
    expect(a.stdout).toContain("Question: Where was Ranor Rami born?")
    expect(a.stdout).toMatch(/\[R\]/)
    expect(a.stdout).toMatch(/plan two-agent: \d+ searches, \d+ invalid actions, ended by \w+/)
  }, 180_000)
})

describe("bad input", () => {
  const dir = tmp("bad")
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text)
    return join(dir, name)
  }

  it("an unknown mode or plan", () => {
    refused(cli(["train", "--mode", "dartx"]), /--mode/, /"dartx"/, /"dart" \| "joint" \| "reas-only" \| "tool-only" \| "two-agent"/)
    refused(cli(["eval", "--plan", "h-tool"]), /--plan/, /hybrid/)
    refused(cli(["compare", "--modes", "dart,dartx"]), /--modes: unknown mode "dartx"; expected a comma-separated list of dart, joint/)
    refused(cli(["compare", "--modes", "dart,dart"]), /--modes: a mode is listed twice/)
    refused(cli(["compare", "--seeds", "0"]), /--seeds must be an integer in \[1, 100\], got 0/)
    refused(cli(["leas", "--temperature", "0"]), /--temperature must be a number in \(0, 10\], got 0/)
    refused(cli(["leas", "--scores", write("scores.json", "{\"questions\": []}")]), /scores\.json/, /questions/)
    refused(cli(["train", "--config", write("mode.yaml", "mode: dartx\n"), "--run-dir", join(dir, "r0")]), /mode: expected "dart" \| "joint"/, /got "dartx"/)
  }, 60_000)

  it("a malformed config: every bad value with its path and the allowed range; unknown keys; bad syntax; bad format", () => {
    refused(
      cli(["train", "--config", write("bad.yaml", "steps: 0\nrollout:\n  groupSize: 1.5\n  tempx: 3\nadapters:\n  targets: [q_proj, qq_proj]\nfoo: 1\n")]),
      /steps: expected a value greater than or equal to 1, got 0/,
      /rollout\.groupSize: expected an integer, got 1\.5/,
      /rollout\.tempx: unknown key \(allowed here: groupSize, temperature/,
      /adapters\.targets\[1\]: expected "q_proj" \|.*got "qq_proj"/,
      /foo: unknown key/
    )
    refused(cli(["train", "--config", write("syntax.yaml", "rollout: [\n")]), /syntax\.yaml/)
    refused(cli(["train", "--config", write("c.toml", "steps = 1\n")]), /unknown config format "\.toml": expected \.json, \.yaml or \.yml/)
    refused(cli(["train", "--config", write("list.json", "[1]")]), /expected an object/)
    refused(cli(["train", "--config", write("search.yaml", "search:\n  index: a\n  corpus: b\n")]), /search: expected one of \{ index \}, \{ corpus \}, \{ url/)
  }, 60_000)

  it("a missing model folder, dataset or index", () => {
    refused(cli(["train", "--model", join(dir, "nope")]), /model: .*nope does not exist \(expected a Hugging Face model folder/)
    refused(cli(["train", "--model", FIXTURE]), /model: .* has no config\.json/)
    refused(cli(["train", "--config", write("data.yaml", "data:\n  train: missing.jsonl\n")]), /data\.train: .*missing\.jsonl does not exist/)
    refused(cli(["train", "--config", write("index.yaml", "search:\n  index: no-index\n")]), /search\.index: .*no-index does not exist/)
  }, 60_000)

  it("a malformed dataset or corpus", () => {
    write("d.jsonl", "{\"question\": \"q\", \"golden_answers\": [\"a\"], \"data_source\": \"x\"}\n{\"question\": \"q2\"}\n")
    refused(cli(["train", "--config", write("d.yaml", "data:\n  train: d.jsonl\n"), "--run-dir", join(dir, "r1")]), /d\.jsonl:2: field "golden_answers": missing/)
    write("corpus.jsonl", "{\"id\": \"1\"}\n")
    refused(cli(["train", "--config", write("corpus.yaml", "search:\n  corpus: corpus.jsonl\n"), "--run-dir", join(dir, "r2")]), /corpus\.jsonl line 1: field "contents" is missing/)
  }, 60_000)

  it("a retrieval server that is down", () => {
    refused(
      cli(["train", "--config", write("url.yaml", "search:\n  url: http://127.0.0.1:1/retrieve\n  retries: 0\n  timeoutMs: 2000\n"), "--run-dir", join(dir, "r3")]),
      /http:\/\/127\.0\.0\.1:1\/retrieve: unreachable/
    )
  }, 60_000)

  it("--resume: not a run, or with flags that would change its config", () => {
    refused(cli(["train", "--resume", dir]), /is not a run directory \(no config\.json\)/)
    refused(cli(["train", "--resume", dir, "--mode", "joint", "--steps", "3"]), /--resume continues a run with its own config/, /drop --mode, --steps/)
  }, 60_000)
})


describe("pipeline leas --scores", () => {
  it("analyses six variants' scores from elsewhere: leas.json and leas.html, and the summary lines", () => {
    const out = join(tmp("leas-cli"), "report")
    const r = ok(cli(["leas", "--scores", join(import.meta.dirname, "fixtures", "leas", "scores.json"), "--out", out]))
    const text = r.stdout + r.stderr
    expect(text).toMatch(/questions kept, \d+ dropped/)
    expect(text).toMatch(/interference \(lambda_23 < 0\): [\d.]+% \[[\d.]+%, [\d.]+%\]/)
    const report = JSON.parse(readFileSync(join(out, "leas.json"), "utf8")) as { settings: { n: number }; questions: ReadonlyArray<unknown> }
    expect(report.settings.n).toBe(20)
    expect(report.questions.length).toBeGreaterThan(0)
    expect(readFileSync(join(out, "leas.html"), "utf8")).toMatch(/<svg/)
  }, 60_000)
})
