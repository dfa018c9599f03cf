// How many stores are in each status, above the list: read from the API (GET /stores/counts),
// which counts every store the caller may see, not only those this page has loaded. Read
// again when the list loads or a store's status changes, at most once per REFRESH_MS: never
// on a timer of its own.

import { api, isSignedIn } from './api.js';
import { onStoreChange, stores } from './stores.js';

const REFRESH_MS = 2000;
// Deleted stores are left out: they have their own section.
const ORDER = ['queued', 'provisioning', 'ready', 'updating', 'failed', 'deleting'];

const line = document.getElementById('store-counts');
const statuses = new Map(); // id -> the status last counted
let timer = null;
let due = false;

export function initCounts() {
  onStoreChange((id) => {
    const status = id === null ? null : stores.get(id)?.status;
    if (id !== null && statuses.get(id) === status) return; // progress, not a new status
    if (id !== null) statuses.set(id, status);
    refreshSoon();
  });
}

export function resetCounts() {
  statuses.clear();
  clearTimeout(timer);
  timer = null;
  due = false;
  line.hidden = true;
  line.textContent = '';
}

function refreshSoon() {
  if (timer !== null) {
    due = true; // once the current wait is over
    return;
  }
  refresh();
  timer = setTimeout(() => {
    timer = null;
    if (due) {
      due = false;
      refreshSoon();
    }
  }, REFRESH_MS);
}

async function refresh() {
  if (!isSignedIn()) return;
  try {
    const { total, by_status: byStatus } = await api('GET', '/stores/counts');
    const parts = ORDER.filter((status) => byStatus[status]).map((s) => `${byStatus[s]} ${s}`);
    line.textContent = `${total} ${total === 1 ? 'store' : 'stores'}${parts.length ? ': ' + parts.join(' · ') : ''}`;
    line.hidden = false;
  } catch {
    // The list says what went wrong with the API; a count is not worth a second alert.
  }
}
