// What the user asks of stores: a new one (the create form; an admin's, for any tenant),
// deleting one (once confirmed), upgrading or rolling one back, giving one other settings.
// The API's answer updates the store.

import { api, ApiError } from './api.js';
import { handleError } from './alerts.js';
import { setBusy } from './cards.js';
import { confirmAction } from './confirm.js';
import { DELETION_STARTS } from './format.js';
import { stores, upsertStore } from './stores.js';

const els = {
  createForm: byId('create-form'),
  createName: byId('create-name'),
  createSubmit: byId('create-submit'),
  createError: byId('create-error'),
  createStatus: byId('create-status'),
  createTenant: byId('create-tenant'),
};

function byId(id) {
  return document.getElementById(id);
}

export function initActions() {
  els.createForm.addEventListener('submit', onCreateSubmit);
  els.createName.addEventListener('input', () => setCreateError(''));
}

// Nothing of the last session's form stays for the next one.
export function resetActions() {
  els.createForm.reset();
  els.createStatus.textContent = '';
  setCreateError('');
  setCreateBusy(false);
}

/* ---------- Create ---------- */

async function onCreateSubmit(event) {
  event.preventDefault();
  const name = els.createName.value.trim();
  const length = [...name].length;
  if (length < 1 || length > 50) {
    setCreateError(length ? 'Store name must be at most 50 characters.' : 'Enter a store name (1–50 characters).');
    els.createName.focus();
    return;
  }
  setCreateError('');
  els.createStatus.textContent = '';
  setCreateBusy(true);
  try {
    const settings = chosenSettings();
    const tenant = els.createTenant.value; // an admin's choice; '' is their own tenant
    const body = {
      name, type: 'woocommerce', ...(settings ? { settings } : {}), ...(tenant ? { tenant_id: tenant } : {}),
    };
    const store = await api('POST', '/stores', body);
    upsertStore(store);
    els.createName.value = '';
    els.createStatus.textContent = `Store “${store?.name ?? name}” requested.`;
  } catch (err) {
    if (err instanceof ApiError && [400, 409, 422].includes(err.problem?.status)) {
      setCreateError(err.message);
    } else {
      handleError(err);
    }
  } finally {
    setCreateBusy(false);
  }
}

// The settings filled in on the form; those left empty take the platform's defaults.
function chosenSettings() {
  const chosen = {};
  for (const field of els.createForm.querySelectorAll('.create-settings [name]')) {
    const value = field.value.trim();
    if (!value) continue;
    chosen[field.name] = field.name === 'sample_products' ? value === 'true' : value;
  }
  return Object.keys(chosen).length ? chosen : null;
}

function setCreateBusy(busy) {
  els.createSubmit.disabled = busy;
  els.createName.readOnly = busy;
  els.createSubmit.textContent = busy ? 'Creating…' : 'Create';
}

function setCreateError(message) {
  els.createError.textContent = message;
  els.createError.hidden = !message;
  if (message) els.createName.setAttribute('aria-invalid', 'true');
  else els.createName.removeAttribute('aria-invalid');
}

/* ---------- Delete ---------- */

export async function askToDelete(id) {
  const store = stores.get(id);
  if (!store?.actions?.includes('delete')) return;
  const starts = DELETION_STARTS[store.status];
  const afterWork = starts ? `, ${starts}` : '';
  const confirmed = await confirmAction({
    title: 'Delete store?',
    text: `“${store.name}” and all of its data will be permanently removed${afterWork}.`,
    confirm: 'Delete store',
  });
  if (confirmed) deleteStore(id);
}

async function deleteStore(id) {
  setBusy(id, 'delete', true);
  try {
    upsertStore(await api('DELETE', `/stores/${encodeURIComponent(id)}`));
  } catch (err) {
    handleError(err);
  } finally {
    setBusy(id, 'delete', false);
  }
}

/* ---------- Settings ---------- */

// Other settings for a ready store: it is backed up first, then given them (`updating`). A
// refusal of what was asked (nothing to change, a code no standard has) comes back as words
// for the form; null once asked.
export async function changeSettings(id, chosen) {
  setBusy(id, 'change', true);
  try {
    upsertStore(await api('POST', `/stores/${encodeURIComponent(id)}/settings`, chosen));
    return null;
  } catch (err) {
    if (err instanceof ApiError && [409, 422].includes(err.problem?.status)) return err.message;
    handleError(err);
    return null;
  } finally {
    setBusy(id, 'change', false);
  }
}

/* ---------- Upgrade, roll back and retry ---------- */

// The store shows `updating` with progress, then ready again; a retried one is queued again
// and made from scratch, as a new store is.
export async function changeStore(id, change) {
  setBusy(id, 'change', true);
  try {
    upsertStore(await api('POST', `/stores/${encodeURIComponent(id)}/${change}`));
  } catch (err) {
    handleError(err);
  } finally {
    setBusy(id, 'change', false);
  }
}
