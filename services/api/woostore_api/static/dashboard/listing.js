// The store list's controls and states: the search, a filter by status that says how many
// stores each status has, "Show more", and what the list says while loading, when empty and
// when it could not be read. The counts come from the API (GET /stores/counts), which counts
// every store the caller may see, not only those read; they are read again when the list
// loads or a store's status changes, at most once per REFRESH_MS: never on a timer of its own.

import { api, isSignedIn, withQuery } from './api.js';
import {
  EVENT, LIVE_STATUSES, hasMoreStores, loadMoreStores, loadStores, onStoreChange, onStoreEvent,
  setStoreQuery, storeQuery, stores, storesFailed, storesLoaded,
} from './stores.js';

const SEARCH_DELAY_MS = 250; // typing a name asks once, not once per key
const REFRESH_MS = 2000;
const FILTERS = [null, ...LIVE_STATUSES, 'deleted']; // null: every status but deleted

const els = {
  search: byId('store-search'),
  counts: byId('store-counts'),
  filter: byId('status-filter'),
  list: byId('store-list'),
  loading: byId('stores-loading'),
  empty: byId('stores-empty'),
  error: byId('stores-error'),
  more: byId('stores-more'),
};
const buttons = new Map(); // status (null: all) -> its filter button
let searchTimer = null;
let countTimer = null;
let countDue = false;

function byId(id) {
  return document.getElementById(id);
}

export function initListing() {
  for (const status of FILTERS) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'filter';
    button.dataset.testid = `filter-${status ?? 'all'}`;
    button.setAttribute('aria-pressed', String(status === null));
    button.addEventListener('click', () => chooseStatus(status));
    buttons.set(status, button);
    els.filter.append(button);
  }
  showCounts(null);
  els.search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => setStoreQuery({ q: els.search.value.trim() }), SEARCH_DELAY_MS);
  });
  els.more.addEventListener('click', async () => {
    const shownBefore = new Set(stores.keys());
    els.more.disabled = true;
    await loadMoreStores();
    els.more.disabled = false;
    // The last page hides the button, and focus would fall back to the page's start: it goes
    // to the first store the page brought instead, where the reader was going.
    const lost = document.activeElement === els.more || document.activeElement === document.body;
    if (els.more.hidden && lost) focusFirstStoreNotIn(shownBefore);
  });
  els.error.querySelector('button').addEventListener('click', () => loadStores());
  onStoreChange((id) => {
    updateListChrome();
    if (id === null) countSoon(); // another query (a tenant's counts), or read again
  });
  // Any store's new status, shown or not (most of 10,000 are not): progress changes no count.
  onStoreEvent((id, event) => {
    if (event.type !== EVENT.progress) countSoon();
  });
}

export function resetListing() {
  clearTimeout(searchTimer);
  clearTimeout(countTimer);
  countTimer = null;
  countDue = false;
  els.search.value = '';
  showCounts(null);
  for (const [status, button] of buttons) button.setAttribute('aria-pressed', String(status === null));
  updateListChrome();
}

function focusFirstStoreNotIn(ids) {
  const card = [...els.list.children].find((each) => !ids.has(each.dataset.storeId));
  const name = card?.querySelector('.card-name');
  if (!name) return;
  name.tabIndex = -1;
  name.focus();
}

function chooseStatus(status) {
  for (const [each, button] of buttons) button.setAttribute('aria-pressed', String(each === status));
  setStoreQuery({ status });
}

export function updateListChrome() {
  const signedIn = isSignedIn();
  const loaded = storesLoaded();
  const none = stores.size === 0;
  els.loading.hidden = !signedIn || loaded || storesFailed();
  els.error.hidden = !signedIn || !storesFailed() || !none;
  els.empty.hidden = !signedIn || !loaded || !none;
  const { q, status } = storeQuery();
  els.empty.textContent = q || status ? 'No stores match.' : 'No stores yet. Create one above.';
  els.more.hidden = !hasMoreStores();
  els.list.setAttribute('aria-busy', String(signedIn && !loaded));
}

function countSoon() {
  if (countTimer !== null) {
    countDue = true; // once the current wait is over
    return;
  }
  count();
  countTimer = setTimeout(() => {
    countTimer = null;
    if (countDue) {
      countDue = false;
      countSoon();
    }
  }, REFRESH_MS);
}

async function count() {
  if (!isSignedIn()) return;
  try {
    const counts = await api('GET', withQuery('/stores/counts', { tenant_id: storeQuery().tenant }));
    showCounts(counts);
  } catch {
    // The list says what went wrong with the API; a count is not worth a second alert.
  }
}

// `counts`: GET /stores/counts's answer, or null while unknown.
function showCounts(counts) {
  const byStatus = counts?.by_status ?? {};
  for (const [status, button] of buttons) {
    const label = status === null ? 'All' : statusLabel(status);
    const n = status === null ? counts?.total : byStatus[status] ?? 0;
    button.textContent = counts ? `${label} ${n.toLocaleString()}` : label;
  }
  els.counts.hidden = !counts;
  if (!counts) return;
  const { total } = counts;
  const parts = LIVE_STATUSES.filter((s) => byStatus[s])
    .map((s) => `${byStatus[s]} ${statusLabel(s).toLowerCase()}`);
  els.counts.textContent = `${total} ${total === 1 ? 'store' : 'stores'}${parts.length ? ': ' + parts.join(' · ') : ''}`;
}

// "backing_up" -> "Backing up"
function statusLabel(status) {
  const words = status.replaceAll('_', ' ');
  return words[0].toUpperCase() + words.slice(1);
}
