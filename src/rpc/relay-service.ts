/**
 * Connect implementation of eproxy.v1.RelayService.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { RelayService } from "../../gen/eproxy/v1/relay_pb.ts";
import type { Deps } from "../deps.ts";
import { EproxyError } from "../errors.ts";

/** Creates the RelayService implementation. */
export function createRelayService(_deps: Deps): ServiceImpl<typeof RelayService> {
  return {
    forwardSoap() {
      throw new EproxyError("NOT_IMPLEMENTED", "not implemented yet");
    },
  };
}
