// For an admin: every tenant with its live stores against its cap (and, asked for, the deleted
// ones), the tenant picker (which narrows the stores, their counts and the keys shown to one
// tenant), whom the create form makes a store for, a tenant's suspension (its keys refused,
// its stores kept) and its deletion once its stores are deleted.

import { api, caller, isAdmin } from './api.js';
import { handleError } from './alerts.js';
import { setTenantNames } from './cards.js';
import { confirmAction } from './confirm.js';
import { setStoreQuery } from './stores.js';

const els = {
  pickerLabel: document.querySelector('[data-role="tenant-picker"]'),
  picker: document.getElementById('tenant-picker'),
  createFor: document.querySelector('[data-role="create-for"]'),
  createTenant: document.getElementById('create-tenant'),
  rows: document.getElementById('tenant-rows'),
  showDeleted: document.getElementById('tenant-show-deleted'),
};
// The admin token's tenant (DEFAULT_TENANT_ID in shared/woostore_shared/models.py): never
// deleted, whoever asks.
const DEFAULT_TENANT = '00000000-0000-0000-0000-000000000001';
const pickListeners = [];
let picked = null; // a tenant id, or null for all
let loads = 0; // the tenants asked for so far: only the latest answer is shown

export function initTenants() {
  els.picker.addEventListener('change', () => pick(els.picker.value || null));
  els.showDeleted.addEventListener('change', loadTenants);
}

// listener() when another tenant (or all) is picked.
export function onTenantPicked(listener) {
  pickListeners.push(listener);
}

export function pickedTenant() {
  return picked;
}

export function resetTenants() {
  picked = null;
  els.pickerLabel.hidden = els.createFor.hidden = true;
  els.picker.replaceChildren(option('', 'All tenants'));
  els.createTenant.replaceChildren();
  els.rows.replaceChildren();
  els.showDeleted.checked = false;
  setTenantNames(new Map());
}

export async function loadTenants() {
  if (!isAdmin()) return;
  const load = ++loads;
  let listed;
  try {
    listed = (await api('GET', els.showDeleted.checked ? '/tenants?include_deleted=true' : '/tenants')) ?? [];
  } catch (err) {
    handleError(err);
    return;
  }
  // Answers may come out of order (the box ticked twice quickly): an older one is dropped.
  if (load !== loads) return;
  // A deleted tenant is only listed: nothing can be picked, made or shown for it.
  const tenants = listed.filter((t) => !t.deleted_at);
  const own = caller()?.tenant_id;
  els.picker.replaceChildren(option('', 'All tenants'), ...tenants.map((t) => option(t.id, marked(t))));
  els.picker.value = picked ?? '';
  els.createTenant.replaceChildren(
    ...tenants.map((t) => option(t.id === own ? '' : t.id, t.id === own ? `${t.name} (yours)` : marked(t))),
  );
  els.createTenant.value = picked === own || picked === null ? '' : picked;
  els.pickerLabel.hidden = els.createFor.hidden = false;
  els.rows.replaceChildren(...listed.map((t) => (t.deleted_at ? deletedRow(t) : tenantRow(t))));
  // Each store card names its tenant once there are several (a suspended one marked).
  setTenantNames(new Map(tenants.length > 1 ? tenants.map((t) => [t.id, marked(t)]) : []));
}

// A suspended tenant's name where it is picked: what is made for it, its keys cannot use yet.
function marked(tenant) {
  return tenant.suspended_at ? `${tenant.name} (suspended)` : tenant.name;
}

function deletedRow(tenant) {
  const row = document.createElement('tr');
  row.dataset.testid = 'tenant-row';
  row.dataset.tenantId = tenant.id;
  row.className = 'is-deleted';
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = tenant.name;
  const state = document.createElement('td');
  state.colSpan = 2;
  const deleted = document.createElement('span');
  deleted.className = 'badge';
  deleted.dataset.testid = 'tenant-deleted';
  deleted.textContent = `deleted ${new Date(tenant.deleted_at).toLocaleString()}`;
  state.append(deleted);
  row.append(name, state);
  return row;
}

function pick(tenantId) {
  picked = tenantId;
  els.picker.value = tenantId ?? '';
  els.createTenant.value = tenantId === caller()?.tenant_id || tenantId === null ? '' : tenantId;
  setStoreQuery({ tenant: tenantId });
  for (const listener of pickListeners) listener();
}

function tenantRow(tenant) {
  const row = document.createElement('tr');
  row.dataset.testid = 'tenant-row';
  row.dataset.tenantId = tenant.id;
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = tenant.name;

  const usage = document.createElement('td');
  const meter = document.createElement('meter');
  meter.min = 0;
  meter.max = Math.max(1, tenant.store_cap);
  meter.value = tenant.live_stores;
  meter.high = meter.max * 0.8;
  meter.setAttribute('aria-label', `${tenant.name}: live stores against its cap`);
  const text = document.createElement('span');
  text.dataset.testid = 'tenant-usage';
  text.textContent = `${tenant.live_stores} of ${tenant.store_cap}`;
  usage.append(meter, ' ', text);
  if (tenant.suspended_at) {
    const suspended = document.createElement('span');
    suspended.className = 'badge';
    suspended.dataset.testid = 'tenant-suspended';
    suspended.textContent = 'suspended';
    suspended.title = `Its keys are refused since ${new Date(tenant.suspended_at).toLocaleString()}`;
    usage.append(' ', suspended);
  }

  const actions = document.createElement('td');
  const show = document.createElement('button');
  show.type = 'button';
  show.className = 'secondary small';
  show.textContent = 'Show stores';
  show.setAttribute('aria-label', `Show stores of ${tenant.name}`);
  show.addEventListener('click', () => {
    pick(tenant.id);
    location.hash = '#stores';
  });
  actions.append(show);
  if (tenant.id !== caller()?.tenant_id && tenant.id !== DEFAULT_TENANT) {
    // Its own tenant is no key's to suspend or delete, nor the default one (the API refuses
    // both too).
    const pause = document.createElement('button');
    pause.type = 'button';
    pause.className = 'secondary small';
    pause.textContent = tenant.suspended_at ? 'Resume' : 'Suspend';
    pause.dataset.testid = 'tenant-suspend';
    pause.setAttribute('aria-label', `${pause.textContent} tenant ${tenant.name}`);
    pause.addEventListener('click', () => suspendTenant(tenant, !tenant.suspended_at));
    actions.append(' ', pause);
    const remove = document.createElement('button');
    remove.type = 'button';
    remove.className = 'danger small';
    remove.textContent = 'Delete';
    remove.dataset.testid = 'tenant-delete';
    remove.setAttribute('aria-label', `Delete tenant ${tenant.name}`);
    remove.addEventListener('click', () => deleteTenant(tenant));
    actions.append(' ', remove);
  }
  row.append(name, usage, actions);
  return row;
}

async function suspendTenant(tenant, suspended) {
  if (suspended) {
    const confirmed = await confirmAction({
      title: 'Suspend tenant?',
      text: `Every key of “${tenant.name}” is refused at once, and its event streams end; its stores keep serving. Resume it to let the same keys in again.`,
      confirm: 'Suspend tenant',
    });
    if (!confirmed) return;
  }
  try {
    await api('PATCH', `/tenants/${encodeURIComponent(tenant.id)}`, { suspended });
    await loadTenants();
    els.rows.querySelector(`[data-tenant-id="${tenant.id}"] [data-testid="tenant-suspend"]`)?.focus();
  } catch (err) {
    handleError(err);
  }
}

async function deleteTenant(tenant) {
  const confirmed = await confirmAction({
    title: 'Delete tenant?',
    text: `“${tenant.name}” can be deleted only once its stores are deleted. Its keys stop working at once, its audit log is kept, and its name can be a new tenant's.`,
    confirm: 'Delete tenant',
  });
  if (!confirmed) return;
  try {
    await api('DELETE', `/tenants/${encodeURIComponent(tenant.id)}`);
    if (picked === tenant.id) pick(null);
    await loadTenants();
    els.rows.querySelector('button')?.focus(); // its row is gone: focus stays in the table
  } catch (err) {
    handleError(err); // while it has stores: how many, and to delete them first
  }
}

function option(value, label) {
  const el = document.createElement('option');
  el.value = value;
  el.textContent = label;
  return el;
}
