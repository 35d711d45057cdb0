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
import io.grpc.StatusRuntimeException;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.protobuf.StatusProto;
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
 */
public final class Main {
  private Main() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println(
          "usage: Main HOST:PORT CA_PEM CLIENT_CERT_PEM CLIENT_KEY_PEM NATIONAL_ID SOAP_REQUEST_FILE");
      System.exit(2);
    }
    String[] target = args[0].split(":");
    ManagedChannel channel =
        NettyChannelBuilder.forAddress(target[0], Integer.parseInt(target[1]))
            .sslContext(
                GrpcSslContexts.forClient()
                    .trustManager(new File(args[1]))
                    // The certificate's CN is the client id: no API key needed.
                    .keyManager(new File(args[2]), new File(args[3]))
                    .build())
            .build();
    try {
      run(channel, args[4], Files.readAllBytes(Path.of(args[5])));
    } finally {
      channel.shutdown().awaitTermination(5, TimeUnit.SECONDS);
    }
  }

  private static void run(ManagedChannel channel, String nationalId, byte[] soapRequest) {
    AuthServiceGrpc.AuthServiceBlockingStub auth = AuthServiceGrpc.newBlockingStub(channel);
    RelayServiceGrpc.RelayServiceBlockingStub relay = RelayServiceGrpc.newBlockingStub(channel);

    StartCibaResponse started =
        auth.withDeadlineAfter(30, TimeUnit.SECONDS)
            .startCiba(
                StartCibaRequest.newBuilder()
                    .setNationalId(nationalId)
                    .setChannel(Channel.CHANNEL_MOBILE)
                    .setBindingMessage("42")
                    .build());
    System.out.println(
        "StartCiba: authReqId=" + started.getAuthReqId() + " reused=" + started.getReused()
            + " bindingMessage=" + started.getBindingMessage());

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
      System.out.println("No session token (a live session was reused: use the token you received then)");
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
}
