import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    name: "property-tests",
    include: ["test/**/*.test.ts"],
    // XDG_RUNTIME_DIR for Mesa lavapipe (the wgpu tests): see ../vitest.setup.ts.
    globalSetup: ["../vitest.setup.ts"],
    // Each property runs DART_PROPERTY_RUNS (default 100) cases on tiny random models.
    testTimeout: 600_000,
    hookTimeout: 60_000
  }
})
