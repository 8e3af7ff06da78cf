import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    name: "ts",
    include: ["test/**/*.test.ts"],
    // XDG_RUNTIME_DIR for Mesa lavapipe (the wgpu tests): see ../vitest.setup.ts.
    globalSetup: ["../vitest.setup.ts"],
    // The engine runs real (tiny) models on the CPU.
    testTimeout: 120_000,
    hookTimeout: 120_000
  }
})
