package fr.eproxy.example.spring;

import com.google.protobuf.Any;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.rpc.ErrorInfo;
import io.grpc.StatusRuntimeException;
import io.grpc.protobuf.StatusProto;

/**
 * An error eProxy itself answered, with its error code ({@code SESSION_INVALID}, {@code NOT_FOUND},
 * {@code PERMISSION_DENIED}, …; the list is docs/reference, generated from src/errors.ts). The code
 * travels as the {@code google.rpc.ErrorInfo} reason (domain {@code eproxy.fr}) on gRPC, as the
 * {@code x-eproxy-error} header and the problem document's {@code code} on REST, and as the
 * {@code x-eproxy-error} header of the SOAP fault on {@code /send}. A teleservice's own answer (its
 * SOAP faults included) never carries that header: it is not an {@code EproxyException}.
 */
public class EproxyException extends RuntimeException {
  /** The {@code ErrorInfo.domain} of eProxy's errors. */
  public static final String DOMAIN = "eproxy.fr";

  private final String code;
  private final int httpStatus;

  public EproxyException(String code, int httpStatus, String message) {
    super(code + ": " + message);
    this.code = code;
    this.httpStatus = httpStatus;
  }

  /** eProxy's error code. */
  public String code() {
    return code;
  }

  /** The HTTP status (REST), or 0 for gRPC. */
  public int httpStatus() {
    return httpStatus;
  }

  /** The typed exception for a code: the one a caller acts on gets its own class. */
  public static EproxyException of(String code, int httpStatus, String message) {
    return switch (code) {
      case "SESSION_INVALID", "REAUTHENTICATION_REQUIRED" ->
          new SessionInvalidException(code, httpStatus, message);
      default -> new EproxyException(code, httpStatus, message);
    };
  }

  /**
   * Reads eProxy's code from a gRPC failure's {@code ErrorInfo}; a failure without one (deadline,
   * connection refused: not eProxy's answer) is returned as it is.
   */
  public static RuntimeException fromGrpc(StatusRuntimeException e) {
    com.google.rpc.Status status = StatusProto.fromThrowable(e);
    if (status != null) {
      for (Any detail : status.getDetailsList()) {
        if (!detail.is(ErrorInfo.class)) continue;
        try {
          ErrorInfo info = detail.unpack(ErrorInfo.class);
          if (DOMAIN.equals(info.getDomain())) {
            return of(info.getReason(), 0, e.getStatus().getDescription());
          }
        } catch (InvalidProtocolBufferException undecodable) {
          break;
        }
      }
    }
    return e;
  }

  /** The session token is missing, unknown, expired or needs a new login: log in again. */
  public static class SessionInvalidException extends EproxyException {
    public SessionInvalidException(String code, int httpStatus, String message) {
      super(code, httpStatus, message);
    }
  }
}
