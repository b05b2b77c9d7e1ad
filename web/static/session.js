// Aperture's cookie session for its browser pages (the viewer and its sign-in page).
//
// Signing in sets httponly cookies: a short-lived access token and a refresh token. The
// page cannot read them, so it remembers when the access token expires (from the
// `expires_in` of the login or refresh answer, in localStorage, shared by tabs) and
// renews it before then with POST /auth/refresh (the refresh cookie is the credential).
// A request answered 401 renews once and is sent again; if renewing fails the page goes
// to the sign-in page, which comes back here afterwards (`?next=`).
//
// Refresh tokens rotate and a spent one revokes the session, so renewals are serialised:
// one at a time per page, and across tabs through a Web Lock; a tab that finds the token
// renewed by another does not renew it again.
(function () {
  "use strict";

  const EXPIRES_KEY = "aperture.accessExpires";
  const LOCK = "aperture-session";
  const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);
  const match = window.location.pathname.match(/^(.*)\/viewer(?:\/.*)?$/);
  const api = new URLSearchParams(window.location.search).get("api") || (match ? match[1] : "/api/v1");

  // Renew this long before expiry: a third of the lifetime (timers run late on a busy
  // page), at most a minute.
  const margin = (lifetime) => Math.min(60000, lifetime / 3);

  function known() {
    try {
      const value = JSON.parse(window.localStorage.getItem(EXPIRES_KEY) || "null");
      return value && typeof value.at === "number" && typeof value.lifetime === "number" ? value : null;
    } catch (e) {
      return null;
    }
  }

  function remember(expiresIn) {
    const lifetime = Number(expiresIn) * 1000;
    // The token's expiry is in whole seconds of the server's clock: up to 1 s sooner.
    const at = Date.now() + lifetime - 1000;
    window.localStorage.setItem(EXPIRES_KEY, JSON.stringify({ at, lifetime }));
    schedule();
  }

  function forget() {
    window.localStorage.removeItem(EXPIRES_KEY);
    window.clearTimeout(timer);
  }

  function csrfToken() {
    const cookie = document.cookie.split("; ").find((c) => c.startsWith("aperture_csrf="));
    return cookie ? decodeURIComponent(cookie.slice("aperture_csrf=".length)) : "";
  }

  function signInUrl() {
    const here = window.location.pathname + window.location.search;
    return `${api}/viewer/login?next=${encodeURIComponent(here)}`;
  }

  function toSignIn() {
    forget();
    window.location.assign(signInUrl());
  }

  function exclusively(work) {
    return navigator.locks ? navigator.locks.request(LOCK, work) : work();
  }

  let renewing = null;
  let timer = null;

  // Renew the access token; true when the session is good. `force` renews even when
  // the remembered expiry looks far (after a 401, the remembered expiry is wrong).
  function renew(force) {
    if (!renewing) {
      renewing = exclusively(async () => {
        const current = known();
        if (!force && current && current.at - Date.now() > current.lifetime / 2) {
          return true; // another tab renewed it meanwhile
        }
        const response = await fetch(`${api}/auth/refresh`, {
          method: "POST",
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (!response.ok) return false;
        remember((await response.json()).expires_in);
        return true;
      }).finally(() => { renewing = null; });
    }
    return renewing;
  }

  function schedule() {
    window.clearTimeout(timer);
    const current = known();
    if (!current) return;
    const wait = current.at - Date.now() - margin(current.lifetime);
    timer = window.setTimeout(async () => {
      if (!(await renew(false))) toSignIn();
    }, Math.max(wait, 250));
  }

  // A fetch with the session: same-origin cookies, the CSRF header on writes, and one
  // renewal and retry after a 401 (the sign-in page when that fails).
  async function request(url, options = {}) {
    const method = (options.method || "GET").toUpperCase();
    const send = () => {
      const headers = { Accept: "application/json", ...(options.headers || {}) };
      if (!SAFE.has(method)) headers["X-CSRF-Token"] = csrfToken();
      return fetch(url, { ...options, method, headers, credentials: "same-origin" });
    };
    let response = await send();
    if (response.status === 401) {
      if (!(await renew(true))) {
        toSignIn();
        throw new Error("signed out");
      }
      response = await send();
    }
    return response;
  }

  // Before a page asks for data: false without a session (no CSRF cookie: it lives as
  // long as the refresh cookie), else renew now unless the remembered token has time left.
  async function start() {
    if (!csrfToken()) return false;
    const current = known();
    if (current && current.at - Date.now() > margin(current.lifetime)) {
      schedule();
      return true;
    }
    return renew(true);
  }

  async function signIn(email, password) {
    const response = await fetch(`${api}/auth/login`, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ email, password }),
    });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      throw new Error(typeof body.detail === "string" ? body.detail : `sign-in failed (${response.status})`);
    }
    remember(body.expires_in);
  }

  async function signOut() {
    try {
      await request(`${api}/auth/logout`, { method: "POST" });
    } finally {
      toSignIn();
    }
  }

  window.apertureSession = { api, request, renew, start, signIn, signOut, signInUrl, toSignIn };
})();
