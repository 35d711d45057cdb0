// The sandbox console (plain browser JavaScript, no framework, nothing from a CDN).

const I18N = {
  fr: {
    skip: "Aller au contenu",
    title: "eProxy — console du bac à sable",
    subtitle:
      "Développement seulement : simulateurs de Pro Santé Connect et des téléservices, PKI de développement.",
    connected: "Connecté",
    disconnected: "Déconnecté",
    phoneTitle: "Application e-CPS virtuelle",
    phoneHint: "Les notifications envoyées aux professionnels du bac à sable par une authentification CIBA.",
    autoApprove: "Approuver automatiquement après",
    autoDelay: "Délai d'approbation automatique en secondes",
    seconds: "secondes",
    loginPage: "Page de connexion type PSC pour le code flow (navigateurs)",
    noPush: "Aucune demande en attente",
    pushFrom: "Demande de {client}",
    channel: "Canal",
    binding: "Code affiché",
    expiresIn: "expire dans {s} s",
    approve: "Valider",
    deny: "Refuser",
    ignore: "Laisser expirer",
    ignored: "Ignorée : expire dans {s} s",
    pushArrived: "Nouvelle demande pour {name}, code {code}",
    liveTitle: "Vue en direct",
    sessionsTitle: "Sessions actives",
    colProfessional: "Professionnel",
    colClient: "Client",
    colAuthMode: "Mode",
    colExpiry: "Expiration",
    colRefreshes: "Rafraîchissements",
    colApiTokens: "Jetons d'API",
    noSession: "Aucune session",
    idleUntil: "inactivité : {t}",
    endsAt: "fin : {t}",
    timelineTitle: "Chronologie (traces et échanges relayés)",
    timelineHint:
      "Chaque trace à son écriture ; les corps SOAP, vus par le simulateur, ne sont gardés que dans le bac à sable.",
    noEvent: "Rien encore : lancez une authentification ou un relais.",
    call: "Appel reçu par le simulateur",
    soapExchange: "Échange SOAP relayé (requête et réponse)",
    tokenExchange: "Échange de jeton (vu par le serveur d'autorisation)",
    exchangeBefore: "Jeton d'API obtenu par l'échange de {t} ({d} ms, {o})",
    request: "Requête",
    answer: "Réponse",
    noAnswer: "pas de réponse (connexion coupée)",
    faultsOn: "pannes actives : {f}",
    faultsTitle: "Pannes simulées",
    faultsHint:
      "Chaque interrupteur agit sur les simulateurs comme leur API de contrôle ; l'effet attendu côté eProxy est indiqué.",
    fPsc503: "PSC répond 503 (attente CIBA, rafraîchissements)",
    fPscSlow: "PSC ralentit l'attente CIBA (slow_down)",
    fPscTls: "PSC refuse le certificat client (TLS)",
    asLegend: "Serveur d'autorisation des téléservices",
    fAs503: "L'échange de jeton répond 503",
    teleLegend: "Téléservices",
    fTeleSlow: "Réponse lente",
    slowDelay: "Retard en millisecondes",
    ms: "ms",
    expectSlow: "au-delà de 30 s : UPSTREAM_TIMEOUT",
    fTeleReset: "Connexion coupée au milieu de la réponse",
    fTele502: "Page HTML 502 (répartiteur en panne)",
    faultChanged: "{f} : {state}",
    on: "activé",
    off: "désactivé",
    lang: "English",
  },
  en: {
    skip: "Skip to content",
    title: "eProxy — sandbox console",
    subtitle: "Development only: Pro Santé Connect and teleservice simulators, development PKI.",
    connected: "Connected",
    disconnected: "Disconnected",
    phoneTitle: "Virtual e-CPS app",
    phoneHint: "The pushes a CIBA authentication sends to the sandbox's professionals.",
    autoApprove: "Approve automatically after",
    autoDelay: "Automatic approval delay in seconds",
    seconds: "seconds",
    loginPage: "PSC-like login page for the code flow (browsers)",
    noPush: "No pending request",
    pushFrom: "Request from {client}",
    channel: "Channel",
    binding: "Code shown",
    expiresIn: "expires in {s} s",
    approve: "Approve",
    deny: "Deny",
    ignore: "Let it expire",
    ignored: "Ignored: expires in {s} s",
    pushArrived: "New request for {name}, code {code}",
    liveTitle: "Live view",
    sessionsTitle: "Live sessions",
    colProfessional: "Professional",
    colClient: "Client",
    colAuthMode: "Mode",
    colExpiry: "Expiry",
    colRefreshes: "Refreshes",
    colApiTokens: "API tokens",
    noSession: "No session",
    idleUntil: "idle: {t}",
    endsAt: "ends: {t}",
    timelineTitle: "Timeline (traces and relayed exchanges)",
    timelineHint:
      "Each trace as it is written; SOAP bodies, as the simulator saw them, are kept in the sandbox only.",
    noEvent: "Nothing yet: start an authentication or a relay.",
    call: "Call received by the simulator",
    soapExchange: "Relayed SOAP exchange (request and answer)",
    tokenExchange: "Token exchange (as the authorization server saw it)",
    exchangeBefore: "API token from the token exchange at {t} ({d} ms, {o})",
    request: "Request",
    answer: "Answer",
    noAnswer: "no answer (connection cut)",
    faultsOn: "faults on: {f}",
    faultsTitle: "Fault switches",
    faultsHint:
      "Each switch acts on the simulators as their control API does; the expected effect on eProxy is shown.",
    fPsc503: "PSC answers 503 (CIBA polls, refreshes)",
    fPscSlow: "PSC slows CIBA polling down (slow_down)",
    fPscTls: "PSC refuses the client certificate (TLS)",
    asLegend: "Teleservices' authorization server",
    fAs503: "Token exchange answers 503",
    teleLegend: "Teleservices",
    fTeleSlow: "Slow answer",
    slowDelay: "Delay in milliseconds",
    ms: "ms",
    expectSlow: "beyond 30 s: UPSTREAM_TIMEOUT",
    fTeleReset: "Connection cut in the middle of the answer",
    fTele502: "HTML 502 page (broken load balancer)",
    faultChanged: "{f}: {state}",
    on: "on",
    off: "off",
    lang: "Français",
  },
};

let lang = localStorage.getItem("eproxy-console-lang") || (navigator.language.startsWith("fr") ? "fr" : "en");
const state = { professionals: [], pushes: [], sessions: [], settings: {}, faults: {}, refreshes: new Map() };
/** Timeline entries by key (trace id, or `call:<n>`), and which call belongs to which trace. */
const entries = new Map();
const calls = new Map();
const callOwner = new Map();
let traces = [];

const $ = (sel, root = document) => root.querySelector(sel);

function t(key, vars = {}) {
  const s = I18N[lang]?.[key] || I18N.en[key] || key;
  return s.replace(/\{(\w+)\}/g, (_, k) => String(vars[k] ?? ""));
}

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function time(ms) {
  return new Date(ms).toLocaleTimeString(lang === "fr" ? "fr-FR" : "en-GB", { hour12: false });
}

function announce(text) {
  const a = $("#announce");
  a.textContent = "";
  setTimeout(() => {
    a.textContent = text;
  }, 50);
}

async function post(path, body = {}) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", "x-sandbox-console": "1" },
    body: JSON.stringify(body),
  });
  const out = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(out.error || `HTTP ${res.status}`);
  return out;
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll("[data-i18n-aria]"))
    e.setAttribute("aria-label", t(e.dataset.i18nAria));
  document.title = t("title");
  const b = $("#lang");
  b.textContent = t("lang");
  b.lang = lang === "fr" ? "en" : "fr";
  renderConn();
  renderPros();
  renderSessions();
  renderTimeline(true);
}

// ---- The e-CPS phone ------------------------------------------------------------------------------

function proName(id) {
  const p = state.professionals.find((x) => x.nationalId === id);
  return p ? p.name : id;
}

function renderPros() {
  const root = $("#pros");
  const focusedKey = document.activeElement?.dataset?.key;
  root.replaceChildren();
  for (const p of state.professionals) {
    const card = $("#t-pro").content.firstElementChild.cloneNode(true);
    card.id = `pro-${p.nationalId}`;
    card.setAttribute("aria-labelledby", `pro-${p.nationalId}-name`);
    const h = $(".pro-name", card);
    h.id = `pro-${p.nationalId}-name`;
    h.textContent = p.name;
    $(".pro-meta", card).textContent = `${p.nationalId} · ${p.profession}`;
    const mine = state.pushes.filter((x) => x.nationalId === p.nationalId);
    const empty = $(".empty", card);
    empty.textContent = t("noPush");
    empty.hidden = mine.length > 0;
    const ul = $(".pushes", card);
    for (const push of mine) {
      const id = push.authReqId;
      const label = t("pushFrom", { client: push.clientId });
      const li = el(
        "li",
        {
          class: `push${push.ignored ? " ignored" : ""}`,
          "data-push": id,
          "aria-label": `${label}, ${p.name}`,
        },
        el("p", { class: "push-from", text: label }),
        el(
          "p",
          { class: "push-code" },
          el("span", { class: "k", text: `${t("binding")} ` }),
          el("strong", { class: "code", text: push.bindingMessage || "—" }),
        ),
        el(
          "p",
          { class: "push-meta" },
          `${t("channel")} ${push.channel || "MOBILE"} · `,
          el("span", {
            "data-exp": push.expiresAt,
            "data-ignored": push.ignored ? "1" : "",
            text: countdown(push.expiresAt, push.ignored),
          }),
        ),
      );
      if (!push.ignored) {
        li.append(
          el(
            "div",
            { class: "actions" },
            el("button", {
              type: "button",
              class: "approve",
              "data-key": `approve:${id}`,
              text: t("approve"),
              onclick: () => answer(id, "approve"),
            }),
            el("button", {
              type: "button",
              class: "deny",
              "data-key": `deny:${id}`,
              text: t("deny"),
              onclick: () => answer(id, "deny"),
            }),
            el("button", {
              type: "button",
              class: "ignore",
              "data-key": `ignore:${id}`,
              text: t("ignore"),
              onclick: () => answer(id, "ignore"),
            }),
          ),
        );
      }
      ul.append(li);
    }
    root.append(card);
  }
  if (focusedKey) document.querySelector(`[data-key="${CSS.escape(focusedKey)}"]`)?.focus();
}

function countdown(expiresAt, ignored) {
  const s = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
  return ignored ? t("ignored", { s }) : t("expiresIn", { s });
}

async function answer(id, verb) {
  try {
    await post(`/api/pushes/${encodeURIComponent(id)}/${verb}`);
  } catch (err) {
    announce(err.message);
  }
  await loadPushes();
  // Keyboard users land on the phone's next button, or the card.
  const next = document.querySelector(".push .actions button");
  if (next) next.focus();
}

async function loadPushes() {
  const before = new Set(state.pushes.map((p) => p.authReqId));
  state.pushes = await (await fetch("/api/pushes")).json();
  for (const p of state.pushes)
    if (!before.has(p.authReqId) && !p.ignored)
      announce(t("pushArrived", { name: proName(p.nationalId), code: p.bindingMessage }));
  renderPros();
}

function renderSettings() {
  const s = state.settings;
  $("#auto").checked = s.autoApproveMs !== null && s.autoApproveMs !== undefined;
  if (s.autoApproveMs !== null && s.autoApproveMs !== undefined)
    $("#autoSec").value = String(Math.round(s.autoApproveMs / 1000));
  $("#loginPage").checked = s.loginPage === true;
}

async function saveAuto() {
  const on = $("#auto").checked;
  const sec = Math.max(0, Math.min(600, Number($("#autoSec").value) || 0));
  state.settings = await post("/api/settings", { autoApproveMs: on ? sec * 1000 : null });
  renderSettings();
}

// ---- Live sessions --------------------------------------------------------------------------------

function renderSessions() {
  const body = $("#sessions tbody");
  body.replaceChildren();
  if (state.sessions.length === 0) {
    body.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: t("noSession") })));
    return;
  }
  for (const s of state.sessions) {
    body.append(
      el(
        "tr",
        {},
        el("td", {}, el("span", { text: s.name }), el("br"), el("small", { text: s.nationalId })),
        el("td", { text: s.clientId }),
        el("td", { text: s.acr }),
        el("td", { text: s.authMode }),
        el(
          "td",
          {},
          s.idleExpiresAt ? el("span", { text: t("idleUntil", { t: time(s.idleExpiresAt) }) }) : null,
          el("br"),
          el("small", { text: t("endsAt", { t: time(s.absoluteExpiresAt) }) }),
        ),
        el("td", { text: String(state.refreshes.get(s.sessionHash) || 0) }),
        el("td", { text: s.apiTokens.join(", ") || "—" }),
      ),
    );
  }
}

async function loadSessions() {
  state.sessions = await (await fetch("/api/sessions")).json();
  renderSessions();
}

// ---- Timeline -------------------------------------------------------------------------------------

function traceSummary(e) {
  const bits = [];
  if (e.clientId) bits.push(e.clientId);
  if (e.service) bits.push(e.service);
  if (e.soapAction) bits.push(e.soapAction.split(/[/:]/).pop());
  else if (e.path) bits.push(e.path);
  if (e.upstreamStatus) bits.push(`HTTP ${e.upstreamStatus}`);
  if (e.durationMs !== undefined) bits.push(`${e.durationMs} ms`);
  if (e.outcome) bits.push(e.outcome);
  return bits.join(" · ");
}

function bodyBlock(title, part) {
  return el(
    "div",
    { class: "body" },
    el("h4", { text: `${title} — ${part.contentType || "?"} (${part.bytes} B)` }),
    el("pre", { tabindex: "0", text: part.text || "" }),
  );
}

function callDetails(c) {
  const title = c.kind === "exchange" ? t("tokenExchange") : t("soapExchange");
  const status = c.status === undefined ? t("noAnswer") : `HTTP ${c.status}`;
  const d = el(
    "details",
    { class: `call call-${c.kind}`, "data-call": c.id },
    el("summary", { text: `${title} — POST ${c.path} → ${status}, ${c.durationMs} ms` }),
  );
  if (c.faults.length)
    d.append(el("p", { class: "faults-on", text: t("faultsOn", { f: c.faults.join(", ") }) }));
  d.append(bodyBlock(t("request"), c.request), bodyBlock(t("answer"), c.response));
  return d;
}

/** The call a trace shows: by correlation id (SEND), or the exchange just before (EXCHANGE). */
function ownCall(e) {
  for (const c of calls.values()) {
    if (callOwner.has(c.id)) continue;
    if (e.type === "SEND" && e.correlationId && c.correlationId === e.correlationId) return c;
    if (e.type === "EXCHANGE" && c.kind === "exchange" && c.at <= e.at + 50 && e.at - c.at < 30_000) return c;
  }
  return undefined;
}

function entryFor(key) {
  if (key.startsWith("call:")) {
    const c = calls.get(Number(key.slice(5)));
    return el(
      "li",
      { class: `ev ev-CALL${c.status && c.status >= 400 ? " bad" : ""}`, "data-entry": key },
      el("time", { datetime: new Date(c.at).toISOString(), text: time(c.at) }),
      el("span", { class: "type", text: c.kind === "exchange" ? "AS" : "TELESERVICE" }),
      el("span", { class: "what", text: `${t("call")}: POST ${c.path} → ${c.status ?? "—"}` }),
      callDetails(c),
    );
  }
  const e = traces.find((x) => x.id === key);
  const bad = /FAIL|REJECT|ALERT/.test(e.type) || (e.outcome && e.outcome !== "OK");
  const li = el(
    "li",
    { class: `ev ev-${e.type}${bad ? " bad" : ""}`, "data-entry": key, "data-type": e.type },
    el("time", { datetime: new Date(e.at).toISOString(), text: time(e.at) }),
    el("span", { class: "type", text: e.type }),
    el("span", { class: "what", text: traceSummary(e) }),
  );
  for (const [cid, owner] of callOwner) if (owner === key) li.append(callDetails(calls.get(cid)));
  if (e.type === "SEND" && e.sessionHash) {
    // The token exchange that gave this session its API token for the service.
    const x = traces.findLast(
      (o) =>
        o.type === "EXCHANGE" && o.sessionHash === e.sessionHash && o.service === e.service && o.at <= e.at,
    );
    if (x)
      li.append(
        el("p", {
          class: "exchange-before",
          text: t("exchangeBefore", { t: time(x.at), d: x.durationMs ?? "?", o: x.outcome ?? "" }),
        }),
      );
  }
  return li;
}

/** Entries newest first: traces, and the calls no trace claimed. */
function renderTimeline(all = false) {
  const ol = $("#timeline");
  const open = new Set([...ol.querySelectorAll("details[open]")].map((d) => d.dataset.call));
  const keys = [
    ...traces.map((e) => ({ key: e.id, at: e.at })),
    ...[...calls.values()]
      .filter((c) => !callOwner.has(c.id))
      .map((c) => ({ key: `call:${c.id}`, at: c.at })),
  ].sort((a, b) => b.at - a.at || (a.key < b.key ? 1 : -1));
  if (all) entries.clear();
  const items = keys.slice(0, 300).map(({ key }) => {
    let li = entries.get(key);
    if (!li) {
      li = entryFor(key);
      entries.set(key, li);
    }
    return li;
  });
  if (items.length === 0) items.push(el("li", { class: "empty", text: t("noEvent") }));
  ol.replaceChildren(...items);
  for (const d of ol.querySelectorAll("details")) if (open.has(d.dataset.call)) d.open = true;
}

function addTrace(e) {
  traces.push(e);
  if (traces.length > 300) traces = traces.slice(-300);
  const c = ownCall(e);
  if (c) {
    callOwner.set(c.id, e.id);
    entries.delete(`call:${c.id}`);
  }
  if (e.type === "REFRESH" && e.sessionHash)
    state.refreshes.set(e.sessionHash, (state.refreshes.get(e.sessionHash) || 0) + 1);
}

function addCall(c) {
  calls.set(c.id, c);
  if (calls.size > 60) calls.delete(calls.keys().next().value);
  // A trace written before the call was seen (rare): it claims the call now.
  for (const e of traces) {
    if (callOwner.has(c.id)) break;
    if ([...callOwner.values()].includes(e.id)) continue;
    if (
      (e.type === "SEND" && e.correlationId && e.correlationId === c.correlationId) ||
      (e.type === "EXCHANGE" && c.kind === "exchange" && c.at <= e.at + 50 && e.at - c.at < 30_000)
    ) {
      callOwner.set(c.id, e.id);
      entries.delete(e.id);
    }
  }
}

// ---- Faults ---------------------------------------------------------------------------------------

function renderFaults() {
  for (const input of document.querySelectorAll("[data-fault]"))
    input.checked = state.faults[input.dataset.fault] === true;
  if (state.faults.teleSlowMs) $("#teleSlowMs").value = String(state.faults.teleSlowMs);
}

async function toggleFault(input) {
  const name = input.dataset.fault;
  const body = { name, on: input.checked };
  if (name === "teleSlow") body.value = Number($("#teleSlowMs").value) || 2000;
  try {
    state.faults = await post("/api/faults", body);
    const label = $(`label[for="${input.id}"]`).textContent;
    announce(t("faultChanged", { f: label, state: input.checked ? t("on") : t("off") }));
  } catch (err) {
    announce(err.message);
  }
  renderFaults();
}

// ---- Live updates ---------------------------------------------------------------------------------

let connected = false;
function renderConn() {
  const c = $("#conn");
  c.dataset.state = connected ? "on" : "off";
  c.textContent = connected ? t("connected") : t("disconnected");
}

let sessionsTimer;
function listen() {
  const es = new EventSource("/api/events");
  es.onopen = () => {
    connected = true;
    renderConn();
  };
  es.onerror = () => {
    connected = false;
    renderConn();
  };
  es.addEventListener("trace", (m) => {
    const e = JSON.parse(m.data);
    addTrace(e);
    renderTimeline();
    if (/CONNECT|REFRESH|DISCONNECT|EXCHANGE|SEND/.test(e.type)) {
      clearTimeout(sessionsTimer);
      sessionsTimer = setTimeout(() => {
        loadSessions().catch(() => {});
        renderSessions();
      }, 100);
    }
  });
  es.addEventListener("call", (m) => {
    addCall(JSON.parse(m.data));
    renderTimeline();
  });
  es.addEventListener("pushes", (m) => {
    const before = new Set(state.pushes.map((p) => p.authReqId));
    state.pushes = JSON.parse(m.data);
    for (const p of state.pushes)
      if (!before.has(p.authReqId) && !p.ignored)
        announce(t("pushArrived", { name: proName(p.nationalId), code: p.bindingMessage }));
    renderPros();
  });
  es.addEventListener("settings", (m) => {
    state.settings = JSON.parse(m.data);
    renderSettings();
  });
  es.addEventListener("faults", (m) => {
    state.faults = JSON.parse(m.data);
    renderFaults();
  });
}

async function start() {
  const s = await (await fetch("/api/state")).json();
  Object.assign(state, {
    professionals: s.professionals,
    pushes: s.pushes,
    sessions: s.sessions,
    settings: s.settings,
    faults: s.faults,
  });
  for (const c of s.calls) calls.set(c.id, c);
  for (const e of s.traces) addTrace(e);
  applyLanguage();
  renderSettings();
  renderFaults();
  document.body.dataset.ready = "true";
  listen();
  $("#lang").addEventListener("click", () => {
    lang = lang === "fr" ? "en" : "fr";
    localStorage.setItem("eproxy-console-lang", lang);
    applyLanguage();
  });
  $("#auto").addEventListener("change", saveAuto);
  $("#autoSec").addEventListener("change", () => {
    if ($("#auto").checked) saveAuto();
  });
  $("#loginPage").addEventListener("change", async (ev) => {
    state.settings = await post("/api/settings", { loginPage: ev.target.checked });
    renderSettings();
  });
  for (const input of document.querySelectorAll("[data-fault]"))
    input.addEventListener("change", () => toggleFault(input));
  // Countdowns; an expired push leaves the phone.
  setInterval(() => {
    if (state.pushes.some((p) => p.expiresAt <= Date.now())) loadPushes().catch(() => {});
    for (const span of document.querySelectorAll("[data-exp]"))
      span.textContent = countdown(Number(span.dataset.exp), span.dataset.ignored === "1");
  }, 1000);
  setInterval(() => loadSessions().catch(() => {}), 5000);
}

start().catch((err) => {
  document.body.prepend(el("p", { class: "error", role: "alert", text: `console: ${err.message}` }));
});
