// The page's views (stores, API keys and, for admins, tenants), one shown at a time and chosen
// by the address's fragment (#keys), so links, the back button and reloads keep the place.

import { isSignedIn } from './api.js';

const sections = new Map([...document.querySelectorAll('[data-view]')].map((el) => [el.dataset.view, el]));
const links = [...document.querySelectorAll('[data-view-link]')];
const shownListeners = new Map(); // view -> listener() each time it is shown
let shown = null;

export function initViews() {
  addEventListener('hashchange', () => {
    // Other fragments (the skip link's #main) are no view; signed out, nothing is shown.
    if (sections.has(location.hash.slice(1)) && isSignedIn()) showView({ focus: true });
  });
}

// listener() each time `view` is shown: what it reads, it reads then.
export function onViewShown(view, listener) {
  shownListeners.set(view, listener);
}

// Views a link is hidden for (tenants, for a tenant's key) cannot be shown.
export function setViewAllowed(view, allowed) {
  links.find((link) => link.dataset.viewLink === view).hidden = !allowed;
}

export function showView({ focus = false } = {}) {
  const asked = location.hash.slice(1);
  const link = links.find((each) => each.dataset.viewLink === asked && !each.hidden);
  const view = link ? asked : 'stores';
  for (const [name, section] of sections) section.hidden = name !== view;
  for (const each of links) {
    if (each.dataset.viewLink === view) each.setAttribute('aria-current', 'page');
    else each.removeAttribute('aria-current');
  }
  const changed = view !== shown;
  shown = view;
  if (changed) shownListeners.get(view)?.();
  if (focus) {
    // Keyboard and screen-reader users land on what they chose.
    const heading = sections.get(view).querySelector('h2');
    heading.tabIndex = -1;
    heading.focus();
  }
}

export function isViewShown(view) {
  return shown === view;
}

export function resetViews() {
  shown = null;
}
