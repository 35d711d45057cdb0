/**
 * Name lookups for the contract's enums: `cibaStatusName(CibaStatus.APPROVED) === "APPROVED"`, and
 * back from either the short name or the proto name (`"CIBA_STATUS_APPROVED"`).
 */
import type { DescEnum } from "@bufbuild/protobuf";
import { type Channel, ChannelSchema, CibaStatus, CibaStatusSchema } from "./gen/eproxy/v1/auth_pb.js";

/**
 * The short name of an enum value (the proto name without the enum's prefix), e.g. `APPROVED` for
 * `CIBA_STATUS_APPROVED`; `undefined` for a value this version of the contract does not know.
 */
export function enumName(desc: DescEnum, value: number): string | undefined {
  return desc.value[value]?.localName;
}

/** The value of an enum named by its short name (`APPROVED`) or proto name (`CIBA_STATUS_APPROVED`). */
export function enumValue(desc: DescEnum, name: string): number | undefined {
  return desc.values.find((v) => v.localName === name || v.name === name)?.number;
}

/** Short name of a CIBA status. */
export type CibaStatusName = keyof typeof CibaStatus;
/** Short name of a channel. */
export type ChannelName = keyof typeof Channel;

/** `CibaStatus.APPROVED` → `"APPROVED"` (`"UNSPECIFIED"` for an unknown value). */
export function cibaStatusName(status: CibaStatus): CibaStatusName {
  return (enumName(CibaStatusSchema, status) ?? "UNSPECIFIED") as CibaStatusName;
}

/** `"APPROVED"` or `"CIBA_STATUS_APPROVED"` → `CibaStatus.APPROVED`; `undefined` when unknown. */
export function parseCibaStatus(name: string): CibaStatus | undefined {
  return enumValue(CibaStatusSchema, name) as CibaStatus | undefined;
}

/** `Channel.MOBILE` → `"MOBILE"` (`"UNSPECIFIED"` for an unknown value). */
export function channelName(channel: Channel): ChannelName {
  return (enumName(ChannelSchema, channel) ?? "UNSPECIFIED") as ChannelName;
}

/** `"MOBILE"` or `"CHANNEL_MOBILE"` → `Channel.MOBILE`; `undefined` when unknown. */
export function parseChannel(name: string): Channel | undefined {
  return enumValue(ChannelSchema, name) as Channel | undefined;
}

/** True for the states a CIBA request never leaves (APPROVED, DENIED, EXPIRED, FAILED). */
export function isFinalCibaStatus(status: CibaStatus): boolean {
  return (
    status === CibaStatus.APPROVED ||
    status === CibaStatus.DENIED ||
    status === CibaStatus.EXPIRED ||
    status === CibaStatus.FAILED
  );
}
