// The PSC-like login page of the sandbox's code flow: choose a professional, approve or refuse.

const I18N = {
  fr: {
    simulated: "(simulé)",
    sandbox: "Bac à sable",
    title: "Se connecter avec sa e-CPS",
    intro: "Une application demande votre identification.",
    client: "Application :",
    choose: "Choisissez le professionnel qui se connecte",
    hint: "Sur la vraie plateforme, le professionnel valide sur l'application e-CPS de son téléphone ou avec sa carte CPS.",
    approve: "Valider la connexion",
    refuse: "Refuser",
    lang: "English",
    doc: "Pro Santé Connect (bac à sable) — connexion",
  },
  en: {
    simulated: "(simulated)",
    sandbox: "Sandbox",
    title: "Sign in with e-CPS",
    intro: "An application asks you to identify yourself.",
    client: "Application:",
    choose: "Choose the professional who signs in",
    hint: "On the real platform, the professional approves in the e-CPS app on their phone or with their CPS card.",
    approve: "Approve sign-in",
    refuse: "Refuse",
    lang: "Français",
    doc: "Pro Santé Connect (sandbox) — sign in",
  },
};
let lang = localStorage.getItem("eproxy-console-lang") || (navigator.language.startsWith("fr") ? "fr" : "en");
const uid = location.pathname.split("/").pop();
const query = new URLSearchParams(location.search);

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = I18N[lang][e.dataset.i18n];
  document.title = I18N[lang].doc;
  const b = document.getElementById("lang");
  b.textContent = I18N[lang].lang;
  b.lang = lang === "fr" ? "en" : "fr";
}

async function finish(nationalId) {
  const res = await fetch(`/api/login/${encodeURIComponent(uid)}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-sandbox-console": "1" },
    body: JSON.stringify({ nationalId }),
  });
  const out = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = document.getElementById("error");
    e.textContent = out.error || `HTTP ${res.status}`;
    e.hidden = false;
    return;
  }
  location.assign(out.returnTo);
}

async function start() {
  applyLanguage();
  document.getElementById("client").textContent = query.get("client") || "?";
  const state = await (await fetch("/api/state")).json();
  const hint = query.get("hint");
  const root = document.getElementById("choices");
  state.professionals.forEach((p, i) => {
    const id = `p-${p.nationalId}`;
    const row = document.createElement("div");
    row.className = "psc-choice";
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "professional";
    input.value = p.nationalId;
    input.id = id;
    input.checked = hint ? hint === p.nationalId : i === 0;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `${p.name} — ${p.nationalId} (${p.profession})`;
    row.append(input, label);
    root.append(row);
  });
  document.getElementById("form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const chosen = document.querySelector('input[name="professional"]:checked');
    if (chosen) finish(chosen.value);
  });
  document.getElementById("refuse").addEventListener("click", () => finish(null));
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "fr" ? "en" : "fr";
    localStorage.setItem("eproxy-console-lang", lang);
    applyLanguage();
  });
  document.body.dataset.ready = "true";
}

start();
