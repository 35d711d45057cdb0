package fr.eproxy.example.spring;

import eproxy.v1.AuthServiceGrpc;
import io.grpc.ClientInterceptor;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.netty.shaded.io.grpc.netty.GrpcSslContexts;
import io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.shaded.io.netty.handler.ssl.SslContextBuilder;
import io.grpc.stub.MetadataUtils;
import java.util.List;
import javax.net.ssl.SSLException;
import org.springframework.boot.autoconfigure.web.reactive.function.client.WebClientSsl;
import org.springframework.boot.ssl.SslBundle;
import org.springframework.boot.ssl.SslBundles;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.web.reactive.function.client.WebClient;

/**
 * The two connections to eProxy, both on one TLS setup (the SSL bundle named by
 * {@code eproxy.ssl-bundle}) and one credential: the bundle's client certificate (mTLS variant) or
 * the {@code x-eproxy-api-key} header (API-key variant).
 */
@Configuration(proxyBeanMethods = false)
public class EproxyClientConfiguration {
  static final String API_KEY_HEADER = "x-eproxy-api-key";

  /** gRPC channel (HTTP/2 over TLS, grpc-java's shaded Netty). Closed with the context. */
  @Bean(destroyMethod = "shutdownNow")
  ManagedChannel eproxyChannel(EproxyProperties props, SslBundles bundles) throws SSLException {
    SslBundle bundle = bundles.getBundle(props.sslBundle());
    SslContextBuilder tls =
        GrpcSslContexts.forClient().trustManager(bundle.getManagers().getTrustManagerFactory());
    if (bundle.getStores().getKeyStore() != null) {
      // mTLS: the certificate's CN is the client id; no API key needed.
      tls.keyManager(bundle.getManagers().getKeyManagerFactory());
    }
    NettyChannelBuilder channel =
        NettyChannelBuilder.forAddress(props.url().getHost(), port(props))
            .sslContext(tls.build());
    if (props.usesApiKey()) {
      Metadata headers = new Metadata();
      headers.put(Metadata.Key.of(API_KEY_HEADER, Metadata.ASCII_STRING_MARSHALLER), props.apiKey());
      channel.intercept(List.<ClientInterceptor>of(MetadataUtils.newAttachHeadersInterceptor(headers)));
    }
    return channel.build();
  }

  @Bean
  AuthServiceGrpc.AuthServiceBlockingStub eproxyAuth(ManagedChannel eproxyChannel) {
    return AuthServiceGrpc.newBlockingStub(eproxyChannel);
  }

  /** REST client (Reactor Netty) for {@code /send}: the same bundle, the same credential. */
  @Bean
  WebClient eproxyWebClient(
      WebClient.Builder builder, WebClientSsl ssl, EproxyProperties props) {
    builder.baseUrl(props.url().toString()).apply(ssl.fromBundle(props.sslBundle()));
    if (props.usesApiKey()) builder.defaultHeader(API_KEY_HEADER, props.apiKey());
    return builder.build();
  }

  private static int port(EproxyProperties props) {
    return props.url().getPort() == -1 ? 443 : props.url().getPort();
  }
}
