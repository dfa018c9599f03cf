// The stores this page knows: the pages of the list it has read (what the query asks for:
// a search, the statuses shown, an admin's tenant), the events that move them on between
// snapshots, and the actions each store offers. Those come from the API (the store resource's
// `actions`) and are never worked out here. Whatever changes, the listeners hear of it.

import { api, ApiError, withQuery } from './api.js';
import { handleError } from './alerts.js';

export const EVENT = {
  requested: 'io.woostore.store.requested',
  progress: 'io.woostore.store.progress',
  ready: 'io.woostore.store.ready',
  failed: 'io.woostore.store.failed',
  cleanedUp: 'io.woostore.store.cleaned_up',
  deleteRequested: 'io.woostore.store.delete_requested',
  deleteQueued: 'io.woostore.store.delete_queued',
  deleted: 'io.woostore.store.deleted',
  changeRequested: 'io.woostore.store.change_requested',
  changed: 'io.woostore.store.changed',
  changeFailed: 'io.woostore.store.change_failed',
  fellBack: 'io.woostore.store.fell_back',
  backupStarted: 'io.woostore.store.backup_started',
  backupCompleted: 'io.woostore.store.backup_completed',
  backupFailed: 'io.woostore.store.backup_failed',
  restoreRequested: 'io.woostore.store.restore_requested',
  restored: 'io.woostore.store.restored',
  restoreFailed: 'io.woostore.store.restore_failed',
  backupDeleted: 'io.woostore.store.backup_deleted',
  backupDamaged: 'io.woostore.store.backup_damaged',
  sourceLost: 'io.woostore.store.source_lost',
};

// Every status but deleted: what the list shows unless one status is chosen.
export const LIVE_STATUSES = [
  'queued', 'provisioning', 'ready', 'updating', 'backing_up', 'restoring', 'failed', 'deleting',
];
const PAGE_SIZE = 50;

export const stores = new Map(); // id -> the store resource, without its events
let loaded = false;
let failed = false; // the last page could not be read
let nextCursor = null; // of the next page, if there is one
// `status`: null for every status but deleted. `tenant`: an admin's choice, null for all.
let query = { q: '', status: null, tenant: null };
let generation = 0; // bumped when the query changes: a page read for an older one is dropped
// Stores the page learnt of while a first page was being read (a create's answer, a store an
// event brought): that page, read before them, does not drop them.
const arrived = new Set();
// The status each event type gives a store; types not here give none.
const STATUS_OF = {
  [EVENT.requested]: 'queued',
  [EVENT.fellBack]: 'queued',
  [EVENT.ready]: 'ready',
  [EVENT.failed]: 'failed',
  [EVENT.deleteRequested]: 'deleting',
  [EVENT.deleted]: 'deleted',
  [EVENT.changeRequested]: 'updating',
  [EVENT.changed]: 'ready',
  [EVENT.changeFailed]: 'ready',
  [EVENT.backupStarted]: 'backing_up',
  [EVENT.backupCompleted]: 'ready',
  [EVENT.backupFailed]: 'ready',
  [EVENT.restoreRequested]: 'restoring',
  [EVENT.restored]: 'ready',
  [EVENT.restoreFailed]: 'ready',
};
// id -> a GET /stores/{id} under way: `events` that came for the store before the page knew
// it, and `again` when its status moved on meanwhile (the answer may be of the old status).
const reading = new Map();
const changeListeners = [];
const eventListeners = [];

// listener(id) after a store changed; listener(null) when the list as a whole did (loaded).
export function onStoreChange(listener) {
  changeListeners.push(listener);
}

// listener(id, event) for every event about a store, before it is applied.
export function onStoreEvent(listener) {
  eventListeners.push(listener);
}

function changed(id) {
  for (const listener of changeListeners) listener(id);
}

export function storesLoaded() {
  return loaded;
}

export function storesFailed() {
  return failed;
}

export function hasMoreStores() {
  return nextCursor !== null;
}

export function storeQuery() {
  return query;
}

export function clearStores() {
  stores.clear();
  reading.clear();
  loaded = failed = false;
  nextCursor = null;
  query = { q: '', status: null, tenant: null };
  generation += 1;
}

// Show what `changes` ask for (of q, status, tenant) from its first page.
export function setStoreQuery(changes) {
  query = { ...query, ...changes };
  loadStores();
}

// The first page for the query, in place of whatever was shown (which stays until it is here,
// so a card's open panels survive a reload of the stores it is among).
export async function loadStores() {
  generation += 1;
  reading.clear();
  arrived.clear();
  nextCursor = null;
  await readPage(null);
}

export async function loadMoreStores() {
  if (nextCursor !== null) await readPage(nextCursor);
}

async function readPage(cursor) {
  const asked = generation;
  const params = {
    q: query.q,
    status: query.status ?? LIVE_STATUSES,
    tenant_id: query.tenant,
    limit: PAGE_SIZE,
    cursor,
  };
  try {
    const page = (await api('GET', withQuery('/stores', params))) ?? {};
    if (asked !== generation) return;
    const items = page.items ?? [];
    if (cursor === null) {
      const shown = new Set([...items.map((item) => item.id), ...arrived]);
      for (const id of stores.keys()) if (!shown.has(id)) stores.delete(id);
    }
    items.forEach((item) => upsertStore(item));
    nextCursor = page.next_cursor ?? null;
    loaded = true;
    failed = false;
  } catch (err) {
    if (asked !== generation) return;
    failed = true;
    handleError(err);
  }
  changed(null);
}

function statusShown(status) {
  return query.status ? status === query.status : LIVE_STATUSES.includes(status);
}

// Whether a store the page has not read belongs in what it shows: the query's, and no older
// than the pages read (an older one comes with "Show more").
function shownByQuery(store) {
  const named = store.name?.toLocaleLowerCase().includes(query.q.toLocaleLowerCase()) ?? false;
  return statusShown(store.status) && named && !olderThanRead(store);
}

function olderThanRead(store) {
  if (nextCursor === null) return false; // every page read
  const oldest = Math.min(...[...stores.values()].map((s) => Date.parse(s.created_at)));
  return Date.parse(store.created_at) < oldest;
}

// Replace local state with a REST snapshot unless live events already moved it further;
// returns whether it did.
export function upsertStore(snapshot) {
  if (!snapshot?.id) return false;
  const { events, ...store } = snapshot;
  const current = stores.get(store.id);
  if (current && isBefore(store.updated_at, current.updated_at)) return false;
  if (!current) arrived.add(store.id);
  stores.set(store.id, store);
  changed(store.id);
  return true;
}

export function receiveEvent(event) {
  const id = event.subject;
  for (const listener of eventListeners) listener(id, event);
  const store = stores.get(id);
  if (store) {
    applyEvents(id, store, [event]);
  } else if (reading.has(id)) {
    reading.get(id).events.push(event);
  } else if (mayNowBeShown(event)) {
    readStore(id, [event]); // made by another client, or its new status is one shown
  }
}

// An unknown store's progress never brings it into view (10,000 stores make a lot of it); a
// new status may, if the list shows that status and the store's tenant.
function mayNowBeShown(event) {
  const status = STATUS_OF[event.type];
  if (!loaded || !status || !statusShown(status)) return false;
  return !query.tenant || event.tenantid === query.tenant;
}

function applyEvents(id, store, events) {
  const status = store.status;
  const applied = events.filter((e) => applyEvent(store, e));
  if (!applied.length) return;
  // Every event says what the store accepts after it (the store resource's actions), so
  // 10,000 open pages do not each read the store at each change. One without (recorded
  // before events carried them, and resumed) costs a read when it changes the status.
  const actions = applied.at(-1).data?.actions;
  if (Array.isArray(actions)) {
    store.actions = actions;
  } else if (store.status !== status) {
    store.actions = null; // not known yet: the API's to say, a moment later
    if (reading.has(id)) reading.get(id).again = true;
    else readStore(id, []);
  }
  changed(id);
}

// GET /stores/{id}, one at a time for a store, again until no status change raced it.
async function readStore(id, events) {
  const pending = { events, again: false };
  const asked = generation;
  reading.set(id, pending);
  try {
    do {
      pending.again = false;
      const snapshot = await api('GET', `/stores/${encodeURIComponent(id)}`);
      const store = stores.get(id);
      if (asked !== generation || (!store && !shownByQuery(snapshot))) break;
      if (!upsertStore(snapshot) && store && store.status === snapshot?.status && !pending.again) {
        // Progress passed the snapshot, but its status is still the store's: so are its actions.
        store.actions = snapshot.actions;
        changed(id);
      }
      // Events that raced the read; the updated_at check drops those already included.
      const raced = pending.events.splice(0);
      if (raced.length && stores.has(id)) applyEvents(id, stores.get(id), raced);
    } while (pending.again);
  } catch (err) {
    if (!(err instanceof ApiError && err.problem?.status === 404)) handleError(err);
  } finally {
    if (reading.get(id) === pending) reading.delete(id);
  }
}

function tenthsBetween(from, to) {
  if (!from || !to) return null;
  return Math.round((Date.parse(to) - Date.parse(from)) / 100) / 10;
}

function endChange(change, kind, result, reason, time) {
  return { ...(change ?? { requested_at: null }), kind, result, reason, finished_at: time ?? null };
}

function applyEvent(store, event) {
  if (isBefore(event.time, store.updated_at)) return false;
  const data = event.data ?? {};
  store.tenant_id ??= event.tenantid; // whose it is, before its snapshot is read
  // Only a started step waits on the cluster; whatever else happens ends the wait.
  store.waiting_cause = event.type === EVENT.progress ? data.cause ?? null : null;
  switch (event.type) {
    case EVENT.requested:
      // Made, claimed from the pool or retried: queued, nothing of its work done yet.
      Object.assign(store, { step: null, progress: 0 }, data.store);
      break;
    case EVENT.progress:
      if (data.phase === 'clean_up') {
        // A failed store's clean-up: its own step stays the one the store failed at.
        store.cleanup = { step: data.step ?? null, progress: data.progress ?? 0 };
        break;
      }
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
        // As the API counts it, in tenths of a second (a ready event follows every request).
        // (requested_at: an event from a replica older than it carries created_at alone.)
        ready_in_seconds: tenthsBetween(store.requested_at ?? store.created_at, event.time)
          ?? store.ready_in_seconds,
      });
      break;
    case EVENT.failed:
      // The event names the step (data.step); the card keeps the step it last showed, which is
      // that one, with its place (n of m) that a name alone does not give.
      Object.assign(store, {
        status: 'failed', failure_reason: data.reason ?? null, cleaned_up_at: null, cleanup: null,
      });
      break;
    case EVENT.fellBack:
      // The warm pool's store could not be made this owner's: it is made from scratch instead.
      Object.assign(store, { status: 'queued', origin: 'cold', step: null, progress: 0 });
      break;
    case EVENT.cleanedUp:
      // Its release and storefront are gone with the clean-up.
      Object.assign(store, {
        cleaned_up_at: event.time ?? new Date().toISOString(), cleanup: null,
        chart_version: null, release_revision: null, storefront_url: null, admin_url: null,
      });
      break;
    case EVENT.deleteRequested:
      Object.assign(store, { status: 'deleting', step: null, progress: 0 });
      break;
    case EVENT.deleteQueued:
      // Asked while its work runs: its status stays until the work ends, then it is deleted.
      store.delete_requested_at = event.time ?? new Date().toISOString();
      break;
    case EVENT.deleted:
      Object.assign(store, { status: 'deleted', step: null, deleted_at: event.time ?? store.deleted_at });
      break;
    case EVENT.changeRequested:
      Object.assign(store, {
        status: 'updating', change: data.change, step: null, progress: 0,
        // A settings change's events carry the settings (asked for, then as they ended), a
        // restore's as they are again; all but the admin's email, which the store keeps.
        settings: withSettings(store, data),
        last_change: { kind: data.change, result: null, reason: null, requested_at: event.time, finished_at: null },
      });
      break;
    case EVENT.changed:
      Object.assign(store, {
        status: 'ready', change: null, step: null, progress: 1,
        chart_version: data.chart_version ?? store.chart_version,
        release_revision: data.revision ?? store.release_revision,
        settings: withSettings(store, data),
        last_change: endChange(store.last_change, data.change, 'changed', null, event.time),
      });
      break;
    case EVENT.restoreRequested:
      Object.assign(store, {
        status: 'restoring', change: 'restore', step: null, progress: 0,
        last_change: { kind: 'restore', result: null, reason: null, requested_at: event.time, finished_at: null },
      });
      break;
    case EVENT.restored:
    case EVENT.restoreFailed: {
      const failed = event.type === EVENT.restoreFailed;
      Object.assign(store, {
        status: 'ready', change: null, step: null, progress: 1,
        settings: withSettings(store, data),
        last_change: endChange(store.last_change, 'restore', failed ? 'failed' : 'changed',
          failed ? data.reason ?? null : null, event.time),
      });
      break;
    }
    case EVENT.backupStarted:
      Object.assign(store, { status: 'backing_up', step: null, progress: 0 });
      break;
    case EVENT.backupCompleted:
    case EVENT.backupFailed:
      Object.assign(store, { status: 'ready', step: null, progress: 1 });
      break;
    case EVENT.backupDeleted:
    case EVENT.backupDamaged:
    case EVENT.sourceLost:
      // Its status stays; what it accepts may not (its last complete backup gone: no
      // restore; a failed copy's backup gone: no retry).
      break;
    case EVENT.changeFailed:
      Object.assign(store, {
        status: 'ready', change: null, step: null, progress: 1,
        settings: withSettings(store, data),
        last_change: endChange(store.last_change, data.change, 'failed', data.reason ?? null, event.time),
      });
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

// The settings an event tells, over those the store had (events leave the admin's email out).
function withSettings(store, data) {
  return data.settings ? { ...store.settings, ...data.settings } : store.settings;
}
