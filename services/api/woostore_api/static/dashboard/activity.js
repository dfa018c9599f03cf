// A card's Activity log: the store's events, read from the API when it is opened and
// followed live while it stays open.

import { api } from './api.js';
import { handleError } from './alerts.js';
import {
  CHANGE_NAMES, DELETION_STARTS, setTime, settingsText, shortTimeFormat, stepText,
} from './format.js';
import { formatBytes } from './backups.js';
import { EVENT } from './stores.js';

// Why a copy's backup can be copied no more (a source_lost event's reason).
const SOURCE_LOSSES = {
  backup_deleted: 'the backup it is made from was deleted',
  backup_damaged: 'the backup it is made from was found damaged',
  store_deleted: 'the store it is copied from is being deleted, and its backups with it',
};

export async function loadActivity(view, id) {
  view.activityIds = new Set();
  view.els.activityList.replaceChildren();
  view.els.activityStatus.textContent = 'Loading…';
  try {
    const { events = [], earlier_events: earlier = false } =
      (await api('GET', `/stores/${encodeURIComponent(id)}`)) ?? {};
    if (!view.els.activity.open) return;
    view.els.activityList.replaceChildren();
    view.activityIds = new Set();
    events.forEach((event) => addActivityItem(view, event));
    view.els.activityList.scrollTop = view.els.activityList.scrollHeight;
    // A store kept long has more than the API sends at once (its latest 100): say so.
    view.els.activityStatus.textContent = earlier
      ? `The latest ${events.length} events; earlier ones are not shown.`
      : events.length ? '' : 'No activity yet.';
  } catch (err) {
    view.els.activityStatus.textContent = 'Could not load activity.';
    handleError(err);
  }
}

export function appendActivity(view, event) {
  if (!view.els.activity.open || !view.activityIds) return;
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
    case EVENT.progress: {
      const text = data?.step ? stepText(data.step) : `Progress ${Math.round((data?.progress ?? 0) * 100)}%`;
      return data?.phase === 'clean_up' ? `Cleaning up: ${text}` : text;
    }
    case EVENT.ready:
      return 'Store is ready';
    case EVENT.failed:
      return `Failed: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.cleanedUp:
      return 'Cleaned up: nothing of the store is left in the cluster';
    case EVENT.deleteRequested:
      return 'Deletion requested';
    case EVENT.deleteQueued:
      return `Deletion requested: it starts ${DELETION_STARTS[data?.status] ?? 'once its work ends'}`;
    case EVENT.deleted:
      return 'Store deleted';
    case EVENT.changeRequested:
      return `${CHANGE_NAMES[data?.change] ?? 'Change'} requested`;
    case EVENT.changed:
      // A settings change leaves the chart as it was: what it changed is the settings.
      return data?.change === 'settings'
        ? `Settings change done: ${data?.settings ? settingsText(data.settings) : '?'}`
        : `${CHANGE_NAMES[data?.change] ?? 'Change'} done: chart ${data?.chart_version ?? '?'}`;
    case EVENT.changeFailed:
      return `${CHANGE_NAMES[data?.change] ?? 'Change'} failed: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.restoreRequested:
      return 'Restore requested: the backup is checked, and the store backed up as it is, first';
    case EVENT.restored:
      return 'Restored from its backup';
    case EVENT.restoreFailed:
      return `Restore failed: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.backupStarted:
      return 'Backup started';
    case EVENT.backupCompleted:
      return `Backup complete: ${formatBytes(data?.size ?? 0)}`;
    case EVENT.backupFailed:
      return `Backup failed: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.backupDeleted:
      return data?.reason === 'retention' ? 'Old backup deleted (retention)' : 'Backup deleted';
    case EVENT.backupDamaged:
      return `Backup found damaged, no longer restorable: ${data?.reason ?? 'unknown reason'}`;
    case EVENT.sourceLost:
      return `${data?.status === 'failed' ? 'Can no longer be retried' : 'Cannot be retried, should it fail'}: ${
        SOURCE_LOSSES[data?.reason] ?? 'its backup is gone'}`;
    default:
      return String(type ?? 'event');
  }
}
