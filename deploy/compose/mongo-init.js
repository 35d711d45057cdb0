// Runs once, when the MongoDB volume is first initialised: the application user eProxy connects as,
// with its password from the compose secret (never in this file or the environment).
const password = require("fs").readFileSync("/run/secrets/mongodb_eproxy_password", "utf8").trim();
db.getSiblingDB("eproxy").createUser({
  user: "eproxy",
  pwd: password,
  roles: [{ role: "readWrite", db: "eproxy" }],
});
