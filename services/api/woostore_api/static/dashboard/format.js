// How steps, changes and times read on the page.

export const CHANGE_NAMES = { upgrade: 'Upgrade', rollback: 'Rollback', restore: 'Restore' };
// The work a busy store's status names, which a deletion asked for meanwhile waits for.
export const WORK_NAMES = { updating: 'change', backing_up: 'backup', restoring: 'restore' };

export function stepText(step) {
  return `Step ${step.index} of ${step.total} — ${step.title ?? step.name ?? ''}`.trim();
}

const timeFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });
export const shortTimeFormat = new Intl.DateTimeFormat(undefined, {
  month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});

export function setTime(el, iso, format = timeFormat) {
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
