// Preloaded with `node --import`: writes the URL of every module the process loaded to the file named
// by EPROXY_TEST_MODULE_LOG when the process exits (tests assert what a command does not load).
import { writeFileSync } from "node:fs";
import { registerHooks } from "node:module";

const loaded = new Set();
registerHooks({
  load(url, context, next) {
    loaded.add(url);
    return next(url, context);
  },
});
process.on("exit", () => {
  if (process.env.EPROXY_TEST_MODULE_LOG)
    writeFileSync(process.env.EPROXY_TEST_MODULE_LOG, [...loaded].join("\n"));
});
