/**
 * Connect implementation of eproxy.v1.AuthService: translates between protobuf messages and the
 * auth domain.
 */
import type { ServiceImpl } from "@connectrpc/connect";
import type { AuthService } from "../../gen/eproxy/v1/auth_pb.ts";
import type { Deps } from "../deps.ts";
import { EproxyError } from "../errors.ts";

const notYet = (): never => {
  throw new EproxyError("NOT_IMPLEMENTED", "not implemented yet");
};

/** Creates the AuthService implementation. */
export function createAuthService(_deps: Deps): ServiceImpl<typeof AuthService> {
  return {
    startCiba: notYet,
    pollCiba: notYet,
    // biome-ignore lint/correctness/useYield: placeholder until CIBA lands
    async *watchCiba() {
      notYet();
    },
    startCodeFlow: notYet,
    codeFlowCallback: notYet,
    getSession: notYet,
    logout: notYet,
  };
}
