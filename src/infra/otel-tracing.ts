/**
 * The tracing adapter on the OpenTelemetry JS SDK: spans batched to an OTLP/HTTP endpoint, W3C
 * trace context read from callers and written on the HTTP requests made inside spans that ask for
 * it (PSC, the authorization servers). Nothing global is registered: this module keeps its own
 * tracer, context manager and propagator. It is imported only when `tracing.otlpEndpoint` is set,
 * so an eProxy without tracing never loads the SDK.
 */
import diagnosticsChannel from "node:diagnostics_channel";
import {
  type Context,
  createContextKey,
  defaultTextMapGetter,
  defaultTextMapSetter,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { ExportResultCode, W3CTraceContextPropagator } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  type SpanExporter,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from "@opentelemetry/sdk-trace";
import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { EproxyError } from "../errors.ts";
import {
  type ActiveSpan,
  noopTracing,
  type SpanAttributes,
  type SpanOptions,
  type Tracing,
} from "../observe/telemetry.ts";

/** The `tracing` block of the configuration. */
export type TracingConfig = NonNullable<Config["tracing"]>;

const noopSpan = noopTracing.start("");
const PROPAGATE = createContextKey("eproxy.propagate-trace-context");
// undici announces every request it creates here, synchronously, in the caller's async context.
const UNDICI_REQUEST_CREATE = "undici:request:create";

// Codes that say eProxy or what is behind it failed (the caller's own mistakes leave the span unset).
const SERVER_FAULTS = new Set([
  "unknown",
  "internal",
  "unavailable",
  "deadline_exceeded",
  "data_loss",
  "unimplemented",
  "psc_unavailable",
  "store_unavailable",
  "upstream_unavailable",
  "upstream_timeout",
  "upstream_bad_response",
]);

interface UndiciRequest {
  addHeader(name: string, value: string): unknown;
}

function failSpan(span: Span, err: unknown): void {
  const code = err instanceof EproxyError ? err.code : "INTERNAL";
  span.setAttribute("eproxy.error_code", code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: code });
}

/** Starts the SDK and returns the tracing port. */
export function createOtelTracing(cfg: TracingConfig, log: Logger, version: string): Tracing {
  const otlp = new OTLPTraceExporter({
    url: cfg.otlpEndpoint,
    headers: { ...cfg.headers },
    timeoutMillis: cfg.exportTimeoutMs,
  });
  // The SDK drops spans it cannot export without a word: say so, at most once a minute.
  let lastWarning = 0;
  const exporter: SpanExporter = {
    export(spans, done) {
      otlp.export(spans, (result) => {
        if (result.code !== ExportResultCode.SUCCESS && Date.now() - lastWarning > 60_000) {
          lastWarning = Date.now();
          log.warn(
            { endpoint: cfg.otlpEndpoint, spans: spans.length, err: result.error?.message },
            "tracing: spans could not be exported (dropped)",
          );
        }
        done(result);
      });
    },
    shutdown: () => otlp.shutdown(),
    forceFlush: () => otlp.forceFlush(),
  };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": cfg.serviceName, "service.version": version }),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(cfg.sampleRatio) }),
    spanProcessors: [new BatchSpanProcessor({ exporter, scheduledDelayMillis: cfg.batchDelayMs })],
  });
  const tracer = provider.getTracer("eproxy", version);
  const contexts = new AsyncLocalStorageContextManager();
  contexts.enable();
  const propagator = new W3CTraceContextPropagator();

  const headersOf = (ctx: Context): Record<string, string> => {
    const carrier: Record<string, string> = {};
    propagator.inject(ctx, carrier, defaultTextMapSetter);
    return carrier;
  };
  const onRequestCreate = (message: unknown) => {
    const ctx = contexts.active();
    if (ctx.getValue(PROPAGATE) !== true) return;
    const { request } = message as { request: UndiciRequest };
    for (const [k, v] of Object.entries(headersOf(ctx))) request.addHeader(k, v);
  };
  diagnosticsChannel.subscribe(UNDICI_REQUEST_CREATE, onRequestCreate);

  function start(name: string, attrs: SpanAttributes = {}, opts: SpanOptions = {}): ActiveSpan {
    const parent = contexts.active();
    if (opts.childOnly && !trace.getSpan(parent)) return noopSpan;
    const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes: attrs }, parent);
    const withSpan = trace.setSpan(parent, span);
    const ctx = opts.propagate ? withSpan.setValue(PROPAGATE, true) : withSpan.deleteValue(PROPAGATE);
    let ended = false;
    return {
      run: (fn) => contexts.with(ctx, fn),
      set: (a) => span.setAttributes(a),
      headers: () => headersOf(ctx),
      end(err) {
        if (ended) return;
        ended = true;
        if (err) failSpan(span, err);
        span.end();
      },
    };
  }

  log.info(
    { endpoint: cfg.otlpEndpoint, sampleRatio: cfg.sampleRatio },
    "tracing: spans exported over OTLP/HTTP",
  );

  return {
    enabled: true,
    startRequest(headers, attrs) {
      // The caller's traceparent (if valid) becomes the parent; otherwise a new trace starts.
      const parent = propagator.extract(ROOT_CONTEXT, headers, defaultTextMapGetter);
      const span = tracer.startSpan(
        `HTTP ${String(attrs["http.request.method"] ?? "")}`.trim(),
        { kind: SpanKind.SERVER, attributes: attrs },
        parent,
      );
      const ctx = trace.setSpan(parent, span);
      return {
        run: (fn) => contexts.with(ctx, fn),
        end({ route, status, code, attributes }) {
          span.updateName(route);
          span.setAttributes({
            "http.route": route,
            "http.response.status_code": status,
            "eproxy.code": code,
            ...attributes,
          });
          if (status >= 500 || SERVER_FAULTS.has(code)) {
            span.setStatus({ code: SpanStatusCode.ERROR, message: code });
          }
          span.end();
        },
      };
    },
    start,
    async span(name, attrs, fn, opts) {
      const s = start(name, attrs, opts);
      try {
        const v = await s.run(fn);
        s.end();
        return v;
      } catch (err) {
        s.end(err);
        throw err;
      }
    },
    async shutdown() {
      diagnosticsChannel.unsubscribe(UNDICI_REQUEST_CREATE, onRequestCreate);
      contexts.disable();
      await provider.shutdown().catch((err: unknown) => {
        log.warn({ err: (err as Error).message }, "tracing: last spans not exported");
      });
    },
  };
}
