// The store list: a card per store the page has read, newest first, each showing its store's
// state and its steps (timeline.js), offering the actions the API lists for it
// (`store.actions`), and the card's own credentials panel. What the buttons ask of the API is
// actions.js's; the list's controls and states are listing.js's.

import { api } from './api.js';
import { handleError } from './alerts.js';
import { loadActivity, appendActivity } from './activity.js';
import { backUp, followBackups, loadBackups, showBackupButtons } from './backups.js';
import { copyText } from './copy.js';
import { CHANGE_NAMES, DELETION_STARTS, setTime, settingsText, stepText } from './format.js';
import { onStoreChange, onStoreEvent, stores } from './stores.js';
import { backfill, onTimelineChange, renderTimeline } from './timeline.js';

// Deleting a queued or provisioning store cancels it; the button says so.
const CANCELS = new Set(['queued', 'provisioning']);
const SHOWS_PROGRESS = new Set([
  'queued', 'provisioning', 'updating', 'backing_up', 'restoring', 'deleting',
]);
const RUNS_STEPS = new Set(['provisioning', 'updating', 'backing_up', 'restoring', 'deleting']);

const els = {
  storeList: byId('store-list'),
  cardTemplate: byId('store-card-template'),
};

const cards = new Map(); // id -> card view (see createCard)
let ask = { delete: () => {}, change: () => {}, settings: async () => {} };
let shippedChart = null; // the store chart an upgrade moves a store to, once the platform says
let tenantNames = new Map(); // an admin's, of several tenants: id -> name as the cards show it

function byId(id) {
  return document.getElementById(id);
}

// `handlers.delete(id)` and `handlers.change(id, 'upgrade' | 'rollback')`: the buttons' requests.
export function initCards(handlers) {
  ask = handlers;
  onStoreChange((id) => (id === null ? dropUnlisted() : renderStore(id)));
  onStoreEvent((id, event) => {
    const view = cards.get(id);
    if (!view) return;
    appendActivity(view, event);
    followBackups(view, id, event);
  });
  onTimelineChange((id) => {
    const view = cards.get(id);
    if (view && stores.has(id)) renderTimeline(view.timeline, stores.get(id));
  });
}

// The platform's store chart (null: not known yet). A store already on it is offered its
// chart again, and the button says so: an upgrade there only makes a new revision.
export function setShippedChart(version) {
  shippedChart = version;
  for (const [id, view] of cards) if (stores.has(id)) renderCard(view, stores.get(id));
}

// Whose each store is, for an admin who sees several tenants' (empty: nobody's is shown).
export function setTenantNames(names) {
  tenantNames = names;
  for (const [id, view] of cards) if (stores.has(id)) renderCard(view, stores.get(id));
}

export function resetCards() {
  cards.clear();
  els.storeList.replaceChildren();
}

// The list was read again (another search, filter or page): cards of stores it no longer
// holds go.
function dropUnlisted() {
  for (const [id, view] of cards) {
    if (stores.has(id)) continue;
    view.root.remove();
    cards.delete(id);
  }
}

// While a request of the card's ('delete' or 'change') is under way its buttons are disabled.
export function setBusy(id, request, busy) {
  const view = cards.get(id);
  if (!view) return;
  if (busy) view.busy.add(request);
  else view.busy.delete(request);
  renderStore(id);
}

function createCard(id) {
  const root = els.cardTemplate.content.firstElementChild.cloneNode(true);
  const q = (selector) => root.querySelector(selector);
  const view = {
    root,
    busy: new Set(),
    activityIds: null,
    els: {
      name: q('[data-role="name"]'),
      simulated: q('[data-role="simulated"]'),
      status: q('[data-testid="store-status"]'),
      slug: q('[data-role="slug"]'),
      progressBlock: q('[data-role="progress-block"]'),
      progress: q('[data-testid="store-progress"]'),
      step: q('[data-testid="store-step"]'),
      cause: q('[data-testid="store-cause"]'),
      failure: q('[data-role="failure"]'),
      tenantRow: q('[data-role="tenant-row"]'),
      tenant: q('[data-testid="store-tenant"]'),
      created: q('[data-role="created"]'),
      readyRow: q('[data-role="ready-row"]'),
      originRow: q('[data-role="origin-row"]'),
      origin: q('[data-testid="store-origin"]'),
      chartRow: q('[data-role="chart-row"]'),
      chart: q('[data-testid="store-chart"]'),
      settingsRow: q('[data-role="settings-row"]'),
      settings: q('[data-testid="store-settings"]'),
      upgradeButton: q('[data-testid="upgrade-button"]'),
      rollbackButton: q('[data-testid="rollback-button"]'),
      retryButton: q('[data-testid="retry-button"]'),
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
      backups: q('[data-role="backups"]'),
      backupsStatus: q('[data-role="backups-status"]'),
      backupList: q('[data-role="backup-list"]'),
      backupButton: q('[data-testid="backup-button"]'),
      settingsChange: q('[data-role="settings-change"]'),
      settingsForm: q('[data-role="settings-form"]'),
      settingsError: q('[data-role="settings-error"]'),
      settingsSave: q('[data-testid="settings-save"]'),
    },
    timeline: {
      details: q('[data-role="timeline"]'),
      summary: q('[data-role="timeline-summary"]'),
      list: q('[data-role="timeline-list"]'),
      eta: q('[data-testid="store-eta"]'),
    },
  };
  root.dataset.storeId = id;

  const headingId = `store-${id}-name`;
  view.els.name.id = headingId;
  root.querySelector('article').setAttribute('aria-labelledby', headingId);
  view.els.progress.setAttribute('aria-labelledby', `store-${id}-step`);
  view.els.step.id = `store-${id}-step`;

  view.els.showCredentials.addEventListener('click', () => toggleCredentials(view, id));
  view.els.deleteButton.addEventListener('click', () => ask.delete(id));
  view.els.upgradeButton.addEventListener('click', () => ask.change(id, 'upgrade'));
  view.els.rollbackButton.addEventListener('click', () => ask.change(id, 'rollback'));
  view.els.retryButton.addEventListener('click', () => ask.change(id, 'retry'));
  view.els.copy.addEventListener('click', () => copyText(view.els.password, view.els.copy));
  view.els.activity.addEventListener('toggle', () => {
    if (view.els.activity.open) loadActivity(view, id);
  });
  view.els.backups.addEventListener('toggle', () => {
    if (view.els.backups.open) loadBackups(view, id);
  });
  view.els.backupButton.addEventListener('click', () => backUp(view, id));
  view.els.settingsForm.addEventListener('submit', (event) => {
    event.preventDefault();
    changeSettings(view, id);
  });
  view.timeline.details.addEventListener('toggle', () => {
    if (view.timeline.details.open) backfill(id);
  });
  return view;
}

function renderStore(id) {
  const store = stores.get(id);
  if (!store) return;
  let view = cards.get(id);
  if (!view) {
    view = createCard(id);
    cards.set(id, view);
  }
  renderCard(view, store);
  renderTimeline(view.timeline, store);
  if (RUNS_STEPS.has(store.status)) backfill(id); // met part-way: its first steps are past
  placeCard(view, store);
}

function renderUpgradeButton(button, chartVersion) {
  const again = shippedChart !== null && chartVersion === shippedChart;
  button.textContent = again ? 'Re-apply chart' : shippedChart ? `Upgrade to ${shippedChart}` : 'Upgrade';
  button.title = again
    ? `The store already runs chart ${shippedChart}, the one this platform ships: this applies it again with the platform's values as they are now (a new revision)`
    : `Move the store to the chart this platform ships now${shippedChart ? ` (${shippedChart})` : ''}`;
}

function renderCard(view, store) {
  const { els: e, root } = view;
  const status = store.status ?? 'queued';
  const offers = (action) => Array.isArray(store.actions) && store.actions.includes(action);
  root.dataset.status = status;
  root.classList.toggle('is-deleted', status === 'deleted');

  e.name.textContent = store.name ?? '';
  e.slug.textContent = store.slug ?? '';
  e.simulated.hidden = !store.simulated;
  // A busy store's step says it is deleted next; a ready or failed one's status does.
  const waitsToGo = deletedNext(store) && !SHOWS_PROGRESS.has(status);
  e.status.textContent = status.replaceAll('_', ' ') + (waitsToGo ? ' · to be deleted' : '');
  e.status.dataset.status = status;

  // A failed store shows its clean-up until it has finished (cleaned_up_at).
  const cleaning = status === 'failed' && !store.cleaned_up_at;
  e.progressBlock.hidden = !SHOWS_PROGRESS.has(status) && !cleaning;
  if (cleaning) {
    const step = store.cleanup?.step;
    if (step) e.progress.value = clamp(store.cleanup.progress ?? 0);
    else e.progress.removeAttribute('value');
    e.step.textContent = step ? `Cleaning up — ${stepText(step)}` : 'Cleaning up…';
  } else if (SHOWS_PROGRESS.has(status)) {
    const known = store.step || store.progress > 0;
    if (known) e.progress.value = clamp(store.progress ?? 0);
    else e.progress.removeAttribute('value'); // indeterminate
    e.step.textContent = progressText(store) + (deletedNext(store) ? ' — then deleted' : '');
  }
  // Why the step waits on the cluster, in the cluster's own terms made plain.
  const cause = SHOWS_PROGRESS.has(status) ? store.waiting_cause : null;
  e.cause.hidden = !cause;
  e.cause.textContent = cause ?? '';

  const changeFailed = status === 'ready' && store.last_change?.result === 'failed';
  e.failure.hidden = !(status === 'failed' || changeFailed);
  if (status === 'failed') {
    const during = store.step ? ` (during ${stepText(store.step)})` : '';
    e.failure.textContent = `Failed: ${store.failure_reason || 'unknown reason'}${during}`;
  } else if (changeFailed) {
    const name = CHANGE_NAMES[store.last_change.kind] ?? 'Change';
    e.failure.textContent = `Last change failed: ${name}: ${store.last_change.reason ?? 'unknown reason'}`;
  }

  const tenant = tenantNames.get(store.tenant_id);
  e.tenantRow.hidden = !tenant;
  e.tenant.textContent = tenant ?? '';
  setTime(e.created, store.created_at);
  e.readyRow.hidden = !store.ready_at;
  if (store.ready_at) setTime(e.ready, store.ready_at);
  e.originRow.hidden = store.origin === 'cold' && store.ready_in_seconds == null;
  e.origin.textContent = originText(store);
  e.deletedRow.hidden = !store.deleted_at;
  if (store.deleted_at) setTime(e.deleted, store.deleted_at);

  const storefront = status === 'ready' ? safeUrl(store.storefront_url) : null;
  const admin = status === 'ready' ? safeUrl(store.admin_url) : null;
  setLink(e.storefront, storefront);
  setLink(e.admin, admin);
  e.links.hidden = !storefront && !admin;

  e.settingsRow.hidden = !store.settings;
  if (store.settings) e.settings.textContent = settingsText(store.settings);

  e.chartRow.hidden = !store.chart_version;
  if (store.chart_version) e.chart.textContent = `${store.chart_version} (revision ${store.release_revision ?? '?'})`;

  // Which buttons a card has is the API's to say; the API still refuses what its state does not
  // allow (an action may have gone since the page last heard).
  e.actions.hidden = status === 'deleted';
  e.showCredentials.hidden = !offers('credentials');
  if (!offers('credentials') && !e.credentials.hidden) hideCredentials(view);
  e.upgradeButton.hidden = !offers('upgrade');
  renderUpgradeButton(e.upgradeButton, store.chart_version);
  e.rollbackButton.hidden = !offers('rollback');
  e.retryButton.hidden = !offers('retry');
  e.retryButton.title = store.origin === 'backup'
    ? 'Make the store again from the same backup, under the same name and address'
    : 'Make the store again from scratch, under the same name and address';
  // Backups are a live store's: listed while it is ready or backing up, made when offered.
  e.backups.hidden = !['ready', 'backing_up', 'restoring'].includes(status);
  showBackupButtons(view, store);
  e.backupButton.hidden = !offers('backup');
  e.settingsChange.hidden = !offers('settings');
  if (e.settingsChange.hidden) e.settingsChange.open = false;
  for (const field of e.settingsForm.elements) {
    if (field.name) field.placeholder = store.settings?.[field.name] ?? '';
  }
  e.settingsSave.disabled = view.busy.has('change');
  e.upgradeButton.disabled = e.rollbackButton.disabled = e.retryButton.disabled = view.busy.has('change');
  const canDelete = offers('delete') && !view.busy.has('delete');
  e.deleteButton.disabled = !canDelete;
  e.deleteButton.textContent = CANCELS.has(status) ? 'Cancel store' : 'Delete';
  e.deleteButton.title = canDelete || !store.actions ? ''
    : status === 'deleting' || view.busy.has('delete') ? 'This store is already being deleted'
    : deletedNext(store) ? `This store is deleted ${DELETION_STARTS[status] ?? 'as soon as it can be'}`
    : `A store cannot be deleted while it is ${status}`;
}

// The settings filled in; a refusal (nothing to change, a code no standard has) is said under
// the form, and what was typed stays to be mended.
async function changeSettings(view, id) {
  const { settingsForm: form, settingsError: error } = view.els;
  const chosen = {};
  for (const field of form.elements) {
    const value = field.name ? field.value.trim() : '';
    if (value) chosen[field.name] = value;
  }
  const refusal = Object.keys(chosen).length ? await ask.settings(id, chosen) : 'Fill in a setting to change.';
  error.textContent = refusal ?? '';
  error.hidden = !refusal;
  if (!refusal) {
    form.reset();
    view.els.settingsChange.open = false;
  }
}

function originText(store) {
  // A copy names its source (the store resource's from_store, as its requested event's).
  const copied = `A copy of ${store.from_store?.name ?? 'another store'}, from its backup`;
  const source = { pool: 'The warm pool', backup: copied }[store.origin] ?? 'Made from scratch';
  const took = store.ready_in_seconds;
  return took == null ? source : `${source} · ready in ${took.toFixed(1)} s`;
}

// Asked to be deleted while it works, or while a copy of its backup is made: deleted after.
function deletedNext(store) {
  return Boolean(store.delete_requested_at) && store.status !== 'deleting' && store.status !== 'deleted';
}

function progressText(store) {
  if (store.step) return stepText(store.step);
  if (store.status === 'queued' && store.origin === 'pool') return 'Taken from the warm pool — starting';
  if (store.status === 'queued') {
    return store.queue_position
      ? `Queued — position ${store.queue_position} in line`
      : 'Queued — waiting to start';
  }
  if (store.status === 'deleting') return 'Deleting…';
  if (store.status === 'updating') return `${CHANGE_NAMES[store.change] ?? 'Change'} starting…`;
  if (store.status === 'backing_up') return 'Backup starting…';
  if (store.status === 'restoring') return 'Restore starting…';
  return 'Starting…';
}

function safeUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.href : null;
  } catch {
    return null;
  }
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
  const list = els.storeList;
  const next = [...list.children].find((el) => {
    if (el === view.root) return false;
    const other = stores.get(el.dataset.storeId);
    return !other || isNewerStore(store, other);
  });
  const inPlace = view.root.parentElement === list && view.root.nextElementSibling === (next ?? null);
  if (!inPlace) list.insertBefore(view.root, next ?? null);
}

function isNewerStore(a, b) {
  const ta = Date.parse(a.created_at) || 0;
  const tb = Date.parse(b.created_at) || 0;
  return ta !== tb ? ta > tb : String(a.id) > String(b.id);
}

/* ---------- Credentials ---------- */

async function toggleCredentials(view, id) {
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
