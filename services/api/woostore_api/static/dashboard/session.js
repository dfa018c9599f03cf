// Signing in and out: the sign-in form, the session cookie (resumed on load), who is signed
// in, and everything signing out clears.

import { API_BASE, ApiError, api, beginSession, endSession, isAdmin, whenSessionExpires } from './api.js';
import { resetActions } from './actions.js';
import { clearAlerts } from './alerts.js';
import { resetCards } from './cards.js';
import { dismissConfirm } from './confirm.js';
import { resetKeys } from './keys.js';
import { resetListing, updateListChrome } from './listing.js';
import { clearNotices } from './notices.js';
import { clearStores } from './stores.js';
import { connect, disconnect } from './stream.js';
import { loadTenants, resetTenants } from './tenants.js';
import { readEstimates, resetTimeline } from './timeline.js';
import { resetViews, setViewAllowed, showView } from './views.js';

const els = {
  signinView: byId('signin-view'),
  signinForm: byId('signin-form'),
  signinToken: byId('signin-token'),
  signinMessage: byId('signin-message'),
  appView: byId('app-view'),
  signout: byId('signout'),
  whoami: byId('whoami'),
};

function byId(id) {
  return document.getElementById(id);
}

// The browser's other tabs of the dashboard share its session cookie: each tells the others
// when it signs in or out, so none goes on showing a session the cookie no longer holds (a
// tab signed out elsewhere stayed "Live", then blamed an expired key; a user's review).
// A browser without BroadcastChannel (Safari before 15.4) runs the page without it.
const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('woostore-session') : null;

export function initSession() {
  els.signinForm.addEventListener('submit', onSignInSubmit);
  els.signout.addEventListener('click', signOutOfServer);
  whenSessionExpires(() =>
    signOut('Your session has expired or your key was revoked. Please sign in again.'),
  );
  tabs?.addEventListener('message', ({ data }) => {
    if (data === 'signed-out') signOut('You signed out in another tab.');
    if (data === 'signed-in') {
      signOut();
      resumeSession(); // as whoever signed in there
    }
  });
  resumeSession();
}

function showSignIn(message = '') {
  els.appView.hidden = true;
  els.signinView.hidden = false;
  els.signinMessage.textContent = message;
  els.signinToken.value = '';
  els.signinToken.focus();
}

async function onSignInSubmit(event) {
  event.preventDefault();
  const token = els.signinToken.value.trim();
  els.signinToken.value = '';
  if (!token) {
    els.signinMessage.textContent = 'Enter an API key or the admin token.';
    return;
  }
  let response;
  try {
    response = await fetch(`${API_BASE}/session`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
    });
  } catch {
    els.signinMessage.textContent = 'Could not reach the WooStore API. Try again.';
    return;
  }
  if (!response.ok) {
    els.signinMessage.textContent = response.status === 401
      ? 'That key was not accepted. Check it and try again.'
      : `Sign-in failed (${response.status}). Try again.`;
    els.signinToken.focus();
    return;
  }
  clearAlerts();
  startSession(await response.json(), { focus: true });
  tabs?.postMessage('signed-in');
}

// `focus`: signed in by the form, whose button is now hidden: focus goes to the view.
function startSession(whoami, { focus = false } = {}) {
  beginSession(whoami);
  els.whoami.textContent = `${whoami.tenant_name} · ${whoami.role} · ${whoami.actor}`;
  setViewAllowed('tenants', isAdmin());
  els.signinView.hidden = true;
  els.appView.hidden = false;
  updateListChrome(); // "Loading stores…"
  showView({ focus });
  loadTenants();
  readEstimates();
  connect();
}

// The server ends the session (a copy of its cookie opens nothing after) and deletes the
// cookie. Should it not (refused, its database away, out of reach), the page says so rather
// than "signed out": the session may still work, in this browser or wherever its cookie is.
async function signOutOfServer() {
  els.signout.disabled = true;
  els.signout.textContent = 'Signing out…';
  let said = 'You have signed out.';
  let cookieDeleted = true;
  try {
    await api('DELETE', '/session');
  } catch (err) {
    const why = err instanceof ApiError ? err.message.replace(/\.$/, '') : 'an error in this page';
    if (err.problem?.status === 503) {
      // The API deleted the cookie all the same: this browser is signed out, the session not.
      said = `This browser is signed out, but the server could not end the session (${why}).`;
    } else {
      said = `The server did not end the session (${why}): this browser is still signed in. Reload the page to sign out again.`;
      cookieDeleted = false;
    }
  } finally {
    els.signout.disabled = false;
    els.signout.textContent = 'Sign out';
  }
  signOut(said);
  if (cookieDeleted) tabs?.postMessage('signed-out');
}

function signOut(message = '') {
  endSession();
  disconnect();
  clearStores();
  dismissConfirm();
  resetActions();
  resetCards();
  resetListing();
  resetTimeline();
  resetTenants();
  resetKeys();
  resetViews();
  clearAlerts();
  clearNotices();
  els.whoami.textContent = '';
  showSignIn(message);
}

// A cookie from an earlier visit may still be valid: ask who it belongs to.
async function resumeSession() {
  try {
    const response = await fetch(`${API_BASE}/session`, {
      headers: { Accept: 'application/json' },
      credentials: 'same-origin',
      cache: 'no-store',
    });
    if (response.ok) {
      startSession(await response.json());
      return;
    }
  } catch {
    // unreachable API: the sign-in form says so when it is used
  }
  showSignIn();
}
