/** Running `pnpm pipeline ...` as a user does, in a child process (node + tsx, in process so a kill reaches it). */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { join } from "node:path"

export const ROOT = join(import.meta.dirname, "../../..")
const MAIN = join(ROOT, "ts/src/cli/main.ts")

export interface CliResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

const env = () => ({ ...process.env, NO_COLOR: "1", FORCE_COLOR: "0" })

/** Runs the CLI to completion. */
export const cli = (args: ReadonlyArray<string>, timeoutMs = 120_000): CliResult => {
  const r = spawnSync(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT, encoding: "utf8", timeout: timeoutMs, env: env() })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Starts the CLI; the caller may kill it. */
export const cliSpawn = (args: ReadonlyArray<string>): ChildProcess =>
  spawn(process.execPath, ["--import", "tsx", MAIN, ...args], { cwd: ROOT, env: env(), stdio: ["ignore", "pipe", "pipe"] })
