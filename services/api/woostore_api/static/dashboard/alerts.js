// The alerts at the top of the page, and how an error becomes one.

import { ApiError, SessionEnded } from './api.js';

const alerts = document.getElementById('alerts');

export function showAlert(message) {
  const existing = [...alerts.children].some((el) => el.dataset.message === message);
  if (existing) return;
  const alert = document.createElement('div');
  alert.className = 'alert';
  alert.dataset.message = message;
  alert.dataset.testid = 'alert';

  const text = document.createElement('p');
  text.textContent = message;

  const dismiss = document.createElement('button');
  dismiss.type = 'button';
  dismiss.className = 'alert-dismiss';
  dismiss.setAttribute('aria-label', 'Dismiss');
  dismiss.dataset.testid = 'alert-dismiss';
  dismiss.addEventListener('click', () => alert.remove());

  alert.append(text, dismiss);
  alerts.append(alert);
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
