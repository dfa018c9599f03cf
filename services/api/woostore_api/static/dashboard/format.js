// How steps, changes and times read on the page.

export const CHANGE_NAMES = {
  upgrade: 'Upgrade', rollback: 'Rollback', settings: 'Settings change', restore: 'Restore',
};
// When a deletion asked for while a store works starts, by the store's status: a backup is
// stopped for it (the store's backups go with it), a change or a restore runs to its end,
// and a ready or failed store waits for a store being made from its backup.
export const DELETION_STARTS = {
  updating: 'once its change ends',
  backing_up: 'once its backup is stopped',
  restoring: 'once its restore ends',
  ready: 'once no copy reads its backups',
  failed: 'once no copy reads its backups',
};

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

// A store's settings on one line, as its card and its activity show them.
export function settingsText(settings) {
  const place = settings.state ? `${settings.country}-${settings.state}` : settings.country;
  const products = settings.sample_products ? 'sample products' : 'no sample products';
  return [settings.currency, place, settings.language, products].join(' · ');
}
