/**
 * gRPC server reflection (v1 and v1alpha) built on the generated descriptors, so that `buf curl`
 * and `grpcurl` work without a schema. No maintained Connect package exists for this, and the
 * protocol is small: list services, and answer file descriptors by name or by symbol.
 */
import { create, type DescFile, fromBinary, toBinary } from "@bufbuild/protobuf";
import { nestedTypes } from "@bufbuild/protobuf/reflect";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  ServerReflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../../gen/grpc/reflection/v1/reflection_pb.ts";
import {
  ServerReflectionRequestSchema as AlphaRequestSchema,
  ServerReflectionResponseSchema as AlphaResponseSchema,
  ServerReflection as ServerReflectionAlpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.ts";

/** gRPC status NOT_FOUND, used in reflection ErrorResponse messages. */
const GRPC_NOT_FOUND = 5;
const GRPC_UNIMPLEMENTED = 12;

function collectFiles(roots: readonly DescFile[]): Map<string, DescFile> {
  const out = new Map<string, DescFile>();
  const visit = (f: DescFile) => {
    if (out.has(f.name)) return;
    out.set(f.name, f);
    for (const d of f.dependencies) visit(d);
  };
  for (const f of roots) visit(f);
  return out;
}

/** Answers reflection requests for a fixed set of services and their files. */
export function createReflectionResponder(
  files: readonly DescFile[],
  serviceNames: readonly string[],
): (req: ServerReflectionRequest) => ServerReflectionResponse {
  const byName = collectFiles(files);
  const bySymbol = new Map<string, DescFile>();
  for (const f of byName.values()) {
    for (const t of nestedTypes(f)) {
      bySymbol.set(t.typeName, f);
      if (t.kind === "service") for (const m of t.methods) bySymbol.set(`${t.typeName}.${m.name}`, f);
    }
  }
  const encoded = new Map<string, Uint8Array>();
  const encode = (f: DescFile) => {
    let b = encoded.get(f.name);
    if (!b) {
      b = toBinary(FileDescriptorProtoSchema, f.proto);
      encoded.set(f.name, b);
    }
    return b;
  };
  // A file and its transitive imports, the file first, as grpc-go does.
  const withDeps = (f: DescFile) => [...collectFiles([f]).values()].map(encode);

  return (req) => {
    const base = { validHost: req.host, originalRequest: req };
    const notFound = (what: string) =>
      create(ServerReflectionResponseSchema, {
        ...base,
        messageResponse: {
          case: "errorResponse",
          value: { errorCode: GRPC_NOT_FOUND, errorMessage: `${what} not found` },
        },
      });
    const files = (f: DescFile | undefined, what: string) =>
      f
        ? create(ServerReflectionResponseSchema, {
            ...base,
            messageResponse: { case: "fileDescriptorResponse", value: { fileDescriptorProto: withDeps(f) } },
          })
        : notFound(what);
    const r = req.messageRequest;
    switch (r.case) {
      case "listServices":
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "listServicesResponse",
            value: { service: serviceNames.map((name) => ({ name })) },
          },
        });
      case "fileByFilename":
        return files(byName.get(r.value), `file ${r.value}`);
      case "fileContainingSymbol":
        return files(bySymbol.get(r.value.replace(/^\./, "")), `symbol ${r.value}`);
      case "fileContainingExtension":
        return notFound(`extension ${r.value.extensionNumber} of ${r.value.containingType}`);
      case "allExtensionNumbersOfType":
        return bySymbol.has(r.value)
          ? create(ServerReflectionResponseSchema, {
              ...base,
              messageResponse: {
                case: "allExtensionNumbersResponse",
                value: { baseTypeName: r.value, extensionNumber: [] },
              },
            })
          : notFound(`type ${r.value}`);
      default:
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "errorResponse",
            value: { errorCode: GRPC_UNIMPLEMENTED, errorMessage: "unsupported reflection request" },
          },
        });
    }
  };
}

/** Registers both reflection services (v1 and v1alpha, same wire format) on a Connect router. */
export function registerReflection(
  router: ConnectRouter,
  files: readonly DescFile[],
  serviceNames: readonly string[],
): void {
  const names = [...serviceNames, ServerReflection.typeName, ServerReflectionAlpha.typeName];
  const respond = createReflectionResponder(files, names);
  router.service(ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) yield respond(req);
    },
  });
  router.service(ServerReflectionAlpha, {
    async *serverReflectionInfo(requests) {
      for await (const req of requests) {
        // v1alpha is wire-identical to v1: convert through bytes rather than duplicating the logic.
        const v1 = fromBinary(ServerReflectionRequestSchema, toBinary(AlphaRequestSchema, req));
        yield fromBinary(AlphaResponseSchema, toBinary(ServerReflectionResponseSchema, respond(v1)));
      }
    },
  });
}
