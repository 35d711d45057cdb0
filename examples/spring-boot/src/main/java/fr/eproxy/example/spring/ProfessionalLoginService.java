package fr.eproxy.example.spring;

import eproxy.v1.Auth.CibaStatus;
import eproxy.v1.Auth.Channel;
import eproxy.v1.Auth.StartCibaRequest;
import eproxy.v1.Auth.StartCibaResponse;
import eproxy.v1.Auth.WatchCibaRequest;
import eproxy.v1.Auth.WatchCibaResponse;
import eproxy.v1.AuthServiceGrpc.AuthServiceBlockingStub;
import eproxy.v1.SessionOuterClass.Session;
import io.grpc.StatusRuntimeException;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.stereotype.Service;

/**
 * Logs professionals in by CIBA over gRPC (StartCiba, then the WatchCiba stream) and holds their
 * session tokens.
 *
 * <p><b>The session-reuse trap.</b> eProxy keeps one live session per professional and client, and
 * only a hash of its token: the token is handed out once, to the call that created the session.
 * Asked again, StartCiba sends no push and answers {@code reused=true} with the session but
 * <em>without</em> its token. A backend that keeps its tokens never notices; one that lost them (a
 * restart, as every run of this example is) must ask with {@code new_session=true}: a new push, a
 * new session beside the live one. Doing that on every call would push to the professional's phone
 * on every backend restart, so this service asks for a new session only when the answer says the
 * token is gone. A real backend keeps the token in its own (encrypted) session store, so that a
 * restart does not cost the professional a push.
 */
@Service
public class ProfessionalLoginService {
  private static final Logger log = LoggerFactory.getLogger(ProfessionalLoginService.class);

  private final AuthServiceBlockingStub auth;
  /**
   * National id -> session token, or the login under way (concurrent callers wait for one login
   * instead of each watching the same request: only the first watcher of an approval gets the token).
   * In memory here; a real backend persists the tokens.
   */
  private final Map<String, CompletableFuture<String>> tokens = new ConcurrentHashMap<>();

  public ProfessionalLoginService(AuthServiceBlockingStub auth) {
    this.auth = auth;
  }

  /** The professional's session token: the one held, or a new login (which may push to the phone). */
  public String sessionToken(String nationalId) {
    CompletableFuture<String> mine = new CompletableFuture<>();
    CompletableFuture<String> held = tokens.putIfAbsent(nationalId, mine);
    if (held != null) {
      try {
        return held.join();
      } catch (CompletionException e) {
        throw e.getCause() instanceof RuntimeException cause ? cause : e;
      }
    }
    try {
      String token = login(nationalId);
      mine.complete(token);
      return token;
    } catch (RuntimeException e) {
      tokens.remove(nationalId, mine);
      mine.completeExceptionally(e);
      throw e;
    }
  }

  /** Drops a token eProxy refused (expired, logged out): the next call logs in again. */
  public void forget(String nationalId, String refusedToken) {
    // Only that token: another thread may already hold a new one.
    tokens.computeIfPresent(
        nationalId, (id, held) -> refusedToken.equals(held.getNow(null)) ? null : held);
  }

  private String login(String nationalId) {
    try {
      StartCibaResponse started = startCiba(nationalId, false);
      if (started.hasSession() && started.getSession().getSessionToken().isEmpty()) {
        log.info(
            "StartCiba: reused=true, a live session without its token (eProxy handed it out when the"
                + " session was created, before this process started): asking again with new_session=true");
        started = startCiba(nationalId, true);
      }
      if (started.hasSession()) return loggedIn(started.getSession());
      return watch(started);
    } catch (StatusRuntimeException e) {
      throw EproxyException.fromGrpc(e);
    }
  }

  private StartCibaResponse startCiba(String nationalId, boolean newSession) {
    StartCibaResponse started =
        auth.withDeadlineAfter(30, TimeUnit.SECONDS)
            .startCiba(
                StartCibaRequest.newBuilder()
                    .setNationalId(nationalId)
                    .setChannel(Channel.CHANNEL_MOBILE)
                    .setNewSession(newSession)
                    .build());
    log.info(
        "StartCiba: reused={} newSession={} bindingMessage={}",
        started.getReused(), newSession, started.getBindingMessage());
    return started;
  }

  /** Follows the request (one message per state change; the stream ends at a final state). */
  private String watch(StartCibaResponse started) {
    Iterator<WatchCibaResponse> events =
        auth.withDeadlineAfter(started.getExpiresInSeconds() + 10L, TimeUnit.SECONDS)
            .watchCiba(WatchCibaRequest.newBuilder().setAuthReqId(started.getAuthReqId()).build());
    while (events.hasNext()) {
      WatchCibaResponse event = events.next();
      log.info("WatchCiba: {}", event.getStatus());
      if (event.getStatus() == CibaStatus.CIBA_STATUS_APPROVED) {
        if (event.getSession().getSessionToken().isEmpty()) {
          // A reused pending request whose approval another caller saw first took the token.
          throw new IllegalStateException("approved, but the session token went to another caller");
        }
        return loggedIn(event.getSession());
      }
      if (event.getStatus() != CibaStatus.CIBA_STATUS_PENDING) {
        throw new IllegalStateException("CIBA ended with " + event.getStatus() + ": " + event.getErrorMessage());
      }
    }
    throw new IllegalStateException("WatchCiba ended without a final state");
  }

  private String loggedIn(Session session) {
    // Never log the token itself.
    log.info(
        "Logged in: {} {} (acr {})",
        session.getProfessional().getGivenName(),
        session.getProfessional().getFamilyName(),
        session.getAcr());
    return session.getSessionToken();
  }
}
