#!/usr/bin/env -S node --max-semi-space-size=4
// The flag (also in the Docker entrypoint and given to cluster workers, src/cluster.ts): short GC pauses.
// Node.js 24 runs the TypeScript sources directly (type stripping): no build step.
import "../src/cli.ts";
