package fr.eproxy.example.spring;

import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.properties.ConfigurationPropertiesScan;

/**
 * A backend calling eProxy the way the toolbox's Spring modules do: it logs a health professional
 * in over gRPC ({@link ProfessionalLoginService}) and relays INSi SOAP requests over REST with
 * {@code WebClient} ({@link TeleserviceRelay}). {@link DemoRunner} drives both once and exits.
 */
@SpringBootApplication
@ConfigurationPropertiesScan
public class EproxyExampleApplication {
  public static void main(String[] args) {
    // Runs the CommandLineRunner, then closes the context (gRPC channel, HTTP connections) and exits
    // with its code: 0 when the demo went through, 1 on any exception.
    System.exit(SpringApplication.exit(SpringApplication.run(EproxyExampleApplication.class, args)));
  }
}
