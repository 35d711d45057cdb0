package fr.eproxy.example.spring;

import java.net.URI;
import org.springframework.boot.context.properties.ConfigurationProperties;
import org.springframework.boot.context.properties.bind.DefaultValue;
import org.springframework.core.io.Resource;

/**
 * Where eProxy is and how this backend authenticates to it ({@code eproxy.*} in application.yml).
 *
 * @param url eProxy's base URL; gRPC and REST share its port
 * @param sslBundle the Spring SSL bundle ({@code spring.ssl.bundle.pem.*}) that trusts eProxy's CA
 *     and, for the mTLS variant, holds the client certificate whose CN is the client id
 * @param apiKey the API key ({@code epk_…}) for the API-key variant, sent as {@code x-eproxy-api-key};
 *     empty for the mTLS variant
 * @param demo what {@link DemoRunner} does
 */
@ConfigurationProperties("eproxy")
public record EproxyProperties(
    URI url, String sslBundle, @DefaultValue("") String apiKey, Demo demo) {

  /** True when requests carry the API key (otherwise the client certificate authenticates). */
  public boolean usesApiKey() {
    return apiKey != null && !apiKey.isBlank();
  }

  /**
   * @param nationalId the professional to log in ("8" + RPPS)
   * @param soapRequest an INSi request (the sandbox writes one next to its certificates)
   */
  public record Demo(String nationalId, Resource soapRequest) {}
}
