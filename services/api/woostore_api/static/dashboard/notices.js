// Notices that a store on the page became ready or failed, that its change or restore failed,
// or that one of its backups was found damaged: polite (read out when the reader is idle),
// and gone by themselves after a while. Errors are alerts.js's, and stay until dismissed.

import { dismissible } from './alerts.js';
import { EVENT, onStoreEvent, stores } from './stores.js';

const SHOWN_MS = 12_000;
const KEPT = 4; // more at once would push the page down

const region = document.getElementById('notices');

export function initNotices() {
  onStoreEvent((id, event) => {
    const name = stores.get(id)?.name;
    if (!name) return; // not a store the page shows
    const reason = event.data?.reason ?? 'unknown reason';
    if (event.type === EVENT.ready) notify(`“${name}” is ready.`, 'ready');
    if (event.type === EVENT.failed) notify(`“${name}” failed: ${reason}`, 'failed');
    // A change or a restore that failed leaves the store ready: its card alone said so.
    if (event.type === EVENT.changeFailed || event.type === EVENT.restoreFailed) {
      const what = event.type === EVENT.restoreFailed ? 'restore' : 'change';
      notify(`“${name}”: the ${what} failed: ${reason}`, 'failed');
    }
    if (event.type === EVENT.backupDamaged) {
      notify(`“${name}”: a backup was found damaged and cannot be restored.`, 'failed');
    }
  });
}

function notify(message, kind) {
  const notice = dismissible(message, 'notice');
  notice.dataset.kind = kind;
  region.append(notice);
  while (region.children.length > KEPT) region.firstElementChild.remove();
  setTimeout(() => notice.remove(), SHOWN_MS);
}

export function clearNotices() {
  region.replaceChildren();
}
