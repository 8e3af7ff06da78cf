/**
 * The machine and git fields every TypeScript benchmark records (the field
 * names of crates/dart-bench/src/common.rs): CPU model and flags, CPU class,
 * load, commit and whether the tree was dirty.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { availableParallelism } from "node:os"
import { resolve } from "node:path"

const ROOT = resolve(import.meta.dirname, "../..")

export const cpuFlags = (): Array<string> => {
  const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags")) ?? ""
  const have = new Set(line.split(/\s+/))
  return ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile"].filter((f) => have.has(f))
}
export const cpuModel = (): string => {
  const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("model name"))
  return line?.split(":")[1]?.trim() ?? "unknown"
}
export const cpuClass = (flags: ReadonlyArray<string>) => (flags.includes("avx512f") ? "avx512f" : flags.includes("avx2") ? "avx2" : "pre-avx2")
export const loadavg = (): string | null => {
  try {
    return readFileSync("/proc/loadavg", "utf8").trim()
  } catch {
    return null
  }
}
export const sh = (cmd: string, argv: ReadonlyArray<string>, trim = true): string | null => {
  try {
    const out = execFileSync(cmd, argv, { cwd: ROOT, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    return trim ? out.trim() : out
  } catch {
    return null
  }
}
export const gitInfo = () => {
  const commit = sh("git", ["rev-parse", "HEAD"])
  // Untrimmed: a trim would eat the status column of the first line.
  const status = sh("git", ["status", "--porcelain", "--untracked-files=no"], false)
  const dirtyFiles = status === null ? [] : status.split("\n").filter((l) => l.length > 3).map((l) => l.slice(3))
  return { commit, dirty: status === null ? null : dirtyFiles.length > 0, dirty_files: dirtyFiles }
}

/** The head every benchmark JSON starts with: name, schema, date, git, and the machine (CPU, OS, node, load before and after). */
export const benchHeader = (benchmark: string, loadavgBefore: string | null) => {
  const flags = cpuFlags()
  return {
    benchmark,
    schema: 1,
    date: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    git: gitInfo(),
    machine: {
      cpu_model: cpuModel(),
      cpu_flags: flags,
      cpu_class: cpuClass(flags),
      nproc: availableParallelism(),
      os: sh("uname", ["-srm"]),
      node: process.version,
      loadavg_before: loadavgBefore,
      loadavg_after: loadavg()
    }
  }
}
