package fr.eproxy.example.spring;

import eproxy.v1.Auth.GetSessionRequest;
import eproxy.v1.AuthServiceGrpc.AuthServiceBlockingStub;
import fr.eproxy.example.spring.EproxyException.SessionInvalidException;
import fr.eproxy.example.spring.TeleserviceRelay.SoapAnswer;
import io.grpc.StatusRuntimeException;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.boot.CommandLineRunner;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.stereotype.Component;

/**
 * Runs once at startup: an INSi search on behalf of the demo professional (which logs them in), then
 * two refusals read as typed exceptions, one from the REST relay and one from gRPC.
 */
@Component
@ConditionalOnProperty(name = "eproxy.demo.enabled", havingValue = "true", matchIfMissing = true)
class DemoRunner implements CommandLineRunner {
  private static final Logger log = LoggerFactory.getLogger(DemoRunner.class);
  private static final Pattern CODE_CR = Pattern.compile("CodeCR>([^<]*)<");

  private final EproxyProperties props;
  private final TeleserviceRelay relay;
  private final AuthServiceBlockingStub auth;

  DemoRunner(EproxyProperties props, TeleserviceRelay relay, AuthServiceBlockingStub auth) {
    this.props = props;
    this.relay = relay;
    this.auth = auth;
  }

  @Override
  public void run(String... args) throws Exception {
    log.info(
        "eProxy at {}, authenticated by {}",
        props.url(), props.usesApiKey() ? "API key (x-eproxy-api-key)" : "client certificate (mTLS)");
    String nationalId = props.demo().nationalId();
    byte[] request = props.demo().soapRequest().getContentAsByteArray();

    SoapAnswer answer = relay.send(nationalId, "insi", "rechercherInsAvecTraitsIdentite", request);
    Matcher cr = CODE_CR.matcher(answer.text());
    log.info(
        "INSi answered {} ({}, {} bytes), CodeCR {}",
        answer.status(), answer.contentType(), answer.body().length, cr.find() ? cr.group(1) : "(none)");
    if (answer.status() != 200) throw new IllegalStateException("INSi answered " + answer.status());

    // eProxy's refusals as typed exceptions: a teleservice this client may not use (REST relay) ...
    try {
      relay.send(nationalId, "no-such-teleservice", "x", request);
      throw new IllegalStateException("relay to an unknown teleservice went through");
    } catch (EproxyException e) {
      log.info(
          "Typed error from /send: {} code={} status={}",
          e.getClass().getSimpleName(), e.code(), e.httpStatus());
    }
    // ... and a session token eProxy does not know (gRPC, google.rpc.ErrorInfo).
    try {
      auth.getSession(GetSessionRequest.newBuilder().setSessionToken("eps_not-a-session").build());
      throw new IllegalStateException("GetSession with a bad token went through");
    } catch (StatusRuntimeException e) {
      RuntimeException typed = EproxyException.fromGrpc(e);
      if (!(typed instanceof SessionInvalidException invalid)) throw typed;
      log.info("Typed error from gRPC: {} code={}", invalid.getClass().getSimpleName(), invalid.code());
    }
    log.info("eProxy Spring Boot example: OK");
  }
}
