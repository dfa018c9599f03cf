// A card's Backups section: the store's backups, read from the API when it is opened and read
// again when a backup or restore of the store starts or ends, or a backup is deleted or found
// damaged, while it stays open; "Back up now", "Restore" and "Copy" (a new store made from it) on each complete
// backup, and "Delete" on each complete, failed or damaged one (each once confirmed).

import { api, isAdmin } from './api.js';
import { handleError } from './alerts.js';
import { confirmAction } from './confirm.js';
import { setTime, shortTimeFormat } from './format.js';
import { EVENT, stores, upsertStore } from './stores.js';

const BACKUP_EVENTS = new Set([
  EVENT.backupStarted, EVENT.backupCompleted, EVENT.backupFailed,
  EVENT.restoreRequested, EVENT.restored, EVENT.restoreFailed, EVENT.backupDeleted,
  EVENT.backupDamaged,
]);
const TRIGGERS = {
  requested: 'asked for',
  scheduled: 'daily',
  before_upgrade: 'before an upgrade',
  before_rollback: 'before a rollback',
  before_settings: 'before a settings change',
  before_restore: 'before a restore',
};

export async function loadBackups(view, id) {
  const { backupsStatus: status, backupList: list } = view.els;
  if (!list.childElementCount) status.textContent = 'Loading…';
  try {
    const { items = [] } = (await api('GET', `/stores/${encodeURIComponent(id)}/backups`)) ?? {};
    if (!view.els.backups.open) return;
    // One being deleted is gone as far as its owner is concerned: it cannot be restored.
    const shown = items.filter((backup) => backup.status !== 'deleting');
    list.replaceChildren(...shown.map((backup) => backupItem(id, backup)));
    showBackupButtons(view, stores.get(id));
    status.textContent = shown.length ? '' : 'No backups yet.';
  } catch (err) {
    status.textContent = 'Could not load backups.';
    handleError(err);
  }
}

export function followBackups(view, id, event) {
  if (view.els.backups.open && BACKUP_EVENTS.has(event.type)) loadBackups(view, id);
}

// The store shows `backing_up` with its steps, then ready again; the section lists the backup.
export async function backUp(view, id) {
  view.els.backupButton.disabled = true;
  try {
    await api('POST', `/stores/${encodeURIComponent(id)}/backups`);
    view.els.backups.open = true; // its toggle reads the list, with the new backup
  } catch (err) {
    handleError(err);
  } finally {
    view.els.backupButton.disabled = false;
  }
}

// Restore buttons are there while the store offers a restore (it is ready).
// Restore where the store offers it; Copy unless the store is to be deleted (its backups go
// with it, and a copy is refused).
export function showBackupButtons(view, store) {
  const list = view.els.backupList;
  for (const button of list.querySelectorAll('[data-testid="restore-button"]')) {
    button.hidden = !store?.actions?.includes('restore');
  }
  for (const button of list.querySelectorAll('[data-testid="copy-backup-button"]')) {
    button.hidden = Boolean(store?.delete_requested_at);
  }
}

async function askToRestore(id, backup) {
  const store = stores.get(id);
  const confirmed = await confirmAction({
    title: 'Restore this backup?',
    text: `“${store?.name ?? 'The store'}” gets the database and uploads it had then. It is `
      + 'backed up as it is first, so nothing it has now is lost.',
    confirm: 'Restore',
  });
  if (!confirmed) return;
  try {
    upsertStore(await api('POST', `/stores/${encodeURIComponent(id)}/restore`, { backup_id: backup.id }));
  } catch (err) {
    handleError(err);
  }
}

// The copy is named after the store; it is renamed like any store, and its card arrives in
// the list at once (queued), then follows its own events.
async function askToCopy(id, backup) {
  const name = `${(stores.get(id)?.name ?? 'Store').slice(0, 45)} copy`;
  const confirmed = await confirmAction({
    title: 'Copy to a new store?',
    text: `A new store, “${name}”, is made with what this backup holds: its products, orders, `
      + 'customers, uploads and settings, under its own address and admin password.',
    confirm: 'Make the copy',
  });
  if (!confirmed) return;
  const body = { name, from_backup: backup.id };
  // A copy is made in its backup's tenant: an admin viewing all tenants names it.
  const tenant = stores.get(id)?.tenant_id;
  if (isAdmin() && tenant) body.tenant_id = tenant;
  try {
    upsertStore(await api('POST', '/stores', body));
  } catch (err) {
    handleError(err);
  }
}

async function askToDelete(id, backup) {
  const confirmed = await confirmAction({
    title: 'Delete this backup?',
    text: `The backup of ${new Date(backup.requested_at).toLocaleString()} can no longer be `
      + 'restored, and its data is removed from the store\'s backups.',
    confirm: 'Delete backup',
  });
  if (!confirmed) return;
  try {
    // The list is read again on its backup_deleted event.
    await api('DELETE', `/stores/${encodeURIComponent(id)}/backups/${encodeURIComponent(backup.id)}`);
  } catch (err) {
    handleError(err);
  }
}

function backupItem(id, backup) {
  const item = document.createElement('li');
  item.dataset.testid = 'backup';
  item.dataset.status = backup.status;
  const time = document.createElement('time');
  setTime(time, backup.requested_at, shortTimeFormat);
  const text = document.createElement('span');
  text.textContent = describe(backup);
  item.append(time, text);
  if (backup.status === 'complete') {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'secondary small';
    button.dataset.testid = 'restore-button';
    button.textContent = 'Restore';
    button.addEventListener('click', () => askToRestore(id, backup));
    const copy = document.createElement('button');
    copy.type = 'button';
    copy.className = 'secondary small';
    copy.dataset.testid = 'copy-backup-button';
    copy.textContent = 'Copy';
    copy.setAttribute('aria-label', `Copy the backup of ${time.textContent} to a new store`);
    copy.addEventListener('click', () => askToCopy(id, backup));
    item.append(' ', button, ' ', copy);
  }
  if (['complete', 'failed', 'damaged'].includes(backup.status)) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'danger small';
    button.dataset.testid = 'delete-backup-button';
    button.textContent = 'Delete';
    button.setAttribute('aria-label', `Delete the backup of ${time.textContent}`);
    button.addEventListener('click', () => askToDelete(id, backup));
    item.append(' ', button);
  }
  return item;
}

function describe(backup) {
  const why = TRIGGERS[backup.trigger] ?? backup.trigger;
  if (backup.status === 'failed') return `Failed (${why}): ${backup.reason ?? 'unknown reason'}`;
  if (backup.status === 'damaged') {
    return `Damaged, cannot be restored (${why}): ${backup.reason ?? 'unknown reason'}`;
  }
  if (backup.status === 'running') return `Backing up (${why})…`;
  const ran = [
    backup.wordpress_version && `WordPress ${backup.wordpress_version}`,
    backup.woocommerce_version && `WooCommerce ${backup.woocommerce_version}`,
  ].filter(Boolean).join(', ');
  return `Complete (${why}): ${formatBytes(backup.size ?? 0)}${ran ? ` · ${ran}` : ''}`;
}

export function formatBytes(bytes) {
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? `${value} bytes` : `${value.toFixed(1)} ${units[unit]}`;
}
