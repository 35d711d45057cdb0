/**
 * One sentence per key of the configuration schema (config.ts), for docs/reference/configuration.md
 * (`npm run docs:generate` walks the schema for types, defaults and limits, and takes the words from
 * here). A key added to the schema without a line here fails test/unit/docs-reference.test.ts.
 * Paths are dotted; `[]` stands for "every element of the list".
 */
export const CONFIG_KEY_DOCS: Readonly<Record<string, string>> = {
  server:
    "The HTTPS listener (HTTP/2 with HTTP/1.1 fallback, TLS 1.2+): gRPC, gRPC-Web, Connect, REST and `/send`.",
  "server.listenAddress": "Address the HTTPS listener binds.",
  "server.port": "Port of the listener; 0 picks a free port.",
  "server.publicBaseUrl":
    "Public https URL of eProxy as browsers and PSC reach it; the code flow's callback is `{publicBaseUrl}/oauth2/codeflow/{clientId}/callback` (register it at PSC). Default `https://localhost:{port}`.",
  "server.tls":
    "The listener's certificate, and the CA that lets backends authenticate with a client certificate.",
  "server.tls.certFile": "Server certificate chain (PEM).",
  "server.tls.keyFile": "Server private key (PEM). Keep it readable by eProxy only.",
  "server.tls.clientCaFile":
    "CA bundle: when set, backends may authenticate with a client certificate (CN = client id) instead of an API key.",
  "server.maxRequestBytes":
    "Largest gRPC/Connect message accepted or sent, in bytes (use `/send` for larger documents).",
  "server.forwardSoapFastPath":
    "Serve plain gRPC and Connect unary `ForwardSoap` calls by eProxy's fast path (Connect's own parts, half the CPU per call; it steps aside for compression and everything else). `false`: every call through Connect.",
  "server.maxHeaderBytes": "Largest header block accepted, in bytes.",
  "server.shutdownGraceMs":
    "On SIGTERM/SIGINT, how long in-flight requests may run before connections are cut.",
  "server.drainDelayMs":
    "On SIGTERM, how long readiness is off (503, NOT_SERVING) while requests are still served, before the listener stops: the time load balancers need to notice (5000 behind Kubernetes endpoints).",
  "server.workers":
    "Processes serving the listener (node:cluster); default the number of CPUs. With the memory session store eProxy runs one process.",
  "server.http2":
    "HTTP/2 flow-control windows granted to callers (RFC 9113 §6.9): at Node's 64 KiB a large upload stalls.",
  "server.http2.streamWindowBytes": "Window per stream, in bytes.",
  "server.http2.connectionWindowBytes": "Window per connection, in bytes.",
  "server.reclaimEveryBytes":
    "Relayed body bytes after which eProxy asks V8 for a young-generation collection, freeing the socket buffers of what was already relayed (bounds the memory of a large upload). Only when Node runs with `--expose-gc` (command line or `NODE_OPTIONS`): eProxy sets no V8 flag itself. 0 turns it off.",
  "server.trustedProxies":
    "Reverse proxies (IPs) whose `X-Forwarded-For` is believed for the caller IP in traces.",
  "server.internalListener":
    "In-network listener, off by default (`null`): cleartext HTTP/1.1 and h2c for modules inside a private network, API keys only. Bind it to a private address.",
  "server.internalListener.listenAddress":
    "Private address it binds (eProxy warns at start when it is public or a wildcard).",
  "server.internalListener.port": "Its port.",
  psc: "Pro Santé Connect.",
  "psc.discoveryUrl": "PSC's discovery document (PSC serves it at a non-standard path).",
  "psc.endpoints": "Per-endpoint overrides of what discovery says (all optional).",
  "psc.endpoints.authorization": "Authorization endpoint (the code flow's browser step).",
  "psc.endpoints.token": "Token endpoint.",
  "psc.endpoints.userinfo": "UserInfo endpoint.",
  "psc.endpoints.backchannelAuthentication": "CIBA backchannel authentication endpoint.",
  "psc.endpoints.endSession": "End-session (logout) endpoint.",
  "psc.endpoints.revocation": "Token revocation endpoint.",
  "psc.endpoints.introspection": "Token introspection endpoint.",
  "psc.endpoints.jwks": "JWKS (ID token signature keys).",
  "psc.caFile": "CA bundle to verify PSC's TLS certificate (system roots otherwise).",
  "psc.scope": "Scope requested for CIBA and the code flow.",
  "psc.acrValues": "Minimum authentication level asked; a higher `acr` in the answer is accepted.",
  "psc.clockToleranceSeconds": "Clock skew tolerated when validating ID tokens, in seconds.",
  "psc.timeoutMs": "Timeout of each call to PSC, in milliseconds.",
  clients:
    "Business backends allowed to use eProxy (more can be registered in MongoDB with `eproxy clients`; the configuration wins on a shared id).",
  "clients[]":
    "One backend; its id is the CN of its IGC-Santé ORG AUTH_CLI certificate, used for PSC, token exchange and teleservices.",
  "clients[].id": "Client id: the CN of the client's certificate.",
  "clients[].certFile": "Client certificate (PEM); goes with `keyFile`.",
  "clients[].keyFile": "Its private key (PEM).",
  "clients[].pkcs12File": "Or a PKCS#12 bundle of certificate and key.",
  "clients[].pkcs12PassphraseFile": "File holding the PKCS#12 passphrase.",
  "clients[].authMethod": "How eProxy authenticates to PSC for this client.",
  "clients[].clientSecretFile": "Secret file for the `client_secret_*` methods.",
  "clients[].signingKeyFile":
    "`private_key_jwt`: the key signing the client assertions (PEM, RSA or EC P-256); the certificate's key when absent, required with PKCS#12.",
  "clients[].signingKeyId": "`private_key_jwt`: the `kid` PSC registered the key under.",
  "clients[].apiKeyHashes": "Hashes of the backend's API keys (`eproxy api-key` prints a key and its hash).",
  "clients[].redirectUris": "Redirect URIs accepted by the code flow (exact match).",
  "clients[].allowedServices":
    "Teleservices (names of `teleservices[]`) this client may reach through the relay.",
  "clients[].exposePscTokens": "Return the raw PSC tokens in session answers.",
  "clients[].maxPendingCiba": "Pending CIBA requests allowed at once for this client (on each replica).",
  teleservices: "Teleservices reachable through `/send/{name}/…` and `RelayService.ForwardSoap`.",
  "teleservices[]": "One teleservice.",
  "teleservices[].name": "Its name in `/send/{name}/…` and in `allowedServices`.",
  "teleservices[].upstreamUrl": "Base URL; the path after `/send/{name}` is appended to it.",
  "teleservices[].tokenExchange":
    "RFC 8693 token exchange at the teleservice's authorization server; `null`: mTLS only (the caller's own VIHF is the credential).",
  "teleservices[].tokenExchange.endpoint": "Token endpoint of the teleservice's authorization server.",
  "teleservices[].tokenExchange.scope": "Business scope asked for the API token.",
  "teleservices[].tokenExchange.audience": "Optional `audience` parameter.",
  "teleservices[].tokenExchange.resource": "Optional `resource` parameter.",
  "teleservices[].tokenExchange.subjectTokenType": "Type of the subject token (the PSC access token).",
  "teleservices[].tokenExchange.extraParams": "Extra form parameters sent with the exchange.",
  "teleservices[].tokenExchange.refreshBeforeExpirySeconds":
    "Renew the API token this many seconds before it expires.",
  "teleservices[].caFile": "CA bundle to verify the teleservice (system roots otherwise).",
  "teleservices[].connectTimeoutMs": "Upstream TCP+TLS connect timeout, in milliseconds.",
  "teleservices[].headersTimeoutMs": "Time to the answer's headers, in milliseconds.",
  "teleservices[].bodyTimeoutMs": "Longest gap between body chunks, in milliseconds.",
  "teleservices[].maxBodyBytes": "Largest request body relayed, in bytes (413 above).",
  "teleservices[].maxConnectionsPerOrigin": "Connections kept per origin and client certificate.",
  "teleservices[].exposeCorrelationId": "Keep `X-Correlation-Id` in the answer to the caller.",
  "teleservices[].jsonAnswers":
    "Also relay `application/json` answers (a JSON teleservice such as the conformity mock `signsessiondata`); otherwise only SOAP, XML and MTOM answers pass.",
  "teleservices[].propagateTraceContext":
    "Send eProxy's W3C `traceparent` to this teleservice (a header; the SOAP body is never touched).",
  sessions: "Session lifetimes (never longer than PSC's: 30 min idle, 4 h absolute).",
  "sessions.idleSeconds": "A session ends after this long without use.",
  "sessions.absoluteSeconds": "A session ends this long after the login, whatever its use.",
  "sessions.refreshBeforeExpirySeconds":
    "Refresh the PSC access token (2 min) this many seconds before it expires.",
  stores: "Where state lives.",
  "stores.sessions":
    "Sessions, CIBA requests and cached API tokens: in process memory (`kind: memory`, one instance) or Redis (`kind: redis`, sealed, with TTLs).",
  "stores.sessions.kind": "`memory` or `redis`.",
  "stores.sessions.url":
    "`redis`: standalone URL (`redis://` or `rediss://` for TLS, ACL user and password, db); with Sentinel or Cluster it still carries the credentials. Prefer `EPROXY_REDIS_URL`.",
  "stores.sessions.sentinel": "`redis`: Redis Sentinel.",
  "stores.sessions.sentinel.name": "The monitored master's name.",
  "stores.sessions.sentinel.nodes": "Sentinels, as `host:port`.",
  "stores.sessions.clusterNodes": "`redis`: Redis Cluster seed nodes, as `host:port`.",
  "stores.sessions.caFile": "`redis`: CA of a `rediss://` server.",
  "stores.sessions.keyPrefix": "`redis`: every key starts with it.",
  "stores.sessions.commandTimeoutMs":
    "`redis`: a Redis call slower than this fails with `STORE_UNAVAILABLE`.",
  "stores.encryption":
    "Key ring sealing every value in Redis (AES-256-GCM), and the private keys of clients stored with `--store-cert`; required with Redis.",
  "stores.encryption.keys": "The keys: each the base64 of 32 random bytes (`openssl rand -base64 32`).",
  "stores.encryption.keys[]": "One key, from a file or an environment variable.",
  "stores.encryption.keys[].id": "Key id, recorded with every value it seals.",
  "stores.encryption.keys[].file": "File holding the key.",
  "stores.encryption.keys[].env": "Or the environment variable holding it.",
  "stores.encryption.activeKeyId": "The key new writes use.",
  "stores.encryption.retiredKeyIds": "Keys that open nothing any more (rotation's last step before removal).",
  "stores.mongodbUrl":
    "MongoDB for traces and the client registry (prefer `EPROXY_MONGODB_URL`). Without it traces stay in memory and `traces.file`, and only the configuration's clients exist.",
  "stores.clientsRefreshSeconds": "How often every replica reloads the clients registered in MongoDB.",
  traces: "Access traces (one per connect, refresh, exchange, send, disconnect, rejection, alert).",
  "traces.retentionDays": "Kept this long (TTL index in MongoDB, and the same cut-off in every query).",
  "traces.spoolFile":
    "While MongoDB is unreachable traces are appended here and replayed in order later. Default `<stateDir>/traces.spool`.",
  "traces.spoolMaxBytes":
    "The spool never grows beyond this; past it, new traces are dropped with an error log.",
  "traces.file":
    "Without MongoDB every trace is appended to this JSON-lines file. Default `<stateDir>/traces.jsonl`.",
  "traces.auditors":
    "Clients that may verify the whole trace record (`GET /traces/verify`, `TraceService.VerifyTraces`): its chains hold every client's traces. Default none.",
  stateDir:
    "Writable directory for what eProxy keeps on disk (the trace spool, the traces file); relative to the configuration file. eProxy refuses to start when it cannot write there.",
  alerts:
    "Misuse thresholds: more than `max` events in `windowSeconds` records an ALERT trace and a warning; `null` disables one.",
  "alerts.cibaFailures":
    "Failed CIBA requests (denied, expired, refused) per professional, all clients together; blocking stops new pushes to that professional.",
  "alerts.cibaFailures.max": "Events allowed in the window.",
  "alerts.cibaFailures.windowSeconds": "The window, in seconds.",
  "alerts.cibaFailures.block":
    "Refuse further requests (`TOO_MANY_REQUESTS`, 429 + `Retry-After`) until the window ends.",
  "alerts.relaysPerSession": "Relayed calls (`/send`, `ForwardSoap`) per session.",
  "alerts.relaysPerSession.max": "Events allowed in the window.",
  "alerts.relaysPerSession.windowSeconds": "The window, in seconds.",
  "alerts.relaysPerSession.block": "Refuse further relays on that session until the window ends.",
  admin:
    "The admin listener: plain HTTP serving `GET /metrics` (Prometheus). Off unless `port` is set; never on the public port.",
  "admin.listenAddress": "Address it binds (loopback unless told otherwise; `0.0.0.0` in a pod).",
  "admin.port": "Its port (`EPROXY_ADMIN_PORT`); unset: off.",
  tracing: "OpenTelemetry tracing over OTLP/HTTP: off unless `otlpEndpoint` is set.",
  "tracing.otlpEndpoint": "OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`.",
  "tracing.serviceName": "`service.name` of the spans.",
  "tracing.sampleRatio": "Share of new traces sampled; a caller's sampled flag (`traceparent`) is followed.",
  "tracing.headers": "Extra headers of the export requests (e.g. a collector's authorization).",
  "tracing.batchDelayMs": "Delay between two export batches, in milliseconds.",
  "tracing.exportTimeoutMs": "Timeout of an export request, in milliseconds.",
  log: "Logs: JSON lines on standard output.",
  "log.level": "Log level.",
  "log.bufferBytes":
    "Lines gathered before one write to standard output; written at least every 250 ms and at exit. 0 writes each line at once.",
};
