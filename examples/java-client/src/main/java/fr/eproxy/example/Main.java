package fr.eproxy.example;

import com.google.protobuf.ByteString;
import com.google.rpc.ErrorInfo;
import eproxy.v1.Auth.CibaStatus;
import eproxy.v1.Auth.Channel;
import eproxy.v1.Auth.GetSessionRequest;
import eproxy.v1.Auth.StartCibaRequest;
import eproxy.v1.Auth.StartCibaResponse;
import eproxy.v1.Auth.WatchCibaRequest;
import eproxy.v1.Auth.WatchCibaResponse;
import eproxy.v1.AuthServiceGrpc;
import eproxy.v1.Relay.ForwardSoapRequest;
import eproxy.v1.Relay.ForwardSoapResponse;
import eproxy.v1.RelayServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContextBuilder;
import io.grpc.protobuf.StatusProto;
import io.grpc.stub.MetadataUtils;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Iterator;
import java.util.concurrent.TimeUnit;

/**
 * eProxy from Java: authenticates with a client certificate (mTLS), signs a professional in by CIBA
 * (StartCiba, then the WatchCiba server stream until a final state), relays an INSi SOAP request
 * with ForwardSoap, and shows how to read eProxy's error code (google.rpc.ErrorInfo).
 *
 * <p>Usage: Main HOST:PORT CA_PEM CLIENT_CERT_PEM CLIENT_KEY_PEM NATIONAL_ID SOAP_REQUEST_FILE
 *
 * <p>or, authenticated by an API key read from the environment variable EPROXY_API_KEY (not from the
 * command line, which other users of the machine can read): Main HOST:PORT CA_PEM --api-key
 * NATIONAL_ID SOAP_REQUEST_FILE
 */
public final class Main {
  private Main() {}

  private static final String USAGE =
      "usage: Main HOST:PORT CA_PEM (CLIENT_CERT_PEM CLIENT_KEY_PEM | --api-key) NATIONAL_ID SOAP_REQUEST_FILE";

  public static void main(String[] args) throws Exception {
    boolean apiKey = args.length == 5 && args[2].equals("--api-key");
    if (args.length != 6 && !apiKey) {
      System.err.println(USAGE);
      System.exit(2);
    }
    String[] target = args[0].split(":");
    SslContextBuilder tls = GrpcSslContexts.forClient().trustManager(new File(args[1]));
    NettyChannelBuilder builder = NettyChannelBuilder.forAddress(target[0], Integer.parseInt(target[1]));
    if (apiKey) {
      String key = System.getenv("EPROXY_API_KEY");
      if (key == null || key.isBlank()) {
        System.err.println("--api-key: set EPROXY_API_KEY to the client's API key (epk_...)");
        System.exit(2);
      }
      // Every call carries the key as metadata; TLS only verifies the server.
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of("x-eproxy-api-key", Metadata.ASCII_STRING_MARSHALLER), key);
      builder.intercept(MetadataUtils.newAttachHeadersInterceptor(headers));
      System.out.println("eProxy at " + args[0] + ", authenticated by API key");
    } else {
      // The certificate's CN is the client id: no API key needed.
      tls.keyManager(new File(args[2]), new File(args[3]));
      System.out.println("eProxy at " + args[0] + ", authenticated by client certificate");
    }
    ManagedChannel channel = builder.sslContext(tls.build()).build();
    int rest = apiKey ? 3 : 4;
    try {
      run(channel, args[rest], Files.readAllBytes(Path.of(args[rest + 1])));
    } finally {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static void run(ManagedChannel channel, String nationalId, byte[] soapRequest) {
    AuthServiceGrpc.AuthServiceBlockingStub auth = AuthServiceGrpc.newBlockingStub(channel);
    RelayServiceGrpc.RelayServiceBlockingStub relay = RelayServiceGrpc.newBlockingStub(channel);

    StartCibaResponse started = startCiba(auth, nationalId, false);
    if (started.hasSession() && started.getSession().getSessionToken().isEmpty()) {
      // The session-reuse trap: this professional already has a live session with this client (the
      // sandbox's printed commands, or this program's previous run, created it). eProxy keeps only a
      // hash of its token and handed the token to whoever created the session, so the answer has
      // none. A backend that kept that token uses it; this program did not, so it asks for a new
      // session (a new push). Not by default: a restarted backend would push on every start.
      System.out.println("StartCiba: live session reused without its token: asking again with new_session=true");
      started = startCiba(auth, nationalId, true);
    }

    String sessionToken = started.hasSession() ? started.getSession().getSessionToken() : "";
    if (!started.hasSession()) {
      // Server streaming: one message per state change, the stream ends at a final state.
      Iterator<WatchCibaResponse> events =
          auth.withDeadlineAfter(5, TimeUnit.MINUTES)
              .watchCiba(WatchCibaRequest.newBuilder().setAuthReqId(started.getAuthReqId()).build());
      while (events.hasNext()) {
        WatchCibaResponse ev = events.next();
        System.out.println("WatchCiba: status=" + ev.getStatus());
        if (ev.getStatus() == CibaStatus.CIBA_STATUS_APPROVED) {
          sessionToken = ev.getSession().getSessionToken();
          System.out.println(
              "Session: professional=" + ev.getSession().getProfessional().getFamilyName()
                  + " acr=" + ev.getSession().getAcr() + " expiresAt="
                  + ev.getSession().getExpiresAt().getSeconds());
        } else if (ev.getStatus() != CibaStatus.CIBA_STATUS_PENDING) {
          System.out.println("CIBA ended: " + ev.getErrorMessage());
          System.exit(1);
        }
      }
    }
    if (sessionToken.isEmpty()) {
      System.out.println("No session token (the approval went to another caller)");
      System.exit(1);
    }

    ForwardSoapResponse answer =
        relay.withDeadlineAfter(60, TimeUnit.SECONDS)
            .forwardSoap(
                ForwardSoapRequest.newBuilder()
                    .setSessionToken(sessionToken)
                    .setService("insi")
                    .setContentType("application/soap+xml; charset=utf-8")
                    .setBody(ByteString.copyFrom(soapRequest))
                    .build());
    String body = answer.getBody().toString(StandardCharsets.UTF_8);
    System.out.println(
        "ForwardSoap: statusCode=" + answer.getStatusCode() + " contentType=" + answer.getContentType()
            + " bytes=" + answer.getBody().size());
    int cr = body.indexOf("CodeCR>");
    if (cr >= 0) System.out.println("INSi CodeCR: " + body.substring(cr + 7, body.indexOf('<', cr)));

    // eProxy's error code travels as a google.rpc.ErrorInfo detail (reason = code, domain eproxy.fr).
    try {
      auth.getSession(GetSessionRequest.newBuilder().setSessionToken("eps_not-a-session").build());
      System.out.println("GetSession with a bad token unexpectedly succeeded");
      System.exit(1);
    } catch (StatusRuntimeException e) {
      com.google.rpc.Status status = StatusProto.fromThrowable(e);
      String reason = "(none)";
      if (status != null) {
        for (com.google.protobuf.Any detail : status.getDetailsList()) {
          if (detail.is(ErrorInfo.class)) {
            try {
              ErrorInfo info = detail.unpack(ErrorInfo.class);
              reason = info.getReason() + " (domain " + info.getDomain() + ")";
            } catch (com.google.protobuf.InvalidProtocolBufferException bad) {
              reason = "(undecodable)";
            }
          }
        }
      }
      System.out.println("GetSession with a bad token: " + e.getStatus().getCode() + " ErrorInfo.reason=" + reason);
    }
  }

  private static StartCibaResponse startCiba(
      AuthServiceGrpc.AuthServiceBlockingStub auth, String nationalId, boolean newSession) {
    StartCibaResponse started =
        auth.withDeadlineAfter(30, TimeUnit.SECONDS)
            .startCiba(
                StartCibaRequest.newBuilder()
                    .setNationalId(nationalId)
                    .setChannel(Channel.CHANNEL_MOBILE)
                    .setBindingMessage("42")
                    .setNewSession(newSession)
                    .build());
    System.out.println(
        "StartCiba: authReqId=" + started.getAuthReqId() + " reused=" + started.getReused()
            + " newSession=" + newSession + " bindingMessage=" + started.getBindingMessage());
    return started;
  }
}
