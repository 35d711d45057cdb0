package fr.eproxy.example.spring;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import fr.eproxy.example.spring.EproxyException.SessionInvalidException;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.http.MediaType;
import org.springframework.stereotype.Service;
import org.springframework.web.reactive.function.client.ClientResponse;
import org.springframework.web.reactive.function.client.WebClient;
import reactor.core.publisher.Mono;

/**
 * Relays SOAP requests to a teleservice through eProxy's REST relay, {@code POST /send/{service}/…}:
 * eProxy adds the mTLS certificate and the professional's tokens, and streams the teleservice's
 * answer back unchanged (its SOAP faults included). eProxy's own refusals carry the
 * {@code x-eproxy-error} header and become {@link EproxyException}s.
 */
@Service
public class TeleserviceRelay {
  private static final Logger log = LoggerFactory.getLogger(TeleserviceRelay.class);
  static final MediaType SOAP_12 = MediaType.parseMediaType("application/soap+xml; charset=utf-8");
  private static final Pattern SOAP_REASON = Pattern.compile("Text[^>]*>([^<]*)<");

  private final WebClient eproxy;
  private final ProfessionalLoginService logins;
  private final ObjectMapper json;

  public TeleserviceRelay(WebClient eproxyWebClient, ProfessionalLoginService logins, ObjectMapper json) {
    this.eproxy = eproxyWebClient;
    this.logins = logins;
    this.json = json;
  }

  /** The teleservice's answer, as it sent it. */
  public record SoapAnswer(int status, String contentType, byte[] body) {
    public String text() {
      return new String(body, StandardCharsets.UTF_8);
    }
  }

  /**
   * Relays {@code body} to {@code service} (its upstream URL followed by {@code path}) on behalf of
   * the professional, logging them in when this backend holds no session; once more after a new
   * login when eProxy says the session is gone (expired, logged out).
   */
  public SoapAnswer send(String nationalId, String service, String path, byte[] body) {
    String token = logins.sessionToken(nationalId);
    try {
      return sendWithToken(token, service, path, body);
    } catch (SessionInvalidException e) {
      log.info("Relay refused with {}: logging in again", e.code());
      logins.forget(nationalId, token);
      return sendWithToken(logins.sessionToken(nationalId), service, path, body);
    }
  }

  private SoapAnswer sendWithToken(String sessionToken, String service, String path, byte[] body) {
    return eproxy
        .post()
        .uri(b -> b.path("/send/{service}/" + path).build(service))
        // The session token; the client is authenticated by its certificate or x-eproxy-api-key.
        .headers(h -> h.setBearerAuth(sessionToken))
        .contentType(SOAP_12)
        .bodyValue(body)
        .exchangeToMono(this::answerOrError)
        .block(Duration.ofSeconds(90));
  }

  private Mono<SoapAnswer> answerOrError(ClientResponse response) {
    return response
        .bodyToMono(byte[].class)
        .defaultIfEmpty(new byte[0])
        .map(
            bytes -> {
              String code = response.headers().asHttpHeaders().getFirst("x-eproxy-error");
              String type = response.headers().contentType().map(MediaType::toString).orElse("");
              if (code != null) {
                throw EproxyException.of(code, response.statusCode().value(), reason(type, bytes));
              }
              return new SoapAnswer(response.statusCode().value(), type, bytes);
            });
  }

  /** The message of eProxy's refusal: a problem document's detail, or a SOAP fault's reason. */
  private String reason(String contentType, byte[] body) {
    if (contentType.startsWith("application/problem+json")) {
      try {
        JsonNode problem = json.readTree(body);
        return problem.path("detail").asText(problem.path("title").asText(""));
      } catch (IOException e) {
        return "(undecodable problem document)";
      }
    }
    Matcher m = SOAP_REASON.matcher(new String(body, StandardCharsets.UTF_8));
    return m.find() ? m.group(1) : "";
  }
}
