import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    name: "ts",
    include: ["test/**/*.test.ts"],
    // The engine runs real (tiny) models on the CPU.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
