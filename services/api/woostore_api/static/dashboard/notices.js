// Notices that a store on the page became ready or failed: polite (read out when the reader
// is idle), and gone by themselves after a while. Errors are alerts.js's, and stay until
// dismissed.

import { dismissible } from './alerts.js';
import { EVENT, onStoreEvent, stores } from './stores.js';

const SHOWN_MS = 12_000;
const KEPT = 4; // more at once would push the page down

const region = document.getElementById('notices');

export function initNotices() {
  onStoreEvent((id, event) => {
    const name = stores.get(id)?.name;
    if (!name) return; // not a store the page shows
    if (event.type === EVENT.ready) notify(`“${name}” is ready.`, 'ready');
    if (event.type === EVENT.failed) {
      notify(`“${name}” failed: ${event.data?.reason ?? 'unknown reason'}`, 'failed');
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
