/**
 * `@eproxy/client`: the eProxy contract (service descriptors, messages, enums) and helpers to call
 * it from Node.js over gRPC or Connect, with an API key or a client certificate.
 */
export * from "./client.js";
export * from "./enums.js";
export * from "./errors.js";
export * from "./gen/eproxy/v1/auth_pb.js";
export * from "./gen/eproxy/v1/relay_pb.js";
export * from "./gen/eproxy/v1/session_pb.js";
export * from "./gen/eproxy/v1/trace_pb.js";
export {
  type ErrorInfo,
  ErrorInfoSchema,
  file_google_rpc_error_details,
  type LocalizedMessage,
  LocalizedMessageSchema,
  type RetryInfo,
  RetryInfoSchema,
} from "./gen/google/rpc/error_details_pb.js";
export * from "./journeys.js";
