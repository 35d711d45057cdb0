/**
 * Mappers from domain views to eproxy.v1 messages, shared by the Connect services and the REST
 * facade (which answers their protobuf JSON mapping). Protobuf only, no Connect.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { CibaStatus, type PollCibaResponse, PollCibaResponseSchema } from "../../gen/eproxy/v1/auth_pb.ts";
import { type Session, SessionSchema } from "../../gen/eproxy/v1/session_pb.ts";
import type { CibaView, CibaStatus as DomainCibaStatus } from "../auth/ciba.ts";
import type { SessionView } from "../auth/sessions.ts";

const STATUS: Record<DomainCibaStatus, CibaStatus> = {
  PENDING: CibaStatus.PENDING,
  APPROVED: CibaStatus.APPROVED,
  DENIED: CibaStatus.DENIED,
  EXPIRED: CibaStatus.EXPIRED,
  FAILED: CibaStatus.FAILED,
};

/** Session view → eproxy.v1.Session. */
export function toSessionProto(v: SessionView): Session {
  return create(SessionSchema, {
    sessionToken: v.token ?? "",
    expiresAt: timestampFromMs(v.expiresAt),
    idleExpiresAt: timestampFromMs(v.idleExpiresAt),
    clientId: v.clientId,
    reused: v.reused,
    acr: v.acr,
    proxySessionId: v.proxySessionId,
    sessionState: v.sessionState ?? "",
    professional: {
      nationalId: v.professional.nationalId,
      givenName: v.professional.givenName,
      familyName: v.professional.familyName,
      authMode: v.professional.authMode,
      exercises: v.professional.exercises.map((e) => ({
        professionCode: e.professionCode,
        categoryCode: e.categoryCode,
        savoirFaireCode: e.savoirFaireCode,
        activities: e.activities,
      })),
    },
    ...(v.psc
      ? {
          pscTokens: {
            accessToken: v.psc.accessToken,
            refreshToken: v.psc.refreshToken ?? "",
            idToken: v.psc.idToken ?? "",
            expiresAt: timestampFromMs(v.psc.accessExpiresAt),
            ...(v.psc.refreshExpiresAt ? { refreshExpiresAt: timestampFromMs(v.psc.refreshExpiresAt) } : {}),
            scope: v.psc.scope ?? "",
            sessionState: v.psc.sessionState ?? "",
          },
        }
      : {}),
  });
}

/** Domain CIBA status → protobuf enum. */
export function toCibaStatusProto(s: DomainCibaStatus): CibaStatus {
  return STATUS[s];
}

/** CIBA view → PollCibaResponse (same fields as WatchCibaResponse). */
export function toPollCibaProto(v: CibaView): PollCibaResponse {
  return create(PollCibaResponseSchema, {
    status: STATUS[v.status],
    ...(v.session ? { session: toSessionProto(v.session) } : {}),
    errorMessage: v.errorMessage ?? "",
  });
}
