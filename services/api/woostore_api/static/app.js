// WooStore dashboard: plain ES module, no dependencies, no polling.

// The key is sent once, to POST /session; from then on an HttpOnly cookie authenticates,
// so no script (nor an injected one) can read a credential from this page.
const API_BASE = '/api/v1';
const RETRY_DELAYS_MS = [1000, 2000, 5000];
// Deleting a queued or provisioning store cancels it; the button says so.
const DELETABLE = new Set(['queued', 'provisioning', 'ready', 'failed']);
const CANCELS = new Set(['queued', 'provisioning']);
const SHOWS_PROGRESS = new Set(['queued', 'provisioning', 'updating', 'deleting']);
const EVENT = {
  requested: 'io.woostore.store.requested',
  progress: 'io.woostore.store.progress',
  ready: 'io.woostore.store.ready',
  failed: 'io.woostore.store.failed',
  deleteRequested: 'io.woostore.store.delete_requested',
  deleted: 'io.woostore.store.deleted',
  changeRequested: 'io.woostore.store.change_requested',
  changed: 'io.woostore.store.changed',
  changeFailed: 'io.woostore.store.change_failed',
};
const CHANGE_NAMES = { upgrade: 'Upgrade', rollback: 'Rollback' };

const state = {
  signedIn: false,
  whoami: null,
  session: 0, // bumped on sign-out so late responses from the old session are dropped
  platform: null,
  stores: new Map(), // id -> Store
  storesLoaded: false,
  lastEventId: null,
  stream: null,
  retryAttempt: 0,
  retryTimer: null,
  awaiting: new Map(), // id -> events received while GET /stores/{id} is in flight
  deleteTarget: null,
};

const cards = new Map(); // id -> card view (see createCard)

const els = {
  alerts: byId('alerts'),
  signinView: byId('signin-view'),
  signinForm: byId('signin-form'),
  signinToken: byId('signin-token'),
  signinMessage: byId('signin-message'),
  appView: byId('app-view'),
  banner: byId('simulated-banner'),
  platformInfo: byId('platform-info'),
  connection: byId('connection-state'),
  signout: byId('signout'),
  whoami: byId('whoami'),
  createForm: byId('create-form'),
  createName: byId('create-name'),
  createSubmit: byId('create-submit'),
  createError: byId('create-error'),
  createStatus: byId('create-status'),
  storeList: byId('store-list'),
  storesEmpty: byId('stores-empty'),
  storesLoading: byId('stores-loading'),
  deletedSection: byId('deleted-section'),
  deletedList: byId('deleted-list'),
  deletedCount: byId('deleted-count'),
  confirmDialog: byId('confirm-dialog'),
  confirmName: byId('confirm-name'),
  cardTemplate: byId('store-card-template'),
};

function byId(id) {
  return document.getElementById(id);
}

/* ---------- API ---------- */

class ApiError extends Error {
  constructor(problem) {
    super(formatProblem(problem));
    this.problem = problem;
  }
}

// Thrown when the session ended (401 or sign-out) so callers just stop.
class SessionEnded extends Error {}

async function api(method, path, body) {
  const session = state.session;
  const headers = { Accept: 'application/json, application/problem+json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';

  let response;
  try {
    response = await fetch(API_BASE + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
      credentials: 'same-origin',
    });
  } catch {
    throw new ApiError({ title: 'Network error', detail: 'Could not reach the WooStore API.' });
  }
  if (session !== state.session) throw new SessionEnded();
  if (response.status === 401) {
    signOut('Your session has expired or your key was revoked. Please sign in again.');
    throw new SessionEnded();
  }
  const payload = await readJson(response);
  if (!response.ok) throw new ApiError(toProblem(response, payload));
  return payload;
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function toProblem(response, payload) {
  if (payload && typeof payload === 'object' && (payload.title || payload.detail)) return payload;
  return { status: response.status, title: `Request failed (${response.status})`, detail: response.statusText };
}

function formatProblem(problem) {
  const title = problem?.title || 'Error';
  let detail = problem?.detail;
  // Tolerate validation lists (FastAPI-style `detail: [{msg}]`) in case the backend leaks them.
  if (Array.isArray(detail)) detail = detail.map((d) => d?.msg ?? String(d)).join('; ');
  const extra = Array.isArray(problem?.errors)
    ? problem.errors.map((e) => e?.detail ?? e?.message ?? e?.msg).filter(Boolean)
    : [];
  const parts = [detail, ...extra].filter(Boolean);
  return parts.length ? `${title}: ${parts.join('; ')}` : title;
}

function handleError(err) {
  if (err instanceof SessionEnded) return;
  if (err instanceof ApiError) {
    showAlert(err.message);
  } else {
    console.error(err);
    showAlert(`Unexpected error: ${err?.message ?? err}`);
  }
}

/* ---------- Alerts ---------- */

function showAlert(message) {
  const existing = [...els.alerts.children].some((el) => el.dataset.message === message);
  if (existing) return;
  const alert = document.createElement('div');
  alert.className = 'alert';
  alert.dataset.message = message;
  alert.dataset.testid = 'alert';

  const text = document.createElement('p');
  text.textContent = message;

  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'alert-dismiss';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.dataset.testid = 'alert-dismiss';
  dismiss.addEventListener('click', () => alert.remove());

  alert.append(text, dismiss);
  els.alerts.append(alert);
}

function clearAlerts() {
  els.alerts.replaceChildren();
}

/* ---------- Sign-in / session ---------- */

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
  startSession(await response.json());
}

function startSession(whoami) {
  state.signedIn = true;
  state.whoami = whoami;
  els.whoami.textContent = `${whoami.tenant_name} · ${whoami.role} · ${whoami.actor}`;
  els.signinView.hidden = true;
  els.appView.hidden = false;
  els.storesLoading.hidden = false;
  connect();
}

// The server forgets nothing on sign-out (the cookie is signed, not stored); deleting the
// cookie is what ends the session in this browser.
function signOutOfServer() {
  fetch(`${API_BASE}/session`, { method: 'DELETE', credentials: 'same-origin' }).catch(() => {});
  signOut('You have signed out.');
}

function signOut(message = '') {
  state.session += 1;
  closeStream();
  clearTimeout(state.retryTimer);
  Object.assign(state, {
    signedIn: false,
    whoami: null,
    platform: null,
    storesLoaded: false,
    lastEventId: null,
    retryAttempt: 0,
    retryTimer: null,
    deleteTarget: null,
  });
  state.stores.clear();
  state.awaiting.clear();
  cards.clear();
  els.storeList.replaceChildren();
  els.deletedList.replaceChildren();
  if (els.confirmDialog.open) els.confirmDialog.close();
  clearAlerts();
  renderPlatform();
  updateListChrome();
  setConnection('connecting');
  showSignIn(message);
}

/* ---------- Platform + live stream ---------- */

function renderPlatform() {
  const platform = state.platform;
  els.banner.hidden = platform?.cluster !== 'simulated';
  els.platformInfo.textContent = platform
    ? [platform.cluster && `Cluster: ${platform.cluster}`, platform.base_domain, platform.version && `v${platform.version}`]
        .filter(Boolean)
        .join(' · ')
    : '';
}

const CONNECTION_LABELS = { connecting: 'Connecting…', live: 'Live', reconnecting: 'Reconnecting…' };

function setConnection(status) {
  els.connection.dataset.state = status;
  els.connection.textContent = CONNECTION_LABELS[status];
}

// Startup and manual reconnects share this path: platform -> ticket -> EventSource.
async function connect() {
  clearTimeout(state.retryTimer);
  setConnection(state.retryAttempt > 0 ? 'reconnecting' : 'connecting');
  try {
    if (!state.platform) {
      state.platform = await api('GET', '/platform');
      renderPlatform();
    }
    const { ticket } = await api('POST', '/events/ticket');
    openStream(ticket);
  } catch (err) {
    if (err instanceof SessionEnded) return;
    if (state.retryAttempt === 0) handleError(err); // one alert per outage, not one per retry
    scheduleReconnect();
  }
}

function openStream(ticket) {
  closeStream();
  const url = new URL(state.platform.events_url, location.href);
  url.searchParams.set('ticket', ticket);
  if (state.lastEventId !== null) url.searchParams.set('last_event_id', state.lastEventId);

  const stream = new EventSource(url);
  stream.onopen = () => onStreamOpen(stream);
  stream.onmessage = onStreamMessage;
  stream.onerror = () => onStreamError(stream);
  state.stream = stream;
}

function closeStream() {
  if (!state.stream) return;
  state.stream.onopen = state.stream.onmessage = state.stream.onerror = null;
  state.stream.close();
  state.stream = null;
}

function onStreamOpen(stream) {
  if (stream !== state.stream) return;
  state.retryAttempt = 0;
  setConnection('live');
  // Loaded after the stream is open so no change can slip between snapshot and stream.
  loadStores();
}

function onStreamError(stream) {
  if (stream !== state.stream) return;
  // A ticket opens one stream, once (and expires within a minute): the browser's own retry
  // would present the spent ticket again. Reconnect with a fresh one instead.
  closeStream();
  scheduleReconnect();
}

function scheduleReconnect() {
  const delay = RETRY_DELAYS_MS[Math.min(state.retryAttempt, RETRY_DELAYS_MS.length - 1)];
  state.retryAttempt += 1;
  setConnection('reconnecting');
  clearTimeout(state.retryTimer);
  state.retryTimer = setTimeout(connect, delay);
}

function onStreamMessage(message) {
  if (message.lastEventId) state.lastEventId = message.lastEventId;
  let event;
  try {
    event = JSON.parse(message.data);
  } catch {
    console.warn('Ignoring malformed event', message.data);
    return;
  }
  if (event && typeof event.subject === 'string') receiveEvent(event);
}

function receiveEvent(event) {
  const id = event.subject;
  appendActivity(id, event);
  const store = state.stores.get(id);
  if (store) {
    if (applyEvent(store, event)) renderStore(id);
  } else if (event.type === EVENT.requested && event.data?.store) {
    upsertStore(event.data.store);
  } else {
    fetchUnknownStore(id, event);
  }
}

async function fetchUnknownStore(id, event) {
  const queued = state.awaiting.get(id);
  if (queued) {
    queued.push(event);
    return;
  }
  const events = [event];
  state.awaiting.set(id, events);
  try {
    const snapshot = await api('GET', `/stores/${encodeURIComponent(id)}`);
    upsertStore(snapshot);
    const store = state.stores.get(id);
    // Events that raced the fetch; the updated_at check drops those already included.
    if (store && events.map((e) => applyEvent(store, e)).some(Boolean)) renderStore(id);
  } catch (err) {
    if (!(err instanceof ApiError && err.problem?.status === 404)) handleError(err);
  } finally {
    if (state.awaiting.get(id) === events) state.awaiting.delete(id);
  }
}

/* ---------- Store state ---------- */

async function loadStores() {
  try {
    const { items = [] } = (await api('GET', '/stores')) ?? {};
    items.forEach(upsertStore);
    state.storesLoaded = true;
    updateListChrome();
  } catch (err) {
    handleError(err);
  }
}

// Replace local state with a REST snapshot unless live events already moved it further.
function upsertStore(snapshot) {
  if (!snapshot?.id) return;
  const { events, ...store } = snapshot;
  const current = state.stores.get(store.id);
  if (current && isBefore(store.updated_at, current.updated_at)) return;
  state.stores.set(store.id, store);
  renderStore(store.id);
}

function applyEvent(store, event) {
  if (isBefore(event.time, store.updated_at)) return false;
  const data = event.data ?? {};
  switch (event.type) {
    case EVENT.requested:
      Object.assign(store, data.store);
      break;
    case EVENT.progress:
      Object.assign(store, {
        status: data.status ?? store.status,
        step: data.step ?? null,
        progress: data.progress ?? store.progress,
      });
      break;
    case EVENT.ready:
      Object.assign(store, {
        status: 'ready',
        storefront_url: data.storefront_url ?? store.storefront_url,
        admin_url: data.admin_url ?? store.admin_url,
        chart_version: data.chart_version ?? store.chart_version,
        release_revision: data.revision ?? store.release_revision,
        step: null,
        progress: 1,
        failure_reason: null,
        ready_at: event.time ?? store.ready_at,
      });
      break;
    case EVENT.failed:
      Object.assign(store, { status: 'failed', failure_reason: data.reason ?? null, step: data.step ?? store.step });
      break;
    case EVENT.deleteRequested:
      Object.assign(store, { status: 'deleting', step: null, progress: 0 });
      break;
    case EVENT.deleted:
      Object.assign(store, { status: 'deleted', step: null, deleted_at: event.time ?? store.deleted_at });
      break;
    case EVENT.changeRequested:
      Object.assign(store, { status: 'updating', change: data.change, step: null, progress: 0, failure_reason: null });
      break;
    case EVENT.changed:
      Object.assign(store, {
        status: 'ready', change: null, step: null, progress: 1,
        chart_version: data.chart_version ?? store.chart_version,
        release_revision: data.revision ?? store.release_revision,
      });
      break;
    case EVENT.changeFailed:
      Object.assign(store, { status: 'ready', change: null, step: null, progress: 1, failure_reason: data.reason ?? null });
      break;
    default:
      return false;
  }
  if (event.time) store.updated_at = event.time;
  return true;
}

function isBefore(a, b) {
  const ta = Date.parse(a);
  const tb = Date.parse(b);
  return Number.isFinite(ta) && Number.isFinite(tb) && ta < tb;
}

function isNewerStore(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  return ta !== tb ? ta > tb : String(a.id) > String(b.id);
}

/* ---------- Create / delete ---------- */

async function onCreateSubmit(event) {
  event.preventDefault();
  const name = els.createName.value.trim();
  const length = [...name].length;
  if (length < 1 || length > 50) {
    setCreateError(length ? 'Store name must be at most 50 characters.' : 'Enter a store name (1–50 characters).');
    els.createName.focus();
    return;
  }
  setCreateError('');
  els.createStatus.textContent = '';
  setCreateBusy(true);
  try {
    const store = await api('POST', '/stores', { name, type: 'woocommerce' });
    upsertStore(store);
    updateListChrome();
    els.createName.value = '';
    els.createStatus.textContent = `Store “${store?.name ?? name}” requested.`;
  } catch (err) {
    if (err instanceof ApiError && [400, 409, 422].includes(err.problem?.status)) {
      setCreateError(err.message);
    } else {
      handleError(err);
    }
  } finally {
    setCreateBusy(false);
  }
}

function setCreateBusy(busy) {
  els.createSubmit.disabled = busy;
  els.createName.readOnly = busy;
  els.createSubmit.textContent = busy ? 'Creating…' : 'Create';
}

function setCreateError(message) {
  els.createError.textContent = message;
  els.createError.hidden = !message;
  if (message) els.createName.setAttribute('aria-invalid', 'true');
  else els.createName.removeAttribute('aria-invalid');
}

function askToDelete(id) {
  const store = state.stores.get(id);
  if (!store || !DELETABLE.has(store.status)) return;
  state.deleteTarget = id;
  els.confirmName.textContent = store.name;
  els.confirmDialog.returnValue = '';
  els.confirmDialog.showModal();
}

function onConfirmClose() {
  const id = state.deleteTarget;
  state.deleteTarget = null;
  if (els.confirmDialog.returnValue === 'confirm' && id) deleteStore(id);
}

async function deleteStore(id) {
  const view = cards.get(id);
  if (view) view.deleting = true;
  renderStore(id);
  try {
    upsertStore(await api('DELETE', `/stores/${encodeURIComponent(id)}`));
  } catch (err) {
    handleError(err);
  } finally {
    if (view) view.deleting = false;
    if (state.stores.has(id)) renderStore(id);
  }
}

// Upgrade or roll back: the store shows `updating` with progress, then ready again.
async function changeStore(id, change) {
  const view = cards.get(id);
  if (!view) return;
  view.els.upgradeButton.disabled = view.els.rollbackButton.disabled = true;
  try {
    upsertStore(await api('POST', `/stores/${encodeURIComponent(id)}/${change}`));
  } catch (err) {
    handleError(err);
  } finally {
    view.els.upgradeButton.disabled = view.els.rollbackButton.disabled = false;
  }
}

/* ---------- Credentials ---------- */

async function toggleCredentials(id) {
  const view = cards.get(id);
  if (!view) return;
  if (!view.els.credentials.hidden) {
    hideCredentials(view);
    return;
  }
  const button = view.els.showCredentials;
  button.disabled = true;
  button.textContent = 'Loading…';
  try {
    const { username, password } = await api('GET', `/stores/${encodeURIComponent(id)}/credentials`);
    view.els.username.textContent = username ?? '';
    view.els.password.textContent = password ?? '';
    view.els.credentials.hidden = false;
    button.setAttribute('aria-expanded', 'true');
  } catch (err) {
    handleError(err);
  } finally {
    button.disabled = false;
    button.textContent = view.els.credentials.hidden ? 'Show credentials' : 'Hide credentials';
  }
}

function hideCredentials(view) {
  view.els.credentials.hidden = true;
  view.els.username.textContent = '';
  view.els.password.textContent = '';
  view.els.showCredentials.textContent = 'Show credentials';
  view.els.showCredentials.setAttribute('aria-expanded', 'false');
}

async function copyPassword(view) {
  const password = view.els.password.textContent;
  const button = view.els.copy;
  try {
    await navigator.clipboard.writeText(password);
    button.textContent = 'Copied';
  } catch {
    // Clipboard API needs a secure context; fall back to selecting the text for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(view.els.password);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    button.textContent = 'Press Ctrl+C';
  }
  setTimeout(() => (button.textContent = 'Copy'), 2000);
}

/* ---------- Activity ---------- */

async function loadActivity(id) {
  const view = cards.get(id);
  if (!view) return;
  view.activityIds = new Set();
  view.els.activityList.replaceChildren();
  view.els.activityStatus.textContent = 'Loading…';
  try {
    const { events = [] } = (await api('GET', `/stores/${encodeURIComponent(id)}`)) ?? {};
    if (!view.els.activity.open) return;
    view.els.activityList.replaceChildren();
    view.activityIds = new Set();
    events.forEach((event) => addActivityItem(view, event));
    view.els.activityList.scrollTop = view.els.activityList.scrollHeight;
    view.els.activityStatus.textContent = events.length ? '' : 'No activity yet.';
  } catch (err) {
    view.els.activityStatus.textContent = 'Could not load activity.';
    handleError(err);
  }
}

function appendActivity(id, event) {
  const view = cards.get(id);
  if (!view?.els.activity.open || !view.activityIds) return;
  const list = view.els.activityList;
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 8;
  addActivityItem(view, event);
  view.els.activityStatus.textContent = '';
  if (atBottom) list.scrollTop = list.scrollHeight; // follow new entries unless the user scrolled up
}

function addActivityItem(view, event) {
  const key = String(event.id);
  if (view.activityIds.has(key)) return;
  view.activityIds.add(key);

  const item = document.createElement('li');
  const time = document.createElement('time');
  setTime(time, event.time, shortTimeFormat);
  const text = document.createElement('span');
  text.textContent = describeEvent(event);
  item.append(time, text);
  view.els.activityList.append(item);
}

function describeEvent({ type, data = {} }) {
  switch (type) {
    case EVENT.requested:
      return 'Store requested';
    case EVENT.progress:
      return data?.step ? stepText(data.step) : `Progress ${Math.round((data?.progress ?? 0) * 100)}%`;
    case EVENT.ready:
      return 'Store is ready';
    case EVENT.failed:
      return `Failed: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.deleteRequested:
      return 'Deletion requested';
    case EVENT.deleted:
      return 'Store deleted';
    case EVENT.changeRequested:
      return `${CHANGE_NAMES[data?.change] ?? 'Change'} requested`;
    case EVENT.changed:
      return `${CHANGE_NAMES[data?.change] ?? 'Change'} done: chart ${data?.chart_version ?? '?'}`;
    case EVENT.changeFailed:
      return `${CHANGE_NAMES[data?.change] ?? 'Change'} failed: ${data?.reason ?? 'unknown reason'}`;
    default:
      return String(type ?? 'event');
  }
}

/* ---------- Rendering ---------- */

function stepText(step) {
  return `Step ${step.index} of ${step.total} — ${step.title ?? step.name ?? ''}`.trim();
}

function progressText(store) {
  if (store.step) return stepText(store.step);
  if (store.status === 'queued') {
    return store.queue_position
      ? `Queued — position ${store.queue_position} in line`
      : 'Queued — waiting to start';
  }
  if (store.status === 'deleting') return 'Deleting…';
  if (store.status === 'updating') return `${CHANGE_NAMES[store.change] ?? 'Change'} starting…`;
  return 'Starting…';
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
const shortTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

function setTime(el, iso, format = timeFormat) {
  const ms = Date.parse(iso);
  if (!Number.isFinite(ms)) {
    el.textContent = '—';
    el.removeAttribute('datetime');
    return;
  }
  el.dateTime = iso;
  el.title = iso;
  el.textContent = format.format(ms);
}

function safeUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
}

function createCard(id) {
  const root = els.cardTemplate.content.firstElementChild.cloneNode(true);
  const q = (selector) => root.querySelector(selector);
  const view = {
    root,
    deleting: false,
    activityIds: null,
    els: {
      name: q('[data-role="name"]'),
      simulated: q('[data-role="simulated"]'),
      status: q('[data-testid="store-status"]'),
      slug: q('[data-role="slug"]'),
      progressBlock: q('[data-role="progress-block"]'),
      progress: q('[data-testid="store-progress"]'),
      step: q('[data-testid="store-step"]'),
      failure: q('[data-role="failure"]'),
      created: q('[data-role="created"]'),
      readyRow: q('[data-role="ready-row"]'),
      chartRow: q('[data-role="chart-row"]'),
      chart: q('[data-testid="store-chart"]'),
      upgradeButton: q('[data-testid="upgrade-button"]'),
      rollbackButton: q('[data-testid="rollback-button"]'),
      ready: q('[data-role="ready"]'),
      deletedRow: q('[data-role="deleted-row"]'),
      deleted: q('[data-role="deleted"]'),
      links: q('[data-role="links"]'),
      storefront: q('[data-role="storefront"]'),
      admin: q('[data-role="admin"]'),
      actions: q('[data-role="actions"]'),
      showCredentials: q('[data-testid="show-credentials"]'),
      deleteButton: q('[data-testid="delete-button"]'),
      credentials: q('[data-role="credentials"]'),
      username: q('[data-role="username"]'),
      password: q('[data-testid="credentials-password"]'),
      copy: q('[data-role="copy"]'),
      activity: q('[data-role="activity"]'),
      activityStatus: q('[data-role="activity-status"]'),
      activityList: q('[data-role="activity-list"]'),
    },
  };
  root.dataset.storeId = id;

  const headingId = `store-${id}-name`;
  view.els.name.id = headingId;
  root.querySelector('article').setAttribute('aria-labelledby', headingId);
  view.els.progress.setAttribute('aria-labelledby', `store-${id}-step`);
  view.els.step.id = `store-${id}-step`;

  view.els.showCredentials.addEventListener('click', () => toggleCredentials(id));
  view.els.deleteButton.addEventListener('click', () => askToDelete(id));
  view.els.upgradeButton.addEventListener('click', () => changeStore(id, 'upgrade'));
  view.els.rollbackButton.addEventListener('click', () => changeStore(id, 'rollback'));
  view.els.copy.addEventListener('click', () => copyPassword(view));
  view.els.activity.addEventListener('toggle', () => {
    if (view.els.activity.open) loadActivity(id);
  });
  return view;
}

function renderStore(id) {
  const store = state.stores.get(id);
  if (!store) return;
  let view = cards.get(id);
  if (!view) {
    view = createCard(id);
    cards.set(id, view);
  }
  renderCard(view, store);
  placeCard(view, store);
  updateListChrome();
}

function renderCard(view, store) {
  const { els: e, root } = view;
  const status = store.status ?? 'queued';
  root.dataset.status = status;
  root.classList.toggle('is-deleted', status === 'deleted');

  e.name.textContent = store.name ?? '';
  e.slug.textContent = store.slug ?? '';
  e.simulated.hidden = !store.simulated;
  e.status.textContent = status;
  e.status.dataset.status = status;

  e.progressBlock.hidden = !SHOWS_PROGRESS.has(status);
  if (SHOWS_PROGRESS.has(status)) {
    const known = store.step || store.progress > 0;
    if (known) e.progress.value = clamp(store.progress ?? 0);
    else e.progress.removeAttribute('value'); // indeterminate
    e.step.textContent = progressText(store);
  }

  // A ready store with a reason is one whose last upgrade or rollback failed.
  e.failure.hidden = !(status === 'failed' || (status === 'ready' && store.failure_reason));
  if (status === 'failed') {
    const during = store.step ? ` (during ${stepText(store.step)})` : '';
    e.failure.textContent = `Failed: ${store.failure_reason || 'unknown reason'}${during}`;
  } else if (status === 'ready' && store.failure_reason) {
    e.failure.textContent = `Last change failed: ${store.failure_reason}`;
  }

  setTime(e.created, store.created_at);
  e.readyRow.hidden = !store.ready_at;
  if (store.ready_at) setTime(e.ready, store.ready_at);
  e.deletedRow.hidden = !store.deleted_at;
  if (store.deleted_at) setTime(e.deleted, store.deleted_at);

  const storefront = status === 'ready' ? safeUrl(store.storefront_url) : null;
  const admin = status === 'ready' ? safeUrl(store.admin_url) : null;
  setLink(e.storefront, storefront);
  setLink(e.admin, admin);
  e.links.hidden = !storefront && !admin;

  e.actions.hidden = status === 'deleted';
  e.showCredentials.hidden = status !== 'ready';
  e.upgradeButton.hidden = e.rollbackButton.hidden = status !== 'ready';
  e.chartRow.hidden = !store.chart_version;
  if (store.chart_version) e.chart.textContent = `${store.chart_version} (revision ${store.release_revision ?? '?'})`;
  if (status !== 'ready' && !e.credentials.hidden) hideCredentials(view);
  const canDelete = DELETABLE.has(status) && !view.deleting;
  e.deleteButton.disabled = !canDelete;
  e.deleteButton.textContent = CANCELS.has(status) ? 'Cancel store' : 'Delete';
  e.deleteButton.title = canDelete ? '' : 'This store is already being deleted';
}

function setLink(anchor, href) {
  anchor.hidden = !href;
  if (href) anchor.href = href;
  else anchor.removeAttribute('href');
}

function clamp(value) {
  return Math.min(1, Math.max(0, Number(value) || 0));
}

// Moves a card only when it is out of place, so focus and open <details> survive updates.
function placeCard(view, store) {
  const list = store.status === 'deleted' ? els.deletedList : els.storeList;
  const next = [...list.children].find((el) => {
    if (el === view.root) return false;
    const other = state.stores.get(el.dataset.storeId);
    return !other || isNewerStore(store, other);
  });
  const inPlace = view.root.parentElement === list && view.root.nextElementSibling === (next ?? null);
  if (!inPlace) list.insertBefore(view.root, next ?? null);
}

function updateListChrome() {
  const active = els.storeList.children.length;
  const deleted = els.deletedList.children.length;
  els.storesLoading.hidden = state.storesLoaded || active > 0 || !state.signedIn;
  els.storesEmpty.hidden = !state.storesLoaded || active > 0;
  els.deletedSection.hidden = deleted === 0;
  els.deletedCount.textContent = String(deleted);
}

/* ---------- Boot ---------- */

function init() {
  els.signinForm.addEventListener('submit', onSignInSubmit);
  els.signout.addEventListener('click', signOutOfServer);
  els.createForm.addEventListener('submit', onCreateSubmit);
  els.createName.addEventListener('input', () => setCreateError(''));
  els.confirmDialog.addEventListener('close', onConfirmClose);

  resumeSession();
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

init();
