// API keys: create one (its token shown once, to copy), list them, revoke one once confirmed.
// A tenant's key sees its tenant's keys; an admin, the picked tenant's (everyone's if none) and
// may make admin keys.

import { api, ApiError, isAdmin, withQuery } from './api.js';
import { handleError } from './alerts.js';
import { confirmAction } from './confirm.js';
import { copyText } from './copy.js';
import { setTime, shortTimeFormat } from './format.js';
import { pickedTenant } from './tenants.js';

const els = {
  form: byId('key-form'),
  name: byId('key-name'),
  role: byId('key-role'),
  error: byId('key-error'),
  newKey: byId('new-key'),
  token: byId('new-key-token'),
  copy: document.querySelector('#new-key [data-role="copy"]'),
  table: document.querySelector('[data-testid="key-table"]'),
  rows: byId('key-rows'),
  empty: byId('keys-empty'),
};

function byId(id) {
  return document.getElementById(id);
}

export function initKeys() {
  els.form.addEventListener('submit', onCreate);
  els.name.addEventListener('input', () => setError(''));
  els.copy.addEventListener('click', () => copyText(els.token, els.copy));
}

export function resetKeys() {
  forgetNewKey();
  setError('');
  els.form.reset();
  els.rows.replaceChildren();
}

// The token is shown until the user moves on: it is not kept anywhere else.
export function forgetNewKey() {
  els.token.textContent = '';
  els.newKey.hidden = true;
}

export async function loadKeys() {
  els.role.hidden = !isAdmin();
  els.table.setAttribute('aria-busy', 'true');
  try {
    const { items = [] } = (await api('GET', withQuery('/keys', { tenant_id: pickedTenant() }))) ?? {};
    items.sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
    // Rows rebuilt under the user's hand lose focus and a click in flight: keep them when
    // nothing they show has changed (coming back to the view, say).
    const shown = [...els.rows.children].map((row) => row.dataset.shows);
    if (shown.join() !== items.map(showing).join()) els.rows.replaceChildren(...items.map(keyRow));
    els.empty.hidden = items.length > 0;
  } catch (err) {
    handleError(err);
  } finally {
    els.table.setAttribute('aria-busy', 'false');
  }
}

async function onCreate(event) {
  event.preventDefault();
  const name = els.name.value.trim();
  if (!name) {
    setError('Say what the key is for (1–100 characters).');
    els.name.focus();
    return;
  }
  const submit = els.form.querySelector('[type="submit"]');
  submit.disabled = true;
  try {
    const body = { name, role: isAdmin() ? els.role.value : 'tenant' };
    if (isAdmin() && pickedTenant()) body.tenant_id = pickedTenant();
    const key = await api('POST', '/keys', body);
    els.name.value = '';
    els.token.textContent = key.token;
    els.newKey.hidden = false;
    els.copy.focus();
    await loadKeys();
  } catch (err) {
    if (err instanceof ApiError && [400, 409, 422, 429].includes(err.problem?.status)) setError(err.message);
    else handleError(err);
  } finally {
    submit.disabled = false;
  }
}

function setError(message) {
  els.error.textContent = message;
  els.error.hidden = !message;
  if (message) els.name.setAttribute('aria-invalid', 'true');
  else els.name.removeAttribute('aria-invalid');
}

function keyRow(key) {
  const row = document.createElement('tr');
  row.dataset.testid = 'key-row';
  row.dataset.shows = showing(key);
  const name = document.createElement('th');
  name.scope = 'row';
  name.textContent = key.name;
  const prefix = document.createElement('td');
  const code = document.createElement('code');
  code.textContent = key.prefix;
  prefix.append(code);
  const role = cell(key.role);
  const created = document.createElement('td');
  const time = document.createElement('time');
  setTime(time, key.created_at, shortTimeFormat);
  created.append(time);
  const state = cell(key.revoked_at ? 'Revoked' : 'Active');
  state.dataset.testid = 'key-state';

  const actions = document.createElement('td');
  if (!key.revoked_at) {
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'danger small';
    revoke.textContent = 'Revoke';
    revoke.dataset.testid = 'key-revoke';
    revoke.setAttribute('aria-label', `Revoke ${key.name}`);
    revoke.addEventListener('click', () => revokeKey(key));
    actions.append(revoke);
  }
  row.append(name, prefix, role, created, state, actions);
  return row;
}

function showing(key) {
  return `${key.id}:${key.revoked_at ? 'revoked' : 'active'}`;
}

function cell(text) {
  const td = document.createElement('td');
  td.textContent = text;
  return td;
}

async function revokeKey(key) {
  const confirmed = await confirmAction({
    title: 'Revoke key?',
    text: `“${key.name}” (${key.prefix}…) stops working at once: its requests, sessions and event streams.`,
    confirm: 'Revoke key',
  });
  if (!confirmed) return;
  try {
    await api('DELETE', `/keys/${encodeURIComponent(key.id)}`);
    await loadKeys();
    els.name.focus(); // its row was rebuilt: focus goes somewhere useful, not to the page
  } catch (err) {
    handleError(err);
  }
}
