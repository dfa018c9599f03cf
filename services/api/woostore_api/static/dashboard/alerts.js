// The alerts at the top of the page, and how an error becomes one.

import { ApiError, SessionEnded } from './api.js';

const alerts = document.getElementById('alerts');

function showAlert(message) {
  const existing = [...alerts.children].some((el) => el.dataset.message === message);
  if (existing) return;
  const alert = dismissible(message, 'alert');
  alert.dataset.message = message;
  alerts.append(alert);
}

// A message the user can dismiss, as alerts and notices show them.
export function dismissible(message, kind) {
  const box = document.createElement('div');
  box.className = kind;
  box.dataset.testid = kind;

  const text = document.createElement('p');
  text.textContent = message;

  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'alert-dismiss';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.dataset.testid = `${kind}-dismiss`;
  dismiss.addEventListener('click', () => box.remove());

  box.append(text, dismiss);
  return box;
}

export function clearAlerts() {
  alerts.replaceChildren();
}

export function handleError(err) {
  if (err instanceof SessionEnded) return;
  if (err instanceof ApiError) {
    showAlert(err.message);
  } else {
    console.error(err);
    showAlert(`Unexpected error: ${err?.message ?? err}`);
  }
}
